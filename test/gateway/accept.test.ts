import assert from 'node:assert/strict';
import dc from 'node:diagnostics_channel';
import { once } from 'node:events';
import net, { type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { kAccepting } from '../../src/net/index.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { seededRandom } from '../helpers/seeded.js';
import { certDir, type CertDir, type IssuedCert, type TestCa } from '../helpers/tls-certs.js';

/**
 * The reverse gateway's listeners accept through `installAccept` (src/net/accept.ts), as the
 * forward listener does: each accepted socket is made with an options object that keeps one V8
 * map. Node's own accept gave every socket new maps in Node 20's V8; with a new client
 * connection per request that was ~20 % of the reverse gateway's CPU per request (the
 * `close-1k` duel, docs/benchmarks.md §36). test/net/accept.test.ts holds the differential
 * against Node's accept and the `--log-maps` count (which failed first for `gatewise proxy`).
 *
 * Here: every kind of reverse listener (node:http front, net front, TLS) has it installed, and a
 * seeded family of requests, each on a new connection (close by the client's `Connection:
 * close`, by HTTP/1.0, or by the client after one answer), is answered whole on each, with the
 * listener's connection count back at zero after.
 */

const SEED = Number(process.env.GATEWISE_SEED ?? Date.now() % 1_000_000);

let upstream: ScriptedUpstream;
let dir: CertDir;
let ca: TestCa;
let cert: IssuedCert;

before(async () => {
  upstream = await startScriptedUpstream((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`path=${req.url ?? ''} n=${String(req.headers['x-n'])}`);
  });
  dir = certDir('gatewise-accept-');
  ca = dir.ca('Accept Test CA');
  cert = ca.issue('a.test', { dns: ['a.test'], ip: ['127.0.0.1'] });
});

after(async () => {
  await upstream.close();
  dir.remove();
});

type Kind = 'node' | 'net' | 'tls';

function listenerOf(kind: Kind): Record<string, unknown> {
  if (kind === 'tls') return { address: '127.0.0.1', port: 0, tls: { certificates: [{ cert: cert.certFile, key: cert.keyFile }] } };
  return { address: '127.0.0.1', port: 0, front: kind };
}

/** One connection: `head` written, everything read until the server or the client ends it. */
function exchange(kind: Kind, port: number, head: string, closeAfterAnswer: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const s: Socket = kind === 'tls' ? tlsConnect({ host: '127.0.0.1', port, ca: ca.cert, servername: 'a.test' }) : net.connect(port, '127.0.0.1');
    let got = '';
    s.setEncoding('latin1');
    s.on(kind === 'tls' ? 'secureConnect' : 'connect', () => s.write(head));
    s.on('data', (d: string) => {
      got += d;
      // Keep-alive answer read whole (Content-Length): the client closes.
      if (closeAfterAnswer && /\r\n\r\n/.test(got)) {
        const m = /content-length: (\d+)/i.exec(got);
        if (m && got.length - got.indexOf('\r\n\r\n') - 4 >= Number(m[1])) s.end();
      }
    });
    s.on('error', reject);
    s.on('close', () => resolve(got));
  });
}

describe(`reverse listeners accept through installAccept (seed ${SEED}, replay: GATEWISE_SEED=${SEED})`, () => {
  for (const kind of ['node', 'net', 'tls'] as const) {
    it(`the ${kind === 'tls' ? 'TLS' : `${kind} front`} listener installs it and answers a seeded family of one-request connections`, async () => {
      const r = seededRandom(SEED + kind.length);
      const tg: TestGateway = await startTestGateway({
        listeners: [listenerOf(kind) as never],
        clusters: { up: { endpoints: [upstream.url] } },
        routes: [{ cluster: 'up' }],
      });
      let server: Server | undefined;
      const accepted: Socket[] = [];
      const onSocket = (m: unknown): void => {
        const s = (m as { socket: Socket & { server?: Server } }).socket;
        if ((s.server?.address() as net.AddressInfo | null)?.port !== tg.port) return;
        server = s.server;
        accepted.push(s);
      };
      dc.subscribe('net.server.socket', onSocket);
      try {
        const n = 15 + r.int(20);
        for (let i = 0; i < n; i++) {
          const how = r.pick(['close', 'http10', 'client'] as const);
          const path = `/p${r.int(1000)}${r.int(2) === 0 ? '?q=' + r.int(100) : ''}`;
          const extra = Array.from({ length: r.int(6) }, (_, k) => `x-extra-${k}: ${'v'.repeat(1 + r.int(40))}\r\n`).join('');
          const head =
            how === 'http10'
              ? `GET ${path} HTTP/1.0\r\nhost: a.test\r\nx-n: ${i}\r\n${extra}\r\n`
              : `GET ${path} HTTP/1.1\r\nhost: a.test\r\nx-n: ${i}\r\n${extra}${how === 'close' ? 'connection: close\r\n' : ''}\r\n`;
          const got = await exchange(kind, tg.port, head, how === 'client');
          const what = `seed ${SEED} ${kind} #${i} (${how} ${path})`;
          assert.match(got, /^HTTP\/1\.1 200 OK\r\n/, what);
          assert.ok(got.endsWith(`path=${path} n=${i}`), `${what}: ${JSON.stringify(got.slice(-80))}`);
        }
        assert.ok(server !== undefined, 'the listener published its accepted sockets');
        assert.equal((server as unknown as Record<symbol, unknown>)[kAccepting], true);
        assert.equal(accepted.length, n, 'one accepted socket per connection');
        // Every accepted connection counted and let go once closed (the count close() waits on).
        await Promise.all(accepted.map((s) => (s.closed ? undefined : once(s, 'close'))));
        const open = await new Promise<number>((resolve, reject) => server!.getConnections((err, c) => (err ? reject(err) : resolve(c))));
        assert.equal(open, 0, 'connections still counted');
      } finally {
        dc.unsubscribe('net.server.socket', onSocket);
        await tg.close();
      }
    });
  }
});
