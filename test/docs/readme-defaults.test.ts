import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import { validateConfig } from '../../src/config/load.js';

/**
 * Finding (newcomer audit): the README's config reference sample says "Defaults are shown",
 * and showed values that are no default beside them, uncommented and unmarked
 * (`limits.maxConcurrent: 100`, `hashOn: { header: x-user }`, `dns.servers`, a route's
 * `pathPrefix: /v1` …): a newcomer copies them as the recommended settings. Now each value
 * of that sample is the schema's default, or a value the config needs (no default: removing
 * it is refused), or it is marked as an example: its comment, or the comment of a key above
 * it, says "example".
 *
 * A value's default is found by the schema itself: the value is taken out of the sample (and
 * any mapping it leaves empty; when the rest is refused, the mapping that holds it, up to a
 * list's element), the rest validated, and what the schema gives there compared with what the
 * sample gives.
 */

const README = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');

function sample(): string {
  const at = README.indexOf('\n## Config reference\n');
  assert.ok(at >= 0, 'README.md has a "## Config reference" section');
  const open = README.indexOf('\n```yaml\n', at);
  const end = README.indexOf('\n```\n', open + 1);
  assert.ok(open > 0 && end > open, 'a ```yaml block under it');
  return README.slice(open + 9, end + 1);
}

type Path = Array<string | number>;

/** Every value of the sample: a scalar, or a list of scalars; mappings and lists of mappings are walked into. */
function leaves(value: unknown, path: Path = []): Path[] {
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== 'object')) return [path];
    return value.flatMap((v, i) => (v !== null && typeof v === 'object' ? leaves(v, [...path, i]) : [[...path, i]]));
  }
  if (value !== null && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => leaves(v, [...path, k]));
  return [path];
}

function at(value: unknown, path: Path): unknown {
  let v = value;
  for (const k of path) v = v === null || v === undefined ? undefined : (v as Record<string | number, unknown>)[k];
  return v;
}

/** `value` without the entry at `path`, and without any mapping that leaves empty. */
function without(value: unknown, path: Path): unknown {
  const copy = structuredClone(value) as Record<string | number, unknown>;
  for (let n = path.length; n > 0; n--) {
    const parent = at(copy, path.slice(0, n - 1)) as Record<string | number, unknown> | unknown[];
    const k = path[n - 1]!;
    if (Array.isArray(parent)) parent.splice(k as number, 1);
    else delete parent[k];
    const left = Array.isArray(parent) ? parent.length : Object.keys(parent).length;
    if (left > 0 || n === 1) break;
  }
  return copy;
}

/** The lines that speak for the value at `path`: its own, and those of the keys above it. */
function linesOf(doc: Document, lc: LineCounter, path: Path): number[] {
  const lines: number[] = [];
  let node: unknown = doc.contents;
  for (const k of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === k);
      if (!pair) break;
      if (isScalar(pair.key) && pair.key.range) lines.push(lc.linePos(pair.key.range[0]).line);
      node = pair.value;
    } else if (isSeq(node)) {
      node = node.items[k as number];
    } else break;
    const r = (node as { range?: [number, number, number] } | undefined)?.range;
    if (r) lines.push(lc.linePos(r[0]).line);
  }
  return lines;
}

/** A line's comment: what follows the first " #" outside quotes. */
function comment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]!))) return line.slice(i + 1);
  }
  return '';
}

test("README's config reference sample: every value is the default, needed, or marked as an example", () => {
  const text = sample();
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  assert.deepEqual(doc.errors, []);
  const raw = doc.toJS() as unknown;
  const full = validateConfig(raw, 'README.md');
  const lines = text.split('\n');
  const unmarked: string[] = [];
  let defaults = 0;
  let needed = 0;
  for (const path of leaves(raw)) {
    // A value the config refuses to lose is needed, unless its section may go (a key that
    // only an optional mapping needs, as admin's port: the section is then the example).
    let rest: unknown;
    for (let n = path.length; n > 0 && rest === undefined; n--) {
      if (n < path.length && typeof path[n] === 'number') break;
      try {
        rest = validateConfig(without(raw, path.slice(0, n)), 'README.md');
      } catch {
        // needed here: try the section above
      }
    }
    if (rest === undefined) {
      needed++;
      continue;
    }
    if (JSON.stringify(at(rest, path)) === JSON.stringify(at(full, path))) {
      defaults++;
      continue;
    }
    const speak = linesOf(doc, lc, path);
    if (speak.some((n) => /\bexample/i.test(comment(lines[n - 1]!)))) continue;
    const own = speak.at(-1)!;
    unmarked.push(`README sample line ${own}: ${path.join('.')} = ${JSON.stringify(at(raw, path))} (the default: ${JSON.stringify(at(rest, path)) ?? 'none'})   ${lines[own - 1]!.trim()}`);
  }
  assert.ok(defaults > 40, `${defaults} values are defaults`);
  assert.ok(needed > 0, `${needed} values are needed`);
  assert.deepEqual(unmarked, [], 'values that are neither the default nor marked as an example (say "example" in the comment of the value or of a key above it)');
});
