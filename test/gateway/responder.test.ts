import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const GATEWAY = new URL('../../../src/gateway/', import.meta.url).pathname;

/**
 * One responder writes every gateway-made answer of the reverse face. Elsewhere in
 * src/gateway a failure is never rendered, and the only `writeHead` forwards an upstream's
 * head (Exchange.writeResponseHead, and Exchange.answerFromCache for a stored one).
 */
test('only src/gateway/responder.ts renders failures and writes gateway-made answers', () => {
  const found: string[] = [];
  for (const name of readdirSync(GATEWAY)) {
    if (!name.endsWith('.ts') || name === 'responder.ts') continue;
    readFileSync(join(GATEWAY, name), 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (/\brenderFailure\(/.test(line)) found.push(`${name}:${i + 1}: ${line.trim()}`);
        if (/\.writeHead\(/.test(line) && !(name === 'exchange.ts' && /this\.res\.writeHead\(statusCode, head\)/.test(line))) found.push(`${name}:${i + 1}: ${line.trim()}`);
      });
  }
  assert.deepEqual(found, [], `gateway-made answers written outside the responder:\n${found.join('\n')}`);
});
