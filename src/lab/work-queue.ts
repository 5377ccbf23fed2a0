/** One job of the overload simulation: started when a slot is free. */
export interface WorkJob {
  start(): void;
}

/** Counters of the overload simulation, as shown in `lab.stats.work`. */
export interface WorkStats {
  /** Jobs occupying a slot now. */
  readonly active: number;
  /** Jobs waiting for a slot now. */
  readonly queued: number;
  /** Most jobs ever active at once. */
  readonly peak: number;
  /** Jobs turned away with 503 because the queue was full. */
  readonly rejected: number;
}

/**
 * `capacity` slots and a FIFO queue of at most `limit` waiting jobs: the upstream's
 * worker pool. Beyond that, `enter` refuses and the caller answers 503.
 */
export class WorkQueue implements WorkStats {
  readonly #capacity: number;
  readonly #limit: number;
  readonly #active = new Set<WorkJob>();
  /** Insertion-ordered: the first entry is the oldest waiting job. */
  readonly #waiting = new Set<WorkJob>();
  #peak = 0;
  #rejected = 0;

  constructor(capacity: number, limit: number) {
    this.#capacity = capacity;
    this.#limit = limit;
  }

  /** Start the job now, or queue it; false when the queue is full. */
  enter(job: WorkJob): boolean {
    if (this.#active.size < this.#capacity) {
      this.#begin(job);
      return true;
    }
    if (this.#waiting.size < this.#limit) {
      this.#waiting.add(job);
      return true;
    }
    this.#rejected++;
    return false;
  }

  /** The job finished or its client went away (idempotent): free its slot or its place. */
  leave(job: WorkJob): void {
    if (this.#waiting.delete(job)) return;
    if (!this.#active.delete(job)) return;
    // Promote the oldest waiting job; bounded by the capacity.
    while (this.#active.size < this.#capacity && this.#waiting.size > 0) {
      const next = this.#waiting.values().next().value as WorkJob;
      this.#waiting.delete(next);
      this.#begin(next);
    }
  }

  /** Forget every job (the lab is closing). */
  clear(): void {
    this.#active.clear();
    this.#waiting.clear();
  }

  resetCounters(): void {
    this.#peak = this.#active.size;
    this.#rejected = 0;
  }

  get active(): number {
    return this.#active.size;
  }
  get queued(): number {
    return this.#waiting.size;
  }
  get peak(): number {
    return this.#peak;
  }
  get rejected(): number {
    return this.#rejected;
  }

  #begin(job: WorkJob): void {
    this.#active.add(job);
    if (this.#active.size > this.#peak) this.#peak = this.#active.size;
    job.start();
  }
}
