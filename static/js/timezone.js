// Names the browser's time zone (e.g. "Asia/Jakarta") in the `tz` cookie, so that the pages the site
// sends from now on show dates and times in it (classifier.middleware.BrowserTimeZoneMiddleware).
(function () {
  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (err) {
    return; // a browser that cannot say: the site's own time zone, which the pages name
  }
  if (!/^[A-Za-z0-9_+\-\/]+$/.test(zone) || document.cookie.split("; ").includes("tz=" + zone)) return;
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = "tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax" + secure;
})();
