import { LAB_FAULTS, faultUrl, startLab } from '../lab/index.js';
import { UsageError } from './usage.js';
import { listenFailure } from './bind-failure.js';
import { releaseYoungGeneration } from './young-generation.js';
import { command, parseCommand } from './commands.js';

/** `gatewise lab`: the failure lab as a standalone upstream. */
export async function labCommand(argv: string[]): Promise<number> {
  const values = parseCommand(command('lab'), argv).values as {
    host: string;
    port: string;
    'no-tls'?: boolean;
    capacity: string;
    queue: string;
    'keep-alive-timeout': string;
    'idle-close'?: string;
    'max-requests'?: string;
    'close-header'?: boolean;
  };
  // Each number flag's range is checked by parseCommand (its `whole` in the definition), so a bad
  // value is a usage error naming its flag (exit 2), not the lab's own error after the parse
  // (finding, session 29: "options.port should be >= 0 …", exit 1).
  const range = (v: string): [number, number] => {
    const m = /^(\d+)-(\d+)$/.exec(v);
    if (!m || Number(m[1]) > Number(m[2])) throw new UsageError(`--idle-close expects MIN-MAX in milliseconds (MIN <= MAX), got "${v}"`);
    return [Number(m[1]), Number(m[2])];
  };
  const port = Number(values.port);
  const lab = await startLab({
    host: values.host,
    port,
    tls: !values['no-tls'],
    capacity: Number(values.capacity),
    queue: Number(values.queue),
    keepAliveTimeoutMs: Number(values['keep-alive-timeout']),
    idleCloseMs: values['idle-close'] === undefined ? undefined : range(values['idle-close']),
    maxRequestsPerConnection: values['max-requests'] === undefined ? undefined : Number(values['max-requests']),
    closeHeaderOnLast: values['close-header'] === true,
  }).catch((err: unknown) => {
    throw listenFailure(err, [[{ address: values.host, port }, '--port']]);
  });
  releaseYoungGeneration(); // started (src/cli/young-generation.ts)
  const out: string[] = [`gatewise lab listening on ${lab.url}`];
  if (lab.tlsSelfSignedUrl) out.push(`  TLS, self-signed certificate: ${lab.tlsSelfSignedUrl}`);
  if (lab.tlsCaUrl) out.push(`  TLS, lab CA certificate:      ${lab.tlsCaUrl}`);
  out.push(`  refused port (nothing listens): ${lab.refusedPort}`, '');
  for (const f of LAB_FAULTS) {
    const url = faultUrl(lab, f);
    if (url) out.push(`  ${url.padEnd(52)} ${f.description}`);
  }
  process.stdout.write(out.join('\n') + '\n\nCtrl-C to stop.\n');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await lab.close();
  return 0;
}
