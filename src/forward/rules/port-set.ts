/** Ports and port ranges: `443`, `"8000-8999"`. */
export type PortSpec = number | string;

export function parsePortSpec(spec: PortSpec): [number, number] | undefined {
  if (typeof spec === 'number') return Number.isInteger(spec) && spec >= 1 && spec <= 65535 ? [spec, spec] : undefined;
  const m = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(spec);
  if (!m) return undefined;
  const lo = Number(m[1]);
  const hi = m[2] !== undefined ? Number(m[2]) : lo;
  return lo >= 1 && hi <= 65535 && lo <= hi ? [lo, hi] : undefined;
}

export class PortSet {
  readonly #ranges: Array<[number, number]> = [];

  constructor(specs: Iterable<PortSpec>) {
    for (const s of specs) {
      const r = parsePortSpec(s);
      if (!r) throw new TypeError(`not a port or port range: ${JSON.stringify(s)}`);
      this.#ranges.push(r);
    }
  }

  /** An indexed loop: `for…of` with destructuring allocated an iterator per call (checked once per tunnel). */
  has(port: number): boolean {
    const ranges = this.#ranges;
    for (let i = 0; i < ranges.length; i++) {
      const r = ranges[i]!;
      if (port >= r[0] && port <= r[1]) return true;
    }
    return false;
  }
}
