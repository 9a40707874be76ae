/** Number formatting shared by the progress lines, the table and the chart. */

export const int = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '-' : Math.round(n).toLocaleString('en-US'));

export const ms = (micros: number | undefined): string => {
  if (micros === undefined || !Number.isFinite(micros)) return '-';
  const v = micros / 1000;
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
};

export const pct = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '-' : `${Math.round(n)}%`);

export const mb = (bytes: number | undefined): string => (bytes === undefined ? '-' : `${Math.round(bytes / (1024 * 1024))}`);

export const ratio = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '-' : `${n.toFixed(2)}×`);

/** A plain-text table with right-aligned numeric columns. */
export function textTable(header: string[], rows: string[][], leftColumns = 2): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, c) => (c < leftColumns ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** A GitHub markdown table. */
export function markdownTable(header: string[], rows: string[][], leftColumns = 2): string {
  const align = header.map((_, c) => (c < leftColumns ? '---' : '---:'));
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [`| ${header.map(esc).join(' | ')} |`, `| ${align.join(' | ')} |`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}
