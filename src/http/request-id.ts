/**
 * Request ids: a random prefix per process, a time stamp refreshed once a second, and a
 * counter. Unique across a fleet and restarts for all practical purposes, and cheap: no
 * randomness per request (`randomUUID()` costs a few µs and a buffer per call).
 */
export class RequestIds {
  readonly prefix: string;
  #sequence = 0;
  #stampAt = 0;
  #stamp = '';

  constructor(prefix: string = randomPrefix()) {
    this.prefix = prefix;
  }

  next(): string {
    this.#sequence = (this.#sequence + 1) >>> 0;
    const now = Date.now();
    if (now - this.#stampAt >= 1000) {
      this.#stampAt = now;
      this.#stamp = now.toString(36);
    }
    return `${this.prefix}-${this.#stamp}-${this.#sequence.toString(36)}`;
  }
}

/** 32 random bits in base 36, 7 characters. */
export function randomPrefix(): string {
  return Math.floor(Math.random() * 0xffffffff).toString(36).padStart(7, '0');
}
