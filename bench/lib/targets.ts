/**
 * The targets of issue 7, each judged met or missed against one run's
 * measurements. A target whose measurement is absent (a skipped part of
 * the run, or the opt-in long RSS run) is "not run", never met.
 */
import { formatRatio, type Summary } from './stats.ts';

/** How one target came out. */
export type TargetStatus = 'met' | 'missed' | 'not run';

/** One row of the targets table. */
export interface TargetRow {
  target: string;
  goal: string;
  measured: string;
  status: TargetStatus;
}

/** A measurement with a threshold: at least (`>=`) or at most (`<=`). */
export interface Check {
  target: string;
  value: Summary | null;
  op: '>=' | '<=';
  threshold: number;
  /** How to print value and threshold: a ratio (1.23×) or a unit. */
  unit: '×' | 'µs' | 'req/s' | 'ms' | 'MiB' | '%';
}

function formatValue(v: number, unit: Check['unit']): string {
  if (unit === '×') return `${v.toFixed(2)}×`;
  if (unit === 'req/s') return `${Math.round(v).toLocaleString('en-US')} req/s`;
  if (unit === 'ms') return `${v.toFixed(2)} ms`;
  if (unit === '%') return `${v.toFixed(1)} %`;
  return `${v.toFixed(1)} ${unit}`;
}

/** Judges one check on the median of its rounds. */
export function judge(check: Check): TargetRow {
  const goal = `${check.op === '>=' ? '≥' : '≤'} ${formatValue(check.threshold, check.unit)}`;
  const v = check.value;
  if (v === null || v.n === 0 || !Number.isFinite(v.median)) {
    return { target: check.target, goal, measured: '–', status: 'not run' };
  }
  const ok = check.op === '>=' ? v.median >= check.threshold : v.median <= check.threshold;
  const measured = check.unit === '×'
    ? formatRatio(v)
    : v.n > 1
      ? `${formatValue(v.median, check.unit)} (${formatValue(v.min, check.unit)}–${formatValue(v.max, check.unit)})`
      : formatValue(v.median, check.unit);
  return { target: check.target, goal, measured, status: ok ? 'met' : 'missed' };
}

/** A yes/no target (e.g. keep-alive kept); null when not run. */
export function judgeFlag(target: string, goal: string, ok: boolean | null, measured: string): TargetRow {
  return { target, goal, measured: ok === null ? '–' : measured, status: ok === null ? 'not run' : ok ? 'met' : 'missed' };
}
