import { readFileSync } from 'node:fs';
import { dial } from './helpers.js';

export { corpusPath } from '../helpers/corpora.js';

export interface LlhttpCase {
  id: string;
  title: string;
  expectError: boolean;
  raw: string;
}

export interface SmugglerCase {
  id: string;
  header: string;
}

export function loadJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

/**
 * Rewrite every request line's target to absolute form aimed at the destination:
 * `/x` → `http://127.0.0.1:PORT/<tag>/x`, `http://host/x` → same with our authority,
 * CONNECT `host:port` → `127.0.0.1:PORT`. `*` stays (the proxy must refuse it).
 */
export function toAbsoluteForm(raw: string, port: number, tag: string): string {
  return raw.replace(/(^|\n)([A-Z][A-Z-]{0,19}) ([^ \r\n]+)(?= |\r|\n|$)/g, (all, lead: string, method: string, target: string) => {
    let t = target;
    if (method === 'CONNECT') t = `127.0.0.1:${port}`;
    else if (target.startsWith('/')) t = `http://127.0.0.1:${port}/${tag}${target}`;
    else if (/^https?:\/\//i.test(target)) t = target.replace(/^(https?:\/\/)([^/?#]*)(.*)$/i, (_a, _s: string, _auth: string, rest: string) => `http://127.0.0.1:${port}/${tag}${rest.startsWith('/') ? rest : '/' + rest}`);
    else return all;
    return `${lead}${method} ${t}`;
  });
}

export interface ParsedResponse {
  status: number;
  body: string;
}

/** Split a byte stream of responses (Content-Length framed) into status + body. */
export function splitResponses(text: string): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let rest = text;
  for (let i = 0; i < 100 && rest.length; i++) {
    const m = /^HTTP\/1\.[01] (\d{3})[^\r\n]*\r\n/.exec(rest);
    if (!m) break;
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const cl = /\r\ncontent-length:\s*(\d+)/i.exec(rest.slice(0, end));
    const len = cl ? Number(cl[1]) : 0;
    out.push({ status: Number(m[1]), body: rest.slice(end + 4, end + 4 + len) });
    rest = rest.slice(end + 4 + len);
  }
  return out;
}

/** Send bytes on a fresh connection; collect until the proxy closes or goes quiet. */
export async function replay(port: number, bytes: Buffer, quietMs = 120, capMs = 1500): Promise<string> {
  const s = await dial(port);
  s.on('error', () => {});
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let quiet: NodeJS.Timeout | undefined;
    const finish = (): void => {
      clearTimeout(cap);
      clearTimeout(quiet);
      s.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const cap = setTimeout(finish, capMs);
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      clearTimeout(quiet);
      quiet = setTimeout(finish, quietMs);
    });
    s.once('close', finish);
    s.write(bytes);
  });
}

/** Run `fn` over `items` with at most `limit` at once. */
export async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
