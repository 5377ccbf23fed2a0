import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accessLines, basic, rawExchange, startOrigin, startTestProxy, userHashes, waitFor, USER } from './helpers.js';

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
