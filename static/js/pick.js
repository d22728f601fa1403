// Delete several…: the ticks are kept across the list's pages (in this tab, for these filters), so
// that photos ticked on one page are sent with those ticked on the next; a line says how many wait
// on other pages. "Tick them all" and "Untick them all" work in place: the first ticks this page's
// photos, the second unticks every page's. (Without this script each page sends its own ticks, and
// the links load the page again, all ticked or none.) Once the deletion is confirmed, the ticks go.
// (Kept per account and filters: the page's data-pick.)
(function () {
  const form = document.querySelector("form[data-pick]");
  if (!form) {
    const done = document.querySelector("form[data-picked]"); // the confirmation's
    if (done) {
      done.addEventListener("submit", (event) => {
        if (event.submitter && event.submitter.name === "confirm") {
          sessionStorage.removeItem(`pick:${done.dataset.picked}`);
        }
      });
    }
    return;
  }
  const key = `pick:${form.dataset.pick}`;
  const kept = new Set(JSON.parse(sessionStorage.getItem(key) || "[]"));
  const boxes = Array.from(form.querySelectorAll("input[type=checkbox][name=photo]"));
  const here = new Set(boxes.map((box) => box.value));
  const elsewhere = () => [...kept].filter((id) => !here.has(id));
  const note = form.querySelector("[data-picked-elsewhere]");

  function save() {
    boxes.forEach((box) => (box.checked ? kept.add(box.value) : kept.delete(box.value)));
    sessionStorage.setItem(key, JSON.stringify([...kept]));
    const n = elsewhere().length;
    note.hidden = n === 0;
    note.textContent = interpolate(ngettext("And %(n)s photo ticked on another page.",
      "And %(n)s photos ticked on other pages.", n), { n }, true);
  }

  boxes.forEach((box) => { if (kept.has(box.value)) box.checked = true; });
  save(); // (the page's own ticks too: a choice sent back with an error, say)
  form.addEventListener("change", save);
  form.querySelectorAll("a[data-tick]").forEach((link) => {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      if (link.dataset.tick === "none") kept.clear();
      boxes.forEach((box) => { box.checked = link.dataset.tick === "all"; });
      save();
    });
  });
  form.addEventListener("submit", () => {
    elsewhere().forEach((id) => {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = "photo";
      input.value = id;
      form.append(input);
    });
  });
}());
