import { scryptSync, timingSafeEqual } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

/**
 * The body of a password-check thread (see scrypt-threads.ts). scryptSync runs on this
 * thread itself: `crypto.scrypt` here would queue on libuv's thread pool, which is one
 * per process and shared with the main thread's DNS lookups.
 */

export interface ScryptJob {
  id: number;
  password: string;
  salt: Uint8Array;
  N: number;
  r: number;
  p: number;
  maxmem: number;
  /** The stored hash; the thread answers whether the password derives it. */
  hash: Uint8Array;
}

export type ScryptAnswer = { id: number; ok: boolean } | { id: number; code: string };

const port = parentPort;
if (port) {
  port.on('message', (job: ScryptJob) => {
    let answer: ScryptAnswer;
    try {
      const key = scryptSync(job.password, job.salt, job.hash.length, { N: job.N, r: job.r, p: job.p, maxmem: job.maxmem });
      answer = { id: job.id, ok: key.length === job.hash.length && timingSafeEqual(key, job.hash) };
    } catch (err) {
      answer = { id: job.id, code: (err as { code?: string }).code ?? 'ERR_SCRYPT' };
    }
    port.postMessage(answer);
  });
}
