import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { ERROR_TYPES, REFUSAL_REASONS, parseProxyStatus, type ProxyErrorType } from '../../src/failure/index.js';
import { dnsServerResolver } from '../../src/forward/index.js';
import { startLab, startLabDnsServer, type Lab, type LabDnsServer } from '../../src/lab/index.js';
import { LiveTraffic } from '../../src/observe/live.js';
import { attachMetrics } from '../../src/observe/metrics.js';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { checkStory as storyOf, counted as countedIn, parse, type Raw } from './error-story-rig.js';
import { PASSWORD, PASSWORD2, USER, USER2, accessLine, basic, dial, rawExchange, readUntil, refusedPort, startOrigin, startTestProxy, userHashes, type Origin, type TestProxy } from './helpers.js';

/**
 * The whole story of each failure the forward proxy answers itself, for the causes the first
 * story probe did not produce: DNS (NXDOMAIN, timeout) and a connect timeout on the HTTP proxy
 * and CONNECT, a plan's quota and connection limit, and on SOCKS5 a DNS failure and the two
 * ways authentication fails. HTTP answers: the taxonomy's status, Proxy-Status (error, the
 * type's rcode even with revealDetails off), the request id, problem+json and HTML; the same
 * type, status and id in the access-log line, the request metrics and the dashboard's record
 * (LiveTraffic). SOCKS answers are a reply code; their story is the log line and the record.
 * Faults are real and on loopback: a DNS server of the lab, a full accept queue.
 */

const rand = seededRandom();
const CONNECT_MS = 150 + rand.int(550);
const DNS_MS = 150 + rand.int(550);

let dns: LabDnsServer;
let lab: Lab;
let origin: Origin;
let p: TestProxy;
let live: LiveTraffic;
let metrics: ReturnType<typeof attachMetrics>;
let backlogHolder: ChildProcess;
let backlogPort = 0;
let filler: Socket;

