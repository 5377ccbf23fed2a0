import type { z } from 'zod';
import { editDistance } from '../text/index.js';

/**
 * Reading the zod schema itself: the keys allowed at a config path (for "did you mean"),
 * and every key with its type, default and description (docs/config-reference.md).
 */

type Schema = z.ZodType;
// zod 4 keeps a schema's definition in `_zod.def`; only the parts read here are typed.
interface Def {
  type: string;
  innerType?: Schema;
  in?: Schema;
  out?: Schema;
  shape?: Record<string, Schema>;
  element?: Schema;
  keyType?: Schema;
  valueType?: Schema;
  options?: Schema[];
  entries?: Record<string, string | number>;
  values?: unknown[];
  defaultValue?: unknown;
  checks?: Array<{ _zod: { def: { check: string; value?: unknown; inclusive?: boolean; format?: string; pattern?: RegExp } } }>;
}

export function defOf(s: Schema): Def {
  return (s as unknown as { _zod: { def: Def } })._zod.def;
}

const WRAPPERS = new Set(['optional', 'default', 'prefault', 'nullable', 'readonly', 'catch', 'nonoptional']);

/** The schema under optional/default/prefault/pipe wrappers. */
export function strip(s: Schema): Schema {
  let cur = s;
  for (;;) {
    const d = defOf(cur);
    if (WRAPPERS.has(d.type) && d.innerType) cur = d.innerType;
    else if (d.type === 'pipe' && d.in) cur = d.in;
    else return cur;
  }
}

/** A union's options, flattened; any other schema is its own single option. */
export function variants(s: Schema): Schema[] {
  const b = strip(s);
  const d = defOf(b);
  if (d.type === 'union' && d.options) return d.options.flatMap(variants);
  return [b];
}

/** The schemas a config path can lead to (several under a union). */
export function schemasAt(root: Schema, path: readonly PropertyKey[]): Schema[] {
  let cur = [root];
  for (const k of path) {
    const next: Schema[] = [];
    for (const c of cur.flatMap(variants)) {
      const d = defOf(c);
      if (d.type === 'object' && typeof k === 'string' && d.shape?.[k]) next.push(d.shape[k]!);
      else if (d.type === 'array' && typeof k === 'number' && d.element) next.push(d.element);
      else if (d.type === 'record' && typeof k === 'string' && d.valueType) next.push(d.valueType);
    }
    cur = next;
  }
  return cur;
}

/** The keys an object at this path may have (empty when it is not an object). */
export function keysAt(root: Schema, path: readonly PropertyKey[]): string[] {
  const keys = new Set<string>();
  for (const s of schemasAt(root, path).flatMap(variants)) {
    const d = defOf(s);
    if (d.type === 'object' && d.shape) for (const k of Object.keys(d.shape)) keys.add(k);
  }
  return [...keys];
}


/** The allowed key closest to `key`, when it is close enough to be a typo. */
export function didYouMean(key: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const a of allowed) {
    const d = a.toLowerCase() === key.toLowerCase() ? 0.5 : editDistance(key.toLowerCase(), a.toLowerCase());
    if (d < bestD) {
      best = a;
      bestD = d;
    }
  }
  const limit = Math.max(2, Math.floor(key.length / 3));
  return best !== undefined && bestD <= limit ? best : undefined;
}
