import type { IncomingMessage } from 'node:http';
import type { WorkQueue, WorkStats } from './work-queue.js';

/** The last request the lab received, as it arrived. */
export interface LabRequestRecord {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  rawHeaders: string[];
}

/** What reached the lab: lets a test assert that a request did or did not reach the upstream. */
export interface LabStats {
  /** Requests received on every listener (WebSocket upgrades included). */
  requests: number;
  /** TCP connections accepted on its HTTP and HTTPS listeners (a test can say nothing was even dialled). */
  connections: number;
  /** Requests per path (without the query). */
  byPath: Map<string, number>;
  lastRequest?: LabRequestRecord;
  /** The overload simulation (`/work`). */
  readonly work: WorkStats;
  /** Zero the counters and forget the last request. */
  reset(): void;
}

export class LabStatsRecorder implements LabStats {
  requests = 0;
  connections = 0;
  byPath = new Map<string, number>();
  lastRequest?: LabRequestRecord;
  readonly #work: WorkQueue;

  constructor(work: WorkQueue) {
    this.#work = work;
  }

  get work(): WorkStats {
    return this.#work;
  }

  record(req: IncomingMessage, path: string): void {
    this.requests++;
    this.byPath.set(path, (this.byPath.get(path) ?? 0) + 1);
    this.lastRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders };
  }

  reset(): void {
    this.requests = 0;
    this.connections = 0;
    this.byPath.clear();
    this.lastRequest = undefined;
    this.#work.resetCounters();
  }
}
