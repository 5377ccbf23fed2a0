#!/usr/bin/env node
// The young generation is held at its first size before the rest of Gatewise loads
// (src/cli/young-generation.ts), so main is imported after the call.
import { holdYoungGeneration } from '../dist/src/cli/young-generation.js';
holdYoungGeneration();
const { main } = await import('../dist/src/cli/main.js');
main(process.argv.slice(2)).then((code) => { if (typeof code === 'number') process.exitCode = code; }, (err) => {
  process.stderr.write(`gatewise: ${err && err.message ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
