// While a training run is queued or running, the staff page fetches its runs table alone (status,
// stage, progress) every two seconds and swaps it in; when no run is live any more it reloads once,
// to show the new version and enable the start button again. Without JavaScript, a meta refresh
// does it.
(function () {
  if (!document.querySelector("#runs[data-live-runs]")) return;

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
    document.querySelector("#runs").replaceWith(fresh);
    return true;
  }, 2000, 30000);
})();
