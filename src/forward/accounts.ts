import { z } from 'zod';
import { allowFromSchema, allowlistOverlaps, forwardRuleSchema, forwardUserSchema, parseByteSize, type ForwardConfig, type ForwardUser } from '../config/forward.js';
import { AdminProblem } from '../observe/admin-problem.js';
import type { Store } from '../state/index.js';
import { hashPassword, periodOf, usageKey, type Period, type PlanEnforcer } from '../tenants/index.js';

/**
 * Where the accounts the admin API manages are kept. `UsersFileStore` (the users file,
 * written atomically) is the one there is; the interface is what a Redis-backed store
 * would implement (a hash per user, a set of names, and a pub/sub message so every node
 * re-reads): the service below needs nothing more than reading the list and one atomic
 * read-change-write of it.
 */
export interface UserStore {
  /** The stored users (validated). */
  list(): readonly ForwardUser[];
  /** Apply `change` to the stored users atomically; the new list is validated (throws, nothing written, when bad) and applied to the running proxy. */
  update(change: (users: ForwardUser[]) => ForwardUser[]): Promise<void>;
}

const bytes = z.union([z.number().int().nonnegative(), z.string()]).refine((v) => parseByteSize(v) !== undefined, { message: 'expected a byte count or a size such as "500MB" or "10GiB"' });

/** What the admin API accepts for an account (create: name and a password or allowFrom; update: any field, null removes it). */
const accountFields = {
  password: z.string().min(8, 'at least 8 characters').max(1024).describe('Plain password (hashed with scrypt before it is stored).'),
  passwordHash: forwardUserSchema.shape.password.unwrap(),
  plan: z.string().min(1),
  maxConnections: z.number().int().positive(),
  maxTunnels: z.number().int().positive(),
  trafficLimit: bytes,
  trafficPeriod: z.enum(['day', 'month']),
  expires: z.string().datetime({ offset: true, message: 'expected an ISO 8601 time such as "2027-01-01T00:00:00Z"' }),
  disabled: z.boolean(),
  disabledReason: z.string().max(200),
  allowFrom: z.array(allowFromSchema),
  allow: z.array(forwardRuleSchema),
  deny: z.array(forwardRuleSchema),
};
const createSchema = z.strictObject({ name: forwardUserSchema.shape.name, ...Object.fromEntries(Object.entries(accountFields).map(([k, v]) => [k, v.optional()])) } as { name: typeof forwardUserSchema.shape.name } & { [K in keyof typeof accountFields]: z.ZodOptional<(typeof accountFields)[K]> });
const updateSchema = z.strictObject(Object.fromEntries(Object.entries(accountFields).map(([k, v]) => [k, v.nullable().optional()])) as { [K in keyof typeof accountFields]: z.ZodOptional<z.ZodNullable<(typeof accountFields)[K]>> });

function fieldOf(path: ReadonlyArray<PropertyKey>): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('') || '(body)';
}

function invalid(issues: readonly z.core.$ZodIssue[]): AdminProblem {
  const errors = issues.map((i) => {
    if (i.code === 'unrecognized_keys') return { field: i.keys.join(', '), message: `unknown field${i.keys.length > 1 ? 's' : ''} (accepted: name, ${Object.keys(accountFields).join(', ')})` };
    return { field: fieldOf(i.path), message: i.message };
  });
  return new AdminProblem('invalid-input', 'the request body is not a valid account', errors);
}

/** An account as the admin API shows it: the stored fields without the password hash, where it comes from, and whether it may authenticate now. */
export interface AccountView extends Omit<ForwardUser, 'password'> {
  source: 'config' | 'usersFile';
  hasPassword: boolean;
  active: boolean;
}

export interface AccountDeps {
  /** The users file store; undefined when the config names no users file (then accounts are read-only). */
  store: () => UserStore | undefined;
  config: () => ForwardConfig;
  plans: PlanEnforcer;
  usage: Store;
  now?: () => number;
  /** Users taken out of service by the sweep that cannot be written (config users): name → why. */
  disabledInMemory: Map<string, string>;
  /** Apply the users again (after `disabledInMemory` changed). */
  reapply: () => void;
}

/**
 * The service operations behind the admin API's `/accounts` and `/usage`: create, update,
 * disable and delete users; their plan and limits (traffic per period, concurrency, expiry)
 * with auto-disable when a limit is reached (`sweep`, every second); usage by user and
 * period. Every input is validated and refused with the field at fault. Users of the config
 * file are shown but not changed here (edit the config and reload); users of the users file
 * are, through the `UserStore`.
 */
export class AccountService {
  readonly #d: AccountDeps;
  readonly #now: () => number;

  constructor(deps: AccountDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  #store(): UserStore {
    const s = this.#d.store();
    if (!s) throw new AdminProblem('no-users-file', 'accounts can be changed only when forward.auth.usersFile is set (the config file\'s own users are changed by editing it and reloading)');
    return s;
  }

