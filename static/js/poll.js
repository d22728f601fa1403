// Pages with photos still queued or processing ask the server every second or two until each is
// done or failed, and swap in the server-rendered result: no manual reload.
(function () {
  const container = document.querySelector("[data-poll]");
  if (!container) return;
  const view = container.dataset.poll; // "result" (photo page) or "card" (gallery)
  let delay = 1000;

  function pendingIds() {
    return Array.from(container.querySelectorAll("[data-pending]")).map((el) => el.dataset.photo);
  }

  async function poll() {
    const ids = pendingIds();
    if (!ids.length) return;
    try {
      const response = await fetch(`/photos/status/?view=${view}&ids=${ids.join(",")}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.ok) {
        const body = await response.json();
        for (const photo of body.photos) {
          if (photo.status === "queued" || photo.status === "processing") continue;
          const old = container.querySelector(`[data-photo="${photo.id}"]`);
          if (old) old.outerHTML = photo.html;
        }
        delay = 1000;
      } else {
        delay = Math.min(delay * 2, 15000);
      }
    } catch (err) {
      delay = Math.min(delay * 2, 15000);
    }
    setTimeout(poll, delay);
  }
  setTimeout(poll, delay);
})();
