import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { run, startTestProxy, tableResolver, type TestProxy } from './helpers.js';
import { corpusPath, loadJson, pool, replay, splitResponses, toAbsoluteForm, type LlhttpCase, type SmugglerCase } from './corpus-replay.js';
import { startStrictDestination, type StrictDestination } from './strict-destination.js';

/**
 * llhttp marks these as errors for what comes AFTER a complete first message (bytes after
 * `Connection: close` or an HTTP/1.0 message, or its pause on Upgrade, which a proxy does
 * not honour because Upgrade is hop-by-hop). Forwarding that first message is correct;
 * nothing after it may be.
 */
const ERROR_AFTER_FIRST_MESSAGE = new Set([
  'llhttp/connection/2',
  'llhttp/connection/7',
  'llhttp/connection/8',
  'llhttp/connection/10',
  'llhttp/connection/12',
  'llhttp/connection/13',
  'llhttp/connection/14',
  'llhttp/connection/15',
]);

const llhttpPath = corpusPath('llhttp-requests.json');
const smugglerPath = corpusPath('smuggler-mutations.json');

describe('hostile-request corpora through the HTTP proxy (absolute-form)', () => {
  let dest: StrictDestination;
  let p: TestProxy;

  before(async () => {
    dest = await startStrictDestination();
    // Only the strict destination is reachable; names resolve nowhere (no DNS traffic).
    p = await startTestProxy(
      { auth: { required: false }, rules: { allowPrivate: false, defaultAction: 'deny', allow: [{ cidrs: ['127.0.0.1/32'], ports: [dest.port] }] } },
      { resolver: tableResolver({}) },
    );
  });
  after(async () => {
    await p.close();
    await dest.close();
  });

  it('llhttp request fixtures: nothing ambiguous reaches the destination; rejected requests are answered 4xx and not forwarded', async () => {
    const cases = loadJson<LlhttpCase[]>(llhttpPath);
    assert.equal(cases.length, 128);
    const results = await pool(cases, 16, async (c, i) => {
      const raw = toAbsoluteForm(Buffer.from(c.raw, 'base64').toString('latin1'), dest.port, `c${i}`);
      return { c, i, responses: splitResponses(await replay(p.port, Buffer.from(raw, 'latin1'), 120, 6000)) };
    });
    assert.deepEqual(dest.violations, [], 'the destination saw an ambiguous request');
    for (const { c, i, responses } of results) {
      const forwarded = dest.targets.filter((t) => t.startsWith(`/c${i}/`)).length;
      // (HEAD answers carry a Content-Length but no body.)
      for (const r of responses) if (r.status === 200 && r.body.length > 0) assert.ok(r.body.startsWith(`/c${i}/`), `${c.id}: got another request's response ${r.body}`);
      if (!c.expectError) continue;
      if (ERROR_AFTER_FIRST_MESSAGE.has(c.id)) {
        assert.ok(forwarded <= 1, `${c.id}: forwarded ${forwarded} messages`);
      } else {
        assert.equal(forwarded, 0, `${c.id} (${c.title}) was forwarded`);
        assert.ok(responses.length > 0 && responses[0]!.status >= 400 && responses[0]!.status < 500, `${c.id} (${c.title}): answered ${responses.map((r) => r.status).join(',') || 'nothing'}`);
      }
    }
    const rejected = results.filter((r) => r.c.expectError && r.responses[0]?.status === 400).length;
    assert.ok(rejected >= 40, `only ${rejected} strict rejections answered 400`);
  });

  it('smuggler mutations as CL.TE and TE.CL probes: no ambiguity forwarded, 400s never forwarded, no crossed responses', async () => {
    const cases = loadJson<SmugglerCase[]>(smugglerPath);
    assert.ok(cases.length > 1000);
    const probes: Array<{ id: string; raw: string }> = [];
    cases.forEach((c, i) => {
      const variants: Array<[string, string, number]> = [
        ['clte', '1\r\nZ\r\nQ', 4],
        ['tecl', '0\r\n\r\nX', 6],
      ];
      for (const [kind, body, cl] of variants) {
        const id = `${kind}${i}`;
        const head = c.header
          .replaceAll('__METHOD__', 'POST')
          .replaceAll('__ENDPOINT__', `http://127.0.0.1:${dest.port}/s`)
          .replaceAll('__HOST__', `127.0.0.1:${dest.port}`)
          .replaceAll('__RANDOM__', id)
          .replaceAll('__REPLACE_CL__', String(cl));
        probes.push({ id, raw: head + '\r\n' + body });
      }
    });
    const results = await pool(probes, 64, async (pr) => ({ pr, responses: splitResponses(await replay(p.port, Buffer.from(pr.raw, 'latin1'), 80, 1000)) }));
    // 64 probes at once with a 1 s cap: on a loaded machine (CI beside other work) an answer can
    // come after the cap. A probe left without one is sent again alone with a 10 s cap, so
    // "no answer" below means the proxy never answered, not that it was slow (a bounded retry:
    // at most every probe once, one at a time).
    for (const r of results) {
      if (r.responses.length === 0) r.responses = splitResponses(await replay(p.port, Buffer.from(r.pr.raw, 'latin1'), 80, 10_000));
    }
    assert.deepEqual(dest.violations, [], 'the destination saw an ambiguous request');
    const seen = new Set(dest.targets.map((t) => t.slice(t.indexOf('cb=') + 3)));
    let rejected = 0;
    for (const { pr, responses } of results) {
      assert.ok(responses.length > 0, `${pr.id}: no answer`);
      if (responses[0]!.status === 400) {
        rejected++;
        assert.ok(!seen.has(pr.id), `${pr.id}: answered 400 but forwarded`);
      }
      for (const r of responses) if (r.status === 200) assert.ok(r.body.endsWith(`cb=${pr.id}`), `${pr.id}: got ${r.body}`);
    }
    assert.ok(rejected > probes.length * 0.9, `${rejected} of ${probes.length} rejected`);
  });

  it('keeps serving after the replays', async () => {
    const r = await run('curl', ['-sS', '-x', p.url, `http://127.0.0.1:${dest.port}/still-alive`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '/still-alive');
  });
});
