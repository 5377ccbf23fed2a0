import type { Logger } from 'pino';
import type { FinishedRecord, Meter } from '../tenants/index.js';

/** One JSON line per finished request, tunnel and association. Returns the detach function. */
export function attachAccessLog(meter: Meter, logger: Logger): () => void {
  // `access: true` as a binding of the child logger, not spread into each record
  // (a spread copies the record property by property on every line).
  const log = logger.child({ component: 'forward', access: true });
  const onFinished = (rec: FinishedRecord): void => {
    log.info(rec, 'forward access');
  };
  meter.on('finished', onFinished);
  return () => meter.off('finished', onFinished);
}
