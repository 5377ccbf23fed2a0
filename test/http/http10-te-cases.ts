import { between } from '../helpers/seeded.js';

/** One HTTP/1.0 request's framing fields (each line CRLF-ended) and the bytes after its head. */
export interface Http10TeCase {
  fields: string;
  body: string;
}

const TE_VALUES = ['chunked', 'gzip, chunked', 'identity', 'Chunked'];
const TE_NAMES = ['Transfer-Encoding', 'transfer-encoding', 'TRANSFER-ENCODING', 'Transfer-encoding'];
const CL_NAMES = ['Content-Length', 'content-length'];

/**
 * A seeded family of HTTP/1.0 requests with Transfer-Encoding (RFC 9112 §6.1: faulty framing):
 * every TE value once and some at random, the field name in any case, with and without a
 * Content-Length, the body chunked or not, and a request pipelined behind it that must never
 * be sent on. Shared by the tests of both faces (forward, reverse node and net fronts).
 */
export function http10TeCases(rand: () => number): Http10TeCase[] {
  const out: Http10TeCase[] = [];
  const values = [...TE_VALUES, ...Array.from({ length: 4 }, () => TE_VALUES[between(rand, 0, TE_VALUES.length - 1)]!)];
  for (const te of values) {
    const chunked = te.toLowerCase().endsWith('chunked');
    const body = chunked ? '5\r\nhello\r\n0\r\n\r\n' : 'hello';
    let fields = `${TE_NAMES[between(rand, 0, TE_NAMES.length - 1)]}: ${te}\r\n`;
    if (rand() < 0.4) fields += `${CL_NAMES[between(rand, 0, CL_NAMES.length - 1)]}: ${body.length}\r\n`;
    out.push({ fields, body: body + (rand() < 0.5 ? 'GET /behind HTTP/1.1\r\nHost: x\r\n\r\n' : '') });
  }
  return out;
}
