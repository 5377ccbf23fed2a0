import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { endedRecords } from '../helpers/ended-records.js';
import type { ScriptedUpstream } from '../helpers/scripted-upstream.js';

/**
 * The cache tests' gateway (before, each wrote its own copy): one origin (`up`, outlier
 * detection off) behind cache routes, and the records of the requests as they end.
 */

/** A cache route to the origin: its name, its match (none: every request) and cache settings; one try per request. */
export interface CacheRoute {
  name: string;
  match?: Record<string, unknown>;
  cache: Record<string, unknown>;
}

export interface CacheGateway {
  g: TestGateway;
  /** The gateway's URL without its trailing slash. */
  base: string;
  records: ReturnType<typeof endedRecords>;
}

/**
 * A gateway in front of `up` with `routes` (and the store's settings `cache`, and other top-level settings `config`, when given), the
 * ended records watched; `body` runs with them, and then, whatever happened, the records, the
 * gateway and the origin are closed.
 */
export async function withCacheGateway(up: ScriptedUpstream, o: { routes: CacheRoute[]; cache?: Record<string, unknown>; config?: Record<string, unknown> }, body: (c: CacheGateway) => Promise<void>): Promise<void> {
  const records = endedRecords();
  let g: TestGateway | undefined;
  try {
    g = await startTestGateway({
      clusters: { up: { endpoints: [up.url], outlierDetection: { enabled: false } } },
      routes: o.routes.map((r) => ({ name: r.name, ...(r.match !== undefined ? { match: r.match } : {}), cluster: 'up', retry: { tries: 1 }, cache: r.cache })),
      ...(o.cache !== undefined ? { cache: o.cache } : {}),
      ...o.config,
    } as never);
    await body({ g, base: g.url.replace(/\/$/, ''), records });
  } finally {
    records.close();
    await g?.close();
    await up.close();
  }
}

/**
 * Routes that bound an answer's size two ways: `/big` with a maxObjectSize above the whole
 * store (`maxSize`: a body between the two is refused by the store itself), every other path
 * with a maxObjectSize of a quarter of the store.
 */
export function sizeBoundRoutes(maxSize: number): { routes: CacheRoute[]; cache: Record<string, unknown> } {
  return {
    routes: [
      { name: 'big', match: { pathPrefix: '/big' }, cache: { maxObjectSize: 4 * maxSize } },
      { name: 'small', cache: { maxObjectSize: maxSize / 4 } },
    ],
    cache: { maxSize },
  };
}
