import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { parseProxyStatus } from '../../src/failure/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { between, everyCase, seededRun } from '../helpers/seeded.js';
import { closedPort } from '../helpers/admin-stack.js';
import { certDir, hasOpenssl, type CertDir, type TestCa } from '../helpers/tls-certs.js';

/**
 * The reverse gateway's upstream TLS handshake has a phase of its own. An https endpoint that
 * accepts the TCP connection and then resets, closes or stalls before the handshake is done
 * failed in phase `tls` (connection_terminated or connection_timeout, "... TLS handshake"),
 * as the forward proxy's TLS to a destination already said (forward/upstream-tls.ts); it read
 * `connect` ("connect timed out", "closed the connection while connecting"). Checked on both
 * HTTP/1.1 fronts, on one try and through retries: the status, Proxy-Status `error` and
 * `details`, the problem body, the access-log line's phase and each attempt's. Guards: a
 * refused TCP connect stays `connection_refused` in `connect`, a certificate the gateway does
 * not trust stays `tls_certificate_error` in `tls`. Every upstream is a real server on loopback.
 */

type Mode =
  | { kind: 'reset-now' }
  | { kind: 'reset-after-hello' }
  | { kind: 'close-now' }
  | { kind: 'close-after-hello' }
  /** After the ClientHello, the first `bytes` bytes of a TLS handshake record that never completes, then a reset or a FIN. */
  | { kind: 'partial-record'; bytes: number; end: 'reset' | 'close' }
  /** Reads and never answers: past the cluster's connect timeout. */
  | { kind: 'stall' };

/** A TLS handshake record's header announcing 122 bytes: sent cut short, it never completes. */
const RECORD = Buffer.concat([Buffer.from([0x16, 0x03, 0x03, 0x00, 0x7a]), Buffer.alloc(0x7a, 0x02)]);

function describeMode(m: Mode): string {
  return m.kind === 'partial-record' ? `partial-record(${m.bytes} bytes, ${m.end})` : m.kind;
}

