// The review queue from the keyboard: one photo is highlighted; Y or Enter confirms it, a digit
// picks that cake, N says none of these, J and K move. The keys act only while the focus is in the
// queue (Tab to it, or click a photo), never on the page's links and buttons nor on a page just
// opened, where a stray key would answer the least certain photo unseen; the page does not move the
// focus by itself on load. Answering reloads the queue with the answered photo gone, thanked in its
// place with an Undo (U), and the focus comes back to the photo that came after it.
(function () {
  const answered = document.getElementById("answered");
  const cameBack = sessionStorage.getItem("review-focus");
  sessionStorage.removeItem("review-focus");
  const undo = () => {
    sessionStorage.setItem("review-focus", "1");
    answered.querySelector("form").requestSubmit();
  };
  if (answered) {
    // Its thanks are there as the page loads: said a moment after, as the site's messages are.
    const announcer = document.getElementById("announce");
    setTimeout(() => {
      if (announcer && !announcer.textContent) {
        announcer.textContent = answered.querySelector("p").textContent.trim().replace(/\s+/g, " ");
      }
    }, 500);
  }
  const queue = document.querySelector("[data-review]");
  if (!queue) {
    // The last photo answered from the keyboard: the Undo is all that is left to act on (U too).
    if (answered && cameBack) answered.querySelector("button").focus();
    if (answered) {
      answered.addEventListener("keydown", (event) => {
        if (event.altKey || event.ctrlKey || event.metaKey || event.repeat) return; // (a key held: once)
        if ((event.key || "").toLowerCase() !== "u") return;
        event.preventDefault();
        undo();
      });
    }
    return;
  }
  const slugs = queue.dataset.labels.split(",");
  const items = Array.from(queue.querySelectorAll(".review-item"));
  let current = 0;

  function highlight(index, focus) {
    items.forEach((item) => item.classList.remove("current"));
    current = Math.max(0, Math.min(items.length - 1, index));
    items[current].classList.add("current");
    if (focus) items[current].focus();
  }

  function answer(slug) {
    const form = items[current].querySelector("form.feedback");
    if (!form) return;
    sessionStorage.setItem("review-focus", "1");
    const yes = form.querySelector(".feedback-answer button[name=label]"); // (not an answer's Withdraw)
    if (slug === items[current].dataset.prediction && yes) {
      yes.click();
      return;
    }
    const select = form.querySelector("select[name=correction]");
    select.value = slug;
    form.requestSubmit();
  }

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    if (!queue.contains(event.target)) return; // the page just opened, a link, a field elsewhere
    if (event.target.closest("select, input, textarea")) return; // typing in a field
    const key = (event.key || "").toLowerCase();
    if (event.repeat && !["j", "k"].includes(key)) { // a key held answers once (J and K may scroll on)
      event.preventDefault();
      return;
    }
    if (key === "j") highlight(current + 1, true);
    else if (key === "k") highlight(current - 1, true);
    else if (key === "y" || (key === "enter" && event.target === items[current])) {
      answer(items[current].dataset.prediction);
    } else if (key === "n") answer("none");
    else if (key === "u" && answered) undo();
    else if (/^[1-9]$/.test(key) && Number(key) <= slugs.length) answer(slugs[Number(key) - 1]);
    else return;
    event.preventDefault();
  });
  // Whatever inside an item gets the focus (Tab, Shift+Tab, a click) makes that item the current one.
  queue.addEventListener("focusin", (event) => {
    const item = event.target.closest(".review-item");
    if (item) highlight(items.indexOf(item), false);
  });
  // The keys' help is read with the first photo that has the focus, not again with each next one,
  // nor after an answer from the keyboard (the queue reloads: it was heard already).
  const quiet = () => items.forEach((item) => item.removeAttribute("aria-describedby"));
  if (cameBack) quiet();
  else queue.addEventListener("focusout", quiet, { once: true });
  // After an answer the address names the photo that came after it: carry on from there (with the
  // focus, if the answer came from the keyboard).
  let after = items.findIndex((item) => `#${item.id}` === window.location.hash);
  if (after < 0 && answered && queue.contains(answered)) {
    // The page's last photo answered (its address names none after it): the one now after the
    // thanks came from the next page; with none, the one before them.
    const next = answered.nextElementSibling;
    after = next ? items.indexOf(next) : items.length - 1;
  }
  highlight(Math.max(after, 0), Boolean(cameBack));
})();
