import { readFile } from 'node:fs/promises';
import type { StoreDump } from '../state/index.js';
import { periodOf } from '../tenants/index.js';
import { formatBytes } from '../text/index.js';
import { answerUsage, command, parseCommand, shortUsage } from './commands.js';

export interface UserUsage {
  user: string;
  day: { up: number; down: number; requests: number };
  month: { up: number; down: number; requests: number };
}

/** Per-user usage for a day and its month, from a state dump. */
export function usageFromDump(dump: StoreDump, at: number): UserUsage[] {
  const day = periodOf('day', at).id;
  const month = periodOf('month', at).id;
  const users = new Map<string, UserUsage>();
  const get = (u: string): UserUsage => {
    let x = users.get(u);
    if (!x) users.set(u, (x = { user: u, day: { up: 0, down: 0, requests: 0 }, month: { up: 0, down: 0, requests: 0 } }));
    return x;
  };
  for (const e of dump.entries) {
    const m = /^usage:(.+):(day|month):([0-9-]+)$/.exec(e.key);
    if (!m || typeof e.value === 'number') continue;
    const [, user, period, id] = m as unknown as [string, string, 'day' | 'month', string];
    if ((period === 'day' && id !== day) || (period === 'month' && id !== month)) continue;
    const slot = get(user)[period];
    slot.up += e.value.up ?? 0;
    slot.down += e.value.down ?? 0;
    slot.requests += e.value.requests ?? 0;
  }
  return [...users.values()].sort((a, b) => a.user.localeCompare(b.user));
}

/** `gatewise usage`: returns the exit code. Output goes to `out` (stdout by default). */
export async function usageCommand(argv: string[], out: { write(s: string): unknown } = process.stdout, err: { write(s: string): unknown } = process.stderr): Promise<number> {
  let values: { state: string; user?: string; date?: string; json?: boolean };
  try {
    values = parseCommand(command('usage'), argv).values as typeof values;
  } catch (e) {
    const code = answerUsage(command('usage'), e, out, err);
    if (code !== undefined) return code;
    throw e;
  }
  let at = Date.now();
  if (values.date) {
    at = Date.parse(`${values.date}T12:00:00Z`);
    if (!/^\d{4}-\d{2}-\d{2}$/.test(values.date) || Number.isNaN(at)) {
      err.write(`gatewise usage: --date expects YYYY-MM-DD\n${shortUsage(command('usage'))}`);
      return 2;
    }
  }
  let dump: StoreDump;
  try {
    dump = JSON.parse(await readFile(values.state, 'utf8')) as StoreDump;
    if (!Array.isArray(dump.entries)) throw new Error('not a Gatewise state file');
  } catch (e) {
    err.write(`gatewise usage: cannot read ${values.state}: ${(e as Error).message}\n`);
    return 1;
  }
  let rows = usageFromDump(dump, at);
  if (values.user) rows = rows.filter((r) => r.user === values.user);
  if (values.json) {
    out.write(`${JSON.stringify({ savedAt: dump.savedAt, day: periodOf('day', at).id, month: periodOf('month', at).id, users: rows }, null, 2)}\n`);
    return 0;
  }
  const head = ['user', 'day up', 'day down', 'day req', 'month up', 'month down', 'month req'];
  const table = rows.map((r) => [r.user, formatBytes(r.day.up, 'column'), formatBytes(r.day.down, 'column'), String(r.day.requests), formatBytes(r.month.up, 'column'), formatBytes(r.month.down, 'column'), String(r.month.requests)]);
  const widths = head.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  out.write(`usage on ${periodOf('day', at).id} and in ${periodOf('month', at).id} (UTC), state saved ${dump.savedAt}\n`);
  out.write(`${line(head)}\n`);
  for (const row of table) out.write(`${line(row)}\n`);
  if (rows.length === 0) out.write('(no usage recorded)\n');
  return 0;
}
