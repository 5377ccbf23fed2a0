import { z } from 'zod';

function isRedisUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === 'redis:' || u.protocol === 'rediss:') && u.hostname !== '';
  } catch {
    return false;
  }
}

/** A Redis URL field (the fleet's state and ACME's shared certificates): one check, one message. */
export function redisUrl(description: string) {
  return z
    .string()
    .refine(isRedisUrl, { message: 'expected a Redis URL such as "redis://127.0.0.1:6379/0" (or "rediss://" for TLS)' })
    .describe(description);
}
