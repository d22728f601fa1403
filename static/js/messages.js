// What the server says after a form (a thank-you, "queued again", a deletion done) shows at the top of
// the next page, there as the page loads: screen readers would not say it. A moment after load its
// words are put into the page's #announce, a live region, which they do read.
(function () {
  const messages = document.querySelector(".messages");
  const announcer = document.getElementById("announce");
  if (!messages || !announcer) return;
  setTimeout(() => {
    if (!announcer.textContent) announcer.textContent = messages.textContent.trim().replace(/\s+/g, " ");
  }, 500);
})();
