import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as undiciIndex from 'undici';
import { buildConnector, errors, undici } from '../../src/http/undici.js';

// src/http/undici.ts loads two of undici's files by path instead of its index. They must be
// the very modules the index exports: the same error classes (classification and `instanceof`
// across both clients) and the same connector. An undici that moves or copies them fails here.
test('undici in parts: the error classes and the connector are the index exports themselves', () => {
  assert.equal(errors, undiciIndex.errors);
  assert.equal(buildConnector, undiciIndex.buildConnector);
  assert.equal(undici().Client, undiciIndex.Client);
  const e = new errors.SocketError('x');
  assert.ok(e instanceof undiciIndex.errors.UndiciError);
  assert.equal(e.code, 'UND_ERR_SOCKET');
});
