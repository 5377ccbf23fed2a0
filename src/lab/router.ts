import { LAB_FAULTS } from './faults.js';
import * as faults from './fault-routes.js';
import { sendText, type Route } from './route.js';
import * as valid from './valid-routes.js';

/** `/`: the catalogue as plain text, for a person running `gatewise lab`. */
const index: Route = ({ res }) => {
  let text = 'Gatewise failure lab. Paths (query parameters tune them):\n\n';
  for (const f of LAB_FAULTS) {
    if ((f.listener ?? 'http') !== 'http') continue;
    text += `${f.path.padEnd(32)} ${f.description}\n`;
  }
  sendText(res, 200, text);
};

const notFound: Route = ({ res, req }) => {
  sendText(res, 404, `lab: no such path ${req.url ?? ''} (see /)\n`);
};

/** Exact paths. `/status/NNN` is matched by prefix in `findRoute`. */
export const ROUTES: ReadonlyMap<string, Route> = new Map<string, Route>([
  ['/', index],
  ['/ok', valid.ok],
  ['/echo', valid.echo],
  ['/bytes', valid.bytes],
  ['/upload', valid.upload],
  ['/slow', valid.slow],
  ['/work', valid.work],
  ['/early-hints', valid.earlyHints],
  ['/trailers', valid.trailers],
  ['/chunked', valid.chunked],
  ['/5xx', valid.upstream5xx],
  ['/close', faults.close],
  ['/reset', faults.reset],
  ['/garbage', faults.garbage],
  ['/http09', faults.http09],
  ['/invalid-header', faults.invalidHeader],
  ['/oversized-headers', faults.oversizedHeaders],
  ['/two-content-length', faults.twoContentLength],
  ['/cut-headers', faults.cutHeaders],
  ['/cut-body', faults.cutBody],
  ['/bad-chunk', faults.badChunk],
  ['/hang', faults.hang],
  ['/stall-body', faults.stallBody],
  ['/slow-headers', faults.slowHeaders],
]);

const STATUS_PREFIX = '/status/';

/** The route for a path (without query); 404 for unknown paths. May throw LabParamError. */
export function findRoute(path: string): Route {
  const route = ROUTES.get(path);
  if (route !== undefined) return route;
  if (path.startsWith(STATUS_PREFIX)) return valid.statusRoute(valid.parseStatusPath(path));
  return notFound;
}
