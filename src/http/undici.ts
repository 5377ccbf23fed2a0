// undici, loaded in parts.
//
// undici's index loads all of undici (fetch, WebSocket, its caches and mocks, the pool and
// agent classes). A gateway on the native client (the default) needs two of its files: the
// error classes (thrown and classified by both clients) and the connector (TCP and TLS for
// the native client). Measured at idle, Node 20, undici 7.30: `import('undici')` adds
// 11.3 MiB of resident memory to a process, `lib/core/errors.js` with `lib/core/connect.js`
// 0.3 MiB; `gatewise proxy` at idle went from 92–93 to 77–82 MiB (docs/benchmarks.md §27).
//
// The two files are reached by path. undici has no `exports` map, so Node's resolver serves
// them as it serves the index, and they are the very modules the index re-exports
// (`test/http/undici.test.ts` checks the identity, so an undici that moves them fails there,
// not in production). The whole of undici is loaded where one of its clients is made: a
// cluster on `client: undici`, HTTP health checks, OCSP, the forward relay (an HTTP/2 cluster
// takes only its error classes: pool/h2-client.ts).
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const require = createRequire(import.meta.url);

/** undici's error classes (`undici.errors`). */
export const errors = require('undici/lib/core/errors.js') as typeof Undici.errors;

/** undici's connector factory (`undici.buildConnector`). */
export const buildConnector = require('undici/lib/core/connect.js') as typeof Undici.buildConnector;

let all: typeof Undici | undefined;

/** All of undici, loaded on the first call (synchronously: undici is CommonJS) and kept: later calls (one per absolute-form forward request) skip the resolver. */
export function undici(): typeof Undici {
  return (all ??= require('undici') as typeof Undici);
}
