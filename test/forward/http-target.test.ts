import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Failure } from '../../src/failure/index.js';
import { isIP } from 'node:net';
import { isCanonicalHost, parseAuthorityTarget } from '../../src/forward/http-target.js';
import { seededRandom } from '../helpers/seeded.js';

/** Hosts the fast path must get right: it may only skip the URL parser where the parser changes nothing. */
const HOSTS = [
  '127.0.0.1', '0.0.0.0', '255.255.255.255', '1.2.3.04', '127.1', '0x7f.1', '0x7f000001', '2130706433', '1.2.3.4.5', '1.2.3.4.',
  'example.com', 'example.com.', 'a.b.c.d.e', 'x_y.example', '-lead.example', 'trail-.example', 'a..b', '.a', 'a.', 'xn--nxasmq6b.example',
  'xn--invalid-.example', 'foo.0x', 'foo.0xg', 'foo.12', 'foo.12a', 'localhost', 'a'.repeat(70) + '.example', 'ex%41mple.com', 'EXAMPLE.com',
];

test('isCanonicalHost is true only where the WHATWG host parser returns the host unchanged', () => {
  for (const h of HOSTS) {
    let parsed: string | undefined;
    try {
      parsed = new URL(`http://${h}/`).hostname;
    } catch {
      parsed = undefined;
    }
    if (isCanonicalHost(h)) assert.equal(parsed, h, `fast path taken for ${h}`);
  }
  assert.equal(isCanonicalHost('127.0.0.1'), true);
  assert.equal(isCanonicalHost('example.com'), true);
  assert.equal(isCanonicalHost('127.1'), false);
});

test('parseAuthorityTarget: fast path and URL path agree on the result', () => {
  assert.deepEqual(parseAuthorityTarget('127.0.0.1:443'), { host: '127.0.0.1', port: 443 });
  assert.deepEqual(parseAuthorityTarget('Example.COM:8443'), { host: 'example.com', port: 8443 });
  assert.deepEqual(parseAuthorityTarget('127.1:80'), { host: '127.0.0.1', port: 80 });
  assert.deepEqual(parseAuthorityTarget('0x7f.1:80'), { host: '127.0.0.1', port: 80 });
  assert.deepEqual(parseAuthorityTarget('[::1]:22'), { host: '::1', port: 22 });
  for (const bad of ['1.2.3.4.5:80', 'example.com:0', 'example.com:70000', 'example.com', 'exa mple.com:80', 'xn--invalid-.example:443']) {
    const r = parseAuthorityTarget(bad);
    if (!(r instanceof Failure)) {
      // Only what the URL parser itself accepts may pass.
      assert.equal(new URL(`http://${r.host}/`).hostname, r.host, `${bad} → ${JSON.stringify(r)}`);
    }
  }
  assert.ok(parseAuthorityTarget('1.2.3.4.5:80') instanceof Failure);
  assert.ok(parseAuthorityTarget('example.com:0') instanceof Failure);
});

/** The general path as it was before the regex-free one (the oracle): regex split, lower-case, URL parser unless canonical. */
function referenceAuthority(target: string): { host: string; port: number } | 'refused' {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(target) ?? /^([A-Za-z0-9_\-.]+):(\d{1,5})$/.exec(target);
  if (!m) return 'refused';
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return 'refused';
  let host = m[1]!.toLowerCase();
  if (m[0].startsWith('[')) return isIP(host) === 6 ? { host, port } : 'refused';
  if (!isCanonicalHost(host)) {
    try {
      host = new URL(`http://${host}/`).hostname;
    } catch {
      return 'refused';
    }
  }
  return { host, port };
}

test('parseAuthorityTarget (regex-free path for plain name:port) agrees with the general path (seeded family of targets)', () => {
  const rand = seededRandom();
  const hostChars = 'abcxyzAZ0129._-:[]% ';
  const ports = ['0', '1', '80', '443', '00080', '65535', '65536', '99999', '123456', '', 'x1', '8o'];
  for (let i = 0; i < 5000; i++) {
    const host = rand.int(4) === 0 ? rand.pick(HOSTS) : Array.from({ length: 1 + rand.int(12) }, () => hostChars[rand.int(hostChars.length)]).join('');
    const target = rand.int(10) === 0 ? host : `${host}:${rand.pick(ports)}`;
    const got = parseAuthorityTarget(target);
    const want = referenceAuthority(target);
    assert.deepEqual(got instanceof Failure ? 'refused' : got, want, `${JSON.stringify(target)} (GATEWISE_SEED=${rand.seed})`);
  }
});
