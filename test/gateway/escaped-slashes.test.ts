import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { RawConn, parseHead } from '../helpers/raw-conn.js';
import { startScriptedUpstream, type ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { answerOk, sendRouted, type Routed } from '../helpers/routed.js';
import { everyCase, seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * `escapedSlashes` (top level, beside underscoreHeaders; Envoy's
 * path_with_escaped_slashes_action): `%2F` and `%5C` in a path stay encoded and are not
 * separators, so `/admin%2Fpanel` took the `/` route while an upstream that decodes them
 * (nginx) reads `/admin/panel`. `keep` (the default) is that; `reject` answers 400
 * (http_request_error) for a path with one; `decode` reads `%2F` as `/` and `%5C` as `\`
 * before normalising and routing, and forwards the decoded path (a backslash is refused).
 *
 * A gateway for each setting and one without it, the same routes on the same upstreams. The
 * model: with `keep` every answer is the unset gateway's; with `reject` too, but for a path
 * with an escaped slash, which is refused; with `decode`, a path is routed and forwarded as
 * the unset gateway routes and forwards the path with its escaped slashes decoded.
 */

let admin: ScriptedUpstream;
let files: ScriptedUpstream;
let pub: ScriptedUpstream;
/** A WebSocket upstream: the paths of the upgrades it switched. */
let ws: Server;
const wsSeen: string[] = [];
const wsSockets = new Set<Duplex>();
const gws: Record<'unset' | 'keep' | 'reject' | 'decode', TestGateway | undefined> = { unset: undefined, keep: undefined, reject: undefined, decode: undefined };

before(async () => {
  admin = await startScriptedUpstream(answerOk);
  files = await startScriptedUpstream(answerOk);
  pub = await startScriptedUpstream(answerOk);
  ws = createServer(answerOk);
  ws.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
    wsSeen.push(req.url!);
    wsSockets.add(socket);
    socket.on('error', () => {});
    socket.end('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
  });
  await new Promise<void>((r) => ws.listen(0, '127.0.0.1', r));
  const wsUrl = `http://127.0.0.1:${(ws.address() as AddressInfo).port}`;
  for (const mode of ['unset', 'keep', 'reject', 'decode'] as const) {
    gws[mode] = await startTestGateway({
      clusters: { admin: { endpoints: [admin.url] }, files: { endpoints: [files.url] }, pub: { endpoints: [pub.url] }, ws: { endpoints: [wsUrl] } },
      ...(mode === 'unset' ? {} : { escapedSlashes: mode }),
      routes: [
        { match: { pathPrefix: '/ws/' }, cluster: 'ws' },
        { match: { pathPrefix: '/admin' }, cluster: 'admin' },
        { match: { pathPrefix: '/files/' }, cluster: 'files', stripPrefix: true },
        { cluster: 'pub' },
      ],
    });
  }
});

after(async () => {
  for (const g of Object.values(gws)) await g?.close();
  for (const u of [admin, files, pub]) await u?.close();
  for (const s of wsSockets) s.destroy();
  ws?.closeAllConnections();
  await new Promise<void>((r) => (ws ? ws.close(() => r()) : r()));
});

async function send(gw: TestGateway, target: string): Promise<Routed> {
  return sendRouted(gw.port, target, { admin, files, pub });
}

const ESCAPED = /%2F|%5C/i;

function decoded(target: string): string {
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  return path.replace(/%2F/gi, '/').replace(/%5C/gi, '\\') + (q < 0 ? '' : target.slice(q));
}

function refused(o: Routed, target: string): void {
  assert.equal(o.status, 400, target);
  assert.equal(o.reached, undefined, `${target} reached ${JSON.stringify(o.reached)}`);
  assert.match(o.proxyStatus ?? '', /error=http_request_error/, target);
}