  #view(u: ForwardUser, source: AccountView['source']): AccountView {
    const { password, ...rest } = u;
    const now = this.#now();
    return { ...rest, source, hasPassword: password !== undefined, active: !u.disabled && !(u.expires !== undefined && Date.parse(u.expires) <= now) };
  }

  list(): AccountView[] {
    const configUsers = this.#d.config().auth.users;
    const names = new Set(configUsers.map((u) => u.name));
    return [...configUsers.map((u) => this.#view(u, 'config')), ...(this.#d.store()?.list() ?? []).filter((u) => !names.has(u.name)).map((u) => this.#view(u, 'usersFile'))];
  }

  get(name: string): AccountView {
    const a = this.list().find((u) => u.name === name);
    if (!a) throw new AdminProblem('not-found', `no user named ${name}`);
    return a;
  }

  /** The fields of a validated body as stored: the password hashed, sizes as numbers. */
  async #stored(body: Record<string, unknown>): Promise<Partial<ForwardUser>> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(body)) {
      if (k === 'password' || k === 'passwordHash') continue;
      out[k] = k === 'trafficLimit' && v !== null ? parseByteSize(v as number | string) : v;
    }
    if (typeof body.password === 'string') out.password = await hashPassword(body.password);
    else if (typeof body.passwordHash === 'string') out.password = body.passwordHash;
    else if (body.password === null || body.passwordHash === null) out.password = null;
    return out as Partial<ForwardUser>;
  }

  /** Checks across users and the config (plan names, allowlist overlaps, a way to authenticate), by field. */
  #check(user: ForwardUser, others: readonly ForwardUser[]): void {
    const errors: Array<{ field: string; message: string }> = [];
    const cfg = this.#d.config();
    if (user.plan !== undefined && !Object.prototype.hasOwnProperty.call(cfg.plans, user.plan)) errors.push({ field: 'plan', message: `no plan named ${user.plan} (plans: ${Object.keys(cfg.plans).join(', ') || 'none'})` });
    if (user.password === undefined && !(user.allowFrom?.length ?? 0)) errors.push({ field: 'password', message: 'a user needs a password, an allowFrom list, or both' });
    const all = [...others.filter((u) => u.name !== user.name), user];
    for (const o of allowlistOverlaps(all)) {
      const mine = o.b.user === all.length - 1 ? o.b : o.a.user === all.length - 1 ? o.a : undefined;
      if (mine) errors.push({ field: `allowFrom[${mine.index}]`, message: o.message });
    }
    if (errors.length) throw new AdminProblem('invalid-input', 'the account does not fit the running config', errors);
  }

  #everyone(): ForwardUser[] {
    const configUsers = this.#d.config().auth.users;
    const names = new Set(configUsers.map((u) => u.name));
    return [...configUsers, ...(this.#d.store()?.list() ?? []).filter((u) => !names.has(u.name))];
  }

  #refuseConfigUser(name: string): void {
    if (this.#d.config().auth.users.some((u) => u.name === name)) throw new AdminProblem('config-user', `user ${name} is defined in the config file; change it there and reload`);
  }

  async create(body: unknown): Promise<AccountView> {
    const r = createSchema.safeParse(body);
    if (!r.success) throw invalid(r.error.issues);
    const store = this.#store();
    if (r.data.password !== undefined && r.data.passwordHash !== undefined) throw new AdminProblem('invalid-input', 'give password or passwordHash, not both', [{ field: 'password', message: 'give password or passwordHash, not both' }]);
    if (this.#everyone().some((u) => u.name === r.data.name)) throw new AdminProblem('exists', `a user named ${r.data.name} exists already`, [{ field: 'name', message: 'taken' }]);
    const user = { name: r.data.name, ...(await this.#stored(r.data)) } as ForwardUser;
    this.#check(user, this.#everyone());
    await this.#write(store, (users) => {
      if (users.some((u) => u.name === user.name)) throw new AdminProblem('exists', `a user named ${user.name} exists already`, [{ field: 'name', message: 'taken' }]);
      return [...users, user];
    });
    return this.get(user.name);
  }

  async update(name: string, body: unknown): Promise<AccountView> {
    const r = updateSchema.safeParse(body);
    if (!r.success) throw invalid(r.error.issues);
    this.#refuseConfigUser(name);
    const store = this.#store();
    const fields = await this.#stored(r.data as Record<string, unknown>);
    await this.#write(store, (users) => {
      const i = users.findIndex((u) => u.name === name);
      if (i < 0) throw new AdminProblem('not-found', `no user named ${name} in the users file`);
      const next: Record<string, unknown> = { ...users[i] };
      for (const [k, v] of Object.entries(fields)) {
        if (v === null) delete next[k];
        else next[k] = v;
      }
      // Enabled again: the reason goes with it.
      if (fields.disabled === false || (fields.disabled === null as unknown)) delete next.disabledReason;
      this.#check(next as ForwardUser, this.#everyone());
      const out = [...users];
      out[i] = next as ForwardUser;
      return out;
    });
    return this.get(name);
  }

  setDisabled(name: string, disabled: boolean, reason?: string): Promise<AccountView> {
    return this.update(name, disabled ? { disabled: true, ...(reason ? { disabledReason: reason } : {}) } : { disabled: false, disabledReason: null });
  }

  async remove(name: string): Promise<{ deleted: string }> {
    this.#refuseConfigUser(name);
    await this.#write(this.#store(), (users) => {
      if (!users.some((u) => u.name === name)) throw new AdminProblem('not-found', `no user named ${name} in the users file`);
      return users.filter((u) => u.name !== name);
    });
    return { deleted: name };
  }

  async #write(store: UserStore, change: (users: ForwardUser[]) => ForwardUser[]): Promise<void> {
    try {
      await store.update(change);
    } catch (err) {
      if (err instanceof AdminProblem) throw err;
      // --workers: the primary did not hand over the users file's write lock in time.
      if ((err as { code?: string }).code === 'GATEWISE_IPC_LOCK') throw new AdminProblem('busy', `the users file could not be written now: ${(err as Error).message}; try again`);
      // The file system refused (the file or its directory gone, permissions, a full disk): the
      // gateway's failure, not the request's; nothing was written (a temporary file, renamed).
      if (typeof (err as NodeJS.ErrnoException).syscall === 'string') throw new AdminProblem('write-failed', `the users file could not be changed: ${(err as Error).message}`);
      // The whole list failed the users file's own validation (another user's entry, a plan renamed by a reload): said as it is.
      throw new AdminProblem('invalid-input', `the users file would be invalid: ${(err as Error).message}`, [{ field: '(body)', message: (err as Error).message }]);
    }
  }

  /**
   * Usage by user for one period: `day` or `month` (UTC), `at` its id (`2026-12-03`,
   * `2026-12`; default the current one). Counted usage is written to the store first. The
   * store keeps a day for two days and a month for 32 days.
   */
  async usage(query: { period?: string | null; at?: string | null; user?: string | null }): Promise<{ period: Period; id: string; users: Array<{ user: string; up: number; down: number; total: number; requests: number; trafficLimit: number | null }> }> {
    const period = (query.period ?? 'day') as Period;
    if (period !== 'day' && period !== 'month') throw new AdminProblem('invalid-input', 'bad query', [{ field: 'period', message: 'expected day or month' }]);
    const id = query.at ?? periodOf(period, this.#now()).id;
    if (!(period === 'day' ? /^\d{4}-\d{2}-\d{2}$/ : /^\d{4}-\d{2}$/).test(id)) throw new AdminProblem('invalid-input', 'bad query', [{ field: 'at', message: period === 'day' ? 'expected a day such as 2026-12-03' : 'expected a month such as 2026-12' }]);
    const everyone = this.#everyone();
    const names = query.user ? [query.user] : everyone.map((u) => u.name);
    if (query.user && !everyone.some((u) => u.name === query.user)) throw new AdminProblem('not-found', `no user named ${query.user}`);
    await this.#d.plans.flush();
    const users = await Promise.all(
      names.map(async (user) => {
        const h = await this.#d.usage.hgetall(usageKey(user, period, id));
        const u = everyone.find((x) => x.name === user);
        const up = h.up ?? 0;
        const down = h.down ?? 0;
        return { user, up, down, total: up + down, requests: h.requests ?? 0, trafficLimit: u?.trafficLimit !== undefined && (u.trafficPeriod ?? 'month') === period ? u.trafficLimit : null };
      }),
    );
    return { period, id, users };
  }

  /**
   * Auto-disable: users past `expires`, or whose bytes this `trafficPeriod` reached
   * `trafficLimit` (the usage ledger's estimate: this node's counts and the store's last
   * totals), are disabled with the reason; users of the users file in the file (persisted),
   * users of the config file in memory until the next restart. Runs every second.
   */
  async sweep(): Promise<string[]> {
    const now = this.#now();
    const due: Array<{ name: string; reason: string; file: boolean }> = [];
    const configNames = new Set(this.#d.config().auth.users.map((u) => u.name));
    for (const u of this.#everyone()) {
      if (u.disabled || this.#d.disabledInMemory.has(u.name)) continue;
      let reason: string | undefined;
      if (u.expires !== undefined && Date.parse(u.expires) <= now) reason = 'expired';
      else if (u.trafficLimit !== undefined) {
        const period = u.trafficPeriod ?? 'month';
        const used = this.#d.plans.ledger.estimate(u.name, period, 'up') + this.#d.plans.ledger.estimate(u.name, period, 'down');
        if (used >= u.trafficLimit) reason = 'trafficLimit';
      }
      if (reason) due.push({ name: u.name, reason, file: !configNames.has(u.name) });
    }
    const file = due.filter((d) => d.file);
    const store = this.#d.store();
    if (file.length && store) {
      await store.update((users) => users.map((u) => {
        const d = file.find((x) => x.name === u.name);
        return d && !u.disabled ? { ...u, disabled: true, disabledReason: d.reason } : u;
      }));
    }
    const memory = due.filter((d) => !d.file || !store);
    for (const d of memory) this.#d.disabledInMemory.set(d.name, d.reason);
    if (memory.length) this.#d.reapply();
    return due.map((d) => `${d.name}: ${d.reason}`);
  }
}

