// The review queue from the keyboard: one photo is highlighted; Y or Enter confirms it, a digit
// picks that cake, N says none of these, J and K move. Answering reloads the queue with the
// answered photo gone, so the next one is highlighted at once.
(function () {
  const queue = document.querySelector("[data-review]");
  if (!queue) return;
  const slugs = queue.dataset.labels.split(",");
  const items = Array.from(queue.querySelectorAll(".review-item"));
  let current = 0;

  function highlight(index) {
    items.forEach((item) => item.classList.remove("current"));
    current = Math.max(0, Math.min(items.length - 1, index));
    items[current].classList.add("current");
    items[current].focus({ preventScroll: false });
  }

  function answer(slug) {
    const form = items[current].querySelector("form.feedback");
    if (!form) return;
    if (slug === items[current].dataset.prediction) {
      form.querySelector("button[name=label]").click();
      return;
    }
    const select = form.querySelector("select[name=correction]");
    select.value = slug;
    form.requestSubmit();
  }

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.target.closest("select, input, textarea")) return; // typing in a field
    const key = event.key.toLowerCase();
    if (key === "j" || key === "arrowdown") highlight(current + 1);
    else if (key === "k" || key === "arrowup") highlight(current - 1);
    else if (key === "y" || (key === "enter" && event.target === items[current])) {
      answer(items[current].dataset.prediction);
    } else if (key === "n") answer("none");
    else if (/^[1-9]$/.test(key) && Number(key) <= slugs.length) answer(slugs[Number(key) - 1]);
    else return;
    event.preventDefault();
  });
  items.forEach((item, index) => item.addEventListener("focus", () => {
    items.forEach((other) => other.classList.remove("current"));
    current = index;
    item.classList.add("current");
  }));
  highlight(0);
})();
