import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { validateConfig } from '../config/load.js';
import { REQUEST_END_CHANNEL, type RequestRecord } from '../record/index.js';
import type { ConfigInput } from '../config/schema.js';
import { LAB_FAULTS, startLab, type Lab, type LabFault } from '../lab/index.js';
import { startRuntime, untilSignal } from './runtime.js';
import { UsageError } from './usage.js';
import { listenFailure } from './bind-failure.js';
import { command, parseCommand } from './commands.js';

const PREFIX: Record<string, string> = { http: '', refused: '/_refused', 'tls-self-signed': '/_tls-self', 'tls-ca': '/_tls-ca' };

/**
 * Clusters and routes that put every lab listener behind one gateway: the lab itself at
 * `/`, and `/_refused`, `/_tls-self`, `/_tls-ca` for the other listeners (prefix stripped).
 */
export function labGatewayConfig(lab: Lab, caFile: string, timeouts: { connect: string; response: string; idle: string }): Pick<ConfigInput, 'clusters' | 'routes'> {
  return {
    clusters: {
      lab: { endpoints: [lab.url], timeouts },
      refused: { endpoints: [`http://127.0.0.1:${lab.refusedPort}`], timeouts },
      tlsSelf: { endpoints: [lab.tlsSelfSignedUrl!], timeouts },
      tlsCa: { endpoints: [lab.tlsCaUrl!], timeouts, tls: { ca: caFile } },
    },
    routes: [
      { name: 'refused', match: { pathPrefix: '/_refused' }, cluster: 'refused', stripPrefix: true },
      { name: 'tls-self-signed', match: { pathPrefix: '/_tls-self' }, cluster: 'tlsSelf', stripPrefix: true },
      { name: 'tls-ca', match: { pathPrefix: '/_tls-ca' }, cluster: 'tlsCa', stripPrefix: true, host: 'endpoint' },
      { name: 'lab', cluster: 'lab' },
    ],
  };
}

interface ProbeResult {
  status: number;
  error: string;
  note: string;
}

/**
 * `gatewise demo`: the gateway in front of the failure lab, and a table of URLs to
 * try, one per cause, with what the gateway answered when the demo probed each.
 */