/** A TCP server that accepts, then breaks the TLS handshake as `mode` says. */
async function breaker(mode: Mode): Promise<{ server: TcpServer; port: number; held: Set<Socket> }> {
  const held = new Set<Socket>();
  const server = createTcpServer((c) => {
    c.on('error', () => {});
    held.add(c);
    c.on('close', () => held.delete(c));
    switch (mode.kind) {
      case 'reset-now':
        c.resetAndDestroy();
        return;
      case 'close-now':
        c.end();
        return;
      case 'reset-after-hello':
        c.once('data', () => c.resetAndDestroy());
        return;
      case 'close-after-hello':
        c.once('data', () => c.end());
        return;
      case 'partial-record':
        c.once('data', () => {
          c.write(RECORD.subarray(0, mode.bytes), () => (mode.end === 'reset' ? c.resetAndDestroy() : c.end()));
        });
        return;
      case 'stall':
        c.resume();
        return;
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port, held };
}

/** An https server answering 200 with `cert`; its close is added to `closers`. */
async function httpsUpstream(cert: { cert: string; key: string }, closers: Array<() => Promise<void> | void>): Promise<number> {
  const server: HttpsServer = createHttpsServer({ cert: cert.cert, key: cert.key }, (_req, res) => res.end('ok\n'));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return (server.address() as AddressInfo).port;
}

interface Seen {
  status: number;
  proxyStatus: { error?: string; details?: string };
  problem: { errorType?: string; phase?: string; detail?: string };
  requestId: string;
}

const client = new Agent({ keepAliveTimeout: 1000 });

async function ask(gw: TestGateway, path: string, method: 'GET' | 'POST' = 'GET'): Promise<Seen & { body: string }> {
  const res = await request(`${gw.url}${path}`, { dispatcher: client, method, headers: { accept: 'application/problem+json' }, body: method === 'POST' ? 'x' : undefined });
  const body = await res.body.text();
  const ps = res.headers['proxy-status'];
  const member = ps === undefined ? undefined : parseProxyStatus(ps as string | string[])[0];
  let problem: Seen['problem'] = {};
  if (String(res.headers['content-type'] ?? '').includes('problem+json')) problem = JSON.parse(body) as Seen['problem'];
  return {
    status: res.statusCode,
    proxyStatus: { error: member?.params.error as string | undefined, details: member?.params.details as string | undefined },
    problem,
    requestId: String(res.headers['x-request-id'] ?? ''),
    body,
  };
}

const skip = hasOpenssl() ? false : 'openssl is not installed';

describe('an https endpoint that breaks the TLS handshake after TCP connected: phase tls', { skip }, () => {
  let dir: CertDir;
  let ca: TestCa;
  let caFile: string;
  const closers: Array<() => Promise<void> | void> = [];

  before(() => {
    dir = certDir('gatewise-tls-phase-');
    ca = dir.ca('phase-ca');
    caFile = ca.certFile;
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await client.close();
    dir.remove();
  });

  async function breakers(modes: readonly Mode[]): Promise<number[]> {
    const ports: number[] = [];
    for (const m of modes) {
      const b = await breaker(m);
      closers.push(() => {
        for (const s of b.held) s.destroy();
        return new Promise<void>((r) => b.server.close(() => r()));
      });
      ports.push(b.port);
    }
    return ports;
  }

  for (const front of ['node', 'net'] as const) {
    test(`${front} front: each way of breaking the handshake, one try (seeded family)`, async () => {
      await seededRun(`tls phase, ${front} front`, async (rand) => {
        const connectMs = between(rand, 150, 400);
        const modes: Mode[] = [
          { kind: 'reset-now' },
          { kind: 'reset-after-hello' },
          { kind: 'close-now' },
          { kind: 'close-after-hello' },
          { kind: 'partial-record', bytes: between(rand, 1, RECORD.length - 1), end: rand() < 0.5 ? 'reset' : 'close' },
          { kind: 'partial-record', bytes: between(rand, 1, RECORD.length - 1), end: rand() < 0.5 ? 'reset' : 'close' },
          { kind: 'stall' },
        ];
        const ports = await breakers(modes);
        const clusters: Record<string, unknown> = {};
        const routes: unknown[] = [];
        modes.forEach((_m, i) => {
          clusters[`b${i}`] = { endpoints: [`https://127.0.0.1:${ports[i]}`], tls: { ca: caFile }, timeouts: { connect: `${connectMs}ms` }, outlierDetection: { enabled: false } };
          routes.push({ match: { pathPrefix: `/b${i}/` }, cluster: `b${i}`, retry: { tries: 1 } });
        });
        const gw = await startTestGateway({ listeners: [{ address: '127.0.0.1', port: 0, front }], clusters, routes } as never);
        try {
          await everyCase(modes.map((m, i) => [m, i] as const), async ([m, i]) => {
            const what = `${front} ${describeMode(m)} (connect timeout ${connectMs} ms)`;
            const r = await ask(gw, `/b${i}/x`);
            const stall = m.kind === 'stall';
            const type = stall ? 'connection_timeout' : 'connection_terminated';
            const detail = stall ? /^TLS handshake timed out/ : /^upstream closed the connection during the TLS handshake/;
            assert.equal(r.status, stall ? 504 : 502, `${what}: status; ${r.body.slice(0, 300)}`);
            assert.equal(r.proxyStatus.error, type, `${what}: Proxy-Status error`);
            assert.match(r.proxyStatus.details ?? '', detail, `${what}: Proxy-Status details`);
            assert.equal(r.problem.errorType, type, `${what}: problem errorType`);
            assert.match(r.problem.detail ?? '', detail, `${what}: problem detail`);
            assert.equal(r.problem.phase, 'tls', `${what}: problem phase`);
            const line = await gw.logFor(r.requestId);
            assert.equal(line.phase, 'tls', `${what}: the record's phase`);
            assert.equal(line.error, type, `${what}: the record's error`);
            assert.equal(line.attempts?.length, 1, `${what}: one try`);
            assert.equal(line.attempts![0]!.phase, 'tls', `${what}: the attempt's phase`);
          }, 'ways of breaking the handshake');
        } finally {
          await gw.close();
        }
      });
    });

    test(`${front} front: through retries, every try says tls; a healthy endpoint after a broken one answers 200 (seeded)`, async () => {
      await seededRun(`tls phase retries, ${front} front`, async (rand) => {
        const connectMs = between(rand, 150, 400);
        const broken: Mode[] = [
          rand() < 0.5 ? { kind: 'reset-after-hello' } : { kind: 'close-now' },
          { kind: 'partial-record', bytes: between(rand, 1, RECORD.length - 1), end: rand() < 0.5 ? 'reset' : 'close' },
        ];
        const [p0, p1] = await breakers(broken);
        const good = await httpsUpstream(ca.issue(`good-${front}`, { ip: ['127.0.0.1'] }), closers);
        const gw = await startTestGateway({
          listeners: [{ address: '127.0.0.1', port: 0, front }],
          clusters: {
            bad: { endpoints: [`https://127.0.0.1:${p0}`, `https://127.0.0.1:${p1}`], balancer: 'round-robin', tls: { ca: caFile }, timeouts: { connect: `${connectMs}ms` }, outlierDetection: { enabled: false } },
            mixed: { endpoints: [`https://127.0.0.1:${p0}`, `https://127.0.0.1:${good}`], balancer: 'round-robin', tls: { ca: caFile }, timeouts: { connect: `${connectMs}ms` }, outlierDetection: { enabled: false } },
          },
          routes: [
            { match: { pathPrefix: '/bad/' }, cluster: 'bad', retry: { tries: 2, backoff: { base: '1ms', max: '2ms' } } },
            { match: { pathPrefix: '/mixed/' }, cluster: 'mixed', retry: { tries: 2, backoff: { base: '1ms', max: '2ms' } } },
          ],
        } as never);
        try {
          // A POST too: a failure in the TLS handshake sent nothing, so it is retried whatever the method.
          const r = await ask(gw, '/bad/x', 'POST');
          assert.equal(r.status, 502, r.body.slice(0, 300));
          assert.equal(r.proxyStatus.error, 'connection_terminated');
          assert.match(r.proxyStatus.details ?? '', /during the TLS handshake/);
          const line = await gw.logFor(r.requestId);
          assert.equal(line.phase, 'tls');
          assert.deepEqual(line.attempts?.map((a) => [a.phase, a.error]), [['tls', 'connection_terminated'], ['tls', 'connection_terminated']], `modes ${broken.map(describeMode).join(', ')}`);
          // Round-robin: within two requests, one starts at the broken endpoint and is retried on the healthy one.
          let retried = false;
          for (let i = 0; i < 2; i++) {
            const ok = await ask(gw, '/mixed/x', 'POST');
            assert.equal(ok.status, 200, ok.body.slice(0, 300));
            const l = await gw.logFor(ok.requestId);
            if ((l.attempts?.length ?? 0) === 2) {
              retried = true;
              assert.equal(l.attempts![0]!.phase, 'tls');
              assert.equal(l.attempts![0]!.error, 'connection_terminated');
            }
          }
          assert.ok(retried, 'one of two requests started at the broken endpoint');
        } finally {
          await gw.close();
        }
      });
    });

    test(`${front} front: guards: a refused TCP connect stays connection_refused in connect, an untrusted certificate tls_certificate_error in tls`, async () => {
      const refused = await closedPort();
      const other = certDir('gatewise-tls-phase-other-');
      closers.push(() => other.remove());
      const untrusted = await httpsUpstream(other.ca('other-ca').issue('untrusted', { ip: ['127.0.0.1'] }), closers);
      const gw = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front }],
        clusters: {
          refused: { endpoints: [`https://127.0.0.1:${refused}`], tls: { ca: caFile }, outlierDetection: { enabled: false } },
          untrusted: { endpoints: [`https://127.0.0.1:${untrusted}`], tls: { ca: caFile }, outlierDetection: { enabled: false } },
        },
        routes: [
          { match: { pathPrefix: '/refused/' }, cluster: 'refused', retry: { tries: 1 } },
          { match: { pathPrefix: '/untrusted/' }, cluster: 'untrusted', retry: { tries: 1 } },
        ],
      } as never);
      try {
        const a = await ask(gw, '/refused/x');
        assert.equal(a.status, 502);
        assert.equal(a.proxyStatus.error, 'connection_refused');
        assert.match(a.proxyStatus.details ?? '', /^connection refused/);
        const la = await gw.logFor(a.requestId);
        assert.equal(la.phase, 'connect');
        assert.equal(la.attempts![0]!.phase, 'connect');
        const b = await ask(gw, '/untrusted/x');
        assert.equal(b.status, 502);
        assert.equal(b.proxyStatus.error, 'tls_certificate_error');
        assert.match(b.proxyStatus.details ?? '', /^upstream certificate not trusted/);
        const lb = await gw.logFor(b.requestId);
        assert.equal(lb.phase, 'tls');
        assert.equal(lb.attempts![0]!.phase, 'tls');
      } finally {
        await gw.close();
      }
    });
  }
});
