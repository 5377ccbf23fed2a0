import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { configSchema } from './schema.js';
import { defOf, strip, variants } from './schema-walk.js';

/**
 * docs/config-reference.md, generated from the zod schema: every key with its type, default
 * and description. `node dist/src/config/reference.js --write` rewrites the page; a test
 * fails when the page and the schema differ, and when a key has no description.
 */

type Schema = z.ZodType;

export interface KeyRow {
  path: string;
  type: string;
  default: string;
  description: string;
}

/** The description set on a schema or any wrapper inside it (`.describe()` after `.default()` lands on the wrapper). */
function describe(s: Schema): string | undefined {
  let cur: Schema | undefined = s;
  while (cur) {
    if (cur.description) return cur.description;
    const d = defOf(cur);
    cur = d.innerType ?? (d.type === 'pipe' ? d.in : undefined);
  }
  return undefined;
}

function defaultOf(s: Schema): { has: boolean; value?: unknown } {
  let cur: Schema | undefined = s;
  while (cur) {
    const d = defOf(cur);
    if (d.type === 'default' || d.type === 'prefault') {
      const v = typeof d.defaultValue === 'function' ? (d.defaultValue as () => unknown)() : d.defaultValue;
      return { has: true, value: v };
    }
    if (d.type === 'optional' || d.type === 'nullable' || d.type === 'readonly') cur = d.innerType;
    else return { has: false };
  }
  return { has: false };
}

function isOptional(s: Schema): boolean {
  let cur: Schema | undefined = s;
  while (cur) {
    const d = defOf(cur);
    if (d.type === 'optional' || d.type === 'default' || d.type === 'prefault') return true;
    cur = d.innerType;
  }
  return false;
}

function numberRange(s: Schema, integer: boolean): string {
  let lo: string | undefined;
  let hi: string | undefined;
  let int = integer;
  for (const c of defOf(s).checks ?? []) {
    const cd = c._zod.def;
    if (cd.check === 'greater_than') lo = `${cd.inclusive ? '≥' : '>'} ${String(cd.value)}`;
    if (cd.check === 'less_than') hi = `${cd.inclusive ? '≤' : '<'} ${String(cd.value)}`;
    if (cd.check === 'number_format' && /int/.test(cd.format ?? '')) int = true;
  }
  return [int ? 'integer' : 'number', lo, hi].filter(Boolean).join(' ').replace(/^(integer|number) ≥ (\S+) ≤ (\S+)$/, '$1 $2–$3');
}

/** A short type: `integer 0–65535`, `"http" | "tcp"`, `list of string`, `map of name → object`. */
export function typeOf(s: Schema): string {
  const parts = variants(s).map((v) => {
    const d = defOf(v);
    switch (d.type) {
      case 'string':
        // The duration strings: a refinement, and the words of their description.
        return (d.checks ?? []).length > 0 && /duration/i.test(describe(s) ?? '') ? 'duration' : 'string';
      case 'number':
        return numberRange(v, false);
      case 'int':
        return numberRange(v, true);
      case 'boolean':
        return 'boolean';
      case 'enum':
        return Object.values(d.entries ?? {})
          .map((e) => JSON.stringify(e))
          .join(' \\| ');
      case 'literal':
        return (d.values ?? []).map((e) => JSON.stringify(e)).join(' \\| ');
      case 'array':
        return `list of ${d.element ? typeOf(d.element) : 'any'}`;
      case 'record':
        return `map of name → ${d.valueType ? typeOf(d.valueType) : 'any'}`;
      case 'object':
        return 'object';
      default:
        return d.type;
    }
  });
  return [...new Set(parts)].join(' or ');
}

