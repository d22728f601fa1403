// The photo page: the heat map toggle lays the worker's Grad-CAM overlay over the photo (made on
// first use). The result panel is swapped in live, so the listener sits on the document; the
// toggle's state is applied at load too (a browser may restore a checked box on reload).
function showHeatmap(toggle) {
  let heat = document.querySelector(".photo .heat");
  if (!heat && toggle.checked) {
    heat = document.createElement("img");
    heat.className = "heat";
    heat.alt = interpolate(gettext("Heat map: brighter where the model looked most for %(name)s"),
      { name: toggle.dataset.label }, true);
    heat.src = toggle.dataset.heatmap;
    document.querySelector(".photo .frame").append(heat);
  }
  if (heat) heat.hidden = !toggle.checked;
}

document.addEventListener("change", (event) => {
  const toggle = event.target.closest(".heat-toggle");
  if (!toggle) return;
  showHeatmap(toggle);
  // On a phone the photo is above the toggle, out of view: bring it in, so that the change shows.
  if (toggle.checked) document.querySelector(".photo .frame").scrollIntoView({ block: "nearest" });
});
document.querySelectorAll(".heat-toggle").forEach(showHeatmap);
