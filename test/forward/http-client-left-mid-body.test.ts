import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { between, everyCase, seededRun } from '../helpers/seeded.js';
import { accessLines } from './helpers.js';
import { bounded, withExitHop } from './front-clients.js';

/**
 * An absolute-form request whose client leaves in the middle of its body gives one record
 * and one access-log line: 499, ended by the client. Before, a client that closed or
 * half-closed (a FIN) with its body cut short got a second record with no destination: Node's
 * parser, finishing the message at EOF, reported the body cut short (400 http_request_error,
 * phase accept) through the front's clientError path, while the request's own relay recorded
 * the same departure.
 *
 * The family: how the client leaves (a reset, a full close, a half-close), what it sends (a
 * POST with `Expect: 100-continue` the destination never answers, or a plain POST with its
 * Content-Length), how much of its body it sends before it leaves (none, or a seeded part of
 * it). The destination reads and never answers, so the request is in flight when the client
 * leaves. Every wait is an event: the destination having read the head (and the part of the
 * body the relay passes on), the proxy's side of the client connection closing (Node's
 * net.server.socket channel), the request's own record. The parser's report, when there is
 * one, comes at the proxy reading the client's EOF, before its side closes.
 */

type Leave = 'rst' | 'close' | 'half';
type Send = 'expect' | 'post';
const LEAVES: readonly Leave[] = ['rst', 'close', 'half'];
const SENDS: readonly Send[] = ['expect', 'post'];

interface Case {
  leave: Leave;
  send: Send;
  /** Content-Length announced. */
  length: number;
  /** Body bytes sent before leaving (< length). */
  sent: number;
}

/**
 * A destination that reads and never answers; `seen(n)` resolves once a request head and n
 * bytes after it came in (on the one connection the test makes it accept).
 */
async function silentDestination(): Promise<{ server: Server; port: number; sockets: Socket[]; accepted: Promise<void>; seen: (n: number) => Promise<void> }> {
  const sockets: Socket[] = [];
  let onAccepted!: () => void;
  const accepted = new Promise<void>((r) => (onAccepted = r));
  let got = Buffer.alloc(0);
  let body = -1;
  let waiting: { n: number; r: () => void } | undefined;
  const check = (): void => {
    if (waiting !== undefined && body >= waiting.n) waiting.r();
  };
  const server = createServer((s) => {
    sockets.push(s);
    onAccepted();
    s.on('error', () => {});
    s.on('data', (c: Buffer) => {
      if (body >= 0) body += c.length;
      else {
        got = Buffer.concat([got, c]);
        const end = got.indexOf('\r\n\r\n');
        if (end >= 0) body = got.length - end - 4;
      }
      check();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    sockets,
    accepted,
    seen: (n) => new Promise<void>((r) => ((waiting = { n, r }), check())),
  };
}

function head(c: Case, port: number): string {
  const target = `http://127.0.0.1:${port}/up`;
  const expect = c.send === 'expect' ? 'Expect: 100-continue\r\n' : '';
  return `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${c.length}\r\n${expect}\r\n`;
}

async function oneCase(c: Case): Promise<void> {
  const what = `${c.send}, ${c.sent} of ${c.length} body bytes, then ${c.leave}`;
  const dest = await silentDestination();
  await withExitHop(dest, { auth: { required: false } }, what, async ({ client, proxy: p, records, proxySide, onRecord }) => {
    const side = await bounded(proxySide, 5000, `${what}: the proxy's side of the client`);
    const h = head(c, dest.port);
    const body = Buffer.alloc(c.sent, 0x61);
    client.write(c.sent > 0 ? Buffer.concat([Buffer.from(h, 'latin1'), body]) : h);
    // The request is in flight: the destination has its head (and, without Expect, the part of the body sent).
    // A plain POST with no body byte yet: its head goes up with its first body byte, so the destination's accept is the event.
    if (c.send === 'post' && c.sent === 0) await bounded(dest.accepted, 5000, `${what}: the destination accepting the relay's connection`);
    else await bounded(dest.seen(c.send === 'post' ? c.sent : 0), 5000, `${what}: the destination reading the request`);
    // 'close' only (`once` would reject on the socket's 'error', which a reset brings).
    const sideClosed = side.destroyed ? Promise.resolve() : new Promise<void>((r) => side.once('close', () => r()));
    const ownRecord = new Promise<void>((r) => {
      const wake = (): void => void (records.some((x) => x.destination !== undefined) && r());
      onRecord(wake);
      wake();
    });
    if (c.leave === 'rst') client.resetAndDestroy();
    else if (c.leave === 'close') client.destroy();
    else client.end();
    await bounded(Promise.all([sideClosed, ownRecord]), 5000, `${what}: the proxy closing the client's connection and recording the request (${JSON.stringify(records)})`);
    // Anything else recorded for this connection came by its close; the access log writes once the current I/O is done.
    await new Promise<void>((r) => setImmediate(r));
    await new Promise<void>((r) => setImmediate(r));
    const all = JSON.stringify(records);
    assert.equal(records.length, 1, `${what}: one record for one request: ${all}`);
    const rec = records[0]!;
    assert.equal(rec.status, 499, `${what}: 499: ${all}`);
    assert.equal(rec.endedBy, 'client', `${what}: ended by the client: ${all}`);
    const lines = accessLines(p.lines);
    assert.equal(lines.length, 1, `${what}: one access line: ${JSON.stringify(lines)}`);
    assert.equal(lines[0]!.status, 499, `${what}: ${JSON.stringify(lines)}`);
    assert.equal(lines[0]!.endedBy, 'client', `${what}: ${JSON.stringify(lines)}`);
  });
}

describe('an absolute-form request whose client leaves mid-body', () => {
  it('gives one record and one access line, 499 ended by the client (seeded family: how the client leaves, Expect or plain POST, how much of the body was sent)', { timeout: 120_000 }, async () => {
    await seededRun('http-client-left-mid-body', async (rand) => {
      const cases: Case[] = [];
      for (const leave of LEAVES) {
        for (const send of SENDS) {
          const length = between(rand, 2, 64 * 1024);
          cases.push({ leave, send, length, sent: 0 });
          cases.push({ leave, send, length, sent: between(rand, 1, length - 1) });
        }
      }
      await everyCase(cases, async (c) => oneCase(c));
    });
  });
});
