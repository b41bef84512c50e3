// Codec layouts against the BTF of the committed object: the C header and the TypeScript mirror
// must agree on every struct's size and every member's offset, and on the counter enum.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { STATS, STRUCT_CODECS } from '../../src/bpf/codecs.js';
import { defaultObjectPath } from '../../src/bpf/programs.js';
import { requirementsOrSkip } from '../helpers/privileged.js';

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

const reason = (() => {
  try {
    execFileSync('bpftool', ['version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'needs bpftool';
  }
})();

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

  it('enum sm_stat', () => {
    const e = all.find((x) => x.kind === 'ENUM' && x.name === 'sm_stat');
    expect(e, 'enum sm_stat is not in the BTF').toBeDefined();
    expect(Object.fromEntries(e!.values!.map((v) => [v.name, v.val]))).toEqual(STATS);
  });
});
