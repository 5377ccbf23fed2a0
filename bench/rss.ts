// Memory and CPU of a process tree, read from /proc (Linux only).
import fs from 'node:fs';

const CLK_TCK = 100; // USER_HZ; 100 on every Linux architecture Node supports

/** The root pid and all its descendants. */
export function treePids(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const ent of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue;
    const stat = readStat(Number(ent));
    if (!stat) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push(Number(ent));
    children.set(stat.ppid, list);
  }
  const out: number[] = [];
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift()!;
    out.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return out;
}

interface Stat {
  ppid: number;
  /** User and system time, the reaped children's included. */
  ticks: number;
  /** System time alone (field 15, and cstime). */
  systemTicks: number;
  /** Minor page faults (field 10, and cminflt): pages the kernel mapped in without I/O. */
  minorFaults: number;
}

function readStat(pid: number): Stat | undefined {
  try {
    const raw = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; fields after it are fixed.
    const rest = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    // rest[0] = state (field 3), ppid = field 4, utime = 14, stime = 15, cutime = 16, cstime = 17.
    // cutime/cstime hold the CPU of children that exited and were reaped, so a tree whose
    // helpers come and go (Dante) does not lose their time when they leave /proc.
    const systemTicks = Number(rest[12]) + Number(rest[14]);
    return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[13]) + systemTicks, systemTicks, minorFaults: Number(rest[7]) + Number(rest[8]) };
  } catch {
    return undefined;
  }
}

function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export function treeRssKb(root: number): number {
  return treePids(root).reduce((sum, pid) => sum + rssKb(pid), 0);
}

export function treeCpuSeconds(root: number): number {
  return treePids(root).reduce((sum, pid) => sum + (readStat(pid)?.ticks ?? 0), 0) / CLK_TCK;
}

/** The part of `treeCpuSeconds` spent in the kernel. */
export function treeSystemSeconds(root: number): number {
  return treePids(root).reduce((sum, pid) => sum + (readStat(pid)?.systemTicks ?? 0), 0) / CLK_TCK;
}

/** Minor page faults of the tree so far (each a kernel entry that maps a page, zeroed when new). */
export function treeMinorFaults(root: number): number {
  return treePids(root).reduce((sum, pid) => sum + (readStat(pid)?.minorFaults ?? 0), 0);
}

export interface SampleResult {
  peakRssKb: number;
  samplesKb: number[];
  /** CPU used by the tree during sampling, as % of one core. */
  cpuPercent: number;
}

/** Samples the RSS of a process tree at a fixed interval until stopped. */
export class TreeSampler {
  #timer: NodeJS.Timeout | undefined;
  #samples: number[] = [];
  #cpu0 = 0;
  #t0 = 0;

  constructor(readonly root: number, readonly intervalMs = 250) {}

  start(): this {
    this.#cpu0 = treeCpuSeconds(this.root);
    this.#t0 = performance.now();
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), this.intervalMs);
    return this;
  }

  #sample(): void {
    this.#samples.push(treeRssKb(this.root));
  }

  stop(): SampleResult {
    if (this.#timer) clearInterval(this.#timer);
    this.#sample();
    const elapsed = (performance.now() - this.#t0) / 1000;
    const cpu = treeCpuSeconds(this.root) - this.#cpu0;
    return {
      peakRssKb: Math.max(...this.#samples),
      samplesKb: this.#samples,
      cpuPercent: elapsed > 0 ? (100 * cpu) / elapsed : 0,
    };
  }
}
