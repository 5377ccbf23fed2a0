import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestGateway } from '../helpers/gateway.js';
import { sendRouted, startOkClusters, type OkClusters, type Routed } from '../helpers/routed.js';
import type { ScriptedUpstream } from '../helpers/scripted-upstream.js';
import { everyCase, seededRandom, withSeed } from '../helpers/seeded.js';

/**
 * `match.caseInsensitive`: prefixes are compared with case (as nginx's and Envoy's), so
 * `/ADMIN` did not take an `/admin` route, and an upstream whose router ignores case
 * (Express's default, ASP.NET, IIS) served it as `/admin` from the catch-all route. A route
 * with `caseInsensitive: true` compares its prefix without ASCII case; the path is forwarded
 * as the client spelled it (the prefix rewrite still replaces the matched part). Routes
 * without it keep comparing with case.
 */

let rig: OkClusters<'admin' | 'docs' | 'api' | 'pub'> | undefined;
let admin: ScriptedUpstream;
let docs: ScriptedUpstream;
let api: ScriptedUpstream;
let pub: ScriptedUpstream;
let gw: TestGateway;

before(async () => {
  rig = await startOkClusters(['admin', 'docs', 'api', 'pub'], {
    routes: [
      { match: { pathPrefix: '/admin', caseInsensitive: true }, cluster: 'admin' },
      { match: { pathPrefix: '/Docs/', caseInsensitive: true }, cluster: 'docs', stripPrefix: true },
      { match: { pathPrefix: '/api' }, cluster: 'api' },
      { cluster: 'pub' },
    ],
  });
  ({ gateway: gw, upstreams: { admin, docs, api, pub } } = rig);
});

after(async () => {
  await rig?.close();
});

async function send(target: string): Promise<Routed> {
  return sendRouted(gw.port, target, { admin, docs, api, pub });
}

describe('match.caseInsensitive', () => {
  test('the examples: the route taken and the path forwarded', { timeout: 60_000 }, async () => {
    const cases: Array<[string, string, string]> = [
      ['/admin', 'admin', '/admin'],
      ['/ADMIN', 'admin', '/ADMIN'],
      ['/aDmIn/Panel?Q=1', 'admin', '/aDmIn/Panel?Q=1'],
      ['/ADMIN;x/y', 'admin', '/ADMIN;x/y'],
      ['/%41dmin', 'admin', '/Admin'],
      ['/ADMINS', 'pub', '/ADMINS'],
      ['/docs/a/B', 'docs', '/a/B'],
      ['/DOCS/x?y', 'docs', '/x?y'],
      ['/DOCS;v=1/x', 'docs', '/x'],
      ['/docs', 'pub', '/docs'],
      ['/api/x', 'api', '/api/x'],
      ['/API/x', 'pub', '/API/x'],
    ];
    await everyCase(cases, async ([target, upstream, url]) => {
      const r = await send(target);
      assert.equal(r.status, 200, target);
      assert.deepEqual(r.reached, { upstream, url }, target);
    }, 'examples');
  });

  test('property: every seeded ASCII casing of a case-insensitive prefix takes its route; of a case-sensitive one, only its own', { timeout: 120_000 }, async () => {
    const rand = seededRandom();
    const flip = (s: string): string => [...s].map((c) => (rand.next() < 0.5 ? c.toUpperCase() : c.toLowerCase())).join('');
    const tails = ['', '/', '/x', '/X/y', '?q=A', '/a;b', 'x', 'S/'];
    await withSeed(rand, async () => {
      for (let i = 0; i < 60; i++) {
        const which = rand.pick(['admin', 'docs', 'api'] as const);
        const word = flip(which);
        const tail = rand.pick(tails);
        const target = `/${word}${tail}`;
        const boundary = tail === '' || tail.startsWith('/') || tail.startsWith('?');
        let want: { upstream: string; url: string };
        if (which === 'admin') want = boundary ? { upstream: 'admin', url: target } : { upstream: 'pub', url: target };
        else if (which === 'docs') {
          want = tail.startsWith('/') ? { upstream: 'docs', url: tail } : { upstream: 'pub', url: target };
        } else want = boundary && word === 'api' ? { upstream: 'api', url: target } : { upstream: 'pub', url: target };
        const r = await send(target);
        assert.equal(r.status, 200, target);
        assert.deepEqual(r.reached, want, target);
      }
    });
  });
});
