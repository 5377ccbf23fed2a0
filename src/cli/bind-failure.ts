import type { Config } from '../config/schema.js';

/**
 * A listener that could not bind, in the words of what the user gave: the address, what named
 * it (a config entry such as `listeners[0] of a.yaml`, or a flag such as `--listen`) and why:
 * `cannot listen on 127.0.0.1:8080 (--listen): address already in use (EADDRINUSE)`. Node's own
 * words (`listen EADDRINUSE: address already in use 127.0.0.1:8080`; with --workers `bind …`)
 * say neither which listener nor what set it. One wording for `run` and the one-liners
 * (`proxy`, `forward`, `lab`, `demo`), and for the line a failed start logs (cli/runtime.ts).
 */

/** A listening address and what named it. */
export type NamedListener = readonly [{ readonly address?: string | undefined; readonly port: number } | undefined, string];

const REASONS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'address already in use',
  EACCES: 'permission denied (a port under 1024 needs privileges: docs/deployment.md)',
  EADDRNOTAVAIL: 'not an address of this host',
};

/** The words for `err` when it is a listener that could not bind (by its code); undefined for any other error. */
export function bindWords(err: unknown, named: readonly NamedListener[], of?: string): string | undefined {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if ((e?.syscall !== 'listen' && e?.syscall !== 'bind') || typeof e.port !== 'number' || REASONS[e.code ?? ''] === undefined) return undefined;
  const entries = named.filter(([l]) => l !== undefined && l.port === e.port);
  const exact = entries.filter(([l]) => l!.address === undefined || l!.address === e.address);
  const names = [...new Set((exact.length ? exact : entries).map(([, what]) => what))];
  const address = e.address === undefined ? String(e.port) : e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
  return `cannot listen on ${address}${names.length ? ` (${names.join(' or ')}${of !== undefined ? ` of ${of}` : ''})` : ''}: ${REASONS[e.code!]} (${e.code})`;
}

/** `bindWords` naming a config's entries: listeners[i], forward.listeners[i], admin (of `file` when given). */
export function configBindWords(config: Config, err: unknown, file?: string): string | undefined {
  return bindWords(
    err,
    [
      ...config.listeners.map((l, i): NamedListener => [l, `listeners[${i}]`]),
      ...(config.forward?.listeners ?? []).map((l, i): NamedListener => [l, `forward.listeners[${i}]`]),
      ...(config.admin ? [[config.admin, 'admin'] as NamedListener] : []),
    ],
    file,
  );
}

/** A listener of a one-liner that could not bind, said as `bindWords` (main prints it as `gatewise CMD: …`, exit 1). */
export class ListenFailure extends Error {
  readonly code = 'GATEWISE_LISTEN';
}

/** `err` as a ListenFailure naming the flags when it is a bind failure; else `err` itself. */
export function listenFailure(err: unknown, named: readonly NamedListener[]): unknown {
  const words = bindWords(err, named);
  return words === undefined ? err : new ListenFailure(words, { cause: err });
}
