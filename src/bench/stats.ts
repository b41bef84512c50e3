// Summaries and ratios for the benchmark. Pure.

export interface Spread {
  min: number;
  median: number;
  max: number;
  n: number;
}

export function spread(values: number[]): Spread {
  const v = [...values].sort((a, b) => a - b);
  if (!v.length) return { min: NaN, median: NaN, max: NaN, n: 0 };
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { min: v[0], median, max: v[v.length - 1], n: v.length };
}

/** a / b of medians, rounded to 3 decimals. */
export function ratio(a: Spread, b: Spread): number {
  return Math.round((a.median / b.median) * 1000) / 1000;
}

/** Percentiles of a sample (nearest rank). */
export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  n: number;
}

function nearestRank(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

export function percentiles(values: number[]): Percentiles {
  const v = [...values].sort((a, b) => a - b);
  return { p50: nearestRank(v, 0.5), p90: nearestRank(v, 0.9), p99: nearestRank(v, 0.99), max: v[v.length - 1], n: v.length };
}

/** A bench target and what was measured against it. */
export interface Target {
  what: string;
  target: string;
  measured: string;
  met: boolean;
}

/** The targets as an aligned text table (met / MISSED per row). */
export function targetTable(targets: Target[]): string {
  const rows = [['target', 'goal', 'measured', ''], ...targets.map((t) => [t.what, t.target, t.measured, t.met ? 'met' : 'MISSED'])];
  const w = rows[0].map((_, i) => Math.max(...rows.map((x) => x[i].length)));
  return rows.map((x) => x.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd()).join('\n');
}

/** A number with its unit, two decimals below 10 and one above. */
export function fmt(n: number, unit: string): string {
  return `${n.toFixed(n < 10 ? 2 : 1)} ${unit}`;
}
