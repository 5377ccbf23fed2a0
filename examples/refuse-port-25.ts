import { planRefusal, type ForwardHooks } from '../src/forward/index.js';

/**
 * Forward proxy: users on plan "starter" may not reach port 25 (SMTP), whatever protocol
 * they come in by (HTTP proxy, CONNECT, SOCKS4, SOCKS5). One hook, one place: the
 * pipeline calls it after authentication and the built-in destination rules, and each
 * protocol answers the refusal its own way (403 with Proxy-Status, SOCKS5 reply 0x02,
 * SOCKS4 0x5B), logged like any built-in refusal.
 */
export const refusePort25ForStarter: ForwardHooks = {
  authorize(req) {
    if (req.plan !== 'starter' || req.target.port !== 25) return undefined;
    // A plan's refusal: 403 http_request_denied, its detail shown to the customer.
    return planRefusal('denied', 'plan starter does not include port 25 (mail)');
  },
};

// Use it:
//   await startForwardProxy(config, { hooks: [refusePort25ForStarter] });
