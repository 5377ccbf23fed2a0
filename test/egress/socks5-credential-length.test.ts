import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { forwardSchema } from '../../src/config/forward.js';
import { Failure } from '../../src/failure/index.js';
import { parseProxyUrl } from '../../src/egress/proxy-url.js';
import { socks5Handshake } from '../../src/egress/socks5-client.js';
import { between, seededRun } from '../helpers/seeded.js';

/**
 * RFC 1929 gives the user name and the password one length byte each: 1–255 bytes. An
 * upstream SOCKS5 proxy URL whose credentials are longer is refused by the config check,
 * naming the pool and the proxy, and the client refuses to send them rather than truncating
 * the length byte (review finding: `Buffer.from([0x01, user.length])` sent length % 256
 * and the rest as garbage the upstream read as the password and request).
 */

const HASH = 'scrypt$16384$8$1$Z2F0ZXdpc2UtZHVtbXk=$3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
/** Characters of 1, 2, 3 and 4 UTF-8 bytes. */
const CHARS = ['a', 'é', '€', '😀'];

/** A string of about `bytes` UTF-8 bytes (seeded characters), and its exact byte length. */
function credential(rand: () => number, bytes: number): { text: string; bytes: number } {
  let text = '';
  while (Buffer.byteLength(text) < bytes) {
    const c = CHARS[between(rand, 0, CHARS.length - 1)]!;
    if (Buffer.byteLength(text + c) > bytes) text += 'a';
    else text += c;
  }
  return { text, bytes: Buffer.byteLength(text) };
}

function lengthAround(rand: () => number): number {
  // Around the limit most of the time, anywhere in 1..600 otherwise.
  return rand() < 0.6 ? between(rand, 250, 260) : between(rand, 1, 600);
}

describe('upstream SOCKS5 credentials over 255 bytes', () => {
  it('the config refuses them, naming the pool and the proxy; HTTP upstreams and ≤255 bytes pass (seeded lengths)', async () => {
    await seededRun('socks5-credential-config', (rand) => {
      for (let i = 0; i < 60; i++) {
        const user = credential(rand, lengthAround(rand));
        const pass = credential(rand, lengthAround(rand));
        const scheme = rand() < 0.75 ? 'socks5' : 'http';
        const url = `${scheme}://${encodeURIComponent(user.text)}:${encodeURIComponent(pass.text)}@127.0.0.1:1080`;
        const inChain = rand() < 0.5;
        const r = forwardSchema.safeParse({
          auth: { users: [{ name: 'a', password: HASH }] },
          egress: { pools: { up: { proxies: inChain ? [{ chain: ['http://127.0.0.1:3128', url] }] : [url] } } },
        });
        const tooLong = scheme === 'socks5' && (user.bytes > 255 || pass.bytes > 255);
        const what = `${scheme} user ${user.bytes} B, password ${pass.bytes} B${inChain ? ' (second hop of a chain)' : ''}`;
        assert.equal(r.success, !tooLong, `${what}: ${r.success ? 'accepted' : JSON.stringify(r.error.issues)}`);
        if (tooLong) {
          const issue = r.error!.issues[0]!;
          assert.deepEqual(issue.path.slice(0, 4), ['egress', 'pools', 'up', 'proxies'], what);
          if (inChain) assert.deepEqual(issue.path.slice(4), [0, 'chain', 1], what);
          else assert.deepEqual(issue.path.slice(4), [0], what);
          const which = user.bytes > 255 ? `user name is ${user.bytes} bytes` : `password is ${pass.bytes} bytes`;
          assert.ok(issue.message.includes(which) && issue.message.includes('255'), `${what}: ${issue.message}`);
          // A credential of a few bytes is found in any English sentence by chance (seed
          // 3739498832: a 1-byte password): only one long enough to be told from the words is looked for.
          const shown = (t: string): boolean => t.length >= 8 && issue.message.includes(t);
          assert.ok(!shown(user.text) && !shown(pass.text), `${what}: the message must not show the credentials`);
        }
      }
    });
  });

  it('the client refuses to send them (no truncated length byte reaches the upstream)', async () => {
    await seededRun('socks5-credential-client', async (rand) => {
      let authBytes = 0;
      const sockets: Socket[] = [];
      /** The upstream's side of each connection closing, in accept order. */
      const closed: Array<Promise<void>> = [];
      // An upstream that asks for RFC 1929 and counts every byte it gets after the greeting.
      const server = createServer((sock) => {
        sockets.push(sock);
        sock.on('error', () => {});
        closed.push(new Promise((r) => sock.once('close', () => r())));
        let greeted = false;
        sock.on('data', (c: Buffer) => {
          if (!greeted) {
            greeted = true;
            sock.write(Buffer.from([5, 2]));
            authBytes += Math.max(0, c.length - (2 + c[1]!));
            return;
          }
          authBytes += c.length;
        });
      });
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const port = (server.address() as AddressInfo).port;
      try {
        for (let i = 0; i < 6; i++) {
          const long = credential(rand, between(rand, 256, 600));
          const short = credential(rand, between(rand, 1, 255));
          const userLong = i % 2 === 0;
          const ep = parseProxyUrl(`socks5://127.0.0.1:${port}`);
          ep.username = userLong ? long.text : short.text;
          ep.password = userLong ? short.text : long.text;
          const before = authBytes;
          const sock = connect({ host: '127.0.0.1', port });
          sock.on('error', () => {});
          sockets.push(sock);
          const f = await socks5Handshake(sock, ep, 'connect', { host: 'example.test', port: 443 }, 2000).then(
            (r) => {
              r.socket.destroy();
              return r;
            },
            (err: unknown) => err,
          );
          const what = `${userLong ? 'user name' : 'password'} of ${long.bytes} bytes`;
          assert.ok(f instanceof Failure, `${what}: ${String(f)}`);
          assert.equal(f.type, 'proxy_configuration_error', `${what}: ${f.detail}`);
          assert.match(f.detail ?? '', /255/, what);
          // The refusal came before any credential byte was written: counted once the upstream saw the close.
          assert.ok(sock.destroyed, `${what}: the connection is closed`);
          await closed[i];
          assert.equal(authBytes, before, `${what}: bytes of a truncated sub-negotiation reached the upstream`);
        }
      } finally {
        for (const s of sockets) s.destroy();
        server.close();
      }
    });
  });
});
