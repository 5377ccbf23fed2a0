import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { seededRandom, withSeed } from '../helpers/seeded.js';
import { GUARD_MS } from '../helpers/time-bounds.js';
import { basic, rawExchange, startTestProxy } from './helpers.js';

/**
 * Finding (newcomer walk-through): docs/forward-proxy.md, "Limits and their refusals", lists
 * `rules.connectPorts` / `rules.httpPorts` among the refusals and says every HTTP refusal
 * carries `Proxy-Status: NAME;error=http_request_denied;details="…"` naming the rule. A CONNECT
 * to a port outside connectPorts (a newcomer's `curl -x … https://host:8443/` against the
 * default `[443]`) was answered a bare `error=http_request_denied` and a page saying only
 * "The gateway's policy does not allow this request": the reason (which port, which rule) was
 * in the access log alone. The port is the client's own request, not the network's topology,
 * so it is shown as a plan's refusal is, whatever `revealDetails` says.
 *
 * Seeded ports outside each list, CONNECT and absolute-form GET, `revealDetails` off (the default).
 */

const details = (res: string): string | undefined => /\r\nproxy-status: [^\r]*;details=("(?:[^"\\]|\\.)*")/i.exec(res)?.[1];

describe('a refused port says which port and which rule, to the client', () => {
  it('CONNECT outside connectPorts and GET outside httpPorts: 403 with details in Proxy-Status and on the page (seeded ports)', async () => {
    const rand = seededRandom();
    await withSeed(rand, async () => {
      const p = await startTestProxy({ rules: { connectPorts: [443], httpPorts: [80, 443] } });
      try {
        for (let i = 0; i < 6; i++) {
          let port = 1 + rand.int(65535);
          if (port === 443 || port === 80) port = 444;
          const connect = await rawExchange(p.port, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${basic()}\r\n\r\n`, GUARD_MS);
          assert.match(connect, /^HTTP\/1\.1 403 /, connect);
          assert.equal(details(connect), JSON.stringify(`CONNECT to port ${port} is not allowed`), connect);
          const get = await rawExchange(p.port, `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${basic()}\r\nConnection: close\r\n\r\n`, GUARD_MS);
          assert.match(get, /^HTTP\/1\.1 403 /, get);
          assert.equal(details(get), JSON.stringify(`HTTP request to port ${port} is not allowed`), get);
          assert.match(get.slice(get.indexOf('\r\n\r\n')), new RegExp(`HTTP request to port ${port} is not allowed`), get);
        }
      } finally {
        await p.close();
      }
    });
  });
});
