// The photo page: the heat map toggle lays the worker's Grad-CAM overlay over the photo. The
// result panel is swapped in live, so the listener sits on the document.
document.addEventListener("change", (event) => {
  const toggle = event.target.closest(".heat-toggle");
  if (!toggle) return;
  const heat = document.querySelector(".photo .heat");
  if (!heat) return;
  if (!heat.getAttribute("src")) heat.src = toggle.dataset.heatmap;
  heat.hidden = !toggle.checked;
});
