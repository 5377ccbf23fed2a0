// Running wrk (one thread, fixed duration) with a generated Lua script that
// shapes the request and prints the summary as one JSON line.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { trackChild } from './procs.js';

export interface WrkRequest {
  method: 'GET' | 'POST';
  /** Path, or a full URL for absolute-form requests through a forward proxy. */
  path: string;
  /** Host header; wrk defaults it to the target (the proxy). */
  host?: string;
  connectionClose?: boolean;
  /** Request body size in bytes. */
  bodyBytes?: number;
  /**
   * Think time per connection before each request, in ms (uniformly spread ±50 %):
   * a fixed offered load (connections × 1000 / delayMs req/s) instead of "as fast as
   * it answers", so contenders can be compared at the same load.
   */
  delayMs?: number;
  /** Proxy-Authorization value (a forward proxy with authentication). */
  proxyAuthorization?: string;
}

export interface WrkResult {
  requests: number;
  durationS: number;
  bytes: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  /** Latency in microseconds. */
  latencyUs: { p50: number; p90: number; p99: number; max: number; mean: number };
}

const DONE_LUA = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f,"mean":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
`;

export function luaScript(req: WrkRequest): string {
  const lines = [`wrk.method = "${req.method}"`, `wrk.path = "${req.path}"`];
  if (req.host) lines.push(`wrk.headers["Host"] = "${req.host}"`);
  if (req.connectionClose) lines.push('wrk.headers["Connection"] = "close"');
  if (req.proxyAuthorization) lines.push(`wrk.headers["Proxy-Authorization"] = "${req.proxyAuthorization}"`);
  if (req.bodyBytes) {
    lines.push(`wrk.body = string.rep("x", ${req.bodyBytes})`);
    lines.push('wrk.headers["Content-Type"] = "application/octet-stream"');
  }
  if (req.delayMs) {
    const d = req.delayMs;
    lines.push(`delay = function() return math.random(${Math.round(d / 2)}, ${Math.round(d * 1.5)}) end`);
  }
  return `${lines.join('\n')}\n${DONE_LUA}`;
}

export interface WrkRun {
  port: number;
  connections: number;
  durationS: number;
  request: WrkRequest;
  /** CPU list for taskset; undefined = unpinned. */
  cpus?: string | undefined;
  /** Directory for the generated Lua script. */
  scriptDir: string;
}

/** Run wrk once. Rejects on a failed run; killed if it overruns its duration. */
export function runWrk(opts: WrkRun): Promise<WrkResult> {
  const name = `${opts.request.method}-${opts.request.path.replace(/[^a-z0-9]+/gi, '_')}-${opts.request.connectionClose ? 'close' : 'ka'}${opts.request.delayMs ? `-d${opts.request.delayMs}` : ''}${opts.request.proxyAuthorization ? '-auth' : ''}.lua`;
  const script = path.join(opts.scriptDir, name);
  fs.writeFileSync(script, luaScript(opts.request));
  const duration = Math.max(1, Math.round(opts.durationS));
  const args = ['-t1', `-c${opts.connections}`, `-d${duration}s`, '--latency', '--timeout', '5s', '-s', script, `http://127.0.0.1:${opts.port}/`];
  const [file, argv] = opts.cpus !== undefined ? ['taskset', ['-c', opts.cpus, 'wrk', ...args]] : ['wrk', args];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(child);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), (duration + 20) * 1000);
    child.on('error', (e) => {
      clearTimeout(killer);
      reject(e);
    });
    // 'close', not 'exit': 'exit' can come before the last of stdout is read, which made a
    // whole duel batch stop on "wrk exited 0:" with the summary line still in the pipe.
    child.on('close', (code) => {
      clearTimeout(killer);
      const line = out.split('\n').find((l) => l.startsWith('WRKJSON '));
      if (!line) {
        reject(new Error(`wrk exited ${code}: ${(err || out).trim().split('\n').slice(-3).join(' | ')}`));
        return;
      }
      const j = JSON.parse(line.slice(8)) as Record<string, number>;
      resolve({
        requests: j.requests!,
        durationS: j.duration_us! / 1e6,
        bytes: j.bytes!,
        errors: { connect: j.connect!, read: j.read!, write: j.write!, status: j.status!, timeout: j.timeout! },
        latencyUs: { p50: j.p50!, p90: j.p90!, p99: j.p99!, max: j.max!, mean: j.mean! },
      });
    });
  });
}
