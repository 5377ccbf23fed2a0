import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ConfigInput } from '../../src/config/schema.js';

/**
 * The public HTTP caching test suite (npm `http-cache-tests`, cache-tests.fyi): its own
 * origin server and its command-line runner, both on loopback. The runner (node-fetch)
 * sends every request to `base`; the origin listens on the port given.
 */
export function suiteDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('http-cache-tests/package.json'));
}

export interface SuiteTest {
  id: string;
  kind?: string;
  browser_only?: boolean;
}

/** The tests the suite's command-line runner runs: its index plus the Surrogate-Control group (cli.mjs adds it). */
export async function suiteTests(): Promise<SuiteTest[]> {
  const load = async (f: string): Promise<unknown> => ((await import(pathToFileURL(join(suiteDir(), 'tests', f)).href)) as { default: unknown }).default;
  const groups = [...((await load('index.mjs')) as Array<{ tests: SuiteTest[] }>), (await load('surrogate-control.mjs')) as { tests: SuiteTest[] }];
  return groups.flatMap((s) => s.tests);
}
/** The suite's tests about stale-if-error or stale-while-revalidate (by what they send, not by name). */
export async function staleTestIds(): Promise<string[]> {
  return (await suiteTests()).filter((s) => !s.browser_only && /stale-if-error|stale-while-revalidate/.test(JSON.stringify(s))).map((s) => s.id);
}

export { freePort } from '../helpers/redis.js';

/** Start the suite's origin on `port`; resolves when it listens. */
export async function startSuiteOrigin(port: number, pidfile: string): Promise<ChildProcess> {
  const dir = suiteDir();
  const child = spawn(process.execPath, [join(dir, 'server/server.mjs')], {
    cwd: dir,
    env: { ...process.env, npm_config_protocol: 'http', npm_config_port: String(port), npm_config_pidfile: pidfile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('the suite origin did not start in 10 s')), 10_000);
    child.stdout!.on('data', (b: Buffer) => {
      if (b.toString().includes('Listening')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`the suite origin exited (${code})`)));
  });
  return child;
}

export type SuiteResults = Record<string, true | [string, string]>;

/** Run the whole suite (or one test, `id`) against `base`; the runner prints JSON results. */
export async function runSuite(base: string, id = ''): Promise<{ results: SuiteResults | undefined; out: string }> {
  const dir = suiteDir();
  const child = spawn(process.execPath, ['--no-warnings', join(dir, 'cli.mjs')], {
    cwd: dir,
    env: { ...process.env, npm_config_base: base, npm_config_id: id, npm_package_config_id: id },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const killer = setTimeout(() => child.kill(), 180_000);
  await new Promise<void>((r) => child.once('exit', () => r()));
  clearTimeout(killer);
  if (id !== '') return { results: undefined, out };
  // The results are the last JSON object printed (the runner may log before it).
  const start = out.lastIndexOf('\n{\n');
  try {
    return { results: JSON.parse(out.slice(start < 0 ? out.indexOf('{') : start + 1)) as SuiteResults, out };
  } catch {
    throw new Error(`the suite runner printed no results:\n${out.slice(0, 4000)}`);
  }
}

/** The gateway config the suite runs against: one cached route to the suite's origin. */
export function suiteGatewayConfig(originPort: number): Omit<ConfigInput, 'listeners'> {
  return {
    clusters: { origin: { endpoints: [`http://127.0.0.1:${originPort}`], healthCheck: undefined } },
    routes: [
      {
        cluster: 'origin',
        // The suite counts the requests its origin sees: a retried one reads as a cache fault.
        retry: { tries: 1 },
        // Requests with Authorization or Cookie share the store here: the suite measures RFC 9111's
        // shared-cache rules (§3.5 for Authorization), which the default `bypassOn` goes beyond by
        // passing such requests by (session 38; docs/cache.md).
        cache: { serveStaleOn: ['connection_terminated', 'http_response_incomplete', '503'], bypassOn: [] },
      },
    ],
  };
}
