const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

/**
 * A byte count in binary units (B, KiB … TiB) with one decimal. `prose` (messages): a whole
 * value drops its decimal (`1 KiB`, `1.5 MiB`). `column` (tables): bytes as they are, larger
 * units always with their decimal (`512 B`, `1.0 KiB`), so a column lines up.
 */
export function formatBytes(n: number, style: 'prose' | 'column' = 'prose'): string {
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  if (style === 'column') return i === 0 ? `${n} B` : `${n.toFixed(1)} ${UNITS[i]}`;
  return `${Math.round(n * 10) / 10} ${UNITS[i]}`;
}
