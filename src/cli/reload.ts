import type { Logger } from 'pino';
import type { ConfigProblem } from '../config/check.js';
import { ConfigError, loadConfigFile, problemLine } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { ForwardConfig } from '../config/forward.js';
import type { ForwardProxy, ForwardReloadSummary } from '../forward/index.js';
import type { Gateway, GatewayReloadSummary } from '../gateway/server.js';

/** What `POST /reload` answers and SIGHUP logs. */
export type ReloadResult =
  | {
      ok: true;
      file: string;
      durationMs: number;
      /** One line: what changed. */
      summary: string;
      gateway: GatewayReloadSummary | 'started' | null;
      forward: ForwardReloadSummary | 'started' | 'stopped' | null;
      /** Settings that changed but apply only after a restart (`log`, `admin` but its token, listener `maxHeaderSize`, …). */
      restart: string[];
    }
  | {
      ok: false;
      file: string | null;
      /** `invalid`: the new config has problems (the same `gatewise check` prints); `failed`: it could not be applied (a port in use). */
      code: 'invalid' | 'failed' | 'no_config_file';
      error: string;
      problems: readonly ConfigProblem[];
    };

export interface ReloaderParts {
  /** The config file re-read on each reload. */
  file: string | undefined;
  logger: Logger;
  /** The config running now. */
  running: Config;
  gateway(): Gateway | undefined;
  forward(): ForwardProxy | undefined;
  /** A reload that adds the first listener starts the reverse gateway; one that adds `forward:` starts the forward proxy. */
  startGateway(c: Config): Promise<void>;
  startForward(c: ForwardConfig): Promise<void>;
  stopForward(): Promise<void>;
}

const list = (what: string, names: readonly string[]): string => (names.length ? ` ${what}[${names.join(',')}]` : '');

/** One line of what a reload changed, e.g. `clusters +api ~web; routes 3; listeners -127.0.0.1:8081`. */
export function describe(gw: ReloadResult & { ok: true }): string {
  const parts: string[] = [];
  const g = gw.gateway;
  if (g === 'started') parts.push('reverse gateway started');
  else if (g) {
    const c = g.clusters;
    parts.push(`clusters${list('+', c.added)}${list('-', c.removed)}${list('~', c.changed)} kept ${c.kept.length}`);
    parts.push(`routes ${g.routes}`);
    const l = g.listeners;
    if (l.added.length + l.removed.length + l.changed.length) parts.push(`listeners${list('+', l.added)}${list('-', l.removed)}${list('~', l.changed)}`);
  }
  const f = gw.forward;
  if (f === 'started' || f === 'stopped') parts.push(`forward proxy ${f}`);
  else if (f) {
    parts.push(`forward users ${f.users}`);
    const p = f.plans;
    if (p.added.length + p.removed.length + p.changed.length) parts.push(`plans${list('+', p.added)}${list('-', p.removed)}${list('~', p.changed)}`);
    const e = f.pools;
    if (e.added.length + e.removed.length + e.changed.length) parts.push(`pools${list('+', e.added)}${list('-', e.removed)}${list('~', e.changed)}`);
    const l = f.listeners;
    if (l.added.length + l.removed.length + l.changed.length) parts.push(`forward listeners${list('+', l.added)}${list('-', l.removed)}${list('~', l.changed)}`);
  }
  if (gw.restart.length) parts.push(`restart needed for ${gw.restart.join(', ')}`);
  return parts.join('; ');
}

/**
 * Reload without loss: re-read the config file with every check `gatewise check` makes
 * (the same function, `loadConfigFile`); refused with its problems when invalid (the running
 * config stays); else applied in place by the reverse gateway (`Gateway.reload`: a new compiled
 * context for new requests, unchanged clusters kept) and the forward proxy
 * (`ForwardProxy.reload`). One reload at a time; one log line per reload.
 */
export class ConfigReloader {
  readonly #p: ReloaderParts;
  #running: Config;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(parts: ReloaderParts) {
    this.#p = parts;
    this.#running = parts.running;
  }

  /** The config running now (the last one applied). */
  get running(): Config {
    return this.#running;
  }

  reload(): Promise<ReloadResult> {
    const run = this.#queue.then(() => this.#reload());
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #reload(): Promise<ReloadResult> {
    const { file, logger } = this.#p;
    const started = performance.now();
    if (!file) {
      return this.#refused({ ok: false, file: null, code: 'no_config_file', error: 'this process was not started from a config file (gatewise run --config FILE), so there is nothing to re-read', problems: [] });
    }
    let next: Config;
    try {
      next = await loadConfigFile(file);
    } catch (err) {
      if (err instanceof ConfigError) return this.#refused({ ok: false, file, code: 'invalid', error: `${file}: the new config is invalid; the running config stays`, problems: err.problems });
      return this.#refused({ ok: false, file, code: 'invalid', error: `${file}: ${(err as Error).message}; the running config stays`, problems: [] });
    }
    const prev = this.#running;
    const restart: string[] = [];
    if (JSON.stringify(prev.log) !== JSON.stringify(next.log)) restart.push('log');
    // The admin token applies at once (read from the running config at each request); the rest of `admin` at a restart.
    const adminBut = (a: Config['admin']): string => JSON.stringify(a === undefined ? undefined : { ...a, token: undefined });
    if (adminBut(prev.admin) !== adminBut(next.admin)) restart.push('admin');
    let gateway: GatewayReloadSummary | 'started' | null = null;
    let forward: ForwardReloadSummary | 'started' | 'stopped' | null = null;
    try {
      const gw = this.#p.gateway();
      if (gw) {
        gateway = await gw.reload(next);
        restart.push(...gateway.restart);
      } else if (next.listeners.length > 0) {
        await this.#p.startGateway(next);
        gateway = 'started';
      }
      const fwd = this.#p.forward();
      if (fwd && next.forward) {
        forward = await fwd.reload(next.forward);
        restart.push(...forward.restart);
      } else if (fwd) {
        await this.#p.stopForward();
        forward = 'stopped';
      } else if (next.forward) {
        await this.#p.startForward(next.forward);
        forward = 'started';
      }
    } catch (err) {
      // The reverse gateway may have taken the new config when the forward proxy refused it:
      // said as such; the next reload of a good file brings both to the same config.
      const applied = gateway !== null ? ' (the reverse gateway took the new config; the forward proxy kept the old one)' : '';
      const problems = err instanceof ConfigError ? err.problems : [];
      return this.#refused({ ok: false, file, code: err instanceof ConfigError ? 'invalid' : 'failed', error: `${file}: cannot apply the new config: ${(err as Error).message}${applied}`, problems });
    }
    this.#running = next;
    const result: ReloadResult = { ok: true, file, durationMs: Math.round((performance.now() - started) * 10) / 10, summary: '', gateway, forward, restart };
    result.summary = describe(result);
    logger.info({ component: 'runtime', type: 'lifecycle', event: 'reloaded', file, durationMs: result.durationMs, restart }, `config reloaded from ${file}: ${result.summary}`);
    logger.flush();
    return result;
  }

  #refused(r: ReloadResult & { ok: false }): ReloadResult {
    this.#p.logger.error(
      { component: 'runtime', type: 'lifecycle', event: 'reload-refused', file: r.file, code: r.code, problems: r.problems.map((p) => problemLine(p, r.file ?? undefined)) },
      `config reload refused: ${r.error}${r.problems.length ? ` (${r.problems.length} problem${r.problems.length === 1 ? '' : 's'})` : ''}`,
    );
    this.#p.logger.flush();
    return r;
  }
}
