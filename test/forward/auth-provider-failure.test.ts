import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { startForwardProxy } from '../../src/forward/index.js';
import type { ForwardRecord } from '../../src/record/index.js';
import type { AuthProvider } from '../../src/tenants/index.js';
import { between, everyCase, seededRun } from '../helpers/seeded.js';
import { bounded, countingServer, endFrontCase, type Front, frontBytes, FRONTS, readAtLeast } from './front-clients.js';
import { memoryLogger, USER } from './helpers.js';

/**
 * An AuthProvider (the pluggable password check: LDAP, a database, a token service) that
 * fails is the gateway's failure, whatever the error it throws: a 500 `proxy_internal_error`
 * ended by the gateway (SOCKS5: the RFC 1929 failure status), never dialled. Review finding:
 * a provider rejecting with an Error whose `code` was 'ECONNRESET' (its own backend's
 * connection reset) was classified by that code as the destination's, recorded 502
 * `connection_terminated` ended by the upstream (SOCKS5: no answer at all, the connection
 * destroyed). The failure is classified by where it came from, not by the error's code.
 */

/** Errors a provider's backend may throw: socket and DNS codes that mean "upstream" elsewhere, none, or a non-Error. */
const ERRORS: ReadonlyArray<() => unknown> = [
  () => Object.assign(new Error('ldap connection reset'), { code: 'ECONNRESET' }),
  () => Object.assign(new Error('db refused'), { code: 'ECONNREFUSED' }),
  () => Object.assign(new Error('token service slow'), { code: 'ETIMEDOUT' }),
  () => Object.assign(new Error('no such host'), { code: 'ENOTFOUND', syscall: 'getaddrinfo' }),
  () => Object.assign(new Error('tls'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }),
  () => Object.assign(new Error('socket'), { code: 'UND_ERR_SOCKET' }),
  () => new Error('no code'),
  () => 'a string',
];

/** How the provider fails: a rejected promise, or a throw from `authenticate` itself. */
type How = 'reject' | 'throw';

async function oneCase(front: Front, errorAt: number, how: How): Promise<void> {
  const what = `${front}, provider ${how}s error #${errorAt}`;
  const dest = await countingServer();
  const { logger } = memoryLogger();
  let recorded!: (r: ForwardRecord) => void;
  const record = new Promise<ForwardRecord>((r) => (recorded = r));
  const provider: AuthProvider = {
    has: (name) => name === USER,
    authenticate() {
      const err = ERRORS[errorAt]!();
      if (how === 'throw') throw err;
      return Promise.reject(err);
    },
  };
  const proxy = await startForwardProxy(
    {
      listeners: [{ address: '127.0.0.1', port: 0, protocols: ['http', 'socks5'] }],
      auth: { required: true, users: [] },
      rules: { allowPrivate: true, connectPorts: ['1-65535'] },
      timeouts: { connect: '2s', handshake: '5s' },
    },
    { logger, authProvider: provider, hooks: [{ onFinish: (r) => recorded(r) }] },
  );
  let c: Socket | undefined;
  try {
    c = connect(proxy.addresses()[0]!.port, '127.0.0.1');
    c.on('error', () => {});
    await bounded(once(c, 'connect'), 5000, `${what}: connect`);
    // SOCKS5: the method choice (2) and the RFC 1929 status (2); HTTP: the status line.
    const answer = readAtLeast(c, front === 'socks5' ? 4 : 12);
    c.write(frontBytes(front, '127.0.0.1', dest.port));
    const got = await bounded(answer, 5000, `${what}: the answer`);
    const rec = await bounded(record, 5000, `${what}: the record`);
    const r = JSON.stringify(rec);
    assert.equal(rec.endedBy, 'gateway', `${what}: the provider's failure is the gateway's: ${r}`);
    assert.equal(rec.error, 'proxy_internal_error', `${what}: ${r}`);
    if (front === 'socks5') assert.equal(got.subarray(2, 4).toString('hex'), '0101', `${what}: the RFC 1929 failure status: ${got.toString('hex')}`);
    else assert.match(got.toString('latin1'), /^HTTP\/1\.1 500 /, `${what}: ${got.toString('latin1')}`);
    if (front !== 'socks5') assert.equal(rec.status, 500, `${what}: ${r}`);
    assert.equal(dest.accepted, 0, `${what}: dialled after a failed password check`);
  } finally {
    await endFrontCase(c, proxy, dest);
  }
}

describe('an auth provider that fails', () => {
  it('is the gateway failure (500 proxy_internal_error, ended by the gateway), whatever its error code (seeded family of fronts, errors, reject/throw)', { timeout: 120_000 }, async () => {
    await seededRun('auth-provider-failure', async (rand) => {
      const cases: Array<[Front, number, How]> = [];
      // The finding (ECONNRESET, rejected) on every front, then seeded cases.
      for (const f of FRONTS) cases.push([f, 0, 'reject']);
      for (let i = 0; i < 12; i++) cases.push([FRONTS[between(rand, 0, FRONTS.length - 1)]!, between(rand, 0, ERRORS.length - 1), rand() < 0.5 ? 'reject' : 'throw']);
      await everyCase(cases, async ([f, e, how]) => oneCase(f, e, how));
    });
  });
});
