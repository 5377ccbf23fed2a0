import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkConfigText } from '../../src/config/check.js';
import { seededRandom } from '../helpers/seeded.js';

/**
 * `check` finds listeners that collide however their addresses are spelled: a host name as the
 * hosts file maps it (`localhost` and 127.0.0.1), an IPv6 address in its long or upper-case
 * form. Before session 31 it compared the strings, so `check` passed a config that `run` then
 * failed to bind (EADDRINUSE). What it says is compared with what binding the two really does.
 */

const dir = mkdtempSync(join(tmpdir(), 'gatewise-check-names-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const HOSTS = join(dir, 'hosts');
writeFileSync(HOSTS, ['# a comment', '127.0.0.1\tlocalhost  # trailing comment', '127.0.0.1 gw-one.test', '::1 ip6-localhost ip6-loopback', '127.0.0.2 gw-two.test', '127.0.0.1 both.test', '::1 both.test', ''].join('\n'));

/** Spellings of one address: [spelling, the address it binds, or 'either' when the name has two]. */
const SPELLINGS: ReadonlyArray<readonly [string, string]> = [
  ['127.0.0.1', '127.0.0.1'],
  ['localhost', '127.0.0.1'],
  ['LOCALHOST', '127.0.0.1'],
  ['gw-one.test', '127.0.0.1'],
  ['gw-one.test.', '127.0.0.1'],
  ['127.0.0.2', '127.0.0.2'],
  ['gw-two.test', '127.0.0.2'],
  ['::1', '::1'],
  ['0:0:0:0:0:0:0:1', '::1'],
  ['ip6-localhost', '::1'],
];

function configWith(a: string, b: string, port: number): string {
  return `listeners:\n  - { address: "${a}", port: ${port} }\n  - { address: "${b}", port: ${port} }\nclusters: { a: { endpoints: ["http://127.0.0.1:3000"] } }\nroutes: [{ cluster: a }]\n`;
}

function bind(address: string, port: number): Promise<Server | NodeJS.ErrnoException> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e));
    s.listen(port, address, () => resolve(s));
  });
}

test('seeded family: two listeners on one port, each address spelled one of several ways', async () => {
  const rand = seededRandom();
  for (let i = 0; i < 40; i++) {
    const [a, aAddr] = rand.pick(SPELLINGS);
    const [b, bAddr] = rand.pick(SPELLINGS);
    const r = checkConfigText(configWith(a, b, 18400 + i), 'c.yaml', { hostsFile: HOSTS, localAddresses: ['127.0.0.1', '::1'] });
    const collides = r.problems.some((p) => /collides with/.test(p.message));
    assert.equal(collides, aAddr === bAddr, `seed ${rand.seed}: ${a} and ${b}: ${r.problems.map((p) => p.message).join('; ')}`);
  }
});

test('what check says agrees with binding the two for real (the system hosts file)', async () => {
  // Only names this machine's resolver maps: localhost and the literals.
  const real = ['127.0.0.1', 'localhost', '::1', '0:0:0:0:0:0:0:1', '127.0.0.2'];
  for (const a of real) {
    for (const b of real) {
      const port = 18500 + Math.floor(Math.random() * 400);
      const r = checkConfigText(configWith(a, b, port), 'c.yaml', { localAddresses: ['127.0.0.1', '::1'] });
      const said = r.problems.some((p) => /collides with/.test(p.message));
      const first = await bind(a, port);
      if (!('listen' in first)) continue; // the port is taken already, or ::1 is off: nothing to compare
      const second = await bind(b, port);
      const refused = !('listen' in second);
      first.close();
      if ('listen' in second) second.close();
      if (refused && (second as NodeJS.ErrnoException).code !== 'EADDRINUSE') continue;
      assert.equal(said, refused, `${a} and ${b} on ${port}: check ${said ? 'refused' : 'passed'}, binding ${refused ? 'failed' : 'worked'}`);
    }
  }
});

test('a name with two addresses may collide: a warning, not a problem', () => {
  const r = checkConfigText(configWith('both.test', '127.0.0.1', 18399), 'c.yaml', { hostsFile: HOSTS, localAddresses: ['127.0.0.1', '::1'] });
  assert.ok(!r.problems.some((p) => /collides/.test(p.message)), r.problems.map((p) => p.message).join('; '));
  assert.ok(r.warnings.some((w) => /both\.test.*may collide|may collide.*both\.test/.test(w.message)), r.warnings.map((w) => w.message).join('; '));
});
