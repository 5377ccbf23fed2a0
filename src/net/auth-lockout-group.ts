import cluster, { type Worker } from 'node:cluster';
import { AuthLockout, type AuthLockoutSettings } from './auth-lockout.js';

/**
 * One wrong-credential count for a `--workers N` process group (net/auth-lockout.ts). Each
 * worker counted on its own before: a guesser whose connections the kernel spread over the
 * workers had N × maxFailures guesses, and a lockout in one worker did not refuse the address
 * in another.
 *
 * - A worker's limiter reports each wrong credential to the primary (`fail`), unless the
 *   address is locked out in its own table already (a check under way when the lockout began).
 * - The primary counts them in an AuthLockout of its own per limiter name, with the settings
 *   the report carries (every worker runs the same config), and, at a lockout, tells every
 *   worker (`lock`: key, length, strike). The worker whose report tripped it logs and
 *   publishes it (once in the group, as the metric is summed over the workers).
 * - A worker refuses from its own table, asking nothing: a right credential from an address
 *   that is not locked out costs no message.
 * - A worker joins with `sync` and counts on its own until the primary answers (`synced`, with
 *   the lockouts in force): a primary that does not relay lockouts leaves it counting as a
 *   process alone, never counting nothing. So does a primary that went away.
 * - A wrong credential the primary could not track (every tracked address locked out) is told
 *   to the worker it came from (`untracked`), which publishes it.
 *
 * What holds: a lockout reaches every worker within one message round trip after the wrong
 * credential that tripped it was checked; the checks that began before it arrived answer as
 * they would have (a guess in flight is a guess), so the group gives at most maxFailures plus
 * the checks in flight during one round trip. Message types are prefixed `gatewise:lockout:`
 * so the other IPC on the channel passes by.
 */

const FAIL = 'gatewise:lockout:fail';
const LOCK = 'gatewise:lockout:lock';
const SYNC = 'gatewise:lockout:sync';
const SYNCED = 'gatewise:lockout:synced';
const UNTRACKED = 'gatewise:lockout:untracked';

interface FailMsg { type: typeof FAIL; name: string; face: string; key: string; address: string; settings: AuthLockoutSettings }
interface LockMsg { type: typeof LOCK; name: string; key: string; address: string; ms: number; lastLockoutMs: number; strike: number; failures: number; origin: number }
interface SyncMsg { type: typeof SYNC; name: string }
interface SyncedMsg { type: typeof SYNCED; name: string; locks: Array<{ key: string; ms: number; lastLockoutMs: number; strike: number }> }
interface UntrackedMsg { type: typeof UNTRACKED; name: string; key: string; address: string }

/** This worker's limiters in the group, by name (`forward`, `admin`; proxies embedded in one process share a name). */
const members = new Map<string, Set<AuthLockout>>();
let listening = false;

function onWorkerMessage(msg: unknown): void {
  const m = msg as { type?: unknown; name?: unknown } | null;
  if (m === null || typeof m !== 'object' || typeof m.type !== 'string' || !m.type.startsWith('gatewise:lockout:')) return;
  const set = members.get(String(m.name));
  if (set !== undefined) for (const l of set) onMessageFor(l, m);
}

function onMessageFor(l: AuthLockout, m: { type?: unknown; name?: unknown }): void {
  if (m.type === LOCK) {
    const k = m as LockMsg;
    l.lockedByGroup(k.key, k.address, k.ms, k.strike, k.failures, k.origin === process.pid, k.lastLockoutMs);
  } else if (m.type === SYNCED) {
    const s = m as SyncedMsg;
    for (const k of s.locks) l.lockedByGroup(k.key, k.key, k.ms, k.strike, 0, false, k.lastLockoutMs);
    l.share({
      report: (key, address, settings) => {
        if (!process.connected) return false;
        process.send!({ type: FAIL, name: s.name, face: l.face, key, address, settings } satisfies FailMsg);
        return true;
      },
    });
  } else if (m.type === UNTRACKED) {
    const u = m as UntrackedMsg;
    l.notTracked(u.key, u.address);
  }
}

/**
 * In a worker of a group: count `limiter`'s wrong credentials with the group's, under `name`
 * (the same in every worker: the same config makes the same names). A process alone: nothing.
 * Returns a function that leaves (the limiter counts on its own again).
 */