describe('escapedSlashes: keep, reject, decode', () => {
  test('the examples: the route each takes and the path its upstream gets', { timeout: 60_000 }, async () => {
    const cases: Array<[string, 'keep' | 'reject' | 'decode', string | 400, string?]> = [
      ['/admin%2Fpanel', 'keep', 'pub', '/admin%2Fpanel'],
      ['/admin%2Fpanel', 'reject', 400],
      ['/admin%2Fpanel', 'decode', 'admin', '/admin/panel'],
      ['/admin%2fpanel?a=%2F', 'decode', 'admin', '/admin/panel?a=%2F'],
      ['/files%2Fa%2Fb', 'decode', 'files', '/a/b'],
      ['/files/a%2Fb', 'keep', 'files', '/a%2Fb'],
      ['/files/a%2Fb', 'decode', 'files', '/a/b'],
      ['/x/..%2Fadmin', 'keep', 400],
      ['/x/..%2Fadmin', 'decode', 'admin', '/admin'],
      ['/%2F%2Fadmin', 'decode', 'admin', '/admin'],
      ['/admin%5Cpanel', 'keep', 'pub', '/admin%5Cpanel'],
      ['/admin%5Cpanel', 'reject', 400],
      ['/admin%5cpanel', 'decode', 400],
      ['/x?q=%2F', 'reject', 'pub', '/x?q=%2F'],
      ['/a%252Fb', 'reject', 'pub', '/a%252Fb'],
    ];
    await everyCase(cases, async ([target, mode, where, url]) => {
      const o = await send(gws[mode]!, target);
      if (where === 400) return refused(o, `${mode} ${target}`);
      assert.equal(o.status, 200, `${mode} ${target}`);
      assert.deepEqual(o.reached, { upstream: where, url }, `${mode} ${target}`);
    }, 'examples');
  });

  test('property: seeded paths with escaped slashes, under each setting, against the unset gateway', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    const parts = ['admin', 'files', 'x', '', '.', '..', '%2F', '%2f', '%5C', '%5c', 'admin%2Fpanel', 'files%2F', '..%2F', '%2F..', '%2e%2e', 'a;b', '%41', '%252F'];
    await withSeed(rand, async () => {
      for (let i = 0; i < 60; i++) {
        const segs: string[] = [];
        for (let j = 1 + rand.int(4); j > 0; j--) segs.push(rand.pick(parts) + (rand.next() < 0.4 ? rand.pick(parts) : ''));
        const target = '/' + segs.join('/') + (rand.next() < 0.2 ? '?q=%2Fadmin' : '');
        const escaped = ESCAPED.test(target.split('?')[0]!);
        const unset = await send(gws.unset!, target);
        assert.ok([200, 400].includes(unset.status), `unset ${target}: ${unset.status}`);
        assert.deepEqual(await send(gws.keep!, target), unset, `keep ${target}: not the default's answer`);
        const rejected = await send(gws.reject!, target);
        if (escaped) refused(rejected, `reject ${target}`);
        else assert.deepEqual(rejected, unset, `reject ${target}: not the default's answer`);
        const model = escaped ? await send(gws.unset!, decoded(target)) : unset;
        const dec = await send(gws.decode!, target);
        assert.equal(dec.status, model.status, `decode ${target}: as ${decoded(target)}`);
        assert.deepEqual(dec.reached, model.reached, `decode ${target}: as ${decoded(target)}`);
        if (dec.reached !== undefined) assert.ok(!ESCAPED.test(dec.reached.url.split('?')[0]!), `decode ${target}: forwarded ${dec.reached.url}`);
      }
    });
  });

  test('an Upgrade request is checked the same way: refused under reject, routed and forwarded decoded under decode', { timeout: 30_000 }, async () => {
    const offer = async (gw: TestGateway, target: string): Promise<number> => {
      const conn = new RawConn(gw.port);
      try {
        await conn.write(`GET ${target} HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
        const text = await conn.waitFor((t, ended) => ended || /\r\n\r\n/.test(t), 10_000, 'an answer');
        return parseHead(text)?.status ?? 0;
      } finally {
        conn.destroy();
      }
    };
    const n = wsSeen.length;
    assert.equal(await offer(gws.reject!, '/ws%2Fchat'), 400);
    assert.equal(await offer(gws.reject!, '/ws/a%5Cb'), 400);
    assert.equal(wsSeen.length, n, 'a refused upgrade reached the upstream');
    assert.equal(await offer(gws.decode!, '/ws%2Fchat'), 101);
    assert.equal(await offer(gws.decode!, '/ws/a%5Cb'), 400);
    assert.deepEqual(wsSeen.slice(n), ['/ws/chat']);
  });
});
