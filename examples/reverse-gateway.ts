// Gatewise as a library: hooks and a custom balancer on the reverse gateway.
// (In your project, import from 'gatewise' instead of '../src/index.js'.)
import { Failure, startGateway, validateConfig, type BalancerFactory, type Gateway, type GatewayHooks } from '../src/index.js';

/** Add a response header on route `api` only: one hook, one place. */
export const apiVersionHeader: GatewayHooks = {
  onResponse(req, head) {
    if (req.routeName === 'api') head.headers.push('x-api-version', '2');
  },
};

/** Refuse /admin without the right key: answered like any gateway refusal (403, Proxy-Status, request id). */
export const adminKey: GatewayHooks = {
  onRequest(req) {
    if (req.path.startsWith('/admin') && req.header('x-admin-key') !== 'let-me-in') {
      return new Failure({ type: 'http_request_denied', phase: 'accept', detail: 'X-Admin-Key is missing or wrong' });
    }
  },
};

/** A custom balancer: the first available endpoint (a primary and its standby). */
export const firstAvailable: BalancerFactory = () => ({
  pick(endpoints, ctx, exclude) {
    for (const e of endpoints) if (e.available(ctx.now) && !exclude?.has(e)) return e;
    return undefined;
  },
});

/** A gateway in front of a primary and a standby, with both hooks and the balancer. */
export function startExampleGateway(primary: string, standby: string, port = 0): Promise<Gateway> {
  const config = validateConfig({
    listeners: [{ address: '127.0.0.1', port }],
    clusters: {
      app: { endpoints: [primary, standby], balancer: 'custom:first-available' },
    },
    routes: [
      { name: 'api', match: { pathPrefix: '/api/' }, cluster: 'app' },
      { name: 'site', cluster: 'app' },
    ],
  });
  return startGateway(config, { hooks: [apiVersionHeader, adminKey], balancers: { 'first-available': firstAvailable } });
}
