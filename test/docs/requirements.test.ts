// The README's requirements table is src/bpf/requirements.ts, row for row (the data `sockmesh
// probe` reports its checks' kernel releases from), and the minimum it states is the table's.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EBPF_MINIMUM, REQUIREMENTS, requirementsTable, sinceOf } from '../../src/bpf/requirements.js';

const readme = readFileSync('README.md', 'utf8');

describe('kernel requirements', () => {
  it('the README holds the table as the code has it', () => {
    const lines = readme.split('\n');
    const start = lines.indexOf(requirementsTable()[0]);
    expect(start, 'the requirements table header is in the README').toBeGreaterThan(0);
    expect(lines.slice(start, start + requirementsTable().length)).toEqual(requirementsTable());
    expect(lines[start + requirementsTable().length].startsWith('|')).toBe(false);
  });

  it('states the minimum eBPF mode needs, the newest probed release', () => {
    expect(EBPF_MINIMUM).toBe('5.18');
    expect(readme).toContain(`eBPF mode needs Linux ${EBPF_MINIMUM} as a whole`);
  });

  it('gives each probe check its release', () => {
    for (const r of REQUIREMENTS.filter((x) => x.probed)) expect(sinceOf(r.feature)).toBe(r.since);
    expect(sinceOf('load sockmesh.bpf.o')).toBe(EBPF_MINIMUM);
  });
});
