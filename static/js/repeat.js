// Runs `step` (an async function) again and again: `every` ms after it succeeds, twice as long after
// each failure (a server down, an error status), up to `max` ms; never again once it returns false.
// A step that returns "idle" (it ran, nothing changed) waits half as long again each time, up to
// `max`: a page left open on a photo stuck in the queue asks less and less often. When the
// connection comes back, or the page is shown again, a wait the backoff has grown is cut short.
function repeatWithBackoff(step, every, max) {
  let delay = every;
  let timer = null; // the wait before the next run; null while a run is under way, or when stopped
  async function run() {
    timer = null;
    let result = true;
    try {
      result = await step();
      delay = result === "idle" ? Math.min(delay * 1.5, max) : every;
    } catch (err) {
      delay = Math.min(delay * 2, max);
    }
    if (result !== false) timer = setTimeout(run, delay);
  }
  function now() {
    if (timer === null || document.hidden) return;
    clearTimeout(timer);
    delay = every;
    run();
  }
  window.addEventListener("online", now);
  document.addEventListener("visibilitychange", now);
  timer = setTimeout(run, delay);
}

// At most `n` of the tasks given to the returned function run at once; the others wait their turn.
// The browser keeps only six connections to a site: uploads and long polls must leave it some.
function limitTo(n) {
  let free = n;
  const waiting = [];
  return async function (task) {
    if (free > 0) free -= 1;
    else await new Promise((resolve) => waiting.push(resolve));
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next) next(); // the slot passes straight to the next task
      else free += 1;
    }
  };
}
