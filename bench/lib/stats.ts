/**
 * Small statistics and number formatting for the bench table: medians
 * with ranges over rounds, and paired ratios (each round's ratio is taken
 * between runs of the same round, then the median of those is reported).
 */

/** The p-th percentile (0..100) of sorted values, nearest rank; 0 when empty. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** The median of values (mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Median, minimum and maximum of one cell's rounds. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Summarises finite values; NaN fields when there are none. */
export function summarize(values: readonly number[]): Summary {
  const ok = values.filter(Number.isFinite);
  if (ok.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  return { median: median(ok), min: Math.min(...ok), max: Math.max(...ok), n: ok.length };
}

/**
 * Paired ratio a/b over rounds: one ratio per round where both ran, then
 * their summary. Noise that hits one round hits both sides of its pair.
 */
export function pairedRatio(a: readonly number[], b: readonly number[]): Summary {
  const ratios: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (Number.isFinite(x) && Number.isFinite(y) && y > 0) ratios.push(x / y);
  }
  return summarize(ratios);
}

/** A rate for people: 12345.6 -> "12.3k", 950 -> "950". */
export function formatRate(value: number): string {
  if (!Number.isFinite(value)) return '–';
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (value >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  if (value >= 1e3) return `${(value / 1e3).toFixed(2)}k`;
  return value.toFixed(value >= 100 || value === 0 ? 0 : 1);
}

/** "12.3k (11.9k–12.8k)": median with the range of the rounds. */
export function formatSummary(s: Summary, format: (v: number) => string = formatRate): string {
  if (s.n === 0) return '–';
  if (s.n === 1) return format(s.median);
  return `${format(s.median)} (${format(s.min)}–${format(s.max)})`;
}

/** "1.23×" with the range: "1.23× (1.10–1.31)". */
export function formatRatio(s: Summary): string {
  if (s.n === 0) return '–';
  const f = (v: number): string => v.toFixed(2);
  return s.n === 1 ? `${f(s.median)}×` : `${f(s.median)}× (${f(s.min)}–${f(s.max)})`;
}

/** Milliseconds with a sensible precision: 0.213 -> "0.21 ms". */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '–';
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(1)} ms`;
}

/** A markdown table; cells are escaped for `|`. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const esc = (cell: string): string => cell.replace(/\|/g, '\\|');
  const line = (cells: readonly string[]): string => `| ${cells.map(esc).join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** A fixed-width text table for the terminal (first column left, others right). */
export function textTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) =>
    i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
