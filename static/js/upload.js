// The upload page, enhanced: drop or pick several photos; each gets a preview and a progress bar,
// is sent on its own through the API (the session's login, the form's CSRF token), and then
// waits for its prediction, which appears in place. Two uploads and two waits at a time, so that
// the site's other pages, in other tabs, still get a connection however many photos are dropped;
// an upload over the rate limit is sent again when the server says. An upload that got no answer
// (the connection dropped, a proxy timed out) may have been stored all the same: it is sent again
// under the same Idempotency-Key, so the server answers with the photo it stored instead of storing
// a copy; by itself a few times (when the connection is back, if it is gone), then with a button.
// So is one whose connection stopped without a word (a phone between networks): no byte sent for
// 30 s once sending began, or no answer 2 minutes after the last byte. (Not before sending begins:
// the browser may hold a request back while other tabs use its connections to the site.)
// Leaving the page while photos are still to be sent asks first (they would never be). Without
// JavaScript the plain form still works.
(function () {
  const form = document.querySelector("form[data-upload]");
  if (!form) return;
  const input = form.querySelector("input[type=file]");
  const zone = form.querySelector(".dropzone");
  const list = document.querySelector(".uploads");
  const summary = document.querySelector(".upload-summary");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  // Picking or dropping photos sends them at once: the form's own button would only say that no
  // file is chosen.
  form.querySelector("button[type=submit]").hidden = true;
  const uploading = limitTo(2);
  const waiting = limitTo(2);
  const unsureBelow = Number(form.dataset.unsureBelow);
  const maxBytes = Number(form.dataset.maxBytes);
  const unsent = new Set(); // photos picked but not yet stored or refused
  const STALLED_MS = 30_000; // an upload that sent nothing for this long has lost its connection
  const UNANSWERED_MS = 120_000; // an upload sent whole that got no answer for this long, too
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  // A probability as the pages show it (the `percent` template filter): never 100 short of 1.
  const percent = (p) => Math.max(p > 0 ? 1 : 0, Math.min(p < 1 ? 99 : 100, Math.round(p * 100)));
  const online = () => new Promise((resolve) => window.addEventListener("online", resolve, { once: true }));
  // (crypto.randomUUID needs https or localhost)
  const newKey = () => (window.crypto && crypto.randomUUID ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);
  // each upload's view: "sending", "waiting" (stored, in the queue), "classifying", "classified",
  // "failed" (its classification), "unseen" (stored, but its result cannot be shown here: signed
  // out meanwhile), "deleted" (since, elsewhere) or "refused" (not uploaded: too large, not a
  // picture, signed out...)
  const states = new Map();

  // Where a batch stands, in one line above the list (from two photos on). Not a live region: each
  // photo's own line says what happens to it, and this would say it all again at every step.
  function track(view, state) {
    states.set(view, state);
    const count = (which) => [...states.values()].filter((s) => s === which).length;
    const words = {
      classified: (n) => ngettext("%(n)s classified", "%(n)s classified", n),
      classifying: (n) => ngettext("%(n)s being classified", "%(n)s being classified", n),
      waiting: (n) => ngettext("%(n)s waiting to be classified", "%(n)s waiting to be classified", n),
      sending: (n) => ngettext("%(n)s to send", "%(n)s to send", n),
      failed: (n) => ngettext("%(n)s failed", "%(n)s failed", n),
      unseen: (n) => ngettext("%(n)s uploaded, its result not shown", "%(n)s uploaded, their results not shown", n),
      deleted: (n) => ngettext("%(n)s deleted meanwhile", "%(n)s deleted meanwhile", n),
      refused: (n) => ngettext("%(n)s not uploaded", "%(n)s not uploaded", n),
    };
    const parts = Object.keys(words).filter((which) => count(which))
      .map((which) => interpolate(words[which](count(which)), { n: count(which) }, true));
    summary.textContent = interpolate(gettext("%(count)s files: %(parts)s."),
      { count: states.size, parts: parts.join(", ") }, true);
    summary.hidden = states.size < 2;
  }

  // A batch goes above the batches before it, in the order its photos were picked.
  function item(file, before = list.firstChild) {
    const li = document.createElement("li");
    li.className = "upload card";
    // A preview of what the browser can show, in place of a blank square; the square stays for
    // anything else (no broken image).
    const square = blank();
    if (file.type.startsWith("image/")) previewing(() => preview(file, square));
    else square.dataset.unshown = "1";
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", interpolate(gettext("Upload of %(name)s"), { name: file.name }, true));
    const status = document.createElement("span");
    status.className = "upload-status";
    li.append(square, name, bar, status);
    list.insertBefore(li, before);
    const view = { li, bar, status, square, name: file.name };
    show(view, gettext("Waiting…"));
    track(view, "sending");
    return view;
  }

  // A preview costs memory by its size on screen, not by the photo's: shown whole, 15 photos of 35
  // megapixels took Chromium's tab from 150 to 760 MB (a phone may close it). One photo at a time is
  // decoded and at once scaled down to fill the 64 px square at the screen's density, turned as its
  // EXIF says (createImageBitmap's default); its middle square (what object-fit: cover shows) is
  // drawn into a small picture, and the decoded photo let go. Where that fails (no
  // createImageBitmap, or one that cannot read the file), the browser shows the photo itself.
  const PREVIEW_PX = Math.round(64 * Math.min(window.devicePixelRatio || 1, 3));
  const previewing = limitTo(1);

  async function preview(file, square) {
    let url;
    try {
      url = URL.createObjectURL(await small(file));
    } catch (err) {
      url = URL.createObjectURL(file);
    }
    const img = document.createElement("img");
    img.className = "preview";
    img.alt = interpolate(gettext("Preview of %(name)s"), { name: file.name }, true);
    await new Promise((resolve) => {
      img.addEventListener("load", () => {
        square.replaceWith(img);
        resolve();
      }, { once: true });
      img.addEventListener("error", () => { // not a picture it can show: the square stays
        square.dataset.unshown = "1";
        fromServer(square);
        resolve();
      }, { once: true });
      img.src = url;
    });
    URL.revokeObjectURL(url);
  }

  // A photo the browser cannot show (a HEIC, say): the server's thumbnail in its square, once it is
  // stored (follow gives the square its address) and the browser has failed to (whichever is last).
  function fromServer(square) {
    if (!square.dataset.unshown || !square.dataset.thumbnail) return;
    const img = document.createElement("img");
    img.className = "preview";
    img.alt = square.dataset.alt;
    img.addEventListener("load", () => square.replaceWith(img), { once: true });
    img.src = square.dataset.thumbnail;
  }

  async function small(file) {
    // Twice as wide as the square: one decode fills it for any photo up to twice as wide as tall.
    const scaled = (size) => createImageBitmap(file, { ...size, resizeQuality: "high" });
    let bitmap = await scaled({ resizeWidth: 2 * PREVIEW_PX });
    if (bitmap.height < PREVIEW_PX) { // a panorama: its height fills the square
      bitmap.close();
      bitmap = await scaled({ resizeHeight: PREVIEW_PX });
    }
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = PREVIEW_PX;
    const context = canvas.getContext("2d");
    context.imageSmoothingQuality = "high";
    const side = Math.min(bitmap.width, bitmap.height); // (a browser that ignored the size: any size)
    context.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side,
      0, 0, PREVIEW_PX, PREVIEW_PX);
    bitmap.close();
    return new Promise((resolve, reject) => canvas.toBlob(
      (blob) => (blob ? resolve(blob) : reject(new Error("no preview")))));
  }

  function blank() {
    const span = document.createElement("span");
    span.className = "preview";
    return span;
  }

  // The status line is a live region for what a person must hear (`heard`): the photo's result, or
  // why it waits longer than it should; the steps between (waiting, uploading, sent, stored) are
  // shown, not said: five announcements a photo buried a batch's results. (A failure is an alert.)
  // What it says starts with the file's name (hidden on screen, where the name is shown beside it),
  // so that each announcement says which photo it is about.
  function show(view, text, heard = false) {
    if (view.status.getAttribute("role") !== "alert") {
      view.status.setAttribute("aria-live", heard ? "polite" : "off");
    }
    const name = document.createElement("span");
    name.className = "visually-hidden";
    name.textContent = `${view.name}: `;
    view.status.replaceChildren(name, text);
  }

  function post(file, view, key) {
    return new Promise((resolve) => {
      const data = new FormData();
      data.append("files", file);
      const request = new XMLHttpRequest();
      request.open("POST", "/api/photos/");
      request.setRequestHeader("X-CSRFToken", csrf);
      request.setRequestHeader("Accept", "application/json");
      request.setRequestHeader("Idempotency-Key", key);
      let watchdog;
      const watch = (ms) => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          request.abort();
          resolve(null); // (an abort fires nothing on a request that never got going)
        }, ms);
      };
      request.upload.addEventListener("progress", (event) => {
        watch(STALLED_MS);
        if (event.lengthComputable) view.bar.value = (100 * event.loaded) / event.total;
        const text = event.lengthComputable && event.loaded === event.total ? gettext("Sent; waiting for the server…")
          : gettext("Uploading…");
        if (view.status.textContent !== `${view.name}: ${text}`) show(view, text);
      });
      request.upload.addEventListener("load", () => watch(UNANSWERED_MS));
      request.addEventListener("load", () => resolve(request));
      ["error", "abort", "timeout"].forEach((type) => request.addEventListener(type, () => resolve(null)));
      request.addEventListener("loadend", () => clearTimeout(watchdog));
      request.send(data);
    });
  }

  // No answer, or the server or a proxy failing: the photo may have been stored or not.
  const unsure = (request) => !request || request.status >= 500;
  // A server that asks for more than a minute (a full disk: someone must make room first) is not
  // sent the photo again and again meanwhile: its owner is offered to, with what it said.
  const longWait = (request) => Boolean(request) && Number(request.getResponseHeader("Retry-After")) > 60;
  // What our server says of such a failure (a full disk, its database down), if it said anything.
  function serverSays(request) {
    try { return JSON.parse(request.responseText).error.message || ""; } catch (err) { return ""; }
  }

  async function send(file, view = item(file), key = newKey()) {
    if (file.size > maxBytes) return fail(view, form.dataset.tooLarge); // as the server would say
    let request;
    unsent.add(file);
    for (let attempt = 1; ; attempt++) {
      request = await uploading(() => post(file, view, key));
      if (request && request.status === 429 && attempt < 5) {
        const seconds = Number(request.getResponseHeader("Retry-After")) || 10;
        show(view, interpolate(gettext("Many uploads at once; sending again in %(seconds)s s…"), { seconds }, true));
        await sleep(seconds * 1000);
      } else if (unsure(request) && attempt < 5 && !longWait(request)) { // the same key: never stored twice
        if (!navigator.onLine) {
          show(view, gettext("No connection; it is sent again when the connection is back…"), true);
          await online();
        } else {
          const seconds = 2 ** attempt;
          const said = request && serverSays(request);
          show(view, said ? interpolate(gettext("%(said)s Sending it again in %(seconds)s s…"), { said, seconds }, true)
            : interpolate(gettext("No answer from the server; sending it again in %(seconds)s s…"), { seconds }, true),
          true);
          await sleep(seconds * 1000);
        }
      } else {
        break;
      }
    }
    if (unsure(request)) {
      const reason = !request ? gettext("The upload failed: no connection.")
        : serverSays(request) || interpolate(gettext("The upload failed (%(status)s)."), { status: request.status }, true);
      return offerAgain(view, reason, () => send(file, view, key));
    }
    unsent.delete(file);
    let body = {};
    try { body = JSON.parse(request.responseText); } catch (err) { /* not JSON: a proxy's page */ }
    const result = body.results && body.results[0];
    if (request.status === 201 && result && result.photo) {
      view.bar.value = 100;
      pending(view, result.photo.status);
      follow(result.photo, view);
    } else if (signedOut(request.status, body)) {
      signedOutNote("unsent");
      fail(view, gettext("Not uploaded: you are signed out."), "refused", false);
    } else if (body.error && body.error.code === "csrf_failed") { // signed in again in another tab
      fail(view, gettext("Not uploaded: this page is out of date. Reload it, then upload again."));
    } else {
      const reason = (result && result.errors.join(" ")) || (body.error && body.error.message)
        || interpolate(gettext("The upload failed (%(status)s)."), { status: request.status }, true);
      fail(view, reason);
    }
  }

  // An ended session: 401 (the API lists token authentication first, which says how to log in);
  // 403 "not_authenticated" where session authentication comes first.
  function signedOut(status, body) {
    return status === 401 || (status === 403 && body.error && body.error.code === "not_authenticated");
  }

  // `alert`: false where signedOutNote says it once for all.
  function fail(view, reason, state = "refused", alert = true) { // (a stored photo's: "failed", "unseen", "deleted")
    track(view, state);
    view.li.classList.add(["unseen", "deleted"].includes(state) ? "unseen" : "failed");
    view.bar.remove();
    if (alert) {
      view.status.setAttribute("role", "alert");
      view.status.removeAttribute("aria-live"); // (polite would override the alert's assertive)
    }
    show(view, reason);
  }

  // Signed out (in another tab, or the session ended): said once for the photos stored, whose
  // results wait, and once for those it could not send, under the summary, each with the way back.
  const signedOutSaid = new Set();
  function signedOutNote(which) { // "stored" or "unsent"
    if (signedOutSaid.has(which)) return;
    signedOutSaid.add(which);
    const note = document.createElement("p"); // (the stored photos' as the gallery's poll.js says it)
    note.className = "error";
    note.setAttribute("role", "alert");
    const link = document.createElement("a");
    // to the photos, where their results are; or back here, to upload the others again
    link.href = which === "stored" ? form.dataset.signIn : form.dataset.signInToUpload;
    link.textContent = gettext("sign in again");
    const words = which === "stored" ? gettext("You are signed out: %(link)s to see the results.")
      : gettext("You are signed out: %(link)s, then upload again the photos not uploaded.");
    const [before, after = ""] = words.split("%(link)s");
    note.append(before, link, after);
    summary.after(note);
  }

  // A failure that sending again may mend: a button sends the same file, under the same key.
  function offerAgain(view, reason, again) {
    fail(view, reason);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button";
    const which = document.createElement("span"); // (its name says which photo; it starts as shown)
    which.className = "visually-hidden";
    which.textContent = `: ${view.name}`;
    button.append(gettext("Send again"), which);
    button.addEventListener("click", () => {
      const focused = document.activeElement === button;
      button.remove();
      if (focused) { // (not lost to the page's top): the photo's status, which says what happens now
        view.status.tabIndex = -1;
        view.status.focus();
      }
      view.li.classList.remove("failed");
      view.status.removeAttribute("role");
      view.bar.value = 0;
      view.li.insertBefore(view.bar, view.status);
      show(view, gettext("Waiting…"));
      track(view, "sending");
      again();
    });
    view.li.append(button);
  }

  // Stored, and in the queue or in the worker: said as the gallery says it.
  function pending(view, status) {
    const waits = status === "queued";
    show(view, waits ? gettext("Stored; waiting to be classified…") : gettext("Stored; classifying…"));
    track(view, waits ? "waiting" : "classifying");
  }

  async function follow(photo, view) {
    view.square.dataset.thumbnail = `/photos/${photo.id}/thumbnail/`;
    view.square.dataset.alt = interpolate(gettext("Preview of %(name)s"), { name: view.name }, true);
    fromServer(view.square);
    const link = document.createElement("a");
    link.href = `/photos/${photo.id}/`;
    link.textContent = gettext("Open");
    link.setAttribute("aria-label", interpolate(gettext("Open %(name)s"), { name: view.name }, true));
    view.li.append(link);
    for (let answered = 0; answered < 40;) { // (an outage does not use up the tries)
      let response;
      try {
        response = await waiting(() => fetch(`/api/photos/${photo.id}/?wait=20`, { credentials: "same-origin" }));
      } catch (err) { // no connection: try again once it is back
        await (navigator.onLine ? sleep(5000) : online());
        continue;
      }
      if (response.status === 429) { // the server holds as many waits as it can: not a try used up
        await sleep(1000 * (Number(response.headers.get("Retry-After")) || 5));
        continue;
      }
      answered++;
      if (response.status === 401 || response.status === 403) {
        const body = await response.json().catch(() => ({}));
        if (signedOut(response.status, body)) {
          signedOutNote("stored");
          return fail(view, gettext("Stored; its result shows once you sign in again."), "unseen", false);
        }
        return fail(view, (body.error && body.error.message) // (stored all the same: not a failure)
          || interpolate(gettext("The result cannot be shown (%(status)s)."), { status: response.status }, true),
        "unseen");
      }
      if (response.status === 404) return fail(view, gettext("This photo was deleted."), "deleted");
      if (!response.ok) { // the server is busy or down for a moment
        await sleep(2000);
        continue;
      }
      const body = await response.json();
      if (body.status === "done" && body.prediction) {
        const p = body.prediction;
        const unsure = p.confidence < unsureBelow; // worded as the gallery words it
        const name = unsure ? interpolate(gettext("Not sure: %(name)s?"), { name: p.display_name }, true) : p.display_name;
        show(view, `${name} · ${percent(p.confidence)}%`, true);
        view.li.classList.add("done", ...(unsure ? ["unsure"] : []));
        view.bar.remove();
        track(view, "classified");
        return;
      }
      if (body.status === "failed") return fail(view, body.error || gettext("Classification failed."), "failed");
      if (states.get(view) !== (body.status === "queued" ? "waiting" : "classifying")) pending(view, body.status);
    }
    show(view, gettext("Still waiting; the gallery will show the result."), true);
  }

  function sendAll(files) {
    const before = list.firstChild;
    Array.from(files).forEach((file) => send(file, item(file, before)));
  }

  form.addEventListener("submit", (event) => {
    if (!input.files.length) return; // let the server say what is missing
    event.preventDefault();
    sendAll(input.files);
    input.value = "";
  });
  input.addEventListener("change", () => {
    sendAll(input.files);
    input.value = "";
  });
  ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (event) => {
    event.preventDefault();
    zone.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    sendAll(event.dataTransfer.files);
  });
  window.addEventListener("beforeunload", (event) => {
    if (unsent.size) event.preventDefault(); // the browser asks whether to leave; those photos are lost
  });
  // A photo dropped beside the zone would make the browser leave the page to show it.
  ["dragover", "drop"].forEach((type) => document.addEventListener(type, (event) => event.preventDefault()));
})();
