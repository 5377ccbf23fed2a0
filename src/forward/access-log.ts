import type { Logger } from 'pino';
import type { FinishedRecord, Meter } from '../tenants/index.js';

/** One JSON line per finished request, tunnel and association. Returns the detach function. */
export function attachAccessLog(meter: Meter, logger: Logger): () => void {
  const log = logger.child({ component: 'forward' });
  const onFinished = (rec: FinishedRecord): void => {
    log.info({ access: true, ...rec }, 'forward access');
  };
  meter.on('finished', onFinished);
  return () => meter.off('finished', onFinished);
}
