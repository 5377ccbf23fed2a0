import { createRequire } from 'node:module';

const requireModule = createRequire(import.meta.url);

/**
 * The YAML parser, loaded on first use: a gateway started from command-line flags has no
 * configuration text, a forward proxy without a users file has none to read, and the parser
 * holds ~2 MiB resident once loaded (measured at idle, `gatewise proxy`, docs/benchmarks.md §27).
 * It is CommonJS, so it loads synchronously; the module is kept after the first call.
 */
let loaded: typeof import('yaml') | undefined;
export function yaml(): typeof import('yaml') {
  return (loaded ??= requireModule('yaml') as typeof import('yaml'));
}
