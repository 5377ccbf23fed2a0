import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { validateConfig } from '../../src/config/load.js';
import { startRuntime, type Runtime } from '../../src/cli/runtime.js';
import { createLogger } from '../../src/observe/access-log.js';
import { startLab, type Lab } from '../../src/lab/index.js';
import { hashPassword } from '../../src/tenants/password-hash.js';
import { withTestUpstreamClient } from './upstream-client.js';
import { withTestFront } from './front.js';

/**
 * The rig of the probes that loop through this process's forward proxy back into its own
 * listeners (test/observe/admin-via-forward, test/gateway/trust-via-forward and its
 * `--workers` twin): a runtime with a
 * reverse gateway in front of a lab and a forward proxy whose one user, `mallory`, may reach
 * loopback only (rules deny by default, allow 127.0.0.0/8 and ::1).
 */
export const MALLORY_PASSWORD = 'pw-0123456789';
/** mallory's `Proxy-Authorization`. */
export const MALLORY_AUTH = `Basic ${Buffer.from(`mallory:${MALLORY_PASSWORD}`).toString('base64')}`;

export interface LoopbackForwardRuntime {
  rt: Runtime;
  lab: Lab;
  /** The runtime's log lines, as written. */
  lines: string[];
  gatewayPort: number;
  proxyPort: number;
}

/** Start it; `reverse` gives the config's reverse part (listeners, clusters, routes, admin…) for the lab. */
export async function startLoopbackForwardRuntime(reverse: (lab: Lab) => Record<string, unknown>): Promise<LoopbackForwardRuntime> {
  const lab = await startLab();
  const hash = await hashPassword(MALLORY_PASSWORD, { N: 1024, r: 8, p: 1 });
  const lines: string[] = [];
  const logger = createLogger({ destination: new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) }) });
  const config = validateConfig(withTestFront(withTestUpstreamClient({
    ...reverse(lab),
    forward: {
      listeners: [{ address: '127.0.0.1', port: 0 }],
      auth: { required: true, users: [{ name: 'mallory', password: hash }] },
      rules: { defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.0/8', '::1/128'] }], connectPorts: ['1-65535'] },
      timeouts: { connect: '2s', dns: '2s', handshake: '3s' },
    },
  })));
  const rt = await startRuntime(config, { logger, probeUpstreams: false });
  const proxyPort = (lines.map((l) => JSON.parse(l) as { event?: string; listeners?: Array<{ port: number }> }).find((l) => l.event === 'forward-ready')!).listeners![0]!.port;
  return { rt, lab, lines, gatewayPort: Number(new URL(rt.gateway!.addresses()[0]!.url).port), proxyPort };
}

/**
 * A CONNECT tunnel through the forward proxy at `proxyPort` to `authority` (as mallory unless
 * `proxyAuthorization` says otherwise): the socket, once the proxy answered 200 and sent
 * nothing after its head. Rejects with `CONNECT <authority>: <the proxy's head>` otherwise.
 */
export function openConnectTunnel(proxyPort: number, authority: string, proxyAuthorization = MALLORY_AUTH): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const sock = connect(proxyPort, '127.0.0.1');
    let got = '';
    const onData = (c: Buffer): void => {
      got += c.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      sock.off('data', onData);
      if (!got.startsWith('HTTP/1.1 200')) reject(new Error(`CONNECT ${authority}: ${got.slice(0, end)}`));
      else if (end + 4 !== got.length) reject(new Error('bytes after the CONNECT answer'));
      else resolve(sock);
    };
    sock.on('data', onData);
    sock.on('error', reject);
    sock.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${proxyAuthorization}\r\n\r\n`);
  });
}
