import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { Socks5UdpDialer } from '../../src/egress/index.js';
import { parseProxyUrl } from '../../src/egress/proxy-url.js';
import type { Resolver } from '../../src/egress/index.js';
import { between, everyCase, seededRun } from '../helpers/seeded.js';
import { bounded } from '../forward/front-clients.js';

/**
 * Review of session 35: a SOCKS5 upstream that answers the association's UDP ASSOCIATE with
 * its relay as a name (ATYP 3) the resolver cannot resolve failed the opening, but the
 * association's control connection to the upstream stayed open (only the UDP socket was
 * closed), holding the upstream's association until it noticed. Now every failed opening
 * closes its connection to the upstream. The family: how the name fails (an error code, or a
 * resolver that never answers, ended by the hop's deadline) and the relay name's length.
 */

type How = 'ENOTFOUND' | 'EAI_AGAIN' | 'ESERVFAIL' | 'hang';
const HOWS: readonly How[] = ['ENOTFOUND', 'EAI_AGAIN', 'ESERVFAIL', 'hang'];

async function oneCase(how: How, nameLength: number): Promise<void> {
  const name = `${'r'.repeat(nameLength - 5)}.test`;
  const what = `relay name of ${nameLength} characters, the resolver ${how}`;
  let upstream: Socket | undefined;
  const server = createServer((s) => {
    upstream = s;
    s.on('error', () => {});
    s.once('data', () => {
      s.write(Buffer.from([5, 0])); // no auth
      s.once('data', () => {
        const n = Buffer.from(name);
        s.write(Buffer.concat([Buffer.from([5, 0, 0, 3, n.length]), n, Buffer.from([0x12, 0x34])]));
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const resolver: Resolver = () => (how === 'hang' ? new Promise(() => {}) : Promise.reject(Object.assign(new Error(`${how} ${name}`), { code: how })));
    const dialer = new Socks5UdpDialer(parseProxyUrl(`socks5://127.0.0.1:${(server.address() as AddressInfo).port}`), { resolver });
    await assert.rejects(dialer.open({ guard: () => undefined, dnsTimeoutMs: 1000, connectTimeoutMs: how === 'hang' ? 500 : 5000 }), `${what}: the opening fails`);
    assert.ok(upstream !== undefined, `${what}: the upstream was reached`);
    if (!upstream.destroyed && !upstream.readableEnded) await bounded(once(upstream, 'close'), 5000, `${what}: the proxy closes its connection to the upstream`);
  } finally {
    upstream?.destroy();
    server.close();
  }
}

describe('a SOCKS5 upstream naming a relay that does not resolve', () => {
  it('fails the association and closes the connection to the upstream (seeded family)', { timeout: 120_000 }, async () => {
    await seededRun('socks5-udp-relay-name', async (rand) => {
      await everyCase(
        HOWS.map((h) => [h, between(rand, 6, 200)] as const),
        async ([h, n]) => oneCase(h, n),
      );
    });
  });
});
