import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('the package exports both faces, their hook types and the store by name (self-reference through "exports")', () => {
  const script = `
    const root = await import('gatewise');
    const forward = await import('gatewise/forward');
    const failure = await import('gatewise/failure');
    const state = await import('gatewise/state');
    const lab = await import('gatewise/lab');
    const diagnose = await import('gatewise/diagnose');
    console.log(JSON.stringify({
      root: ['startGateway', 'Gateway', 'startForwardProxy', 'planRefusal', 'Failure', 'MemoryStore', 'BALANCER_KINDS'].filter((k) => root[k] === undefined),
      forward: ['startForwardProxy', 'planRefusal', 'REQUEST_END_CHANNEL', 'EXIT_FAILURE_CHANNEL'].filter((k) => forward[k] === undefined),
      failure: ['Failure', 'classify', 'REFUSAL_REASONS', 'ERROR_TYPES', 'parseProxyStatus', 'failurePath'].filter((k) => failure[k] === undefined),
      state: ['MemoryStore'].filter((k) => state[k] === undefined),
      lab: ['startLab'].filter((k) => lab[k] === undefined),
      diagnose: ['diagnose', 'FINGERPRINTS', 'readHops', 'formatDiagnosis', 'DiagnoseInputError'].filter((k) => diagnose[k] === undefined),
    }));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
  assert.deepEqual(JSON.parse(out), { root: [], forward: [], failure: [], state: [], lab: [], diagnose: [] });
});
