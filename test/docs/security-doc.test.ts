import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { jsonSchema } from '../../src/config/schema.js';

/**
 * docs/security.md names every limit and timeout of the config schemas (reverse and
 * forward): a key added to the schema without a line in the doc fails here. Keys are
 * written as paths in backticks: `listeners[].requestHeaderTimeout`,
 * `clusters.*.timeouts.connect`, `forward.limits.maxHeaderSize`.
 */

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Key names that are limits or timeouts; everything under `timeouts` and `limits` is, too. */
const LIMIT_NAME = /timeout|Timeout|^max[A-Z]|^max$|^min$|^initial$|Ttl$|^ttl$|Idle$|^idle$|[iI]nterval$|^tries$|PerSecond$|^bytesPer|^keepAlive$|KeepAlive$|Ejection|^threshold$|[cC]ooldown$|Concurrent|^checkThreads$|^ratio$|targetLatency|retryAfterMax|^base$|usersFileCheck/;

/** Matches of the pattern that are not limits. */
const NOT_LIMITS = new Set(['forward.usernameGrammar.ttl', 'clusters.*.limits.adaptive.kind']);

interface Node {
  properties?: Record<string, Node>;
  additionalProperties?: Node | boolean;
  items?: Node;
  anyOf?: Node[];
}

function isObject(n: Node): boolean {
  return Boolean(n.properties || (n.additionalProperties && typeof n.additionalProperties === 'object') || n.items?.properties || n.anyOf?.some((a) => a.properties));
}

function limitKeys(): string[] {
  const out = new Set<string>();
  const walk = (s: Node | undefined, p: string, under: boolean): void => {
    if (!s || typeof s !== 'object') return;
    for (const a of s.anyOf ?? []) walk(a, p, under);
    for (const [k, v] of Object.entries(s.properties ?? {})) {
      const keyPath = p ? `${p}.${k}` : k;
      if ((!isObject(v) && (LIMIT_NAME.test(k) || under)) || /^bytesPer/.test(k)) out.add(keyPath);
      if (!/^bytesPer/.test(k)) walk(v, keyPath, under || k === 'timeouts' || k === 'limits');
    }
    if (s.additionalProperties && typeof s.additionalProperties === 'object') walk(s.additionalProperties, `${p}.*`, under);
    if (s.items) walk(s.items, `${p}[]`, under);
  };
  walk(jsonSchema() as Node, '', false);
  return [...out].filter((k) => !NOT_LIMITS.has(k)).sort();
}

describe('docs/security.md', () => {
  it('names every limit and timeout key of the config schemas', () => {
    const doc = readFileSync(path.join(root, 'docs', 'security.md'), 'utf8');
    const keys = limitKeys();
    assert.ok(keys.length > 50, `only ${keys.length} keys found: the schema walk is broken`);
    const missing = keys.filter((k) => !doc.includes('`' + k + '`'));
    assert.deepEqual(missing, [], 'add these to the limits table of docs/security.md');
  });

  it('says how to report a vulnerability', () => {
    const doc = readFileSync(path.join(root, 'docs', 'security.md'), 'utf8');
    assert.match(doc, /^## Reporting a vulnerability/m);
  });
});
