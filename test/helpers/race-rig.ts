import assert from 'node:assert/strict';
import type { ConfigInput } from '../../src/config/schema.js';
import { startTestGateway, type TestGateway } from './gateway.js';
import { startPiecewiseUpstream, type PieceAnswer, type PieceRequest, type PiecewiseUpstream } from './piecewise-upstream.js';

type ClusterInput = NonNullable<ConfigInput['clusters']>[string];
type RouteInput = NonNullable<ConfigInput['routes']>[number];

/** One round's set-up of the keep-alive race families (test/gateway/race-*.test.ts). */
export interface RaceRig {
  up: PiecewiseUpstream;
  gw: TestGateway;
}

export interface RaceRigOptions {
  client: 'undici' | 'native';
  /** The route's retry rules (none: the route's defaults). */
  retry?: RouteInput['retry'];
  /** More of the cluster's settings (limits, maxConnections). */
  cluster?: Partial<ClusterInput>;
}

/**
 * Runs `body` with an upstream that answers by `answer` and a gateway in front of it (cluster
 * `up`: the chosen upstream client, idle connections kept 30 s, outlier detection off, so a
 * lost race is the only failure; one route to it), and closes both, gateway first, whatever
 * happens.
 */
export async function withRaceRig<T>(answer: (req: PieceRequest) => PieceAnswer | Promise<PieceAnswer>, opts: RaceRigOptions, body: (rig: RaceRig) => Promise<T>): Promise<T> {
  const up = await startPiecewiseUpstream(answer);
  let gw: TestGateway | undefined;
  try {
    gw = await startTestGateway({
      clusters: { up: { endpoints: [up.url], client: opts.client, outlierDetection: { enabled: false }, keepAlive: '30s', ...opts.cluster } },
      routes: [{ cluster: 'up', ...(opts.retry ? { retry: opts.retry } : {}) }],
    });
    return await body({ up, gw });
  } finally {
    await gw?.close();
    await up.close();
  }
}

/** A try's record, as far as the race tests read it. */
export interface RaceTry {
  connection: string;
  error?: string;
}

/** The attempts of a request that lost the race once: sent on a reused connection the upstream ended, then again on a new one. */
export function assertLostRace(attempts: readonly RaceTry[], detail: string): void {
  assert.equal(attempts.length, 2, detail);
  assert.equal(attempts[0]!.connection, 'reused', detail);
  assert.equal(attempts[0]!.error, 'connection_terminated', detail);
  assert.equal(attempts[1]!.connection, 'new', detail);
}
