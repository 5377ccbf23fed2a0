// The benchmark's target table is pure computation on a report: which ratio it judges
// (the duel when one ran, else the interleaved medians) and what the bare engine reaches.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DuelResult, Pair } from '../../bench/duels.js';
import type { Report, Summary } from '../../bench/report.js';
import { checkTargets } from '../../bench/targets.js';

function row(scenario: string, contender: string, rate: number, p99Us = 1000): Summary {
  return { scenario, contender, rounds: 3, rate: { median: rate, min: rate, max: rate }, p50Us: p99Us / 2, p99Us, errors: 0 };
}

function duel(a: string, b: string, ratios: number[], load: Pair['load'] = 'get-1k'): DuelResult {
  return { pair: { load, a, b }, cpuRatios: ratios, unitRatios: ratios, cpuPerUnitUs: { a: ratios.map(() => 100), b: ratios.map((r) => 100 * r) } };
}

function report(summaries: Summary[], duels?: DuelResult[]): Report {
  return {
    summaries,
    contenders: [{ id: 'gatewise-quiet', label: 'Gatewise (no access log)', groups: ['reverse'], config: '', measured: ['reverse'], skipped: [], isGatewise: true, idleRssKb: 70 * 1024 }],
    ...(duels ? { duels: { seconds: 6, repeats: duels[0]?.cpuRatios.length ?? 0, results: duels } } : {}),
  } as unknown as Report;
}

const find = (rep: Report, start: string) => {
  const r = checkTargets(rep).find((t) => t.target.startsWith(start));
  assert.ok(r, `no target starting ${start}`);
  return r;
};

test('throughput targets are judged on the duel when one ran, with the interleaved medians beside it', () => {
  const rep = report(
    [row('rev-1k-c50', 'gatewise-quiet', 3000), row('rev-1k-c50', 'http-proxy', 3000), row('rev-1k-c50', 'undici-stream', 3100)],
    [duel('gatewise-quiet', 'http-proxy', [1.6, 1.8, 1.75]), duel('gatewise-quiet', 'undici-stream', [0.9, 1.0, 1.0])],
  );
  const t = find(rep, '`rev-1k-c50` req/s: Gatewise ≥ 1.7× node-http-proxy');
  assert.equal(t.met, true, 'median of the duel (1.75×) meets 1.7× although the interleaved ratio is 1.00×');
  assert.match(t.measured, /duel: \*\*1\.75×\*\*; interleaved: 3,000 \/ 3,000 = 1\.00×/);
  assert.match(t.note, /judged on the duel/);
  // The engine's ratio to http-proxy, derived from the two duels with Gatewise: 1.75 / 1.0.
  assert.equal(t.engine, '1.75× (from the duels with Gatewise)');
});

test('without duels the interleaved medians decide, and the engine ratio comes from them too', () => {
  const rep = report([row('rev-1k-c50', 'gatewise-quiet', 3000), row('rev-1k-c50', 'nginx', 12000), row('rev-1k-c50', 'undici-stream', 3300)]);
  const t = find(rep, '`rev-1k-c50` req/s: Gatewise ≥ 0.45× nginx');
  assert.equal(t.met, false);
  assert.equal(t.measured, '3,000 / 12,000 = 0.25×');
  assert.equal(t.result, '**missed by 44 %**');
  assert.equal(t.engine, '0.28× (interleaved)');
});

test("the engine's own duel wins over derived figures, and a missing contender is reported as not measured", () => {
  const rep = report(
    [row('fwd-connect-c50', 'gatewise-fwd-quiet', 1400), row('fwd-connect-c50', 'squid', 2000)],
    [duel('gatewise-fwd-quiet', 'squid', [0.7], 'connect-per-tunnel'), duel('connect-floor', 'squid', [0.85], 'connect-per-tunnel')],
  );
  const t = find(rep, '`fwd-connect-c50` tunnels/s');
  assert.equal(t.met, false);
  assert.equal(t.engine, '0.85× (duel)');
  const fastify = find(rep, '`rev-1k-c50` req/s: Gatewise ≥ 1.5×');
  assert.equal(fastify.met, undefined);
  assert.equal(fastify.result, 'not measured');
  assert.match(fastify.note, /no `rev-1k-c50` result for Gatewise and @fastify\/http-proxy/);
});

test('latency targets never use duels', () => {
  const rep = report([row('rev-1k-c50-fixed', 'gatewise-quiet', 2000, 3000), row('rev-1k-c50-fixed', 'nginx', 2000, 1000), row('rev-1k-c50-fixed', 'undici-stream', 2000, 2500)], [
    duel('gatewise-quiet', 'nginx', [0.25]),
  ]);
  const t = find(rep, '`rev-1k-c50-fixed` p99');
  assert.equal(t.measured, '3.0 ms / 1.0 ms = 3.00×');
  assert.equal(t.met, false);
  assert.equal(t.engine, '2.50× (interleaved)');
});

test('issue 17: every target is judged on the default configuration (access log on), with the quiet build beside it', () => {
  const rep = report(
    [
      row('rev-1k-c50', 'gatewise', 2800),
      row('rev-1k-c50', 'gatewise-quiet', 3000),
      row('rev-1k-c50', 'http-proxy', 1700),
      row('rev-1k-c50-fixed', 'gatewise', 2000, 2600),
      row('rev-1k-c50-fixed', 'gatewise-quiet', 2000, 2200),
      row('rev-1k-c50-fixed', 'nginx', 2000, 1000),
      row('fwd-connect-c50', 'gatewise-fwd', 1400),
      row('fwd-connect-c50', 'gatewise-fwd-quiet', 1500),
      row('fwd-connect-c50', 'squid', 2000),
    ],
    [
      duel('gatewise', 'http-proxy', [1.6, 1.65, 1.62]),
      duel('gatewise-quiet', 'http-proxy', [1.8, 1.9, 1.85]),
      duel('gatewise-fwd', 'squid', [0.7, 0.72, 0.71], 'connect-per-tunnel'),
      duel('gatewise-fwd-quiet', 'squid', [0.8], 'connect-per-tunnel'),
    ],
  );
  const proxy = find(rep, '`rev-1k-c50` req/s: Gatewise ≥ 1.7× node-http-proxy');
  assert.equal(proxy.met, false, 'the default (1.62×) misses 1.7× although the quiet build (1.85×) meets it');
  assert.match(proxy.measured, /duel: \*\*1\.62×\*\*/);
  assert.equal(proxy.quiet, '1.85× (duel)');
  assert.match(proxy.note, /^Gatewise \(default/);
  const p99 = find(rep, '`rev-1k-c50-fixed` p99');
  assert.equal(p99.measured, '2.6 ms / 1.0 ms = 2.60×');
  assert.equal(p99.quiet, '2.20× (interleaved)');
  const connect = find(rep, '`fwd-connect-c50` tunnels/s');
  assert.match(connect.measured, /duel: \*\*0\.71×\*\*/);
  assert.equal(connect.quiet, '0.80× (duel)');
  // Without the default's rows the quiet build is judged, and the note says so.
  const quietOnly = report([row('rev-1k-c50', 'gatewise-quiet', 3000), row('rev-1k-c50', 'http-proxy', 1700)], [duel('gatewise-quiet', 'http-proxy', [1.8])]);
  const q = find(quietOnly, '`rev-1k-c50` req/s: Gatewise ≥ 1.7× node-http-proxy');
  assert.match(q.measured, /duel: \*\*1\.80×\*\*/);
  assert.match(q.note, /as Gatewise \(default.*did not run/);
  assert.equal(q.quiet, '—');
});
