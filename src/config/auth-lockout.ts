import { z } from 'zod';
import { durationString } from './duration-schema.js';
import { parseDuration } from './duration.js';

const duration = (def: string, what: string) =>
  durationString()
    .refine((s) => parseDuration(s) !== undefined, { message: 'expected a duration such as "500ms", "30s", "1m" or "1h"' })
    .default(def)
    .describe(`${what} Duration: ms, s, m, h. Default ${def}.`);

/**
 * `lockout`, one shape for both places that check credentials (`admin.lockout` for the bearer
 * token, `forward.auth.lockout` for the forward proxy's users): wrong credentials per client
 * address (net/auth-lockout.ts, docs/security.md).
 */
export const authLockoutSchema = z
  .strictObject({
    maxFailures: z
      .number()
      .int()
      .min(0)
      .max(1_000_000)
      .default(10)
      .describe('Wrong credentials from one client address (an IPv6 client: its /64) within `window` that lock it out. While locked out, every attempt from it is refused before its credential is checked (no scrypt run), a right one too. 0: no limit. Default 10.'),
    window: duration('1m', 'The window wrong credentials are counted in, from the first one.'),
    lockout: duration('1m', 'The first lockout; each next one of the same address doubles it, up to maxLockout.'),
    maxLockout: duration('1h', 'The longest lockout.'),
    maxAddresses: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(10_000)
      .describe('Client addresses tracked at once (bounded memory): past it, a newcomer forgets the address that failed least recently among those not locked out; a locked-out address is kept until its lockout ends, and while every tracked address is locked out a newcomer\'s wrong credentials are not counted (gatewise_auth_lockout_untracked_total). Default 10000.'),
  })
  .prefault({})
  .describe('Wrong credentials limited per client address: a locked-out address is answered 429 with Retry-After (SOCKS: the RFC 1929 failure reply, then close). A success resets no count. See docs/security.md.');

export type AuthLockoutConfig = z.infer<typeof authLockoutSchema>;

/** The limiter's settings of a `lockout` section. */
export function lockoutSettings(c: AuthLockoutConfig): { maxFailures: number; windowMs: number; lockoutMs: number; maxLockoutMs: number; maxAddresses: number } {
  const ms = (s: string): number => parseDuration(s)!;
  return { maxFailures: c.maxFailures, windowMs: ms(c.window), lockoutMs: ms(c.lockout), maxLockoutMs: Math.max(ms(c.maxLockout), ms(c.lockout)), maxAddresses: c.maxAddresses };
}
