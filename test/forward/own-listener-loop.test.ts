import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import test from 'node:test';
import { SocksClient } from 'socks';
import { between, seededRun } from '../helpers/seeded.js';
import { PASSWORD, USER, accessLines, basic, readUntil, startOrigin, startTestProxy, userHashes, waitFor } from './helpers.js';

/**
 * A forward user whose rules allow loopback asked the proxy to connect to the proxy's own
 * listener. The connection it opened came from this host's loopback address, so a user with
 * an address allowlist on loopback (`allowFrom: [127.0.0.1]`: local apps without a password)
 * was picked for it: a password user became the allowlisted one, its plan, quota and exits,
 * and the allowlist was no second factor any more. A proxy connecting to itself serves no
 * one: its own listeners are refused like the admin listener, whatever the rules.
 */

function dialFrom(port: number, localAddress: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** The head of the proxy's answer to `head` sent from `from`. */
async function answerTo(port: number, from: string, head: string): Promise<string> {
  const s = await dialFrom(port, from);
  try {
    s.write(head);
    const got = await readUntil(s, (b) => b.includes('\r\n\r\n'), undefined, `the answer to ${head.split('\r\n')[0]}`);
    return got.toString('latin1').split('\r\n\r\n')[0]!;
  } finally {
    s.destroy();
  }
}

test('the forward proxy never connects to its own listener (CONNECT, absolute-form, SOCKS5; listener on 127.0.0.1 or 0.0.0.0; spellings): a password user cannot become an address-allowlisted one through a loop', { timeout: 120_000 }, async () => {
  const origin = await startOrigin();
  try {
    await seededRun('own forward listener', async (rand) => {
      for (let round = 0; round < 4; round++) {
        const wildcard = round % 2 === 1;
        const p = await startTestProxy({
          listeners: [{ address: wildcard ? '0.0.0.0' : '127.0.0.1', port: 0 }],
          auth: { users: [{ name: USER, password: (await userHashes())[0] }, { name: 'local', allowFrom: ['127.0.0.1'] }] },
        });
        try {
          // The control: from 127.0.0.1 with no password the client is `local`, and reaches the origin.
          assert.match(await answerTo(p.port, '127.0.0.1', `CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\n\r\n`), /^HTTP\/1\.1 200/, 'local, by its address');
          // alice, from 127.0.0.2 (not allowlisted), names the proxy itself in one spelling.
          const spellings = ['127.0.0.1', '[::ffff:127.0.0.1]', 'localhost', ...(wildcard ? [`127.0.0.${between(rand, 2, 254)}`] : [])];
          const host = spellings[between(rand, 0, spellings.length - 1)]!;
          const target = `${host}:${p.port}`;
          const way = between(rand, 0, 2);
          const what = `${wildcard ? '0.0.0.0' : '127.0.0.1'} listener, ${['CONNECT', 'absolute-form', 'SOCKS5'][way]} to ${target}`;
          // `localhost` is 127.0.0.1 then ::1 (net/localhost.ts): the first is refused, the second
          // has nothing listening on it (the listener is IPv4), so its answer is that refusal.
          const errors = host === 'localhost' ? /error=(destination_ip_prohibited|connection_refused)/i : /error=destination_ip_prohibited/i;
          if (way === 0 || way === 1) {
            const head =
              way === 0
                ? await answerTo(p.port, '127.0.0.2', `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: ${basic()}\r\n\r\n`)
                : await answerTo(p.port, '127.0.0.2', `GET http://${target}/x HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`);
            assert.match(head, /^HTTP\/1\.1 502/, `${what}: ${head}`);
            assert.match(head, errors, `${what}: ${head}`);
          } else {
            const socksHost = host.replace(/^\[|\]$/g, '');
            await assert.rejects(
              SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: p.port, type: 5, userId: USER, password: PASSWORD }, destination: { host: socksHost, port: p.port }, command: 'connect', timeout: 5000, socket_options: { localAddress: '127.0.0.2' } } as Parameters<typeof SocksClient.createConnection>[0]),
              host === 'localhost' ? /Socks5 proxy rejected connection - (NotAllowed|ConnectionRefused)$/ : /Socks5 proxy rejected connection - NotAllowed$/,
              what,
            );
          }
          const refusal = (): Record<string, unknown> | undefined => accessLines(p.lines).find((l) => l.user === USER && l.status !== 200 && l.error !== undefined);
          assert.ok(await waitFor(() => refusal() !== undefined, 5000), `${what}: the refusal's record`);
          if (host !== 'localhost') assert.match(String(refusal()!.detail), /this proxy's own listener/, `${what}: ${JSON.stringify(refusal())}`);
          assert.equal(accessLines(p.lines).filter((l) => l.user === 'local').length, 1, `${what}: no record of local but the control's`);
        } finally {
          await p.close();
        }
      }
    });
  } finally {
    await origin.close();
  }
});
