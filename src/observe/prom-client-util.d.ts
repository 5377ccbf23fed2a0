// prom-client (15.x) ships no types for its internal helpers; `metrics.ts` uses its label hash.
declare module 'prom-client/lib/util.js' {
  /** The key of a labels object in a metric's series map, for the metric's sorted label names. */
  export function hashObject(labels: Record<string, string | number>, labelNames?: readonly string[]): string;
}
