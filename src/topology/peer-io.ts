// What every peer prints: one JSON object per line on stdout.
export function out(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v)}\n`);
}
