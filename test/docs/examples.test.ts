// Every YAML example of the README and docs/ is one that sockmesh accepts: each ```yaml block is
// checked by the real CLI (`sockmesh validate`), as a user who copies it would check it. One that
// was refused (a retryOn list inside a flow mapping split into two keys) is how this test began.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

/** The ```yaml blocks of a markdown file, with the line each starts on. */
export function yamlBlocks(text: string): Array<{ line: number; yaml: string }> {
  const out: Array<{ line: number; yaml: string }> = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^```ya?ml\s*$/.test(lines[i].trim())) continue;
    const start = i + 1;
    let j = start;
    while (j < lines.length && lines[j].trim() !== '```') j++;
    out.push({ line: start + 1, yaml: lines.slice(start, j).join('\n') });
    i = j;
  }
  return out;
}

const docs = ['README.md', ...readdirSync('docs').filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];
const examples = docs.flatMap((file) => yamlBlocks(readFileSync(file, 'utf8')).map((b) => ({ file, ...b })));

describe('YAML examples in the README and docs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sockmesh-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finds the examples', () => {
    expect(examples.length).toBeGreaterThanOrEqual(2);
  });

  it.each(examples.map((e) => [`${e.file}:${e.line}`, e] as const))('%s is accepted by sockmesh validate', async (_where, e) => {
    const path = join(dir, `${e.file.replace(/\W/g, '_')}-${e.line}.yaml`);
    writeFileSync(path, e.yaml);
    const r = await runCli(['validate', path]);
    expect(r.stdout + r.stderr, `${e.file}:${e.line}`).toMatch(/: valid \(/);
    expect(r.code).toBe(0);
  });
});
