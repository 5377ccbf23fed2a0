/**
 * Polls `ok` every `stepMs` ms until it holds (true) or `ms` have passed (false): the bounded
 * wait for a state a test cannot be told about (a socket's close, an in-flight count).
 */
export async function until(ok: () => boolean, ms: number, stepMs = 10): Promise<boolean> {
  const t0 = performance.now();
  while (!ok()) {
    if (performance.now() - t0 > ms) return false;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return true;
}
