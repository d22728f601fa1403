// Pages with photos still queued or processing ask the server every second or two until each is
// done or failed, and swap in the server-rendered result: no manual reload.
(function () {
  const container = document.querySelector("[data-poll]");
  if (!container) return;
  const view = container.dataset.poll; // "result" (photo page) or "card" (gallery)

  function pendingIds() {
    return Array.from(container.querySelectorAll("[data-pending]")).map((el) => el.dataset.photo);
  }

  repeatWithBackoff(async function () {
    const ids = pendingIds();
    if (!ids.length) return false;
    const response = await fetch(`/photos/status/?view=${view}&ids=${ids.join(",")}`, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`status ${response.status}`);
    const body = await response.json();
    for (const photo of body.photos) {
      if (photo.status === "queued" || photo.status === "processing") continue;
      const old = container.querySelector(`[data-photo="${photo.id}"]`);
      if (old) old.outerHTML = photo.html;
    }
    return true;
  }, 1000, 15000);
})();
