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

/** Past this many ranges a set keeps one bit per port (8 KiB) instead of walking its ranges. */
const RANGES_BEFORE_BITS = 4;

export class PortSet {
  readonly #ranges: Array<[number, number]> = [];
  /**
   * One bit per port, for a long list (rules.httpPorts' default has 18 ranges): one indexed
   * load per check however long the list. A short list (connectPorts' [443], a rule's ports)
   * keeps only its ranges, so many rules do not cost 8 KiB each.
   */
  readonly #bits: Uint32Array | undefined;

  constructor(specs: Iterable<PortSpec>) {
    for (const s of specs) {
      const r = parsePortSpec(s);
      if (!r) throw new TypeError(`not a port or port range: ${JSON.stringify(s)}`);
      this.#ranges.push(r);
    }
    if (this.#ranges.length > RANGES_BEFORE_BITS) {
      const bits = new Uint32Array(65536 / 32);
      for (const [lo, hi] of this.#ranges) for (let p = lo; p <= hi; p++) bits[p >>> 5]! |= 1 << (p & 31);
      this.#bits = bits;
    }
  }

  /** An indexed loop: `for…of` with destructuring allocated an iterator per call (checked once per request or tunnel). */
  has(port: number): boolean {
    const bits = this.#bits;
    if (bits !== undefined) return port >= 0 && port <= 65535 && ((bits[port >>> 5]! >>> (port & 31)) & 1) === 1;
    const ranges = this.#ranges;
    for (let i = 0; i < ranges.length; i++) {
      const r = ranges[i]!;
      if (port >= r[0] && port <= r[1]) return true;
    }
    return false;
  }
}
