// Runs `step` (an async function) again and again: `every` ms after it succeeds, twice as long after
// each failure (a server down, an error status), up to `max` ms; never again once it returns false.
function repeatWithBackoff(step, every, max) {
  let delay = every;
  async function run() {
    let again = true;
    try {
      again = (await step()) !== false;
      delay = every;
    } catch (err) {
      delay = Math.min(delay * 2, max);
    }
    if (again) setTimeout(run, delay);
  }
  setTimeout(run, delay);
}
