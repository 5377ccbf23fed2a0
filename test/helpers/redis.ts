import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';

/** The redis-server binary, or undefined (tests that need it skip, saying so). */
export function redisBinary(): string | undefined {
  for (const p of ['/usr/bin/redis-server', '/usr/local/bin/redis-server']) {
    if (spawnSync(p, ['--version']).status === 0) return p;
  }
  return undefined;
}

export const NO_REDIS = 'redis-server is not installed (apt-get install redis-server; .ci/run installs it)';

/**
 * A loopback port free now, for a server whose port must be known before it starts (Redis,
 * Pebble's validation targets). Taken outside the kernel's ephemeral range
 * (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 here): a port from `listen(0)` is in
 * that range, so between its close and the server's listen any outgoing connection could take
 * it (CI run of session 13: EADDRINUSE in the ACME-through-Redis test). Ports below it are
 * never handed out by the kernel; the tests run one file at a time.
 */
/** The ports `freePort` gave this process (a few hundred at most per test file). */
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const from = 20_000;
  const to = Math.min(low, 32_768) - 1;
  for (let i = 0; i < 50; i++) {
    const port = from + Math.floor(Math.random() * (to - from + 1));
    // Never the same port twice in one test process: a port handed out is usually not bound yet
    // when the next is asked for (acmeSite's two ports, then Pebble's six: CI run of session
    // 40, EADDRINUSE on 127.0.0.1:32500 in the ACME-through-Redis test).
    if (handedOut.has(port)) continue;
    const s = createServer();
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      await new Promise((r) => s.close(r));
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`freePort: no free port found in ${from}-${to} after 50 tries`);
}

/**
 * `n` distinct loopback ports free now (`freePort`'s way: outside the kernel's ephemeral
 * range). Two `listen(0)`-then-close picks in a row can return the same port (CI run of session
 * 15: the workers test's admin port and forward listener collided), so the ports are checked
 * against each other.
 */
export async function freePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

function ephemeralRange(): [number, number] {
  try {
    const [a, b] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (a! > 21_000 && b! >= a!) return [a!, b!];
  } catch {
    // not Linux: the IANA dynamic range starts at 49152
  }
  return [32_768, 60_999];
}

/** A Redis of the test's own on a loopback port: no persistence, killed and restarted at will. */
export class TestRedis {
  readonly port: number;
  readonly url: string;
  readonly #bin: string;
  #child: ChildProcess | undefined;

  private constructor(bin: string, port: number) {
    this.#bin = bin;
    this.port = port;
    this.url = `redis://127.0.0.1:${port}`;
  }

  static async start(): Promise<TestRedis | undefined> {
    const bin = redisBinary();
    if (bin === undefined) return undefined;
    const r = new TestRedis(bin, await freePort());
    await r.restart();
    return r;
  }

  /** Start (again) on the same port; resolves when it accepts connections. */
  async restart(): Promise<void> {
    const child = spawn(this.#bin, ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10_000);
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(t);
          resolve();
        }
      });
      child.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`redis-server exited (${code}): ${out}`));
      });
    });
    child.stdout!.resume();
  }

  /** SIGSTOP: Redis hangs (connections stay open, nothing is answered) until `resume`. */
  pause(): void {
    if (this.#child?.exitCode === null) this.#child.kill('SIGSTOP');
  }

  /** SIGCONT after `pause`: Redis answers what waited, in order. */
  resume(): void {
    if (this.#child?.exitCode === null) this.#child.kill('SIGCONT');
  }

  /** SIGKILL: the store vanishes at once, with everything in it. */
  async kill(): Promise<void> {
    const c = this.#child;
    this.#child = undefined;
    if (!c || c.exitCode !== null) return;
    const exited = once(c, 'exit');
    c.kill('SIGKILL'); // also ends a paused (SIGSTOPped) one
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
  }
}
