import { test } from 'node:test';
import assert from 'node:assert/strict';
import { channel } from 'node:diagnostics_channel';
import { attachMetrics } from '../../src/observe/metrics.js';
import { REQUEST_END_CHANNEL, type ReverseRecord } from '../../src/record/index.js';
import { seededRun } from '../helpers/seeded.js';

const BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

function record(durationMs: number, headersMs: number): ReverseRecord {
  return {
    face: 'reverse', protocol: 'http', time: Date.now(), requestId: 'r', clientAddress: '127.0.0.1', method: 'GET', status: 200, error: undefined, reason: undefined,
    phase: undefined, endedBy: 'complete', detail: undefined, bytesUp: 0, bytesDown: 10, durationMs, listener: 'l', host: 'h', path: '/', httpVersion: '1.1',
    route: 'r', cluster: 'c', attempts: [{ endpoint: 'e', phase: 'body', connection: 'reused', status: 200, startMs: 0, headersMs }], upgrade: false,
  };
}

/** Cumulative bucket counts, sum and count of one histogram series, as prom-client exports them. */
async function series(m: ReturnType<typeof attachMetrics>, name: string, match: Record<string, string>): Promise<{ buckets: number[]; sum: number; count: number }> {
  const data = await m.registry.getSingleMetric(name)!.get();
  const values = data.values as Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>;
  const mine = values.filter((v) => Object.entries(match).every(([k, x]) => v.labels[k] === x));
  const buckets = BOUNDS.map((b) => mine.find((v) => v.metricName === `${name}_bucket` && v.labels.le === b)?.value ?? 0);
  return { buckets, sum: mine.find((v) => v.metricName === `${name}_sum`)?.value ?? 0, count: mine.find((v) => v.metricName === `${name}_count`)?.value ?? 0 };
}

test('histograms count every observation, however many come between two scrapes (more than 10,000 used to be halved), into the buckets prom-client would choose (seeded)', async () => {
  await seededRun('histogram counts', async (rand) => {
    const m = attachMetrics();
    const publish = channel(REQUEST_END_CHANNEL);
    try {
      const want = { buckets: BOUNDS.map(() => 0), sum: 0, count: 0 };
      const head = { buckets: BOUNDS.map(() => 0), count: 0 };
      for (let scrape = 0; scrape < 3; scrape++) {
        const n = scrape === 0 ? 10_001 + Math.floor(rand() * 20_000) : Math.floor(rand() * 3000);
        for (let i = 0; i < n; i++) {
          // Values in every bucket, on the bounds themselves, and above the last bound.
          const seconds = rand() < 0.2 ? BOUNDS[Math.floor(rand() * BOUNDS.length)]! : rand() < 0.05 ? 61 + rand() * 100 : Math.exp(Math.log(0.0001) + rand() * Math.log(1e6));
          const headersMs = Math.floor(rand() * 3000);
          publish.publish(record(seconds * 1000, headersMs));
          const d = (seconds * 1000) / 1000; // what the subscriber observes: durationMs / 1000
          BOUNDS.forEach((b, j) => (want.buckets[j]! += d <= b ? 1 : 0));
          want.sum += d;
          want.count++;
          BOUNDS.forEach((b, j) => (head.buckets[j]! += headersMs / 1000 <= b ? 1 : 0));
          head.count++;
        }
        const got = await series(m, 'gatewise_request_duration_seconds', { face: 'reverse', protocol: 'http' });
        assert.equal(got.count, want.count, `scrape ${scrape}: count`);
        assert.deepEqual(got.buckets, want.buckets, `scrape ${scrape}: buckets`);
        assert.ok(Math.abs(got.sum - want.sum) <= 1e-9 * Math.max(1, want.sum), `scrape ${scrape}: sum ${got.sum} against ${want.sum}`);
        const h = await series(m, 'gatewise_upstream_response_head_seconds', { cluster: 'c' });
        assert.equal(h.count, head.count, `scrape ${scrape}: response head count`);
        assert.deepEqual(h.buckets, head.buckets, `scrape ${scrape}: response head buckets`);
      }
    } finally {
      m.detach();
    }
  });
});
