import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SocksClient } from 'socks';
import { Failure } from '../../src/failure/index.js';
import { planRefusal, startForwardProxy, type AuthProvider, type ForwardDeps, type ForwardHookRequest, type ForwardHooks } from '../../src/forward/index.js';
import type { ForwardConfigInput } from '../../src/config/forward.js';
import type { FinishedRecord } from '../../src/tenants/index.js';
import { refusePort25ForStarter } from '../../examples/refuse-port-25.js';
import { seededRandom } from '../helpers/seeded.js';
import { PASSWORD, PASSWORD2, USER, USER2, accessLines, basic, memoryLogger, rawExchange, refusedPort, startOrigin, startTestProxy, userHashes, waitFor, type Origin, type TestProxy } from './helpers.js';

describe('forward hooks: one place for a rule, every protocol', () => {
  let p: TestProxy;
  let origin: Origin;
  const finished: FinishedRecord[] = [];
  const failures: Array<{ req: ForwardHookRequest; type: string }> = [];
  const observer: ForwardHooks = {
    onFailure: (req, f) => failures.push({ req, type: f.type }),
    onFinish: (rec) => finished.push(rec),
  };

  before(async () => {
    origin = await startOrigin();
    const [h1, h2] = await userHashes();
    p = await startTestProxy(
      {
        auth: { required: true, users: [{ name: USER, password: h1, plan: 'starter' }, { name: USER2, password: h2, plan: 'pro' }] },
        plans: { starter: {}, pro: {} },
      },
      { hooks: [refusePort25ForStarter, observer] },
    );
  });
  after(async () => {
    await p.close();
    await origin.close();
  });

  it('the example refuses port 25 for plan starter over CONNECT, absolute-form HTTP, SOCKS5 and SOCKS4', async () => {
    const connect = await rawExchange(p.port, `CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: 127.0.0.1:25\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
    assert.match(connect, /^HTTP\/1\.1 403 /);
    assert.match(connect, /proxy-status: gatewise;error=http_request_denied/);
    assert.match(connect, /plan starter does not include port 25/);
    const http = await rawExchange(p.port, `GET http://127.0.0.1:25/ HTTP/1.1\r\nHost: 127.0.0.1:25\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`);
    assert.match(http, /^HTTP\/1\.1 403 /);
    await assert.rejects(
      SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: p.port, type: 5, userId: USER, password: PASSWORD }, command: 'connect', destination: { host: '127.0.0.1', port: 25 }, timeout: 3000 }),
      /NotAllowed/,
    );
    await assert.rejects(
      SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: p.port, type: 4, userId: `${USER}:${PASSWORD}` }, command: 'connect', destination: { host: '127.0.0.1', port: 25 }, timeout: 3000 }),
      /rejected/i,
    );
    assert.ok(await waitFor(() => accessLines(p.lines).filter((l) => l.user === USER && l.error === 'http_request_denied').length === 4));
    for (const protocol of ['connect', 'http', 'socks5', 'socks4']) {
      assert.ok(failures.some((f) => f.req.protocol === protocol && f.req.plan === 'starter' && f.type === 'http_request_denied'), protocol);
    }
  });

  it('leaves other plans and other ports alone', async () => {
    // bob (plan pro) reaches port 25's refusal from the network, not from the hook.
    const port25 = await rawExchange(p.port, `CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: 127.0.0.1:25\r\nProxy-Authorization: ${basic(USER2, PASSWORD2)}\r\n\r\n`);
    assert.doesNotMatch(port25, /^HTTP\/1\.1 403/);
    const ok = await rawExchange(p.port, `GET http://127.0.0.1:${origin.port}/x HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`);
    assert.match(ok, /^HTTP\/1\.1 200 /);
  });

  it('onFinish sees every record once, with the plan', async () => {
    const before = finished.length;
    const ok = await rawExchange(p.port, `GET http://127.0.0.1:${origin.port}/once HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`);
    assert.match(ok, /^HTTP\/1\.1 200 /);
    assert.ok(await waitFor(() => finished.length === before + 1));
    const rec = finished.at(-1)!;
    assert.equal(rec.user, USER);
    assert.equal(rec.plan, 'starter');
    assert.equal(rec.status, 200);
  });
});

describe('forward hooks: async authorize and chooseEgress', () => {
  it('an async authorize hook refuses with its own Failure; chooseEgress picks a pool by name, an unknown one is 403', async () => {
    const origin = await startOrigin();
    const refused = await refusedPort();
    const hooks: ForwardHooks[] = [
      {
        async authorize(req) {
          await new Promise((r) => setImmediate(r));
          return req.target.port === refused ? new Failure({ type: 'http_request_denied', phase: 'route', detail: `port ${refused} closed by policy` }) : undefined;
        },
        chooseEgress: (req) => (req.target.port === origin.port ? 'local' : req.method === 'DELETE' ? 'nowhere' : undefined),
      },
    ];
    const p = await startTestProxy({ revealDetails: true, egress: { pools: { local: { addresses: ['127.0.0.1'] } } } }, { hooks });
    try {
      const denied = await rawExchange(p.port, `GET http://127.0.0.1:${refused}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Authorization: ${basic()}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`);
      assert.match(denied, /^HTTP\/1\.1 403 /);
      assert.match(denied, new RegExp(`port ${refused} closed by policy`));
      const pooled = await rawExchange(p.port, `GET http://127.0.0.1:${origin.port}/p HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`);
      assert.match(pooled, /^HTTP\/1\.1 200 /);
      assert.match(pooled, /x-gatewise-exit: 127\.0\.0\.1/);
      assert.ok(await waitFor(() => accessLines(p.lines).some((l) => l.pool === 'local' && l.status === 200)));
      const unknown = await rawExchange(p.port, `DELETE http://localhost:${refused}/ HTTP/1.1\r\nHost: localhost\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`);
      assert.match(unknown, /^HTTP\/1\.1 403 /);
    } finally {
      await p.close();
      await origin.close();
    }
  });
});

