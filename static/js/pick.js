// Delete several…: while the person moves between the list's pages, the ticks are kept (in this
// tab, per account and filters: the form's data-pick) and sent with the page's own; a line says
// how many wait on other pages. Arriving from anywhere else (the gallery, after a deletion, another
// visit) starts with none. "Tick them all" ticks this page's photos in place; "Untick them all"
// unticks every page's. (Without this script each page sends its own ticks, and the links load the
// page again, all ticked or none.)
(function () {
  const form = document.querySelector("form[data-pick]");
  if (!form) return;
  const key = `pick:${form.dataset.pick}`;
  const boxes = Array.from(form.querySelectorAll("input[type=checkbox][name=photo]"));
  const here = new Set(boxes.map((box) => box.value));
  const note = form.querySelector("[data-picked-elsewhere]");
  let kept = new Set();

  function read() {
    try {
      const ids = JSON.parse(sessionStorage.getItem(key) || "[]");
      return new Set(Array.isArray(ids) ? ids.map(String) : []);
    } catch (err) { // (storage blocked, or not ours)
      return new Set();
    }
  }
  function write() {
    try {
      sessionStorage.setItem(key, JSON.stringify([...kept]));
    } catch (err) { /* storage blocked or full: kept on this page only */ }
  }
  const elsewhere = () => [...kept].filter((id) => !here.has(id));
  function say() {
    const n = elsewhere().length;
    note.hidden = n === 0;
    note.textContent = n ? interpolate(ngettext("And %(n)s photo ticked on another page.",
      "And %(n)s photos ticked on other pages.", n), { n }, true) : "";
  }
  function save() { // the page's boxes as they are now
    boxes.forEach((box) => (box.checked ? kept.add(box.value) : kept.delete(box.value)));
    write();
    say();
  }

  let from = "";
  try { from = new URL(document.referrer).pathname; } catch (err) { /* none: a new visit */ }
  const [how] = performance.getEntriesByType("navigation"); // (Back, Forward and reload keep them)
  if (from !== location.pathname && (!how || how.type === "navigate")) { // a new visit: none kept
    try { sessionStorage.removeItem(key); } catch (err) { /* storage blocked */ }
  }
  kept = read();
  boxes.forEach((box) => { if (kept.has(box.value)) box.checked = true; });
  save(); // (and the page's own ticks: a choice sent back, with an error or to change it)
  // Back or Forward to a page of the list: the ticks as another page left them.
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    kept = read();
    boxes.forEach((box) => { box.checked = kept.has(box.value); });
    say();
  });
  form.addEventListener("change", save);
  form.querySelectorAll("a[data-tick]").forEach((link) => {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      if (link.dataset.tick === "none") kept.clear();
      boxes.forEach((box) => { box.checked = link.dataset.tick === "all"; });
      save();
    });
  });
  // The other pages' ticks go with the form (not as inputs, which a second sending would repeat).
  form.addEventListener("formdata", (event) => {
    elsewhere().forEach((id) => event.formData.append("photo", id));
  });
}());
