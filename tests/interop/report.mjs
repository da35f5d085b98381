// What every interop script shares: its assertions, its bounded waits, and its report (one JSON
// line per scenario on stdout, which the Rust tests read; the script exits 1 if any failed).

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `predicate` (sync or async) every 20 ms until it gives a truthy value, and returns it;
 * throws "timed out after N ms waiting for WHAT" past `timeoutMs`.
 */
export async function waitFor(what, predicate, timeoutMs = 10000) {
  const start = Date.now();
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

let failures = 0;

/**
 * Runs one scenario and prints `{...fields, "scenario", "ok", "ms"}` (with `"error"`, the stack,
 * when it failed) as one JSON line. `fields` name what the scenario ran on (e.g. `{combo}`).
 */
export async function scenario(name, body, fields = {}) {
  const started = Date.now();
  try {
    await body();
    console.log(JSON.stringify({ ...fields, scenario: name, ok: true, ms: Date.now() - started }));
  } catch (e) {
    failures++;
    console.log(JSON.stringify({ ...fields, scenario: name, ok: false, error: String((e && e.stack) || e) }));
  }
}

/** How many scenarios failed so far. */
export const failed = () => failures;
