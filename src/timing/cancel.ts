/**
 * What dialers need of a cancellation signal: `aborted` and one-shot 'abort' listeners.
 * A DOM `AbortSignal` fits (the HTTP proxy handler passes the one it also gives undici);
 * `Cancel` is the cheap kind for paths that need nothing else. Creating an
 * AbortController and its EventTarget listeners cost ~20 µs per tunnel on the
 * CONNECT-per-request benchmark, about 4 % of the tunnel's CPU.
 */
export interface CancelSignal {
  readonly aborted: boolean;
  /** Why (undici and Node APIs read it when they take the signal). */
  readonly reason?: unknown;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export class Cancel implements CancelSignal {
  aborted = false;
  reason: unknown = undefined;
  #listeners: (() => void)[] | undefined;

  addEventListener(_type: 'abort', listener: () => void): void {
    (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    const l = this.#listeners;
    if (!l) return;
    const i = l.indexOf(listener);
    if (i >= 0) l.splice(i, 1);
  }

  /** Mark aborted and call every listener once. */
  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason ?? new DOMException('This operation was aborted', 'AbortError');
    const l = this.#listeners;
    this.#listeners = undefined;
    if (l) for (const f of l) f();
  }
}
