import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';

/** One problem in a config, located by path and (when known) line and column. */
export interface ConfigProblem {
  path: string;
  message: string;
  line?: number;
  column?: number;
}

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

export function formatProblems(problems: readonly ConfigProblem[], file?: string): string {
  const head = `${file ?? 'config'}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`;
  const lines = problems.map((p) => {
    const where = p.line !== undefined ? `${file ?? 'config'}:${p.line}:${p.column ?? 1}` : file ?? 'config';
    return `  ${where}  ${p.path || '(root)'}: ${p.message}`;
  });
  return [head, ...lines].join('\n');
}

/** A config path as the problems name it: `a.b[0].c`. */
export function pathString(path: readonly PropertyKey[]): string {
  let s = '';
  for (const p of path) {
    if (typeof p === 'number') s += `[${p}]`;
    else s += s ? `.${String(p)}` : String(p);
  }
  return s;
}

/** Find the closest node in the YAML document for a path, for its line. */
function locate(doc: Document, lc: LineCounter, path: readonly PropertyKey[]): { line: number; column: number } | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true);
    if (isNode(node) && node.range) {
      const pos = lc.linePos(node.range[0]);
      return { line: pos.line, column: pos.col };
    }
  }
  return undefined;
}

/** Validate an already-parsed object (library use). Throws ConfigError with every problem. */
export function validateConfig(input: unknown, file?: string, doc?: { doc: Document; lc: LineCounter }): Config {
  const result = configSchema.safeParse(input);
  if (result.success) return result.data;
  throw new ConfigError(issuesToProblems(result.error.issues, doc), file);
}

function issuesToProblems(issues: readonly z.core.$ZodIssue[], doc?: { doc: Document; lc: LineCounter }): ConfigProblem[] {
  return issues.map((issue) => {
    const path = issue.path as PropertyKey[];
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') message = `unknown key${issue.keys.length > 1 ? 's' : ''}: ${issue.keys.join(', ')}`;
    const pos = doc ? locate(doc.doc, doc.lc, path) : undefined;
    return { path: pathString(path), message, ...(pos ?? {}) };
  });
}

/** Parse YAML or JSON text (JSON is parsed by the YAML parser too, so both get line numbers). */
export function parseConfigText(text: string, file?: string): Config {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = lc.linePos(e.pos[0]);
        return { path: '', message: e.message.split('\n')[0]!, line: pos.line, column: pos.col };
      }),
      file,
    );
  }
  const data: unknown = doc.toJS({ maxAliasCount: 100 });
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError([{ path: '', message: 'the config must be a mapping (an object) at the top level', line: 1, column: 1 }], file);
  }
  return validateConfig(data, file, { doc, lc });
}

export async function loadConfigFile(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new ConfigError([{ path: '', message: `cannot read the file (${code})` }], file);
  }
  return parseConfigText(text, file);
}
