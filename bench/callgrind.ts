import fs from 'node:fs';
import path from 'node:path';

/** Instructions of every callgrind dump in `dir` (files callgrind.out*), summed. */
export function callgrindTotal(dir: string): number {
  let total = 0;
  for (const f of fs.readdirSync(dir).filter((x) => x.startsWith('callgrind.out.'))) {
    const m = /^summary: (\d+)/m.exec(fs.readFileSync(path.join(dir, f), 'utf8'));
    if (m) total += Number(m[1]);
  }
  return total;
}
