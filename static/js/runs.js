// While a training run is queued or running, the staff page fetches its runs table alone (status,
// stage, progress) every two seconds and swaps it in when something changed (an unchanged table
// is left alone, so a screen reader's place in it is kept); the newest run's stage is said in the
// page's live region. When no run is live any more it reloads once, to show the new version and
// enable the start button again. With no run live it still looks every 20 seconds, and reloads once
// the runs changed (one started from the admin, the API or another tab, live or already done), so
// the start button never offers a start that would be refused; and, live or not, once the versions
// changed (one activated, registered or deleted elsewhere), so the page never marks the wrong one
// active. A reload keeps a keyboard user's place in the runs table and says how the newest run
// stands (how it ended): the page it replaces cannot. Without JavaScript the page offers a reload link.
(function () {
  if (!document.querySelector("[data-models-page]")) return;
  const liveAtLoad = Boolean(document.querySelector("#runs[data-live-runs]"));
  const announcer = document.getElementById("announce");
  const KEPT = "runs-page-reloaded";

  function newest(section) {
    const cells = section ? section.querySelectorAll("tbody tr:first-child td") : [];
    if (cells.length <= 2) return "";
    return interpolate(gettext("Run %(run)s: %(status)s, %(progress)s"), {
      run: cells[0].textContent.split(" ")[0],
      status: cells[1].textContent,
      progress: cells[2].textContent.trim(),
    }, true);
  }

  // What the reloaded page says: how the newest run stands, if the runs changed (a version
  // activated elsewhere is seen on the page itself); kept for this reload only (half a minute: a busy
  // server may take seconds to draw the page), not for a visit later in the tab after a reload that
  // led elsewhere (the sign-in page).
  function reload(fresh) {
    const current = document.querySelector("#runs");
    const inTable = Boolean(current && current.contains(document.activeElement));
    const changed = (fresh ? fresh.innerHTML : "") !== (current ? current.innerHTML : "");
    try {
      sessionStorage.setItem(KEPT, JSON.stringify({ said: changed ? newest(fresh) : "", inTable, at: Date.now() }));
    } catch (err) { /* storage refused (private mode): a plain reload */ }
    window.location.reload();
  }

  let kept = null;
  try {
    kept = JSON.parse(sessionStorage.getItem(KEPT));
    sessionStorage.removeItem(KEPT);
  } catch (err) { /* none */ }
  if (kept && Date.now() - kept.at < 30000) {
    const table = document.querySelector("#runs .scroll");
    if (kept.inTable && table) table.focus();
    // (a moment after load: a live region filled as the page loads is often not read)
    if (kept.said && announcer) setTimeout(() => { announcer.textContent = kept.said; }, 500);
  }

  repeatWithBackoff(async function () {
    const response = await fetch(`${window.location.pathname}?part=runs`, {
      headers: { Accept: "text/html" },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`status ${response.status}`);
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const state = (root) => (root.querySelector("#versions-state") || { dataset: {} }).dataset.state;
    const fresh = page.querySelector("#runs");
    if (state(page) !== state(document)) {
      reload(fresh);
      return false;
    }
    const current = document.querySelector("#runs");
    const changed = (fresh ? fresh.innerHTML : "") !== (current ? current.innerHTML : "");
    if (Boolean(fresh && fresh.hasAttribute("data-live-runs")) !== liveAtLoad || (!liveAtLoad && changed)) {
      reload(fresh);
      return false;
    }
    if (!liveAtLoad) return true;
    if (!changed) return true; // nothing new: same pace (a run ends soon)
    const before = newest(current);
    const scrolling = current.contains(document.activeElement); // a keyboard user in the table
    current.replaceWith(fresh);
    if (scrolling) fresh.querySelector(".scroll").focus({ preventScroll: true });
    const now = newest(fresh);
    if (announcer && now !== before) announcer.textContent = now;
    return true;
  }, liveAtLoad ? 2000 : 20000, 60000);
})();
