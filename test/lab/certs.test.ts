import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { findLabCertDir, labCertDirCandidates, LabCertsNotFoundError, loadLabCerts } from '../../src/lab/index.js';

/** The repository root, from dist/test/lab/. */
const root = fileURLToPath(new URL('../../../', import.meta.url));
const sourceCerts = join(root, 'src/lab/certs/');

test('found from the compiled module in dist/src/lab/', () => {
  const compiled = pathToFileURL(join(root, 'dist/src/lab/certs.js'));
  assert.equal(findLabCertDir(compiled), sourceCerts);
  assert.equal(loadLabCerts().dir, sourceCerts, 'the default (this very run) is the dist layout');
});

test('found from the source module in src/lab/', () => {
  const source = pathToFileURL(join(root, 'src/lab/certs.ts'));
  assert.equal(labCertDirCandidates(source)[0], sourceCerts);
  assert.equal(loadLabCerts(source).dir, sourceCerts);
});

test('a missing folder is a typed error', () => {
  assert.throws(() => findLabCertDir(pathToFileURL('/nowhere/at/all/x.js')), LabCertsNotFoundError);
});

test('the certificates are what the lab promises', () => {
  const certs = loadLabCerts();
  const ca = new X509Certificate(certs.ca);
  const leaf = new X509Certificate(certs.caSignedCert);
  const self = new X509Certificate(certs.selfSignedCert);
  assert.ok(ca.ca);
  assert.ok(leaf.verify(ca.publicKey), 'leaf signed by the lab CA');
  assert.ok(leaf.checkHost('localhost'));
  assert.ok(leaf.checkIP('127.0.0.1'));
  assert.ok(self.verify(self.publicKey), 'self-signed');
  assert.ok(!self.verify(ca.publicKey));
  for (const c of [ca, leaf, self]) {
    assert.ok(new Date(c.validTo).getFullYear() >= 2119, c.validTo);
    assert.ok(new Date(c.validFrom) <= new Date(), c.validFrom);
  }
});
