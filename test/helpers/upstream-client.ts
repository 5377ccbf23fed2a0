/**
 * The suite-wide upstream-client override of the tests (issue 17): with
 * GATEWISE_TEST_UPSTREAM_CLIENT=undici (or =native), every reverse config a test helper builds
 * gets that `client` on each cluster that speaks HTTP/1.1 (protocol absent or `http1`) and
 * does not name a client itself, so the whole reverse suite runs on undici's client too
 * (`npm run test:undici`; HTTP/1.1 clusters default to native). h2/h2c clusters are left alone
 * (the native client is HTTP/1.1 only). This is a test-helper switch: nothing in src/ reads the variable.
 */

export type UpstreamClientKind = 'undici' | 'native';

/** The client the tests' reverse configs use: GATEWISE_TEST_UPSTREAM_CLIENT, else none (the config's own default). */
export function testUpstreamClient(): UpstreamClientKind | undefined {
  const v = process.env.GATEWISE_TEST_UPSTREAM_CLIENT;
  if (v === undefined || v === '') return undefined;
  if (v !== 'undici' && v !== 'native') throw new Error(`GATEWISE_TEST_UPSTREAM_CLIENT must be "undici" or "native", not ${JSON.stringify(v)}`);
  return v;
}

/**
 * `input` with the override applied (a shallow copy of `clusters` and of each cluster
 * changed); `input` itself when the variable is unset or the value is not a config object.
 */
export function withTestUpstreamClient<T>(input: T, kind: UpstreamClientKind | undefined = testUpstreamClient()): T {
  if (kind === undefined || input === null || typeof input !== 'object') return input;
  const clusters = (input as { clusters?: unknown }).clusters;
  if (clusters === null || typeof clusters !== 'object') return input;
  const out: Record<string, unknown> = {};
  for (const [name, c] of Object.entries(clusters as Record<string, unknown>)) {
    const cluster = c as { protocol?: string; client?: string } | null;
    const http1 = cluster !== null && typeof cluster === 'object' && (cluster.protocol === undefined || cluster.protocol === 'http1');
    out[name] = http1 && cluster.client === undefined ? { ...cluster, client: kind } : c;
  }
  return { ...(input as object), clusters: out } as T;
}