before(async () => {
  dns = await startLabDnsServer({ records: { 'origin.gatewise.test': ['127.0.0.1'] }, timeout: ['silent.gatewise.test'] });
  origin = await startOrigin();
  lab = await startLab({ tls: true });
  backlogHolder = spawn('python3', ['-c', 'import socket,time\ns=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(0); print(s.getsockname()[1], flush=True)\ntime.sleep(600)'], { stdio: ['ignore', 'pipe', 'inherit'] });
  backlogPort = await new Promise<number>((resolve) => backlogHolder.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
  filler = connect(backlogPort, '127.0.0.1');
  await new Promise<void>((r) => filler.once('connect', () => r()));
  live = new LiveTraffic({ failures: 1000 }).attach();
  metrics = attachMetrics(new Registry());
  const [h1, h2] = await userHashes();
  p = await startTestProxy(
    {
      timeouts: { connect: `${CONNECT_MS}ms`, dns: `${DNS_MS}ms` },
      rules: { allowPrivate: true, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8'] }] },
      plans: { small: { bytesPerDay: { down: 2000 }, maxConnections: 1 } },
      auth: { users: [{ name: USER, password: h1 }, { name: USER2, password: h2, plan: 'small' }] },
    } as never,
    { resolver: dnsServerResolver([`127.0.0.1:${dns.port}`], { timeoutMs: 5000, tries: 1 }) },
  );
});

after(async () => {
  live?.detach();
  metrics?.detach();
  filler?.destroy();
  backlogHolder?.kill('SIGKILL');
  await p?.close();
  await origin?.close();
  await lab?.close();
  await dns?.close();
});

function ask(kind: 'http' | 'connect', hostPort: string, accept: string, user = USER, password = PASSWORD, scheme = 'http'): Promise<string> {
  const auth = basic(user, password);
  return kind === 'http'
    ? rawExchange(p.port, `GET ${scheme}://${hostPort}/ HTTP/1.1\r\nHost: ${hostPort}\r\nAccept: ${accept}\r\nProxy-Authorization: ${auth}\r\nConnection: close\r\n\r\n`, 15_000)
    : rawExchange(p.port, `CONNECT ${hostPort} HTTP/1.1\r\nHost: ${hostPort}\r\nAccept: ${accept}\r\nProxy-Authorization: ${auth}\r\n\r\n`, 15_000);
}

/** One answer's story: status, Proxy-Status, request id, body by Accept, log line, record. */
/** One HTTP answer's story (error-story-rig.ts), its access-log line returned. */
async function checkStory(a: Raw, type: ProxyErrorType, status: number, format: 'problem' | 'html', where: string): Promise<Record<string, unknown>> {
  return (await storyOf({ p, live, seed: rand.seed }, a, type, where, { status, format })).line;
}

function counted(labels: Record<string, string>): Promise<number> {
  return countedIn(metrics, labels);
}

const CAUSES: ReadonlyArray<{ name: string; hostPort: () => string; type: ProxyErrorType; rcode?: string; atLeastMs?: number; https?: true }> = [
  // TLS from the proxy to the destination: an absolute-form https:// target (CONNECT's TLS is the client's).
  { name: 'TLS: self-signed certificate', hostPort: () => `127.0.0.1:${new URL(lab.tlsSelfSignedUrl!).port}`, type: 'tls_certificate_error', https: true },
  { name: 'TLS to a plain HTTP server', hostPort: () => `127.0.0.1:${origin.port}`, type: 'tls_protocol_error', https: true },
  { name: 'DNS NXDOMAIN', hostPort: () => `missing.gatewise.test:${origin.port}`, type: 'dns_error', rcode: 'NXDOMAIN' },
  { name: `DNS timeout (${DNS_MS} ms)`, hostPort: () => `silent.gatewise.test:${origin.port}`, type: 'dns_timeout', atLeastMs: DNS_MS },
  { name: `connect timeout (${CONNECT_MS} ms, full accept queue)`, hostPort: () => `127.0.0.1:${backlogPort}`, type: 'connection_timeout', atLeastMs: CONNECT_MS },
];

describe(`error story, forward face (seed ${rand.seed})`, () => {
  for (const c of CAUSES) {
    for (const kind of c.https ? (['http'] as const) : (['http', 'connect'] as const)) {
      it(`${kind === 'http' ? 'HTTP proxy' : 'CONNECT'}: ${c.name} → ${c.type}`, async () => {
        await withSeed(rand, async () => {
          const status = ERROR_TYPES[c.type].status;
          const labels = { face: 'forward', error: c.type, status: String(status), protocol: kind === 'http' ? 'http' : 'connect' };
          const before = await counted(labels);
          const t0 = Date.now();
          const a = parse(await ask(kind, c.hostPort(), 'application/problem+json', USER, PASSWORD, c.https ? 'https' : 'http'));
          const took = Date.now() - t0;
          await checkStory(a, c.type, status, 'problem', `${kind} ${c.name}`);
          if (c.rcode !== undefined) assert.equal(parseProxyStatus(a.headers['proxy-status']!).at(-1)!.params.rcode, c.rcode, `rcode with revealDetails off: ${a.headers['proxy-status']}`);
          if (c.atLeastMs !== undefined) assert.ok(took >= c.atLeastMs - 20, `answered after ${took} ms, before the ${c.atLeastMs} ms timeout`);
          await checkStory(parse(await ask(kind, c.hostPort(), 'text/html', USER, PASSWORD, c.https ? 'https' : 'http')), c.type, status, 'html', `${kind} ${c.name} (html)`);
          assert.equal((await counted(labels)) - before, 2, `both counted under ${JSON.stringify(labels)}`);
        });
      });
    }
  }

  it('a plan\'s connection limit (one tunnel open) → 429 http_request_denied, too_many_requests, with the limit said', async () => {
    const held = await dial(p.port);
    try {
      held.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic(USER2, PASSWORD2)}\r\n\r\n`);
      await readUntil(held, (b) => b.includes('\r\n\r\n'), 5000, 'the held tunnel');
      for (const format of ['problem', 'html'] as const) {
        const a = parse(await ask('http', `127.0.0.1:${origin.port}`, format === 'problem' ? 'application/problem+json' : 'text/html', USER2, PASSWORD2));
        const line = await checkStory(a, 'http_request_denied', REFUSAL_REASONS.too_many_requests.status, format, `plan maxConnections (${format})`);
        assert.equal(line.reason, 'too_many_requests', JSON.stringify(line));
        assert.equal(line.user, USER2, JSON.stringify(line));
        // A plan's own refusal tells the customer which limit, with revealDetails off.
        assert.equal(typeof parseProxyStatus(a.headers['proxy-status']!).at(-1)!.params.details, 'string', a.headers['proxy-status']);
      }
    } finally {
      held.destroy();
    }
  });

  for (const kind of ['http', 'connect'] as const) {
    it(`${kind === 'http' ? 'HTTP proxy' : 'CONNECT'}: a wrong password → 407 proxy_auth_required, the line and record naming the account attempted`, async () => {
      const name = rand.pick([USER, `${USER}-session-h${rand.int(1000)}`]);
      const a = parse(await ask(kind, `127.0.0.1:${origin.port}`, 'application/problem+json', name, 'not-the-password'));
      const line = await checkStory(a, 'http_request_denied', REFUSAL_REASONS.proxy_auth_required.status, 'problem', `${kind} wrong password`);
      assert.equal(line.reason, 'proxy_auth_required', JSON.stringify(line));
      assert.equal(line.user, USER, `the account attacked is named [seed ${rand.seed}]: ${JSON.stringify(line)}`);
      const typed = `nobody-${rand.int(1e6)}`;
      const b = parse(await ask(kind, `127.0.0.1:${origin.port}`, 'application/problem+json', typed, PASSWORD));
      const other = await checkStory(b, 'http_request_denied', REFUSAL_REASONS.proxy_auth_required.status, 'problem', `${kind} unknown user`);
      assert.equal(other.user, undefined, `a name that is no user's is not logged: ${JSON.stringify(other)}`);
      assert.ok(!JSON.stringify(other).includes(typed), JSON.stringify(other));
    });
  }

  it('a plan\'s daily quota used up → the next request 429 too_many_requests, the same story in log, record and metrics', async () => {
    // Wait for the held tunnel of the test before to end (its slot counts against maxConnections: 1).
    await accessLine(p.lines, (l) => l.user === USER2 && l.protocol === 'connect' && l.error === undefined, 'the held tunnel\'s line');
    const cut = parse(await rawExchange(p.port, `GET http://127.0.0.1:${origin.port}/big/5000 HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nProxy-Authorization: ${basic(USER2, PASSWORD2)}\r\nConnection: close\r\n\r\n`, 15_000).catch((e: Error) => `HTTP/1.1 000 cut\r\n\r\n${e.message}`));
    assert.ok(cut.status === 200 || cut.status === 0, `the crossing request: ${cut.status}`);
    // Billed whole or cut at the quota (the meter counts by chunks): either way the day's 2000 bytes are gone.
    await accessLine(p.lines, (l) => l.user === USER2 && Number(l.bytesDown) >= 2000, 'the line of the request that used the quota up');
    const before = await counted({ face: 'forward', error: 'http_request_denied', reason: 'too_many_requests', status: '429' });
    for (const format of ['problem', 'html'] as const) {
      const a = parse(await ask('http', `127.0.0.1:${origin.port}`, format === 'problem' ? 'application/problem+json' : 'text/html', USER2, PASSWORD2));
      const line = await checkStory(a, 'http_request_denied', REFUSAL_REASONS.too_many_requests.status, format, `quota (${format})`);
      assert.equal(line.reason, 'too_many_requests', JSON.stringify(line));
      assert.match(String(parseProxyStatus(a.headers['proxy-status']!).at(-1)!.params.details), /bytesPerDay\.down/, a.headers['proxy-status']);
    }
    assert.equal((await counted({ face: 'forward', error: 'http_request_denied', reason: 'too_many_requests', status: '429' })) - before, 2);
  });
});

describe(`error story, SOCKS5 (seed ${rand.seed})`, () => {
  async function socks(bytes: Buffer, enough: (b: Buffer) => boolean): Promise<Buffer> {
    const s = await dial(p.port);
    s.on('error', () => {});
    s.write(bytes);
    try {
      return await readUntil(s, enough, 10_000, 'the SOCKS reply');
    } finally {
      s.destroy();
    }
  }
  function auth(user: string, password: string): Buffer {
    return Buffer.concat([Buffer.from([5, 1, 2, 1, user.length]), Buffer.from(user), Buffer.from([password.length]), Buffer.from(password)]);
  }
  function connectName(host: string, port: number): Buffer {
    const pb = Buffer.alloc(2);
    pb.writeUInt16BE(port);
    return Buffer.concat([Buffer.from([5, 1, 0, 3, host.length]), Buffer.from(host), pb]);
  }
  /** The newest SOCKS5 access line and record that `pred` picks, with nothing of it said differently. */
  async function recordOf(pred: (l: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>> {
    const line = await accessLine(p.lines, (l) => l.protocol === 'socks5' && pred(l), what);
    const rec = live.failure(String(line.requestId));
    assert.ok(rec, `${what}: a record for the dashboard: ${JSON.stringify(line)}`);
    assert.equal(rec.error, line.error, what);
    assert.equal(rec.reason, line.reason, what);
    assert.equal(rec.status, line.status, what);
    assert.equal(rec.phase, line.phase, what);
    return line;
  }

  it('a name that does not resolve: reply 4 (host unreachable), the line and record dns_error', async () => {
    const before = await counted({ face: 'forward', protocol: 'socks5', error: 'dns_error' });
    const r = await socks(Buffer.concat([auth(USER, PASSWORD), connectName('missing.gatewise.test', origin.port)]), (b) => b.length >= 4 + 10);
    assert.deepEqual([...r.subarray(0, 2)], [5, 2]);
    assert.deepEqual([...r.subarray(2, 4)], [1, 0]);
    assert.equal(r[5], 4, `reply ${r.toString('hex')}`);
    const line = await recordOf((l) => l.error === 'dns_error', 'the SOCKS dns_error');
    assert.equal(line.user, USER);
    // A SOCKS answer is a reply code, not an HTTP status: the line and the record say the code.
    assert.equal(line.reply, 4, JSON.stringify(line));
    assert.equal(line.phase, 'dns', JSON.stringify(line));
    assert.equal((await counted({ face: 'forward', protocol: 'socks5', error: 'dns_error' })) - before, 1);
  });

  it('a wrong password: auth status 1, the line and record proxy_auth_required, naming the account attempted', async () => {
    const n = p.lines.length;
    // A user's name, with username parameters or without: the record names the account (the base name).
    const name = rand.pick([USER, USER2, `${USER}-session-s${rand.int(1000)}`]);
    const r = await socks(auth(name, 'not-the-password'), (b) => b.length >= 4);
    assert.deepEqual([...r.subarray(0, 4)], [5, 2, 1, 1], r.toString('hex'));
    const line = await recordOf((l) => p.lines.indexOf(l) >= n && l.reason === 'proxy_auth_required', 'the SOCKS wrong password');
    assert.equal(line.error, 'http_request_denied', JSON.stringify(line));
    assert.equal(line.phase, 'accept', JSON.stringify(line));
    assert.equal(line.user, name.startsWith(USER2) ? USER2 : USER, `the account attacked is named [seed ${rand.seed}]: ${JSON.stringify(line)}`);
    assert.equal((live.failure(String(line.requestId)) as { user?: string }).user, line.user);
  });

  it('a name that is no user: refused the same, and the name is not logged (it may be a password typed in the wrong field)', async () => {
    const n = p.lines.length;
    const typed = `not-a-user-${rand.int(1e6)}`;
    const r = await socks(auth(typed, PASSWORD), (b) => b.length >= 4);
    assert.deepEqual([...r.subarray(0, 4)], [5, 2, 1, 1], r.toString('hex'));
    const line = await recordOf((l) => p.lines.indexOf(l) >= n && l.reason === 'proxy_auth_required', 'the SOCKS unknown user');
    assert.equal(line.user, undefined, JSON.stringify(line));
    assert.ok(!JSON.stringify(p.lines.slice(n)).includes(typed), 'the typed name is in no line');
  });

  it('no acceptable method (only no-auth offered, auth required): 0xFF, the line and record proxy_auth_required', async () => {
    const n = p.lines.length;
    const r = await socks(Buffer.from([5, 1, 0]), (b) => b.length >= 2);
    assert.deepEqual([...r.subarray(0, 2)], [5, 0xff], r.toString('hex'));
    const line = await recordOf((l) => p.lines.indexOf(l) >= n && l.reason === 'proxy_auth_required', 'the SOCKS no acceptable method');
    assert.equal(line.error, 'http_request_denied', JSON.stringify(line));
  });
});

describe(`error story, SOCKS4 and SOCKS4a (seed ${rand.seed})`, () => {
  function request(port: number, ip: readonly number[], userId: string, host?: string, cmd = 1): Buffer {
    const head = Buffer.alloc(8);
    head[0] = 4;
    head[1] = cmd;
    head.writeUInt16BE(port, 2);
    ip.forEach((x, i) => (head[4 + i] = x));
    const parts = [head, Buffer.from(userId), Buffer.from([0])];
    if (host !== undefined) parts.push(Buffer.from(host), Buffer.from([0]));
    return Buffer.concat(parts);
  }
  const A = [127, 0, 0, 1] as const;
  const NAME = [0, 0, 0, 1] as const;
  const good = `${USER}:${PASSWORD}`;
  let refused = 0;
  before(async () => {
    refused = await refusedPort();
  });
  // SOCKS4 has one refusal code (0x5b, 91): the line and the record carry the whole story.
  const CASES: ReadonlyArray<{ name: string; bytes: () => Buffer; error: ProxyErrorType; reason?: string; phase: string; user?: string; detail: RegExp }> = [
    { name: 'BIND (command 2)', bytes: () => request(origin.port, A, good, undefined, 2), error: 'http_request_error', reason: 'not_implemented', phase: 'accept', detail: /command 2/ },
    { name: 'a wrong password', bytes: () => request(origin.port, A, `${USER}:nope`), error: 'http_request_denied', reason: 'proxy_auth_required', phase: 'accept', user: USER, detail: /wrong user name or password/ },
    { name: 'a name that is no user', bytes: () => request(origin.port, A, 'nobody-here:x'), error: 'http_request_denied', reason: 'proxy_auth_required', phase: 'accept', detail: /wrong user name or password/ },
    { name: 'no USERID (auth required)', bytes: () => request(origin.port, A, ''), error: 'http_request_denied', reason: 'proxy_auth_required', phase: 'accept', detail: /USERID name:password/ },
    { name: 'destination port 0', bytes: () => request(0, A, good), error: 'http_request_error', reason: 'bad_request', phase: 'accept', user: USER, detail: /port 0/ },
    { name: 'SOCKS4a: a malformed name', bytes: () => request(origin.port, NAME, good, 'bad\x01name'), error: 'http_request_error', reason: 'bad_request', phase: 'accept', detail: /./ },
    { name: 'SOCKS4a: a name that does not resolve', bytes: () => request(origin.port, NAME, good, 'missing.gatewise.test'), error: 'dns_error', phase: 'dns', user: USER, detail: /name resolution failed/ },
    { name: 'a destination no rule allows (default deny)', bytes: () => request(origin.port, [10, 1, 2, 3], good), error: 'http_request_denied', phase: 'route', user: USER, detail: /10\.1\.2\.3:\d+ is not allowed by any rule/ },
    { name: 'a refused destination', bytes: () => request(refused, A, good), error: 'connection_refused', phase: 'connect', user: USER, detail: /refused/ },
  ];
  for (const c of CASES) {
    it(`${c.name}: reply 91, the line and the record ${c.error}${c.reason ? ` (${c.reason})` : ''} in phase ${c.phase}`, async () => {
      const n = p.lines.length;
      const before = await counted({ face: 'forward', protocol: 'socks4', error: c.error });
      const s = await dial(p.port);
      s.on('error', () => {});
      s.write(c.bytes());
      let r: Buffer;
      try {
        r = await readUntil(s, (b) => b.length >= 8, 10_000, 'the SOCKS4 reply');
      } finally {
        s.destroy();
      }
      assert.equal(r[0], 0, r.toString('hex'));
      assert.equal(r[1], 0x5b, r.toString('hex'));
      const line = await accessLine(p.lines, (l) => p.lines.indexOf(l) >= n && l.protocol === 'socks4', `the SOCKS4 line of ${c.name}`);
      const said = JSON.stringify(line);
      assert.equal(line.reply, 0x5b, said);
      assert.equal(line.error, c.error, said);
      assert.equal(line.reason, c.reason, said);
      assert.equal(line.phase, c.phase, said);
      assert.equal(line.user, c.user, said);
      assert.match(String(line.detail), c.detail, said);
      const rec = live.failure(String(line.requestId));
      assert.ok(rec, `a record for the dashboard: ${said}`);
      for (const k of ['error', 'reason', 'phase', 'detail', 'user'] as const) assert.equal((rec as unknown as Record<string, unknown>)[k], line[k], `${k}: ${said}`);
      assert.equal((await counted({ face: 'forward', protocol: 'socks4', error: c.error })) - before, 1);
    });
  }
});
