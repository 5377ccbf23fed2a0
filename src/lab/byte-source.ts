import { Readable } from 'node:stream';

/** 26 × 2520 bytes: a whole number of alphabets, so the pattern runs on across pieces. */
const PIECE = 65_520;
const PATTERN: Buffer = Buffer.allocUnsafe(PIECE);
for (let i = 0; i < PIECE; i++) PATTERN[i] = 0x61 + (i % 26);

/** The byte at `offset` of every lab-generated body: 'a'..'z' repeating. */
export function labByteAt(offset: number): number {
  return 0x61 + (offset % 26);
}

/**
 * A stream of `total` bytes ('abc…z' repeating) made from one shared 64 KiB piece,
 * so a body of any size costs no more memory than that piece.
 */
export class ByteSource extends Readable {
  #remaining: number;

  constructor(total: number) {
    super();
    this.#remaining = total;
  }

  override _read(): void {
    if (this.#remaining <= 0) {
      this.push(null);
      return;
    }
    const n = this.#remaining < PIECE ? this.#remaining : PIECE;
    this.#remaining -= n;
    this.push(n === PIECE ? PATTERN : PATTERN.subarray(0, n));
  }
}
