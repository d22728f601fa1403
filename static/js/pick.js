// "Tick them all" and "Untick them all" on Delete several…, in place: the ticks the person made by
// hand on the page go or stay as they asked, and the page does not reload (without this script,
// each link loads the page again, all ticked or none).
document.querySelectorAll("a[data-tick]").forEach((link) => {
  link.addEventListener("click", (event) => {
    event.preventDefault();
    const boxes = link.closest("form").querySelectorAll("input[type=checkbox][name=photo]");
    boxes.forEach((box) => { box.checked = link.dataset.tick === "all"; });
  });
});
