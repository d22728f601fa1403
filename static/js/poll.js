// Pages with photos still queued or processing ask the server every second until each is done or
// failed, and swap in the server-rendered result: no manual reload. While nothing changes they ask
// less and less often (up to every 15 s); a photo deleted meanwhile is marked so and no longer asked.
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
    let changed = false;
    for (const id of ids) {
      const photo = body.photos.find((p) => String(p.id) === id);
      const old = container.querySelector(`[data-photo="${id}"]`);
      if (!old) continue;
      if (!photo) { // deleted (in another tab, or through the API)
        old.removeAttribute("data-pending");
        const status = old.querySelector(".status");
        if (status) status.textContent = "Deleted";
        changed = true;
      } else if (photo.status !== "queued" && photo.status !== "processing") {
        old.outerHTML = photo.html;
        changed = true;
      }
    }
    return changed ? true : "idle";
  }, 1000, 15000);
})();
