import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

/**
 * docs/architecture.md's table of parts, read against the src/ tree: "where a claim here and
 * the code differ, the code is right and this page is a bug".
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SRC = join(ROOT, 'src');

interface Row {
  folder: string;
  text: string;
  imports: string;
}

function rows(): Row[] {
  const page = readFileSync(join(ROOT, 'docs/architecture.md'), 'utf8');
  const out: Row[] = [];
  for (const line of page.split('\n')) {
    const m = /^\| `src\/([a-z-]+)\/` \|(.*)\|([^|]*)\|\s*$/.exec(line);
    if (m) out.push({ folder: m[1]!, text: m[2]!, imports: m[3]! });
  }
  return out;
}

function folders(): string[] {
  return readdirSync(SRC).filter((f) => statSync(join(SRC, f)).isDirectory()).sort();
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f));
}

/** The other src/ folders a folder's modules import (values and types alike, static and dynamic). */
function importedFolders(folder: string): Map<string, string> {
  const seen = new Map<string, string>();
  const re = /\bfrom\s+['"](\.[^'"]+)['"]|\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g;
  for (const file of tsFiles(join(SRC, folder))) {
    const text = readFileSync(file, 'utf8');
    for (let m = re.exec(text); m; m = re.exec(text)) {
      const target = relative(SRC, normalize(join(dirname(file), m[1] ?? m[2]!))).split(/[\\/]/)[0]!;
      if (target !== folder && !target.startsWith('..') && !seen.has(target)) seen.set(target, relative(ROOT, file));
    }
  }
  return seen;
}

test('docs/architecture.md has one row per src/ folder, and every file a row names exists', () => {
  const table = rows();
  assert.deepEqual(table.map((r) => r.folder).sort(), folders());
  const missing: string[] = [];
  for (const r of table) {
    for (const [, name] of r.text.matchAll(/`([A-Za-z0-9_./-]+\.ts)`/g)) {
      const candidates = [join(SRC, r.folder, name!), join(SRC, name!)];
      const found = candidates.some((c) => existsSync(c)) || tsFiles(SRC).some((f) => f.endsWith(`/${name}`));
      if (!found) missing.push(`src/${r.folder}/: ${name}`);
    }
  }
  assert.deepEqual(missing, []);
});

test('docs/architecture.md: the imports column of each part names every src/ folder its code imports, and none it does not', () => {
  const all = new Set(folders());
  const wrong: string[] = [];
  for (const r of rows()) {
    if (r.imports.trim() === 'everything') continue;
    const stated = new Set([...r.imports.matchAll(/`([a-z-]+)`/g)].map((m) => m[1]!).filter((f) => all.has(f)));
    const actual = importedFolders(r.folder);
    for (const [f, by] of actual) if (!stated.has(f)) wrong.push(`src/${r.folder}/ imports ${f} (${by}) but its row does not say so`);
    for (const f of stated) if (!actual.has(f)) wrong.push(`src/${r.folder}/'s row names ${f}, which none of its modules imports`);
  }
  assert.deepEqual(wrong, []);
});
