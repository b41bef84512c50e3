// Output helpers shared by the commands: JSON for scripts, aligned text for people.
export interface Out {
  json: boolean;
  print(text: string): void;
}

export function emit(out: Out, value: unknown, human: () => string): void {
  out.print(out.json ? JSON.stringify(value, null, 2) : human());
}

export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}
