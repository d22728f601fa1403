// While a training run is queued or running, the staff page fetches its runs table alone (status,
// stage, progress) every two seconds and swaps it in when something changed (an unchanged table
// is left alone, so a screen reader's place in it is kept); the newest run's stage is said in the
// page's live region. When no run is live any more it reloads once, to show the new version and
// enable the start button again. Without JavaScript the page offers a reload link.
(function () {
  if (!document.querySelector("#runs[data-live-runs]")) return;
  const announcer = document.getElementById("announce");

  function newest(section) {
    const cells = section.querySelectorAll("tbody tr:first-child td");
    return cells.length > 2 ? `Run ${cells[0].textContent.split(" ")[0]}: ${cells[1].textContent}, ${cells[2].textContent.trim()}` : "";
  }

  repeatWithBackoff(async function () {
    const response = await fetch(`${window.location.pathname}?part=runs`, {
      headers: { Accept: "text/html" },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`status ${response.status}`);
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.querySelector("#runs");
    if (!fresh || !fresh.hasAttribute("data-live-runs")) {
      window.location.reload();
      return false;
    }
    const current = document.querySelector("#runs");
    if (fresh.innerHTML === current.innerHTML) return true; // nothing new: same pace (a run ends soon)
    const before = newest(current);
    const scrolling = current.contains(document.activeElement); // a keyboard user in the table
    current.replaceWith(fresh);
    if (scrolling) fresh.querySelector(".scroll").focus({ preventScroll: true });
    const now = newest(fresh);
    if (announcer && now !== before) announcer.textContent = now;
    return true;
  }, 2000, 30000);
})();
