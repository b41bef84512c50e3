// Codec layouts against the BTF of the committed object: the C header and the TypeScript mirror
// must agree on every struct's size and every member's offset, and on the counter enum.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HEADER_CONSTANTS, LIMITS, STATS, STRUCT_CODECS, SVC_STATS } from '../../src/bpf/codecs.js';
import { defaultObjectPath } from '../../src/bpf/programs.js';
import { packageRoot } from '../../src/util/paths.js';
import { missingTools, requirementsOrSkip } from '../helpers/privileged.js';

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: Array<{ name: string; type_id: number; bits_offset: number }>;
  values?: Array<{ name: string; val: number }>;
}

const reason = missingTools(['bpftool', 'cc']);

describe.skipIf(requirementsOrSkip(reason))('codec layouts equal the BTF of bpf/sockmesh.bpf.o', () => {
  const types = (): BtfType[] =>
    (JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', defaultObjectPath()], { encoding: 'utf8' })) as { types: BtfType[] }).types;
  const all = types();
  const byId = new Map(all.map((t) => [t.id, t]));
  const sizeOf = (id: number): number => {
    const t = byId.get(id)!;
    if (t.kind === 'ARRAY') return sizeOf(t.type_id!) * t.nr_elems!;
    if (t.kind === 'TYPEDEF' || t.kind === 'CONST' || t.kind === 'VOLATILE') return sizeOf(t.type_id!);
    return t.size!;
  };

  for (const codec of STRUCT_CODECS) {
    it(`struct ${codec.cName}`, () => {
      const t = all.find((x) => x.kind === 'STRUCT' && x.name === codec.cName);
      expect(t, `struct ${codec.cName} is not in the object's BTF`).toBeDefined();
      expect(codec.size).toBe(t!.size);
      const btfMembers = t!.members!.map((m) => ({ name: m.name, offset: m.bits_offset / 8, size: sizeOf(m.type_id) }));
      expect(codec.fields).toEqual(btfMembers);
    });
  }

  it('enum sm_stat, enum sm_svc_stat, the capacities, flags and addresses (compiled against bpf/include/sockmesh.h)', () => {
    // Array map keys cannot carry an enum in BTF, so the header itself is compiled: a name the
    // TypeScript side has and C lacks fails to compile, a value that differs fails the compare,
    // and SM_STAT_MAX catches counters added in C only.
    const dir = mkdtempSync(join(tmpdir(), 'sockmesh-enum-'));
    try {
      const names = { ...STATS, ...SVC_STATS, ...LIMITS, ...HEADER_CONSTANTS };
      const src = `#include <stdio.h>\n#include "sockmesh.h"\nint main(void) {\n${Object.keys(names).map((k) => `  printf("${k} %llu\\n", (unsigned long long)(${k}));`).join('\n')}\n  return 0;\n}\n`;
      writeFileSync(join(dir, 'enum.c'), src);
      execFileSync('cc', ['-I', join(packageRoot(), 'bpf', 'include'), '-o', join(dir, 'enum'), join(dir, 'enum.c')]);
      const out = execFileSync(join(dir, 'enum'), { encoding: 'utf8' });
      const values = Object.fromEntries(out.trim().split('\n').map((l) => { const [k, v] = l.split(' '); return [k, Number(v)]; }));
      expect(values).toEqual(names);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
