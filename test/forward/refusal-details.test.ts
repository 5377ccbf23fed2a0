import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { accessLines, basic, rawExchange, startOrigin, startTestProxy, userHashes, waitFor, PASSWORD, USER } from './helpers.js';

function get(port: number, target: string, auth: string): Promise<string> {
  return rawExchange(port, `GET ${target} HTTP/1.1\r\nHost: ${new URL(target).host}\r\nProxy-Authorization: ${auth}\r\nConnection: close\r\n\r\n`);
}

const proxyStatus = (res: string): string => /\r\nproxy-status: ([^\r]*)/i.exec(res)?.[1] ?? '';

test('a typo in username parameters is refused as such (which parameter, did you mean), not as a bad password; the log has the user and the reason', async () => {
  const p = await startTestProxy();
  const origin = await startOrigin();
  try {
    const target = `http://127.0.0.1:${origin.port}/`;
    const typo = await get(p.port, target, basic(`${USER}-sesion-x1`));
    assert.match(typo, /^HTTP\/1\.1 407 /);
    assert.match(proxyStatus(typo), /error=http_request_denied/);
    assert.match(proxyStatus(typo), /details="unknown username parameter \\"sesion\\" \(did you mean \\"session\\"\?\)/);
    // The body's title is not the wrong-password one.
    assert.match(typo, /\r\n\r\n407 Proxy User Name Not Understood\n/);
    const ttl = await get(p.port, target, basic(`${USER}-ttl-forever`));
    assert.match(ttl, /^HTTP\/1\.1 407 /);
    assert.match(proxyStatus(ttl), /details="username parameter \\"ttl\\" expects a duration such as 10m, 30s or 1h, got \\"forever\\""/);
    // A wrong password with the same typo is a wrong password: nothing about parameters is said.
    const wrong = await get(p.port, target, basic(`${USER}-sesion-x1`, 'not-the-password'));
    assert.match(wrong, /^HTTP\/1\.1 407 /);
    assert.doesNotMatch(wrong, /parameter/);
    // Well-formed parameters still pass.
    const ok = await get(p.port, target, basic(`${USER}-session-x1`));
    assert.match(ok, /^HTTP\/1\.1 200 /);
    assert.ok(await waitFor(() => accessLines(p.lines).length >= 4));
    const refusals = accessLines(p.lines).filter((l) => l.reason === 'bad_username_parameter');
    assert.equal(refusals.length, 2, JSON.stringify(accessLines(p.lines)));
    for (const r of refusals) assert.equal(r.user, USER);
  } finally {
    await p.close();
    await origin.close();
  }
});

test('an unknown pool and a plan deny rule are 403 with details (the customer\'s own plan and parameters, shown though revealDetails is off)', async () => {
  const origin = await startOrigin();
  const [hash] = await userHashes();
  const q = await startTestProxy({
    plans: { basic: { deny: [{ hosts: ['denied.example'] }] } },
    egress: { pools: { dc: { addresses: ['127.0.0.1'] } } },
    auth: { users: [{ name: USER, password: hash, plan: 'basic' }] },
  });
  try {
    const pool = await get(q.port, `http://127.0.0.1:${origin.port}/`, basic(`${USER}-pool-nosuch`));
    assert.match(pool, /^HTTP\/1\.1 403 /);
    assert.match(proxyStatus(pool), /details="there is no egress pool named nosuch"/);
    const deny = await get(q.port, 'http://denied.example/', basic());
    assert.match(deny, /^HTTP\/1\.1 403 /);
    assert.match(proxyStatus(deny), /details="destination denied\.example:80 is denied by a deny rule of user alice or of their plan"/);
  } finally {
    await q.close();
    await origin.close();
  }
});

test('over SOCKS5 and SOCKS4 too, a refused username parameter (right password) is recorded with the user', async () => {
  // Adversarial review, session 30: the SOCKS fronts refused such a name without setting the
  // user on the record, which the HTTP front and the docs do.
  const p = await startTestProxy();
  const origin = await startOrigin();
  try {
    const names = [`${USER}-sesion-x1`, `${USER}-ttl-0s`, `${USER}-ttl-forever`];
    for (const name of names) {
      // SOCKS5: greeting (user/password), RFC 1929 sub-negotiation, then a CONNECT it never reaches.
      const u = Buffer.from(name);
      const pw = Buffer.from(PASSWORD);
      const s5 = await rawBytes(p.port, Buffer.concat([Buffer.from([5, 1, 2]), Buffer.from([1, u.length]), u, Buffer.from([pw.length]), pw]));
      assert.deepEqual([...s5.subarray(0, 4)], [5, 2, 1, 1], `${name}: method 02, then auth failure`);
      // SOCKS4: USERID name:password.
      const s4 = await rawBytes(p.port, Buffer.concat([Buffer.from([4, 1, origin.port >> 8, origin.port & 255, 127, 0, 0, 1]), Buffer.from(`${name}:${PASSWORD}`), Buffer.from([0])]));
      assert.equal(s4[1], 0x5b, `${name}: SOCKS4 refused`);
    }
    assert.ok(await waitFor(() => accessLines(p.lines).filter((l) => l.reason === 'bad_username_parameter').length >= 2 * names.length));
    const refusals = accessLines(p.lines).filter((l) => l.reason === 'bad_username_parameter');
    for (const r of refusals) assert.equal(r.user, USER, JSON.stringify(r));
  } finally {
    await p.close();
    await origin.close();
  }
});

/** Write `bytes` on a new connection to the proxy and read until it closes (bounded). */
function rawBytes(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => s.destroy(), 5000);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    s.on('connect', () => s.write(bytes));
  });
}
