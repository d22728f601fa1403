// Pages with photos still queued or processing ask the server every second until each is done or
// failed, and swap in the server-rendered result: no manual reload. While nothing changes they ask
// less and less often (up to every 15 s); a photo deleted meanwhile is marked so and no longer asked.
// The gallery's first page (data-after: the newest photo it showed when opened) keeps asking, while
// it is open and in view, for photos uploaded elsewhere, and puts them in their place among the
// first (at most two pages' worth of photos stay, and the one holding the keyboard focus). Each
// result or new photo that lands is said in the page's live region (#announce) for screen readers,
// and the keyboard focus stays where it was.
// Signed out meanwhile: the page says so and stops asking.
(function () {
  const container = document.querySelector("[data-poll]");
  if (!container) return;
  const view = container.dataset.poll; // "result" (photo page) or "card" (gallery)
  const announcer = document.getElementById("announce");

  function fromHtml(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function pendingIds() {
    return Array.from(container.querySelectorAll("[data-pending]")).map((el) => el.dataset.photo);
  }

  function say(text) {
    if (announcer && text) announcer.textContent = text;
  }

  function signedOut() {
    const note = document.createElement("p");
    note.className = "error";
    note.setAttribute("role", "alert");
    const link = document.createElement("a");
    link.href = `/accounts/login/?next=${encodeURIComponent(location.pathname + location.search)}`;
    link.textContent = gettext("sign in again");
    // One sentence to translate, the link in its place: the words either side of it.
    const [before, after = ""] = gettext("You are signed out: %(link)s to see the results.").split("%(link)s");
    note.append(before, link, after);
    container.before(note); // (not inside the list, which holds photos only)
  }

  // Swap `old` for the server's new HTML; focus inside `old` moves to the same place in the new one.
  function swap(old, html) {
    const focused = old.contains(document.activeElement) ? document.activeElement : null;
    const fresh = fromHtml(html);
    old.replaceWith(fresh);
    if (focused === old) {
      fresh.focus(); // the panel itself had it (a retry's page opens at it): the new panel takes it
    } else if (focused) {
      const again = (focused.getAttribute("href") && fresh.querySelector(`a[href="${focused.getAttribute("href")}"]`))
        || fresh.querySelector("a, button, input, select");
      if (again) again.focus();
    }
    return fresh.dataset.announce || "";
  }

  // The newest photos since the page was opened: those not shown yet go in their place (newest
  // first); the oldest beyond two pages' worth leave. What was added, in words.
  function addNew(photos) {
    let added = 0;
    for (const photo of photos) {
      if (container.querySelector(`[data-photo="${photo.id}"]`)) continue;
      const older = Array.from(container.children).find((tile) => Number(tile.dataset.photo) < photo.id);
      container.insertBefore(fromHtml(photo.html), older || null);
      added += 1;
    }
    for (const tile of Array.from(container.children).slice(2 * Number(container.dataset.pageSize))) {
      if (!tile.contains(document.activeElement)) tile.remove(); // (the focus stays where it was)
    }
    const empty = document.querySelector("[data-empty]");
    if (added && empty) empty.remove();
    return added ? interpolate(ngettext("%(count)s new photo from elsewhere.", "%(count)s new photos from elsewhere.",
      added), { count: added }, true) : "";
  }

  repeatWithBackoff(async function () {
    const ids = pendingIds();
    const watching = "after" in container.dataset && !document.hidden; // (a tab out of view waits)
    if (!ids.length && !watching) return "after" in container.dataset ? "idle" : false;
    const after = watching ? `&after=${container.dataset.after}` : "";
    const response = await fetch(`/photos/status/?view=${view}&ids=${ids.join(",")}${after}`, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`status ${response.status}`);
    if (response.redirected || !(response.headers.get("Content-Type") || "").includes("json")) {
      signedOut(); // the login page answered instead
      return false;
    }
    const body = await response.json();
    const news = [];
    for (const id of ids) {
      const photo = body.photos.find((p) => String(p.id) === id);
      const old = container.querySelector(`[data-photo="${id}"]`);
      if (!old) continue;
      if (!photo) { // deleted (in another tab, or through the API)
        old.removeAttribute("data-pending");
        const status = old.querySelector(".status");
        if (status) status.textContent = pgettext("photo status", "Deleted");
        news.push(interpolate(gettext("Photo %(id)s was deleted."), { id: id }, true));
      } else if (photo.status !== "queued" && photo.status !== "processing") {
        news.push(swap(old, photo.html));
      } else if (!old.hasAttribute("data-late") && fromHtml(photo.html).hasAttribute("data-late")) {
        swap(old, photo.html); // still waiting, now longer than usual: the page says so (no news)
      }
    }
    const added = body.new && body.new.length ? addNew(body.new) : "";
    if (added) news.push(added); // (the same newest photos come each time: only those added are news)
    say(news.filter(Boolean).join(" "));
    return news.length ? true : "idle";
  }, 1000, 15000);
})();
