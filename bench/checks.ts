// Single-request checks run before measuring: the origin answers what we
// expect (and keeps POST connections alive), and each contender can serve
// each scenario at all.
import http from 'node:http';
import { BODY_1K, BODY_1M, POST_BODY } from './configs.js';
import { wrkRequest, type Scenario } from './scenarios.js';
import { probeTunnel, type ProxyCredentials } from './tunnel-load.js';
import type { WrkRequest } from './wrk.js';

interface Answer {
  status: number;
  bytes: number;
  reused: boolean;
}

function send(port: number, req: WrkRequest, agent: http.Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (req.host) headers.host = req.host;
    if (req.connectionClose) headers.connection = 'close';
    if (req.proxyAuthorization) headers['proxy-authorization'] = req.proxyAuthorization;
    if (req.bodyBytes) headers['content-type'] = 'application/octet-stream';
    const r = http.request({ host: '127.0.0.1', port, method: req.method, path: req.path, headers, agent, timeout: 5000 }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => (bytes += d.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, reused: r.reusedSocket }));
      res.on('error', reject);
    });
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', reject);
    r.end(req.bodyBytes ? Buffer.alloc(req.bodyBytes, 'x') : undefined);
  });
}

/** The origin serves the right sizes, and a keep-alive connection survives a 64 KiB POST. */
export async function verifyOrigin(port: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const a = await send(port, { method: 'GET', path: '/1k' }, agent);
    if (a.status !== 200 || a.bytes !== BODY_1K) throw new Error(`origin GET /1k: ${a.status}, ${a.bytes} bytes`);
    const p1 = await send(port, { method: 'POST', path: '/post', bodyBytes: POST_BODY }, agent);
    const p2 = await send(port, { method: 'POST', path: '/post', bodyBytes: POST_BODY }, agent);
    if (p1.status !== 200 || p2.status !== 200) throw new Error(`origin POST /post: ${p1.status}/${p2.status}`);
    if (!p2.reused) throw new Error('origin closed the connection after a POST (keep-alive broken)');
    const m = await send(port, { method: 'GET', path: '/1m' }, agent);
    if (m.status !== 200 || m.bytes !== BODY_1M) throw new Error(`origin GET /1m: ${m.status}, ${m.bytes} bytes`);
    if (!m.reused) throw new Error('origin closed the connection after a POST (keep-alive broken)');
  } finally {
    agent.destroy();
  }
}

/** One request of the scenario through the contender; throws with a reason if it fails. */
export async function checkScenario(sc: Scenario, port: number, originPort: number, direct: boolean, auth?: ProxyCredentials): Promise<void> {
  if (sc.wrk) {
    const req = wrkRequest(sc.wrk, originPort, direct, auth);
    const a = await send(port, req);
    if (a.status !== 200) throw new Error(`${req.method} ${req.path} answered ${a.status}`);
    const want = req.path.endsWith('/1k') ? BODY_1K : req.path.endsWith('/1m') ? BODY_1M : undefined;
    if (want !== undefined && a.bytes !== want) throw new Error(`${req.method} ${req.path}: ${a.bytes} bytes, expected ${want}`);
  } else if (sc.tunnel) {
    await probeTunnel({
      proxyPort: port,
      protocol: direct ? 'direct' : sc.tunnel.protocol,
      mode: sc.tunnel.mode,
      targetPort: originPort,
      path: sc.tunnel.path,
      concurrency: 1,
      durationS: 1,
      ...(auth ? { auth } : {}),
    });
  }
}
