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
