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

const forwardIds = new RequestIds();

/**
 * A new id for the forward face (a request, tunnel or association). Its ids hold only base-36
 * digits and '-', which JSON writes as they are: a meter session opened with this very function
 * (`MeterSession.ownId`, compared by identity, so an id from anywhere else is never trusted)
 * tells the access log to skip the escape test, which flattened the appended id for its
 * regular expression (docs/benchmarks.md §54).
 */
export function newForwardRequestId(): string {
  return forwardIds.next();
}

/** 32 random bits in base 36, 7 characters. */
export function randomPrefix(): string {
  return Math.floor(Math.random() * 0xffffffff).toString(36).padStart(7, '0');
}
