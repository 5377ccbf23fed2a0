import type { Failure } from '../failure/index.js';
import { customerFacingFailure } from './limit-refusal.js';
import type { ParsedHash } from './password-hash.js';
import { ScryptThreadError, ScryptThreads } from './scrypt-threads.js';

export interface PasswordCheckLimits {
  /** Checks waiting or running at once, from everyone. */
  maxConcurrent: number;
  /** Checks waiting or running at once, from one client address. */
  maxPerSource: number;
  /** Threads that run scrypt. */
  threads: number;
}

interface Job {
  password: string;
  stored: ParsedHash;
  resolve: (ok: boolean) => void;
  reject: (err: unknown) => void;
}

/**
 * Password checks with bounds, run fairly on their own threads (scrypt-threads.ts).
 *
 * A check is admitted while its source has fewer than `maxPerSource` checks waiting or
 * running and everyone together fewer than `maxConcurrent`; past either bound it is
 * refused at once with a named Failure, without a scrypt run. Admitted checks wait in one
 * queue per source and the threads take them in turn, source by source, so a client
 * that sends many checks waits for its own and a new client's first login goes next.
 *
 * The source is the client's address. A caller that does not know it gives none; the
 * claimed user name stands in (a flood against one name is bounded by name), which is
 * weaker: it lets a flood against a name delay that user's own fresh login.
 */
export class PasswordChecks {
  readonly #limits: PasswordCheckLimits;
  readonly #threads: ScryptThreads;
  /** Waiting jobs by source; the Map's order is the turn (a source served moves to the end). */
  readonly #waiting = new Map<string, Job[]>();
  /** Waiting plus running, by source. */
  readonly #perSource = new Map<string, number>();
  #total = 0;
  #running = 0;
  #started = 0;
  /** Mean duration of a check (exponentially weighted), for Retry-After. */
  #meanMs = 100;

  constructor(limits: PasswordCheckLimits) {
    this.#limits = limits;
    this.#threads = new ScryptThreads(limits.threads);
  }

  /** Checks waiting or running. */
  get pending(): number {
    return this.#total;
  }

  /** Checks running on a thread now. */
  get running(): number {
    return this.#running;
  }

  /** Checks started on a thread since this was made (scrypt runs): how a test sees that a refusal ran none. */
  get started(): number {
    return this.#started;
  }

  /** Threads started and not ended. */
  get threads(): number {
    return this.#threads.threads;
  }

  /**
   * Whether `password` derives `stored`, or a Failure (not thrown: returned, without any
   * work) when a bound is reached. `address` is the client's address when known, else
   * `name` (the claimed user name) is the source.
   */
  check(address: string | undefined, name: string, password: string, stored: ParsedHash): Promise<boolean> | Failure {
    const source = address ?? `\0${name}`;
    const mine = this.#perSource.get(source) ?? 0;
    if (mine >= this.#limits.maxPerSource) {
      // http_request_denied, not connection_limit_reached: RFC 9209 means the latter for
      // connections to the next hop (our errors page says "the upstream servers are at
      // their capacity"), and no next hop is involved; this is the proxy's policy about a
      // client's own requests. 429: this client sends too many.
      const from = address !== undefined ? `from ${address}` : 'for one user name';
      return this.#refusal('too_many_requests', `too many password checks ${from}; retry later`, mine);
    }
    if (this.#total >= this.#limits.maxConcurrent) {
      // 503: the proxy as a whole is busy with password checks, whoever sent them.
      return this.#refusal('overloaded', `too many password checks in progress; retry later`, this.#total);
    }
    this.#perSource.set(source, mine + 1);
    this.#total++;
    const queue = this.#waiting.get(source);
    return new Promise<boolean>((resolve, reject) => {
      const job: Job = { password, stored, resolve, reject };
      if (queue) queue.push(job);
      else this.#waiting.set(source, [job]);
      this.#pump();
    });
  }

  #refusal(reason: 'too_many_requests' | 'overloaded', detail: string, ahead: number): Failure {
    const seconds = Math.max(1, Math.ceil((ahead * this.#meanMs) / this.#limits.threads / 1000));
    return customerFacingFailure({ type: 'http_request_denied', phase: 'accept', reason, detail, retryAfter: seconds });
  }

  /** Start waiting jobs on free threads, one source after another. */
  #pump(): void {
    while (this.#running < this.#limits.threads && this.#waiting.size > 0) {
      const [source, queue] = this.#waiting.entries().next().value as [string, Job[]];
      const job = queue.shift()!;
      this.#waiting.delete(source);
      if (queue.length > 0) this.#waiting.set(source, queue);
      this.#start(source, job);
    }
  }

  #start(source: string, job: Job): void {
    this.#running++;
    this.#started++;
    const t0 = performance.now();
    const done = (): void => {
      this.#meanMs += (performance.now() - t0 - this.#meanMs) / 8;
      this.#running--;
      this.#total--;
      const left = (this.#perSource.get(source) ?? 1) - 1;
      if (left <= 0) this.#perSource.delete(source);
      else this.#perSource.set(source, left);
      this.#pump();
    };
    this.#threads.run(job.password, job.stored).then(
      (ok) => {
        done();
        job.resolve(ok);
      },
      (err: unknown) => {
        done();
        job.reject(err);
      },
    );
  }

  /** End the threads; checks still waiting or running fail (their clients are being closed too). */
  async close(): Promise<void> {
    const waiting = [...this.#waiting.values()].flat();
    this.#waiting.clear();
    this.#perSource.clear();
    this.#total -= waiting.length;
    await this.#threads.close();
    for (const job of waiting) job.reject(new ScryptThreadError('ERR_SCRYPT_THREADS_CLOSED', 'password checks are closed'));
  }
}