export function joinLockoutGroup(name: string, limiter: AuthLockout): () => void {
  if (!cluster.isWorker || typeof process.send !== 'function' || !process.connected) return () => {};
  let set = members.get(name);
  if (set === undefined) members.set(name, (set = new Set()));
  set.add(limiter);
  if (!listening) {
    listening = true;
    process.on('message', onWorkerMessage);
  }
  process.send({ type: SYNC, name } satisfies SyncMsg);
  return () => {
    set.delete(limiter);
    if (set.size === 0 && members.get(name) === set) members.delete(name);
    limiter.share(undefined);
  };
}

let relaying = false;

const sameSettings = (a: AuthLockoutSettings, b: AuthLockoutSettings): boolean =>
  a.maxFailures === b.maxFailures && a.windowMs === b.windowMs && a.lockoutMs === b.lockoutMs && a.maxLockoutMs === b.maxLockoutMs && a.maxAddresses === b.maxAddresses;

/** Whether a report's settings are numbers a limiter can run with (the primary takes nothing else from the channel). */
function validSettings(s: unknown): s is AuthLockoutSettings {
  const o = s as Record<string, unknown> | null;
  if (o === null || typeof o !== 'object') return false;
  return ['maxFailures', 'windowMs', 'lockoutMs', 'maxLockoutMs', 'maxAddresses'].every((k) => typeof o[k] === 'number' && Number.isFinite(o[k]) && (o[k] as number) >= 0) && (o.maxAddresses as number) >= 1;
}

/** In the primary: count the workers' wrong credentials and tell every worker of each lockout. */
export function relayLockouts(): void {
  if (relaying || !cluster.isPrimary) return;
  relaying = true;
  const limiters = new Map<string, AuthLockout>();
  /** The worker whose report is being counted (the lockout's or the untracked failure's origin). */
  let from: Worker | undefined;
  const live = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
  const limiterOf = (name: string, face: string, settings: AuthLockoutSettings): AuthLockout => {
    let l = limiters.get(name);
    if (l === undefined) {
      l = new AuthLockout(face, settings, (e) => {
        const msg: LockMsg = { type: LOCK, name, key: e.key, address: e.address, ms: e.lockoutMs, lastLockoutMs: e.lockoutMs, strike: e.strike, failures: e.failures, origin: from?.process.pid ?? 0 };
        for (const w of live()) w.send(msg);
      });
      l.onUntracked = (e) => {
        if (from?.isConnected()) from.send({ type: UNTRACKED, name, key: e.key, address: e.address } satisfies UntrackedMsg);
      };
      limiters.set(name, l);
    } else if (!sameSettings(l.settings, settings)) l.configure(settings);
    return l;
  };
  cluster.on('message', (worker: Worker, msg: unknown) => {
    const m = msg as { type?: unknown; name?: unknown } | null;
    if (m === null || typeof m !== 'object' || typeof m.name !== 'string') return;
    if (m.type === FAIL) {
      const f = m as FailMsg;
      if (typeof f.address !== 'string' || typeof f.face !== 'string' || !validSettings(f.settings)) return;
      const l = limiterOf(f.name, f.face, f.settings);
      // A worker reported an address the primary holds locked out: the worker does not know it
      // (its table was cleared by a reload that turned the limit off and on again, or full). Tell
      // every worker again; counting it would only see the lockout and do nothing (review:
      // such an address guessed freely until the primary's lockout ended).
      const held = l.activeLockout(f.address);
      if (held !== undefined) {
        const msg: LockMsg = { type: LOCK, name: f.name, key: held.key, address: f.address, ms: held.ms, lastLockoutMs: held.lastLockoutMs, strike: held.strike, failures: 0, origin: 0 };
        for (const w of live()) w.send(msg);
        return;
      }
      from = worker;
      try {
        l.failed(f.address);
      } finally {
        from = undefined;
      }
    } else if (m.type === SYNC) {
      const locks = limiters.get(m.name)?.activeLockouts() ?? [];
      if (worker.isConnected()) worker.send({ type: SYNCED, name: m.name, locks } satisfies SyncedMsg);
    }
  });
}
