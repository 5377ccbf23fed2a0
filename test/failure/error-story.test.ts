import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { ERROR_TYPES, parseProxyStatus, type ProxyErrorType } from '../../src/failure/index.js';
import { loadLabCerts, startLab, startLabDnsServer, type Lab, type LabDnsServer } from '../../src/lab/index.js';
import { LiveTraffic } from '../../src/observe/live.js';
import { startTestGateway, type GatewayFront, type LogLine, type TestGateway } from '../helpers/gateway.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * The whole story of each failure the gateway answers itself, for the causes the first story
 * probe did not produce (DNS, connect timeout, upstream TLS, an open breaker), on both reverse
 * fronts: the status from the taxonomy, Proxy-Status (RFC 9209: error and details; rcode for
 * NXDOMAIN), the request id header, the problem+json body and the HTML page (content
 * negotiation), and the same type, status, phase and request id in the access-log line, in the
 * request metrics and in the record the admin dashboard shows (LiveTraffic, /failures/{id}).
 * Every fault is real and on loopback: a DNS server of the lab (never the machine's resolver),
 * a listener whose accept queue is full, the lab's TLS listeners.
 */

const rand = seededRandom();
/** The connect timeout, over a range: the answer is connection_timeout whatever its length. */
const CONNECT_MS = 150 + rand.int(550);

let lab: Lab;
let dns: LabDnsServer;
let live: LiveTraffic;
let backlogHolder: ChildProcess;
let backlogPort = 0;
let filler: Socket;
let caDir: string;

before(async () => {
  lab = await startLab({ tls: true });
  dns = await startLabDnsServer({ records: {}, timeout: ['silent.gatewise.test'] });
  // A listener with backlog 0 that never accepts, one connection in its queue: later SYNs are dropped.
  backlogHolder = spawn('python3', ['-c', 'import socket,time\ns=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(0); print(s.getsockname()[1], flush=True)\ntime.sleep(600)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  backlogPort = await new Promise<number>((resolve) => backlogHolder.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
  filler = connect(backlogPort, '127.0.0.1');
  await new Promise<void>((r) => filler.once('connect', () => r()));
  caDir = mkdtempSync(join(tmpdir(), 'gatewise-error-story-'));
  writeFileSync(join(caDir, 'lab-ca.pem'), loadLabCerts().ca);
  live = new LiveTraffic({ failures: 1000 }).attach();
});

after(async () => {
  live?.detach();
  filler?.destroy();
  backlogHolder?.kill('SIGKILL');
  await dns?.close();
  await lab?.close();
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

const NO_WAIT = { waitForEndpoint: { timeout: '0s' }, outlierDetection: { enabled: false } };

function clusters(): Record<string, unknown> {
  return {
    nx: { endpoints: [`http://missing.gatewise.test:${lab.port}`], ...NO_WAIT },
    silent: { endpoints: [`http://silent.gatewise.test:${lab.port}`], ...NO_WAIT },
    backlog: { endpoints: [`http://127.0.0.1:${backlogPort}`], ...NO_WAIT, timeouts: { connect: `${CONNECT_MS}ms` } },
    selfsigned: { endpoints: [lab.tlsSelfSignedUrl!], ...NO_WAIT },
    // The lab's CA-signed leaf names localhost and 127.0.0.1: by address, with another name expected.
    wrongname: { endpoints: [`https://127.0.0.1:${new URL(lab.tlsCaUrl!).port}`], ...NO_WAIT, tls: { ca: join(caDir, 'lab-ca.pem'), servername: 'wrong-name.gatewise.test' } },
    plain: { endpoints: [`https://127.0.0.1:${lab.port}`], ...NO_WAIT },
    // The breaker: one gateway failure ejects the only endpoint (100% may be out) for a minute.
    breaker: {
      endpoints: [`http://127.0.0.1:${lab.refusedPort}`],
      waitForEndpoint: { timeout: '0s' },
      outlierDetection: { enabled: true, consecutiveGatewayFailures: 1, maxEjectedPercent: 100, baseEjection: '60s', maxEjection: '5m' },
    },
  };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

async function get(g: TestGateway, path: string, accept: string): Promise<Answer> {
  const r = await request(`${g.url.replace(/\/$/, '')}${path}`, { headers: { accept } });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

/** Check one answer's story against its log line, its record and the taxonomy; returns the log line. */
async function checkStory(g: TestGateway, a: Answer, type: ProxyErrorType, format: 'problem' | 'html', where: string): Promise<LogLine> {
  const said = `${where}: ${a.status} ${JSON.stringify(a.headers)} ${a.body.slice(0, 400)}`;
  assert.equal(a.status, ERROR_TYPES[type].status, `status from the taxonomy: ${said}`);
  const rid = String(a.headers['x-request-id'] ?? '');
  assert.ok(rid.length > 0, `a request id: ${said}`);
  const members = parseProxyStatus(String(a.headers['proxy-status'] ?? ''));
  const ours = members[members.length - 1]!;
  assert.equal(ours.params.error, type, `Proxy-Status error: ${said}`);
  // Loopback clients are trusted (revealTopology: trusted): details and next-hop are sent.
  assert.equal(typeof ours.params.details, 'string', `Proxy-Status details: ${said}`);
  const line = await g.logFor(rid);
  assert.equal(line.error, type, `log error: ${said} ${JSON.stringify(line)}`);
  assert.equal(line.status, a.status, `log status: ${said} ${JSON.stringify(line)}`);
  if (format === 'problem') {
    assert.match(String(a.headers['content-type']), /^application\/problem\+json/, said);
    const p = JSON.parse(a.body) as Record<string, unknown>;
    assert.equal(p.errorType, type, said);
    assert.equal(p.status, a.status, said);
    assert.equal(p.requestId, rid, said);
    assert.equal(p.phase, line.phase, `problem phase = log phase: ${said} ${JSON.stringify(line)}`);
    assert.equal(p.detail, ours.params.details, `problem detail = Proxy-Status details: ${said}`);
  } else {
    assert.match(String(a.headers['content-type']), /^text\/html/, said);
    assert.ok(a.body.includes(`<code>${rid}</code>`), `the page quotes the request id: ${said}`);
    assert.ok(a.body.includes(`<code>${type}</code>`), `the page names the type: ${said}`);
    assert.ok(a.body.includes(`<title>${a.status} `), said);
  }
  const rec = live.failure(rid);
  assert.ok(rec, `a record for the dashboard: ${said}`);
  assert.equal(rec.error, type, `record error: ${said}`);
  assert.equal(rec.status, a.status, `record status: ${said}`);
  assert.equal(rec.phase, line.phase, `record phase = log phase: ${said}`);
  assert.equal(rec.face, 'reverse', said);
  return line;
}

interface Cause {
  readonly name: string;
  readonly path: string;
  readonly type: ProxyErrorType;
  readonly phase: string;
  readonly rcode?: string;
}

const CAUSES: readonly Cause[] = [
  { name: 'DNS NXDOMAIN', path: '/nx', type: 'dns_error', phase: 'dns', rcode: 'NXDOMAIN' },
  { name: 'DNS timeout', path: '/silent', type: 'dns_timeout', phase: 'dns' },
  { name: `connect timeout (${CONNECT_MS} ms, full accept queue)`, path: '/backlog', type: 'connection_timeout', phase: 'connect' },
  { name: 'TLS: self-signed certificate', path: '/selfsigned', type: 'tls_certificate_error', phase: 'tls' },
  { name: 'TLS: wrong name', path: '/wrongname', type: 'tls_certificate_error', phase: 'tls' },
  { name: 'TLS to a plain HTTP server', path: '/plain', type: 'tls_protocol_error', phase: 'tls' },
];

for (const front of ['node', 'net'] as const satisfies readonly GatewayFront[]) {
  describe(`error story, reverse face, ${front} front (seed ${rand.seed})`, () => {
    let g: TestGateway;
    before(async () => {
      g = await startTestGateway({
        listeners: [{ address: '127.0.0.1', port: 0, front }],
        dns: { servers: [`127.0.0.1:${dns.port}`], timeout: '300ms', tries: 1 },
        clusters: clusters(),
        routes: ['nx', 'silent', 'backlog', 'selfsigned', 'wrongname', 'plain', 'breaker'].map((c) => ({ match: { pathPrefix: `/${c}` }, cluster: c, retry: { tries: 1 } })),
      } as never);
    });
    after(async () => {
      await g?.close();
    });

    for (const c of CAUSES) {
      test(`${c.name} → ${c.type}`, async () => {
        await withSeed(rand, async () => {
          const before = await g.requestsCounted({ face: 'reverse', error: c.type, status: String(ERROR_TYPES[c.type].status) });
          const t0 = Date.now();
          const problem = await get(g, c.path, 'application/problem+json');
          const took = Date.now() - t0;
          const line = await checkStory(g, problem, c.type, 'problem', `${front} ${c.name}`);
          assert.equal(line.phase, c.phase, JSON.stringify(line));
          if (c.rcode !== undefined) assert.equal(parseProxyStatus(String(problem.headers['proxy-status'])).at(-1)!.params.rcode, c.rcode);
          if (c.type === 'connection_timeout') assert.ok(took >= CONNECT_MS - 20, `answered after ${took} ms, before the ${CONNECT_MS} ms connect timeout`);
          await checkStory(g, await get(g, c.path, 'text/html'), c.type, 'html', `${front} ${c.name} (html)`);
          assert.equal((await g.requestsCounted({ face: 'reverse', error: c.type, status: String(ERROR_TYPES[c.type].status) })) - before, 2, 'both answers counted under their type and status');
        });
      });
    }

    test('an open breaker (the endpoint ejected) → destination_unavailable 503', async () => {
      const first = await get(g, '/breaker', 'application/problem+json');
      await checkStory(g, first, 'connection_refused', 'problem', `${front} breaker, first`);
      for (const format of ['problem', 'html'] as const) {
        const a = await get(g, '/breaker', format === 'problem' ? 'application/problem+json' : 'text/html');
        const line = await checkStory(g, a, 'destination_unavailable', format, `${front} breaker open`);
        assert.equal(line.phase, 'pick', JSON.stringify(line));
        assert.ok(a.headers['retry-after'] !== undefined, `an ejection says when to retry: ${JSON.stringify(a.headers)}`);
      }
    });
  });
}
