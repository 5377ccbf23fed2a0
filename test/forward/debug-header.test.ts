import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ProxyAgent, request } from 'undici';
import { seededRandom } from '../helpers/seeded.js';
import { PASSWORD, PASSWORD2, USER, USER2, run, startOrigin, startTestProxy, userHashes, type Origin, type TestProxy } from './helpers.js';

/**
 * Issue 18: per-request debug for forward users who opt in (`-debug-1` in the username, or a
 * plan with `debug: true`): a Gatewise-Debug header (RFC 8941 Dictionary) on plain-HTTP
 * answers and on the CONNECT 200, never for users who did not ask. Real clients: undici's
 * ProxyAgent (absolute-form and CONNECT) and curl.
 */

/** An RFC 8941 Dictionary as this header writes it: bare keys are true, strings unquoted, integers as numbers. */
function parseDict(v: string): Map<string, string | number | true> {
  const out = new Map<string, string | number | true>();
  const re = /\s*([a-z*][a-z0-9_.*-]*)(?:=("(?:[^"\\]|\\.)*"|[^,]*))?\s*(?:,|$)/gy;
  let m: RegExpExecArray | null;
  let at = 0;
  while (at < v.length && (m = re.exec(v)) !== null) {
    at = re.lastIndex;
    const raw = m[2];
    if (raw === undefined) out.set(m[1]!, true);
    else if (raw.startsWith('"')) out.set(m[1]!, raw.slice(1, -1).replace(/\\(.)/g, '$1'));
    else if (/^-?\d+$/.test(raw)) out.set(m[1]!, Number(raw));
    else out.set(m[1]!, raw.trim());
  }
  assert.equal(at, v.length, `the whole value parses as a Dictionary: ${v}`);
  return out;
}

let origin: Origin;
let p: TestProxy;
before(async () => {
  origin = await startOrigin();
  const [h1, h2] = await userHashes();
  p = await startTestProxy({
    auth: { required: true, users: [{ name: USER, password: h1 }, { name: USER2, password: h2, plan: 'support' }] },
    plans: { support: { debug: true } },
    egress: { pools: { dc: { addresses: ['127.0.0.1'] } }, routing: [{ hosts: ['localhost'], pool: 'dc' }] },
  });
});
after(async () => {
  await p.close();
  await origin.close();
});