export async function demoCommand(argv: string[]): Promise<number> {
  const values = parseCommand(command('demo'), argv).values as { port: string; 'admin-port'?: string; once?: boolean; log?: boolean };
  // Both ports' range is checked by parseCommand (their `whole` in the definition).
  const port = Number(values.port);
  if (values['admin-port'] === undefined && port === 65535) throw new UsageError('--port 65535 leaves no port above it for the dashboard: give --admin-port N');
  const adminPort = values['admin-port'] === undefined ? (port === 0 ? 0 : port + 1) : Number(values['admin-port']);
  if (adminPort === port && port !== 0) throw new UsageError(`--admin-port ${adminPort} is the gateway's --port: give another`);
  const lab = await startLab({ tls: true });
  const dir = mkdtempSync(join(tmpdir(), 'gatewise-demo-'));
  const caFile = join(dir, 'lab-ca.pem');
  writeFileSync(caFile, lab.caPem ?? '');
  const config = validateConfig(
    {
      name: 'gatewise-demo',
      listeners: [{ address: '127.0.0.1', port }],
      ...labGatewayConfig(lab, caFile, { connect: '1s', response: '1500ms', idle: '1500ms' }),
      log: { access: Boolean(values.log), level: values.log ? 'info' : 'warn' },
      admin: { address: '127.0.0.1', port: adminPort },
    },
    'gatewise demo',
  );
  let rt;
  try {
    rt = await startRuntime(config, { probeUpstreams: false }); // the lab's unreachable endpoints are the point of the demo
  } catch (err) {
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
    throw listenFailure(err, [
      [{ address: '127.0.0.1', port }, '--port'],
      [{ address: '127.0.0.1', port: adminPort }, '--admin-port'],
    ]);
  }
  const base = rt.gateway!.addresses()[0]!.url;
  process.stdout.write(
    `Gatewise demo: the gateway at ${base} stands in front of the failure lab at ${lab.url}.\n` +
      `Dashboard: ${rt.adminUrl}/  (live: each cause appears under its own name as requests fail)\n` +
      `Probing every cause once...\n\n`,
  );
  const results = await probeAll(base);
  const rows = LAB_FAULTS.map((f, i) => {
    const url = base + PREFIX[f.listener ?? 'http'] + f.path;
    const r = results[i]!;
    const answer = `${r.status || '-'} ${r.error}${r.note ? ` ${r.note}` : ''}`;
    return [url, f.description, answer] as const;
  });
  const w0 = Math.max(...rows.map((r) => r[0].length), 3);
  const w2 = Math.max(...rows.map((r) => r[2].length), 16);
  const lines = [`${'URL'.padEnd(w0)}  ${'gateway answered'.padEnd(w2)}  what the upstream does`, `${'-'.repeat(w0)}  ${'-'.repeat(w2)}  ${'-'.repeat(22)}`];
  for (const [url, what, answer] of rows) lines.push(`${url.padEnd(w0)}  ${answer.padEnd(w2)}  ${what}`);
  process.stdout.write(lines.join('\n') + '\n\n');
  process.stdout.write(
    `Try them with curl (-i shows Proxy-Status), a browser (an error page in plain words), or\n` +
      `curl -H 'accept: application/json' for the problem+json body.\n` +
      `Ask which hop failed and whose side must act, in another terminal:\n` +
      `  gatewise diagnose ${base}/hang\n` +
      `(or npx gatewise diagnose, or node bin/gatewise.js diagnose from a checkout).${values.once ? '' : ' Ctrl-C to stop.'}\n`,
  );
  const stop = async (): Promise<void> => {
    await rt.close();
    await lab.close();
    rmSync(dir, { recursive: true, force: true });
  };
  if (values.once) {
    await stop();
    return results.every((r, i) => matches(LAB_FAULTS[i]!, r)) ? 0 : 1;
  }
  const code = await untilSignal({ ...rt, close: stop });
  return code;
}

function matches(f: LabFault, r: ProbeResult): boolean {
  if (f.path === '/ws') return true;
  return r.status === f.expectStatus && (f.expectType ?? '') === (r.error === '-' ? '' : r.error);
}

async function probeAll(base: string): Promise<ProbeResult[]> {
  const agent = new Agent({ keepAliveTimeout: 500 });
  const seen = new Map<string, RequestRecord>();
  const onEnd = (m: unknown): void => {
    const r = m as RequestRecord;
    seen.set(r.requestId, r);
  };
  subscribe(REQUEST_END_CHANNEL, onEnd);
  try {
    return await Promise.all(
      LAB_FAULTS.map(async (f): Promise<ProbeResult> => {
        if (f.path === '/ws') return { status: 101, error: '-', note: '(WebSocket echo)' };
        const url = base + PREFIX[f.listener ?? 'http'] + f.path;
        try {
          const res = await request(url, { dispatcher: agent, headers: { accept: 'application/json' }, headersTimeout: 5000, bodyTimeout: 5000 });
          let cut = false;
          try {
            await res.body.arrayBuffer();
          } catch {
            cut = true;
          }
          const ps = String(res.headers['proxy-status'] ?? '');
          let error = /;error=([a-z_]+)/.exec(ps)?.[1];
          const rid = String(res.headers['x-request-id'] ?? '');
          if (cut) {
            for (let i = 0; i < 50 && !seen.has(rid); i++) await new Promise((r) => setTimeout(r, 10));
            error = seen.get(rid)?.error ?? error;
          }
          return { status: res.statusCode, error: error ?? '-', note: cut ? '(body cut short: connection aborted)' : '' };
        } catch (err) {
          return { status: 0, error: '-', note: `(client error: ${(err as NodeJS.ErrnoException).code ?? 'unknown'})` };
        }
      }),
    );
  } finally {
    unsubscribe(REQUEST_END_CHANNEL, onEnd);
    await agent.close();
  }
}
