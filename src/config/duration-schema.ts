import { z } from 'zod';

/**
 * The string a duration key takes. A YAML number there (`connect: 5`) is said as a duration
 * without its unit, not as zod's "expected string, received number": a newcomer reads that as
 * "quote it", and `"5"` is refused next (a string needs its unit, duration.ts).
 */
export const durationString = () =>
  z.string({ error: (iss) => (typeof iss.input === 'number' ? `expected a duration with its unit, such as "${iss.input}s" or "${iss.input}ms", not the bare number ${iss.input}` : undefined) });