/** Plain HTTP through the proxy (absolute-form: undici's ProxyAgent without a tunnel). */
async function viaHttp(user: string, password: string, host = '127.0.0.1'): Promise<{ status: number; debug: string | undefined; body: string }> {
  const agent = new ProxyAgent({ uri: p.url, token: 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64'), proxyTunnel: false });
  try {
    const res = await request(`http://${host}:${origin.port}/x`, { dispatcher: agent, method: 'POST', body: 'hello' });
    const body = await res.body.text();
    return { status: res.statusCode, debug: res.headers['gatewise-debug'] as string | undefined, body };
  } finally {
    await agent.close();
  }
}

/** The CONNECT answer's head as curl shows it (-i prints the proxy's 200 before the origin's answer). */
async function viaConnect(user: string, password: string, host = '127.0.0.1'): Promise<{ connect: string; debug: string | undefined }> {
  const r = await run('curl', ['-sS', '-i', '-p', '-x', `http://${user}:${password}@127.0.0.1:${p.port}`, `http://${host}:${origin.port}/y`]);
  assert.equal(r.code, 0, r.stderr);
  const connect = r.stdout.split('\r\n\r\n')[0]!;
  assert.match(connect, /^HTTP\/1\.1 200/);
  const line = connect.split('\r\n').find((l) => /^gatewise-debug:/i.test(l));
  return { connect, debug: line?.slice(line.indexOf(':') + 1).trim() };
}

describe('Gatewise-Debug', () => {
  test('not sent to a user who did not ask, on plain HTTP and on CONNECT', async () => {
    const h = await viaHttp(USER, PASSWORD);
    assert.equal(h.status, 200);
    assert.equal(h.debug, undefined);
    const c = await viaConnect(USER, PASSWORD);
    assert.equal(c.debug, undefined, c.connect);
  });

  test('-debug-1 on plain HTTP: the request id, exit=direct, what decided, bytes up and time', async () => {
    const h = await viaHttp(`${USER}-debug-1`, PASSWORD);
    assert.equal(h.status, 200);
    assert.ok(h.debug, 'a Gatewise-Debug header');
    const d = parseDict(h.debug);
    assert.equal(d.get('exit'), 'direct');
    assert.equal(d.get('decided-by'), 'direct');
    assert.match(String(d.get('req-id')), /^[0-9a-z]+-[0-9a-z]+-[0-9a-z]+$/);
    const up = d.get('bytes-up') as number;
    assert.ok(up > 5 && up < 1000, `bytes-up ${up}: the head and the 5-byte body`);
    assert.equal(typeof d.get('ms'), 'number');
    assert.equal(d.has('plan'), false);
  });

  test('-debug-1 through a pool chosen by a routing rule: exit, pool and the rule, on plain HTTP and on the CONNECT 200 (curl)', async () => {
    const h = await viaHttp(`${USER}-debug-1`, PASSWORD, 'localhost');
    assert.equal(h.status, 200);
    const d = parseDict(h.debug!);
    assert.deepEqual([d.get('exit'), d.get('pool'), d.get('decided-by')], ['127.0.0.1', 'dc', 'rule-1']);
    const c = await viaConnect(`${USER}-session-s9-debug-1`, PASSWORD, 'localhost');
    assert.ok(c.debug, c.connect);
    const cd = parseDict(c.debug);
    assert.deepEqual([cd.get('exit'), cd.get('pool'), cd.get('session'), cd.get('decided-by')], ['127.0.0.1', 'dc', 's9', 'rule-1']);
    assert.equal(cd.has('bytes-up'), false, 'a tunnel just opened has carried nothing yet');
  });

  test('a plan with debug: true turns it on for its users; -debug-0 turns it off', async () => {
    const on = await viaHttp(USER2, PASSWORD2);
    assert.equal(parseDict(on.debug!).get('plan'), 'support');
    const c = await viaConnect(USER2, PASSWORD2);
    assert.equal(parseDict(c.debug!).get('plan'), 'support');
    assert.equal((await viaHttp(`${USER2}-debug-0`, PASSWORD2)).debug, undefined);
    assert.equal((await viaConnect(`${USER2}-debug-0`, PASSWORD2)).debug, undefined);
  });

  test('a debug value other than 0 or 1 is refused with what is wrong', async () => {
    const r = await run('curl', ['-sS', '-i', '-x', `http://${USER}-debug-yes:${PASSWORD}@127.0.0.1:${p.port}`, `http://127.0.0.1:${origin.port}/z`]);
    assert.match(r.stdout, /^HTTP\/1\.1 407/);
    assert.match(r.stdout, /username parameter \\?"debug\\?" expects 1 \(on\) or 0 \(off\), got \\?"yes\\?"/);
    assert.doesNotMatch(r.stdout, /gatewise-debug/i);
  });

  test('refusals: a user who asked sees what decided (the plan\'s limit, a destination rule) on plain HTTP and on CONNECT; others do not', async () => {
    const [h1, h2] = await userHashes();
    const q = await startTestProxy({
      auth: { required: true, users: [{ name: USER, password: h1, plan: 'tiny', deny: [{ hosts: ['denied.test'] }] }, { name: USER2, password: h2, plan: 'tiny' }] },
      plans: { tiny: { requestsPerSecond: 1 } },
    });
    try {
      const get = (user: string, password: string, url: string, tunnel: boolean): Promise<string> =>
        run('curl', ['-sS', '-i', ...(tunnel ? ['-p'] : []), '-x', `http://${user}:${password}@127.0.0.1:${q.port}`, url]).then((r) => r.stdout);
      const header = (out: string): string | undefined => {
        const line = out.split('\r\n\r\n')[0]!.split('\r\n').find((l) => /^gatewise-debug:/i.test(l));
        return line?.slice(line.indexOf(':') + 1).trim();
      };
      // A destination rule: 403 before any limit is spent.
      for (const tunnel of [false, true]) {
        const out = await get(`${USER}-debug-1`, PASSWORD, `http://denied.test:${origin.port}/`, tunnel);
        assert.match(out, /^HTTP\/1\.1 403/, out);
        const d = parseDict(header(out)!);
        assert.equal(d.get('error'), 'http_request_denied');
        assert.equal(d.get('decided-by'), 'http_request_denied');
        assert.match(String(d.get('detail')), /destination denied\.test:\d+ is denied by/);
        assert.equal(d.get('plan'), 'tiny');
        assert.equal(header(await get(USER, PASSWORD, `http://denied.test:${origin.port}/`, tunnel)), undefined, 'not for a user who did not ask');
      }
      // The plan's rate: the second request within the second is refused with 429.
      let refused: string | undefined;
      for (let i = 0; i < 5 && refused === undefined; i++) {
        const out = await get(`${USER2}-debug-1`, PASSWORD2, `http://127.0.0.1:${origin.port}/r`, false);
        if (/^HTTP\/1\.1 429/.test(out)) refused = out;
      }
      assert.ok(refused, 'a 429 within five requests at one per second');
      const d = parseDict(header(refused)!);
      assert.deepEqual([d.get('error'), d.get('decided-by'), d.get('plan')], ['http_request_denied', 'too_many_requests', 'tiny']);
      assert.match(String(d.get('detail')), /^plan tiny: requestsPerSecond limit of 1 reached/);
    } finally {
      await q.close();
    }
  });

  test('seeded family: the parameters in any order and combination; the header comes exactly when asked for (or by the plan, unless -debug-0)', async () => {
    const rand = seededRandom();
    try {
      for (let i = 0; i < 12; i++) {
        const plan = rand.next() < 0.5;
        const params: string[][] = [];
        if (rand.next() < 0.5) params.push(['session', `s${rand.int(1000)}`]);
        if (rand.next() < 0.5) params.push(['ttl', `${1 + rand.int(59)}m`]);
        const debug = rand.pick([undefined, '0', '1'] as const);
        if (debug !== undefined) params.push(['debug', debug]);
        for (let j = params.length - 1; j > 0; j--) {
          const k = rand.int(j + 1);
          [params[j], params[k]] = [params[k]!, params[j]!];
        }
        const user = [plan ? USER2 : USER, ...params.flat()].join('-');
        const want = debug === '1' || (debug === undefined && plan);
        const viaTunnel = rand.next() < 0.5;
        const got = viaTunnel ? (await viaConnect(user, plan ? PASSWORD2 : PASSWORD)).debug : (await viaHttp(user, plan ? PASSWORD2 : PASSWORD)).debug;
        assert.equal(got !== undefined, want, `seed ${rand.seed}: ${user} via ${viaTunnel ? 'CONNECT' : 'HTTP'}`);
        if (got !== undefined) parseDict(got);
      }
    } catch (err) {
      console.log(`failing seed: GATEWISE_SEED=${rand.seed}`);
      throw err;
    }
  });
});
