import { parseArgs } from 'node:util';
import { LAB_FAULTS, faultUrl, startLab } from '../lab/index.js';
import { UsageError } from './usage.js';

/** `gatewise lab`: the failure lab as a standalone upstream. */
export async function labCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '3000' },
      'no-tls': { type: 'boolean', default: false },
      capacity: { type: 'string', default: '4' },
      queue: { type: 'string', default: '16' },
      'keep-alive-timeout': { type: 'string', default: '5000' },
    },
    strict: true,
  });
  const num = (v: string, flag: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} expects a whole number, got "${v}"`);
    return n;
  };
  const lab = await startLab({
    host: values.host,
    port: num(values.port!, '--port'),
    tls: !values['no-tls'],
    capacity: num(values.capacity!, '--capacity'),
    queue: num(values.queue!, '--queue'),
    keepAliveTimeoutMs: num(values['keep-alive-timeout']!, '--keep-alive-timeout'),
  });
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
