import { z } from 'zod';
import { durationString } from './duration-schema.js';
import { parseDuration } from './duration.js';

/**
 * `shutdown`, one shape for both faces (the reverse gateway's top-level key, and the forward
 * proxy's `forward.shutdown`): how long a close (SIGTERM, `close()`) lets what is in flight
 * finish before it cuts it (the cut is recorded as the proxy's own doing, failure code
 * GATEWISE_DRAIN_TIMEOUT, failure/connections-cut.ts).
 */
export const shutdownSchema = z
  .strictObject({
    drainTimeout: durationString()
      .refine((s) => parseDuration(s) !== undefined, { message: 'expected a duration such as "500ms", "2s" or "1m"' })
      .default('30s')
      .describe('On SIGTERM, how long requests and tunnels in flight may take to finish; idle connections are closed at once, and what is left at the end is cut and recorded as ended by the gateway (proxy_internal_error, the drain timeout named). Duration: ms, s, m, h. Default 30s.'),
  })
  .default({ drainTimeout: '30s' })
  .describe('Stopping.');