function shownDefault(s: Schema): string {
  const d = defaultOf(s);
  if (!d.has) return isOptional(s) ? '—' : '**required**';
  if (d.value !== null && typeof d.value === 'object' && !Array.isArray(d.value)) {
    return defOf(strip(s)).type === 'record' && Object.keys(d.value).length === 0 ? '`{}` (none)' : 'see the keys below';
  }
  const json = JSON.stringify(d.value);
  return json.length > 60 ? '(long, see the description)' : `\`${json}\``;
}

/** Every key of the config, depth first, in schema order. */
export function configKeys(root: Schema = configSchema): KeyRow[] {
  const rows: KeyRow[] = [];
  const seen = new Set<string>();
  const visit = (s: Schema, path: string): void => {
    for (const v of variants(s)) {
      const d = defOf(v);
      if (d.type === 'object' && d.shape) {
        for (const [k, child] of Object.entries(d.shape)) {
          const p = path ? `${path}.${k}` : k;
          if (!seen.has(p)) {
            seen.add(p);
            rows.push({ path: p, type: typeOf(child), default: shownDefault(child), description: describe(child) ?? '' });
          }
          visit(child, p);
        }
      } else if (d.type === 'array' && d.element) visit(d.element, `${path}[]`);
      else if (d.type === 'record' && d.valueType) visit(d.valueType, `${path}.<name>`);
    }
  };
  visit(strip(root), '');
  return rows;
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The page. */
export function configReference(): string {
  const rows = configKeys();
  const top = rows.filter((r) => !r.path.includes('.') && !r.path.includes('['));
  const out: string[] = [
    '# Config reference',
    '',
    '<!-- Generated from src/config/schema.ts and src/config/forward.ts by',
    '     `node dist/src/config/reference.js --write` (npm run docs:config). Do not edit by hand:',
    '     test/docs/config-reference.test.ts fails when this page and the schema differ. -->',
    '',
    'Every key of a Gatewise config file (YAML, or strict JSON in a `.json` file), generated from the schema that validates it.',
    '`gatewise check -c FILE` checks a file against it (and more: files, ports, addresses);',
    '`gatewise schema` prints the same schema as JSON Schema for editors. Durations are strings',
    'such as `"500ms"`, `"2s"`, `"1m"`, `"1h"`. `[]` stands for any element of a list, `<name>`',
    'for a name you choose (a cluster, a pool, a plan). "—" as the default: the key is optional and',
    'absent unless set; "see the keys below": an object whose keys have their own defaults.',
    '',
    'Sections: ' + top.map((t) => `[\`${t.path}\`](#${t.path.replace(/[^a-z0-9]/gi, '').toLowerCase()})`).join(', ') + '.',
    '',
  ];
  for (const t of top) {
    out.push(`## ${t.path}`, '', `${t.description || '(no description)'}`, '', `Type: ${t.type}. Default: ${t.default}.`, '');
    const under = rows.filter((r) => r.path.startsWith(`${t.path}.`) || r.path.startsWith(`${t.path}[`));
    if (under.length === 0) continue;
    out.push('| Key | Type | Default | Description |', '| --- | --- | --- | --- |');
    for (const r of under) out.push(`| \`${r.path}\` | ${cell(r.type)} | ${cell(r.default)} | ${cell(r.description)} |`);
    out.push('');
  }
  return out.join('\n');
}

export const REFERENCE_FILE = new URL('../../../docs/config-reference.md', import.meta.url);

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv[2] === '--write') {
    writeFileSync(REFERENCE_FILE, configReference());
    process.stdout.write('docs/config-reference.md written\n');
  } else if (process.argv[2] === '--check') {
    const same = readFileSync(REFERENCE_FILE, 'utf8') === configReference();
    process.stdout.write(same ? 'docs/config-reference.md is up to date\n' : 'docs/config-reference.md differs from the schema: run with --write\n');
    process.exitCode = same ? 0 : 1;
  } else if (process.argv[2] === '--missing') {
    for (const r of configKeys().filter((k) => !k.description)) process.stdout.write(`${r.path}\n`);
  } else {
    process.stdout.write(configReference());
  }
}
