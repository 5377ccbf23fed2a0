import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { ADMIN_ROUTES, startAdmin } from '../../src/observe/admin.js';
import { ADMIN_TOKEN } from '../helpers/admin-stack.js';
import { seededRun } from '../helpers/seeded.js';

// RFC 9110 §15.5.6: a 405 MUST carry Allow, the methods the target supports (§10.2.1). The
// admin listener answered 405 without it, and OPTIONS (§9.3.7) was one more 405. Now both
// say the methods of every route at the path, from the route table.

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

function send(url: string, method: string): Promise<{ status: number; allow: string | undefined; length: string | undefined; code: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        let code: string | undefined;
        if (body.startsWith('{')) code = (JSON.parse(body) as { code?: string }).code;
        resolve({ status: res.statusCode ?? 0, allow: res.headers.allow, length: res.headers['content-length'], code });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** The methods the table holds for a concrete path: every route whose template matches it (a `{param}` matches any segment), OPTIONS besides. */
function expectedAllow(path: string): string[] {
  const parts = path.split('/').filter(Boolean);
  const out = new Set<string>(['OPTIONS']);
  for (const r of ADMIN_ROUTES) {
    const tpl = r.path.split('/').filter(Boolean);
    if (tpl.length === parts.length && tpl.every((t, i) => t.startsWith('{') || t === parts[i])) out.add(r.method);
  }
  return [...out].sort();
}

const listed = (allow: string | undefined): string[] => (allow ?? '').split(',').map((m) => m.trim()).filter(Boolean).sort();

test('every admin route: a method it does not take is a 405 with Allow listing the methods of the path (seeded choice of method), and OPTIONS answers 200, no content, with the same Allow; before the token is asked for', async () => {
  await seededRun('admin Allow', async (rand) => {
    const admin = await startAdmin({ port: 0, token: ADMIN_TOKEN });
    try {
      const paths = [...new Set(ADMIN_ROUTES.map((r) => r.path.replace(/\{[^}]+\}/g, 'x')))];
      assert.ok(paths.length >= 10, `${paths.length} admin paths`);
      const failed: string[] = [];
      for (const path of paths) {
        const allow = expectedAllow(path);
        const wrong = METHODS.filter((m) => !allow.includes(m));
        if (wrong.length > 0) {
          const method = wrong[Math.floor(rand() * wrong.length)]!;
          const r = await send(`${admin.url}${path}`, method);
          if (r.status !== 405 || JSON.stringify(listed(r.allow)) !== JSON.stringify(allow) || (method !== 'HEAD' && r.code !== 'method-not-allowed')) {
            failed.push(`${method} ${path}: ${r.status} code=${r.code} Allow=${r.allow} (want 405 Allow=${allow.join(', ')})`);
          }
        }
        const o = await send(`${admin.url}${path}`, 'OPTIONS');
        if (o.status !== 200 || JSON.stringify(listed(o.allow)) !== JSON.stringify(allow) || o.length !== '0') {
          failed.push(`OPTIONS ${path}: ${o.status} Allow=${o.allow} Content-Length=${o.length} (want 200 Allow=${allow.join(', ')} Content-Length=0)`);
        }
      }
      assert.deepEqual(failed, [], failed.join('\n'));
      // A path with no route stays a 404, with no Allow.
      const none = await send(`${admin.url}/no-such-route`, 'OPTIONS');
      assert.equal(none.status, 404);
      assert.equal(none.allow, undefined);
    } finally {
      await admin.close();
    }
  });
});
