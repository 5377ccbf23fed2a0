import { request as httpRequest } from 'node:http';
import { Writable } from 'node:stream';
import { freePort } from './redis.js';
import { request } from 'undici';
import { validateConfig } from '../../src/config/load.js';
import { startRuntime, type Runtime } from '../../src/cli/runtime.js';
import { createLogger } from '../../src/observe/access-log.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { hashPassword } from '../../src/tenants/password-hash.js';
import { withTestUpstreamClient } from './upstream-client.js';
import { withTestFront } from './front.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';
export const FWD_USER = 'alice';
export const FWD_PASSWORD = 'wonderland-pass';
/** An upstream proxy URL whose credentials /config must not show. */
export const PROXY_SECRET = 'pr0xy-s3cret';

/**
 * A port nothing listens on: `freePort`'s (bound, then closed; outside the kernel's ephemeral
 * range, never handed out twice in this process). It was a `listen(0)` port, which the kernel
 * may give the next server that listens on port 0 in the same test (CI run of session 40: the
 * admin test's dead endpoint answered 502 itself, so the gateway kept no failure for its id).
 */
export function closedPort(): Promise<number> {
  return freePort();
}

export interface AdminStack {
  lab: Lab;
  rt: Runtime;
  admin: string;
  gateway: string;
  proxyPort: number;
  hash: string;
  lines: string[];
  /** GET on the admin API with the token; JSON body. */
  api<T = unknown>(path: string, opts?: { token?: string | null; method?: string }): Promise<{ status: number; body: T }>;
  /** One HTTP request through the forward proxy as `username` (absolute-form target). */
  viaProxy(username: string, password: string, target: string): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }>;
  close(): Promise<void>;
}

/**
 * One `gatewise run` config with both faces and the admin listener (bearer token set): the
 * reverse gateway in front of the lab (cluster `app`) and of a closed port (route `/dead`,
 * cluster `dead`), the forward proxy with one user on a plan with a small daily quota, an
 * egress pool of the local address (default) and one of an upstream proxy with credentials.
 */
export async function startAdminStack(): Promise<AdminStack> {
  const lab = await startLab();
  const dead = await closedPort();
  const hash = await hashPassword(FWD_PASSWORD, { N: 1024, r: 8, p: 1 });
  const lines: string[] = [];
  const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  const config = validateConfig(withTestFront(withTestUpstreamClient({
    listeners: [{ port: 0 }],
    admin: { port: 0, token: ADMIN_TOKEN, failures: 100 },
    clusters: { app: { endpoints: [lab.url] }, dead: { endpoints: [`http://127.0.0.1:${dead}`], waitForEndpoint: { timeout: '0s' } } },
    routes: [
      { name: 'dead', match: { pathPrefix: '/dead' }, cluster: 'dead', stripPrefix: true },
      { name: 'app', cluster: 'app' },
    ],
    forward: {
      listeners: [{ address: '127.0.0.1', port: 0 }],
      auth: { required: true, users: [{ name: FWD_USER, password: hash, plan: 'small' }] },
      plans: { small: { bytesPerDay: { down: 3000 } } },
      rules: { allowPrivate: true, connectPorts: ['1-65535'] },
      egress: {
        pools: { dc: { addresses: ['127.0.0.1'] }, resi: { proxies: [`http://bob:${PROXY_SECRET}@127.0.0.1:${dead}`] } },
        defaultPool: 'dc',
      },
      timeouts: { connect: '2s', dns: '2s', handshake: '3s' },
    },
  })));
  const rt = await startRuntime(config, { logger, probeUpstreams: false });
  const admin = rt.adminUrl!;
  const gateway = rt.gateway!.addresses()[0]!.url;
  const fwd = lines.map((l) => JSON.parse(l) as { event?: string; listeners?: Array<{ port: number }> }).find((l) => l.event === 'forward-ready')!;
  const proxyPort = fwd.listeners![0]!.port;
  return {
    lab,
    rt,
    admin,
    gateway,
    proxyPort,
    hash,
    lines,
    async api<T>(path: string, opts: { token?: string | null; method?: string } = {}) {
      const token = opts.token === undefined ? ADMIN_TOKEN : opts.token;
      const r = await request(`${admin}${path}`, { method: (opts.method ?? 'GET') as 'GET', headers: token === null ? {} : { authorization: `Bearer ${token}` } });
      const text = await r.body.text();
      let body: unknown = text;
      if (String(r.headers['content-type']).startsWith('application/json')) body = JSON.parse(text);
      return { status: r.statusCode, body: body as T };
    },
    viaProxy(username, password, target) {
      return new Promise((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: proxyPort, path: target, agent: false, headers: { host: new URL(target).host, 'proxy-authorization': `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` } }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          const done = (): void => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString(), headers: res.headers });
          res.on('end', done);
          res.on('error', done); // a body cut short (a quota) still tells its status
          res.on('aborted', done);
        });
        req.on('error', reject);
        req.end();
      });
    },
    async close() {
      await rt.close();
      await lab.close();
    },
  };
}

/** Poll `check` until it returns a value (not undefined) or `ms` pass; polling the API, not sleeping for a guess. */
export async function eventually<T>(check: () => Promise<T | undefined>, ms = 3000, what = 'condition'): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
