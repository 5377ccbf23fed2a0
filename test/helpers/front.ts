/**
 * The suite-wide front override of the tests (issue 17): with GATEWISE_TEST_FRONT=net (or
 * =node), every reverse listener a test helper builds gets that `front` when it does not name
 * one itself and can have it (plain HTTP/1.1: no tls, no http2), so the reverse suite runs on
 * the net front too (`npm run test:net-front`; the default front is node). Like
 * GATEWISE_TEST_UPSTREAM_CLIENT, a test-helper switch: nothing in src/ reads the variable.
 */

export type FrontKind = 'node' | 'net';

/** The front the tests' reverse listeners use: GATEWISE_TEST_FRONT, else none (the config's own default). */
export function testFront(): FrontKind | undefined {
  const v = process.env.GATEWISE_TEST_FRONT;
  if (v === undefined || v === '') return undefined;
  if (v !== 'node' && v !== 'net') throw new Error(`GATEWISE_TEST_FRONT must be "node" or "net", not ${JSON.stringify(v)}`);
  return v;
}

/** `input` with the override applied to its plain HTTP/1.1 listeners (shallow copies); `input` itself when unset. */
export function withTestFront<T>(input: T, kind: FrontKind | undefined = testFront()): T {
  if (kind === undefined || input === null || typeof input !== 'object') return input;
  const listeners = (input as { listeners?: unknown }).listeners;
  if (!Array.isArray(listeners)) return input;
  const out = listeners.map((l: unknown) => {
    if (l === null || typeof l !== 'object') return l;
    const o = l as { tls?: unknown; http2?: unknown; front?: unknown };
    return o.front === undefined && o.tls === undefined && o.http2 === undefined ? { ...o, front: kind } : l;
  });
  return { ...(input as object), listeners: out } as T;
}
