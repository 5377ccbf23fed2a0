import type { LineCounter, Document } from 'yaml';
import { checkConfigFile, checkConfigText, issuesToProblems, pathString, type CheckOptions, type ConfigProblem } from './check.js';
import { configSchema, type Config } from './schema.js';

export { pathString, type ConfigProblem };

/** A config that was refused. Carries every problem found, not just the first. */
export class ConfigError extends Error {
  readonly code = 'GATEWISE_CONFIG_INVALID';
  readonly problems: readonly ConfigProblem[];
  readonly file: string | undefined;

  constructor(problems: readonly ConfigProblem[], file?: string) {
    super(formatProblems(problems, file));
    this.name = 'ConfigError';
    this.problems = problems;
    this.file = file;
  }
}

/** One line per problem, `file:line:column  path: message`, under a count. */
export function formatProblems(problems: readonly ConfigProblem[], file?: string, noun = 'problem'): string {
  const head = `${file ?? 'config'}: ${problems.length} ${noun}${problems.length === 1 ? '' : 's'}`;
  return [head, ...problems.map((p) => `  ${problemLine(p, file)}`)].join('\n');
}

export function problemLine(p: ConfigProblem, file?: string): string {
  const f = p.file ?? file ?? 'config';
  const where = p.line !== undefined ? `${f}:${p.line}:${p.column ?? 1}` : f;
  return `${where}  ${p.path || '(root)'}: ${p.message}`;
}

/** Validate an already-parsed object (library use). Throws ConfigError with every problem. */
export function validateConfig(input: unknown, file?: string, doc?: { doc: Document; lc: LineCounter }): Config {
  const result = configSchema.safeParse(input);
  if (result.success) return result.data;
  throw new ConfigError(issuesToProblems(result.error.issues, configSchema, doc), file);
}

/**
 * Parse YAML or JSON text and validate it against the schema (references included); nothing
 * on this host is looked at. `loadConfigFile` checks the files and addresses too.
 */
export function parseConfigText(text: string, file?: string): Config {
  const r = checkConfigText(text, file, { host: false });
  if (!r.config) throw new ConfigError(r.problems, file);
  return r.config;
}

export interface LoadOptions extends CheckOptions {
  /** Called with the warnings of a config that is otherwise fine. */
  onWarnings?: (warnings: readonly ConfigProblem[]) => void;
}

/**
 * Load a config file as `gatewise run` does: every check `gatewise check` makes (the same
 * function), every problem in one ConfigError.
 */
export async function loadConfigFile(file: string, opts: LoadOptions = {}): Promise<Config> {
  const r = checkConfigFile(file, opts);
  if (r.warnings.length) opts.onWarnings?.(r.warnings);
  if (!r.config) throw new ConfigError(r.problems, file);
  return r.config;
}
