import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The hostile-request corpora (MIT-licensed data from llhttp and smuggler, see
 * test/corpora/README.md) are kept in the repository, so a fresh clone tests with them.
 * GATEWISE_CORPORA points elsewhere (a directory ending in '/').
 */
const DIR = process.env.GATEWISE_CORPORA ?? fileURLToPath(new URL('../../../test/corpora/', import.meta.url));

/** The path of a corpus file; throws when it is missing (a corpus test never skips silently). */
export function corpusPath(name: string): string {
  const path = DIR + name;
  if (!existsSync(path)) throw new Error(`corpus file missing: ${path} (the corpora live in test/corpora/)`);
  return path;
}
