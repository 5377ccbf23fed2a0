import { parseDuration } from '../config/duration.js';
import { diagnose, diagnosisJson, DiagnoseInputError, formatDiagnosis, type DiagnoseOptions } from '../diagnose/index.js';
import { command, parseCommand, shortUsage } from './commands.js';
import { UsageError } from './usage.js';

/** The command line as diagnose options; a bad flag throws UsageError (exit 64 for this command). */
export function diagnoseOptions(argv: string[]): { options: DiagnoseOptions; json: boolean } {
  const { values, positionals } = parseCommand(command('diagnose'), argv) as {
    values: { proxy?: string; resolve?: string[]; tries: string; json?: boolean; timeout: string; header?: string[]; method: string; insecure?: boolean };
    positionals: string[];
  };
  if (positionals.length === 0) throw new UsageError('URL is required (e.g. gatewise diagnose http://127.0.0.1:8080/hang)');
  if (positionals.length > 1) throw new UsageError(`one URL at a time, got ${positionals.length}: ${positionals.map((p) => JSON.stringify(p)).join(' ')}`);
  const tries = Number(values.tries); // 1-20, checked by parseCommand (`whole` in the definition)
  const timeoutMs = parseDuration(values.timeout);
  if (timeoutMs === undefined || timeoutMs <= 0) throw new UsageError(`--timeout expects a duration such as 500ms, 2s or 1m, got "${values.timeout}"`);
  return {
    options: {
      url: positionals[0]!,
      ...(values.proxy !== undefined ? { proxy: values.proxy } : {}),
      resolve: values.resolve ?? [],
      tries,
      timeoutMs,
      headers: values.header ?? [],
      method: values.method,
      insecure: Boolean(values.insecure),
    },
    json: Boolean(values.json),
  };
}

/** `gatewise diagnose URL`: prints the diagnosis and exits with the verdict's code. */
export async function diagnoseCommand(argv: string[]): Promise<number> {
  const { options, json } = diagnoseOptions(argv);
  let d;
  try {
    d = await diagnose(options);
  } catch (err) {
    if (err instanceof DiagnoseInputError) {
      process.stderr.write(`gatewise diagnose: ${err.message}\n${shortUsage(command('diagnose'))}`);
      return 64;
    }
    throw err;
  }
  process.stdout.write(json ? JSON.stringify(diagnosisJson(d), null, 2) + '\n' : formatDiagnosis(d));
  return d.verdict.exitCode;
}
