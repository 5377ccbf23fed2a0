import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { startLab } from '../../src/lab/index.js';
import { BIN, startDemo } from '../helpers/gatewise-process.js';


function run(args: string[], timeout = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

// 13 CLI processes one after another: each starts Node and loads the CLI (seconds each on a loaded machine).
test('diagnose: bad input exits 64 with a message naming the flag or value, before sending anything', { timeout: 180_000 }, async () => {
  const cases: Array<[string[], RegExp]> = [
    [['example.com/x'], /^gatewise diagnose: URL "example\.com\/x" is not a URL: it needs a scheme, e\.g\. http:\/\/example\.com\/x/],
    [['ftp://127.0.0.1/'], /the scheme ftp:\/\/ is not supported; use http:\/\/ or https:\/\//],
    [['http://127.0.0.1:70000/'], /is not a valid URL/],
    [[], /URL is required \(e\.g\. gatewise diagnose http:\/\/127\.0\.0\.1:8080\/hang\)/],
    [['http://a/', 'http://b/'], /one URL at a time/],
    [['http://127.0.0.1:1/', '--tries', '0'], /--tries expects a whole number from 1 to 20, got "0"/],
    [['http://127.0.0.1:1/', '--timeout', 'forever'], /--timeout expects a duration such as 500ms, 2s or 1m, got "forever"/],
    [['http://127.0.0.1:1/', '-H', 'nocolon'], /-H "nocolon": expected 'Name: value'/],
    [['http://127.0.0.1:1/', '--resolve', 'example.com:443'], /--resolve "example\.com:443": expected HOST:PORT:ADDRESS/],
    [['http://127.0.0.1:1/', '--proxy', 'socks5://127.0.0.1:1080'], /--proxy "socks5:\/\/127\.0\.0\.1:1080": the scheme socks5:\/\/ is not supported; use http:\/\//],
    [['http://127.0.0.1:1/', '--method', 'G E T'], /--method "G E T": expected an HTTP method/],
    [['http://127.0.0.1:1/', '--frobnicate'], /unknown option --frobnicate\n/],
    [['http://127.0.0.1:1/', '--tries'], /--tries needs a value \(N\)/],
  ];
  for (const [args, message] of cases) {
    const r = await run(['diagnose', ...args]);
    assert.equal(r.code, 64, `${args.join(' ')}: exit ${r.code} ${r.stderr}`);
    assert.equal(r.stdout, '', args.join(' '));
    assert.match(r.stderr, message, args.join(' '));
    assert.match(r.stderr, /usage: gatewise diagnose/, args.join(' '));
  }
});

test('diagnose: exit codes 0 healthy and 1 site side; --json prints one object with the verdict', { timeout: 60_000 }, async () => {
  const lab = await startLab();
  try {
    const ok = await run(['diagnose', `${lab.url}/ok`, '--tries', '1']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /^Verdict: HEALTHY/m);
    const refused = await run(['diagnose', `http://127.0.0.1:${lab.refusedPort}/`, '--tries', '1', '--json']);
    assert.equal(refused.code, 1, refused.stderr);
    const d = JSON.parse(refused.stdout) as { verdict: { exitCode: number; errorType: string; phase: string; side: string } };
    assert.deepEqual([d.verdict.exitCode, d.verdict.errorType, d.verdict.phase, d.verdict.side], [1, 'connection_refused', 'connect', 'upstream']);
    const hdr = await run(['diagnose', `${lab.url}/echo`, '--tries', '1', '--json', '-H', 'X-Probe: 42', '--method', 'POST']);
    assert.equal(hdr.code, 0, hdr.stderr);
    const echoed = JSON.parse(JSON.parse(hdr.stdout).main.http.body) as { method: string; headers: Record<string, string> };
    assert.equal(echoed.method, 'POST');
    assert.equal(echoed.headers['x-probe'], '42');
  } finally {
    await lab.close();
  }
});

test('a newcomer during gatewise demo: the demo says how to run diagnose, and its verdict names the gateway, the timeout and whose side', { timeout: 90_000 }, async () => {
  const demo = await startDemo();
  const out = demo.out();
  try {
    const printed = /^ {2}gatewise diagnose (http:\/\/127\.0\.0\.1:\d+\/hang)$/m.exec(out);
    assert.ok(printed, `the demo prints the diagnose command:\n${out}`);
    const r = await run(['diagnose', printed[1]!]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const verdict = r.stdout.slice(r.stdout.indexOf('Verdict:'));
    assert.match(verdict, /^Verdict: FAILING — whose side: the SITE's side/);
    assert.match(verdict, /gatewise-demo \(Gatewise, gateway\) answered 504 itself: http_response_timeout: The upstream server did not answer in time/);
    assert.match(verdict, /Which hop: gatewise-demo \(Gatewise, gateway\); failed phase: headers; error type: http_response_timeout/);
    assert.match(verdict, /Whom to contact: the operators of 127\.0\.0\.1:\d+, quoting:\n(.*\n)*? {4}- x-request-id: \S+ \(Gatewise\)/);
    assert.match(verdict, /Exit code 1 /);
  } finally {
    await demo.stop();
  }
});

test('diagnose: what the remote side sent reaches the terminal without its control characters (a hostile page title and body)', { timeout: 60_000 }, async () => {
  // Finding (adversarial review, session 29): a page whose title held `&#27;[2J…&#7;` wrote a raw
  // ESC sequence and BEL to the operator's terminal.
  const { createServer } = await import('node:http');
  const controls = ['&#27;[2J', '&#x1b;]0;pwned&#7;', '&#155;31m', '\u001b[31m', '&#13;Verdict: HEALTHY'];
  const server = createServer((req, res) => {
    const body = `<html><head><title>Oops ${controls.join(' ')}</title></head><body><h1>Bad \u0007 gateway</h1></body></html>`;
    res.writeHead(502, { 'content-type': 'text/html', server: 'evil' });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as { port: number }).port;
    const r = await run(['diagnose', `http://127.0.0.1:${port}/`, '--tries', '1']);
    assert.match(r.stdout, /the page says/, r.stdout);
    assert.doesNotMatch(r.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, JSON.stringify(r.stdout));
    assert.match(r.stdout, /\\u001b\[2J/, 'shown as a visible escape');
  } finally {
    server.close();
  }
});
