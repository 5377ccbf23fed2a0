import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { between, seededRun } from '../helpers/seeded.js';
import { startTestGateway } from '../helpers/gateway.js';
import { GUARD_MS } from '../helpers/time-bounds.js';
import { basic, dial, readUntil, startTestProxy } from '../forward/helpers.js';

/**
 * The `Keep-Alive: timeout=` hint of both faces' answers (the forward proxy's HTTP front, the
 * reverse gateway's node and net fronts) for an idle timeout under a second or not a whole
 * number of seconds. Whole seconds rounded down (never more than the connection is kept);
 * under 1 s no hint at all: `timeout=0` (node:http's floor) tells a client not to reuse the
 * connection, which the proxy does keep. Seeded over 1–999 ms and non-integer seconds.
 */

/** The head of the answer to `request` on a new connection to `port`. */
async function headOf(port: number, request: string): Promise<string> {
  const s = await dial(port);
  s.on('error', () => {});
  try {
    s.write(request);
    const got = await readUntil(s, (b) => b.includes('\r\n\r\n'), GUARD_MS);
    return `${got.toString('latin1').split('\r\n\r\n')[0]!}\r\n`;
  } finally {
    s.destroy();
  }
}

/** The hint's seconds, asserted whole, at least 1 and no longer than `ms`; undefined when the field is absent (then `ms` < 1000). */
function checkHint(head: string, ms: number, what: string): void {
  assert.match(head, /\r\nConnection: keep-alive\r\n/i, `${what}: the connection is kept (${ms} ms)\n${head}`);
  const m = /\r\nKeep-Alive: ([^\r]*)/i.exec(head);
  if (ms < 1000) {
    assert.equal(m, null, `${what}: no Keep-Alive hint for ${ms} ms (a timeout=0 says "do not reuse")\n${head}`);
    return;
  }
  assert.ok(m !== null, `${what}: a Keep-Alive hint for ${ms} ms\n${head}`);
  assert.equal(m[1], `timeout=${Math.floor(ms / 1000)}`, `${what}: ${ms} ms in whole seconds, rounded down\n${head}`);
}

function values(rand: () => number): number[] {
  const out = [between(rand, 1, 999), between(rand, 1, 999), between(rand, 1001, 9999), 1000 * between(rand, 1, 5) + between(rand, 1, 999)];
  return out;
}

describe('Keep-Alive: timeout= under a second and in fractions of one (seeded)', () => {
  it('forward proxy: absent under 1 s, whole seconds rounded down above', async () => {
    await seededRun('forward keep-alive hint', async (rand) => {
      const origin = createServer((req, res) => {
        req.resume();
        res.end('ok');
      });
      origin.listen(0, '127.0.0.1');
      await once(origin, 'listening');
      const port = (origin.address() as AddressInfo).port;
      try {
        for (const ms of values(rand)) {
          const p = await startTestProxy({ timeouts: { clientKeepAlive: `${ms}ms` } });
          try {
            const head = await headOf(p.port, `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`);
            checkHint(head, ms, 'forward');
          } finally {
            await p.close();
          }
        }
      } finally {
        origin.closeAllConnections();
        await new Promise<void>((r) => origin.close(() => r()));
      }
    });
  });

  for (const front of ['node', 'net'] as const) {
    it(`reverse gateway, ${front} front: the same rule`, async () => {
      await seededRun(`reverse keep-alive hint (${front})`, async (rand) => {
        const up = createServer((req, res) => {
          req.resume();
          res.end('ok');
        });
        up.listen(0, '127.0.0.1');
        await once(up, 'listening');
        try {
          for (const ms of values(rand)) {
            const gw = await startTestGateway({
              listeners: [{ address: '127.0.0.1', port: 0, front, keepAliveTimeout: `${ms}ms` }],
              clusters: { up: { endpoints: [`http://127.0.0.1:${(up.address() as AddressInfo).port}`], outlierDetection: { enabled: false } } },
              routes: [{ cluster: 'up', retry: { tries: 1 } }],
            });
            try {
              checkHint(await headOf(gw.port, 'GET / HTTP/1.1\r\nHost: example.test\r\n\r\n'), ms, `reverse ${front}`);
            } finally {
              await gw.close();
            }
          }
        } finally {
          up.closeAllConnections();
          await new Promise<void>((r) => up.close(() => r()));
        }
      });
    });
  }
});