describe('forward hooks: the hook timeout', () => {
  it('an authorize hook that never settles is answered 500 proxy_internal_error at the hook timeout, over CONNECT and SOCKS5 (seeded timeout); one in time is not', { timeout: 30_000 }, async () => {
    const rand = seededRandom();
    const timeoutMs = 100 + rand.int(500);
    const ctx = `seed ${rand.seed} (GATEWISE_SEED=${rand.seed}): hook timeout ${timeoutMs} ms`;
    const origin = await startOrigin();
    let late = 0;
    const hooks: ForwardHooks[] = [
      {
        authorize(req) {
          // Port 1 (never dialled): a hook that never answers; the origin: one that answers just in time.
          if (req.target.port === 1) return new Promise<undefined>(() => {});
          return new Promise<undefined>((r) => setTimeout(() => { late++; r(undefined); }, Math.floor(timeoutMs / 3)));
        },
      },
    ];
    const p = await startTestProxy({ revealDetails: true }, { hooks, hookTimeoutMs: timeoutMs });
    try {
      const t0 = performance.now();
      const hung = await rawExchange(p.port, `CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
      const took = performance.now() - t0;
      assert.match(hung, /^HTTP\/1\.1 500 /, ctx);
      assert.match(hung, /error=proxy_internal_error/, ctx);
      assert.match(hung, /did not settle within \d+ ms/, ctx);
      assert.ok(took >= timeoutMs - 20 && took < timeoutMs + 2500, `${ctx}: answered after ${Math.round(took)} ms`);
      await assert.rejects(
        SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: p.port, type: 5, userId: USER, password: PASSWORD }, command: 'connect', destination: { host: '127.0.0.1', port: 1 }, timeout: timeoutMs + 3000 }),
        /Socks5 proxy rejected connection/,
        ctx,
      );
      const ok = await rawExchange(p.port, `GET http://127.0.0.1:${origin.port}/in-time HTTP/1.1\r\nHost: 127.0.0.1\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`);
      assert.match(ok, /^HTTP\/1\.1 200 /, `${ctx}: a hook that settles within the timeout`);
      assert.equal(late, 1, ctx);
      assert.ok(await waitFor(() => accessLines(p.lines).filter((l) => l.error === 'proxy_internal_error').length === 2), `${ctx}: both refusals recorded`);
    } finally {
      await p.close();
      await origin.close();
    }
  });
});

describe('forward auth provider', () => {
  it('replaces the config users: plain and promised answers, wrong credentials 407, a provider Failure answered as named', async () => {
    const origin = await startOrigin();
    const calls: string[] = [];
    const provider: AuthProvider = {
      has: (name) => name === 'token-user' || name === 'slow-user' || name === 'locked',
      authenticate(name, password, source) {
        calls.push(`${name}@${source?.remoteAddress ?? '?'}`);
        if (name === 'locked') return planRefusal('denied', 'account locked');
        if (name === 'slow-user') return new Promise((r) => setImmediate(() => r(password === 'p2' ? name : undefined)));
        return name === 'token-user' && password === 'p1' ? name : undefined;
      },
    };
    const p = await startTestProxyWith({ auth: { required: true, users: [] } }, { authProvider: provider });
    try {
      const get = (user: string, pass: string): Promise<string> =>
        rawExchange(p.port, `GET http://127.0.0.1:${origin.port}/a HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic(user, pass)}\r\nConnection: close\r\n\r\n`);
      assert.match(await get('token-user', 'p1'), /^HTTP\/1\.1 200 /);
      assert.match(await get('slow-user', 'p2'), /^HTTP\/1\.1 200 /);
      assert.match(await get('token-user', 'nope'), /^HTTP\/1\.1 407 /);
      const locked = await get('locked', 'x');
      assert.match(locked, /^HTTP\/1\.1 403 /);
      assert.match(locked, /account locked/);
      const { socket } = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: p.port, type: 5, userId: 'slow-user', password: 'p2' }, command: 'connect', destination: { host: '127.0.0.1', port: origin.port }, timeout: 3000 });
      socket.destroy();
      assert.ok(calls.every((c) => c.endsWith('@127.0.0.1')), calls.join(' '));
    } finally {
      await p.close();
      await origin.close();
    }
  });
});

/** A proxy on 127.0.0.1:0 with loopback allowed and the given deps. */
async function startTestProxyWith(cfg: Partial<ForwardConfigInput>, deps: ForwardDeps): Promise<{ port: number; close(): Promise<void> }> {
  const { logger } = memoryLogger();
  const proxy = await startForwardProxy({ listeners: [{ address: '127.0.0.1', port: 0 }], rules: { allowPrivate: true, connectPorts: ['1-65535'] }, ...cfg }, { logger, ...deps });
  return { port: proxy.addresses()[0]!.port, close: () => proxy.close() };
}

describe('docs/extending.md', () => {
  it('shows examples/refuse-port-25.ts as it is', async () => {
    const { readFileSync } = await import('node:fs');
    const docs = readFileSync(new URL('../../../docs/extending.md', import.meta.url), 'utf8');
    const file = readFileSync(new URL('../../../examples/refuse-port-25.ts', import.meta.url), 'utf8');
    const m = /<!-- example: examples\/refuse-port-25\.ts -->\n```ts\n([\s\S]*?)```/.exec(docs);
    assert.ok(m, 'docs/extending.md embeds examples/refuse-port-25.ts');
    assert.equal(m[1], file);
  });
});
