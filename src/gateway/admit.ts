import { Failure } from '../failure/index.js';
import type { Cluster } from '../upstream/cluster.js';

/** A request that may wait in its cluster's queue: told when it gets a slot, or why not. */
export interface Admittable {
  /** A queued request got its slot. */
  admitted(): void;
  /** A queued request waited longer than the queue timeout. */
  queueRefused(f: Failure): void;
}

/**
 * The admit phase of any reverse request, plain or upgrade: true when it may go on now (a
 * slot was free, or the cluster has no limit); throws 503 `connection_limit_reached` when
 * the queue is full; false when queued (`admitted` or `queueRefused` follows).
 */
export function admitPhase(cluster: Cluster, req: Admittable): boolean {
  const adm = cluster.admission;
  if (adm === undefined || adm.tryAcquire()) return true;
  const waiting = adm.acquire();
  if (waiting === 'full') {
    throw new Failure({ type: 'connection_limit_reached', phase: 'admit', retryAfter: 1, detail: `cluster ${cluster.name} is at its limit of ${adm.limit} requests in flight and its queue is full` });
  }
  waiting.then(
    () => req.admitted(),
    () => req.queueRefused(new Failure({ type: 'connection_limit_reached', phase: 'admit', retryAfter: 1, detail: `waited in the queue of cluster ${cluster.name} longer than its queue timeout (limit ${adm.limit})` })),
  );
  return false;
}
