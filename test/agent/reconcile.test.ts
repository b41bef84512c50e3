// The reconciler against in-memory maps that behave like the kernel's (capacity, array maps that
// cannot delete) and can be told to fail: random sequences of desired states end with the maps
// equal to the desired state, and a write that fails half-way leaves every map as it was.
import { describe, expect, it } from 'vitest';
import { assignServiceIds, compileDesired, type DesiredMaps, type Entry } from '../../src/agent/desired.js';
import { CapacityError, reconcile } from '../../src/agent/reconcile.js';
import type { InstanceMaps } from '../../src/bpf/maps.js';
import { CAPACITY } from '../../src/config/capacity.js';
import { parseConfigText } from '../../src/config/load.js';
import { SyscallError } from '../../src/errors.js';

class FakeMap {
  readonly data = new Map<string, Buffer>();
  /** Fail the n-th write from now (0 = never). */
  failAfter = 0;
  constructor(readonly name: string, readonly info: { maxEntries: number }, readonly isArray: boolean, keySize: number) {
    if (isArray) for (let i = 0; i < info.maxEntries; i++) this.data.set(Buffer.alloc(keySize).fill(0).toString('hex').replace(/^.{8}/, le32(i)), Buffer.alloc(4));
  }
  private tick(): void {
    if (this.failAfter > 0 && --this.failAfter === 0) throw new SyscallError('bpf_map_update_elem', 28, this.name);
  }
  rawEntries(): Entry[] {
    return [...this.data].map(([k, v]) => ({ key: Buffer.from(k, 'hex'), value: Buffer.from(v) }));
  }
  setManyRaw(entries: Entry[]): void {
    for (const e of entries) {
      this.tick();
      const k = e.key.toString('hex');
      if (!this.data.has(k) && this.data.size >= this.info.maxEntries) throw new SyscallError('bpf_map_update_elem', 7, this.name);
      this.data.set(k, Buffer.from(e.value));
    }
  }
  deleteRaw(k: Buffer): boolean {
    this.tick();
    return this.data.delete(k.toString('hex'));
  }
  dump(): string[] {
    return [...this.data].map(([k, v]) => `${k}=${v.toString('hex')}`).sort();
  }
}

function le32(i: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(i);
  return b.toString('hex');
}

const SVC_STATE = 64;

function fakeMaps() {
  const m = {
    config: new FakeMap('sm_config', { maxEntries: 1 }, true, 4),
    services: new FakeMap('sm_services', { maxEntries: 300 }, false, 20),
    svcState: new FakeMap('sm_svc_state', { maxEntries: SVC_STATE }, true, 4),
    exclPorts: new FakeMap('sm_excl_ports', { maxEntries: 64 }, false, 2),
    exclCidrs: new FakeMap('sm_excl_cidrs', { maxEntries: 64 }, false, 20),
    inclPorts: new FakeMap('sm_incl_ports', { maxEntries: 64 }, false, 2),
    inclCidrs: new FakeMap('sm_incl_cidrs', { maxEntries: 64 }, false, 20),
    localAddrs: new FakeMap('sm_local_addrs', { maxEntries: 8 }, false, 20),
  };
  return { fake: m, maps: m as unknown as InstanceMaps, all: Object.values(m) };
}

function dumpAll(all: FakeMap[]): Record<string, string[]> {
  return Object.fromEntries(all.map((m) => [m.name, m.dump()]));
}

function expectEqualsDesired(all: FakeMap[], d: DesiredMaps): void {
  for (const m of all) {
    const want = d[m.name as keyof DesiredMaps].map((e) => `${e.key.toString('hex')}=${e.value.toString('hex')}`).sort();
    expect(m.dump(), m.name).toEqual(want);
  }
}

/** A small deterministic PRNG, so a failing sequence can be replayed from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function randomConfig(r: () => number, services: number): string {
  const pick = (n: number) => Math.floor(r() * n);
  const lines = ['services:'];
  if (!services) lines[0] = 'services: []';
  for (let i = 0; i < services; i++) {
    // Distinct names and addresses; any-address services get ports of their own.
    const addrs = pick(3) ? `addresses: [10.96.${pick(4)}.${i}]` : '';
    const ports = addrs
      ? Array.from(new Set(Array.from({ length: 1 + pick(3) }, () => 8000 + pick(50)))).join(', ')
      : Array.from({ length: 1 + pick(3) }, (_, k) => 20000 + i * 3 + k).join(', ');
    lines.push(`  - { name: s${pick(40)}x${i}, ${addrs ? `${addrs}, ` : ''}ports: [${ports}], redirect: ${pick(2) ? 'true' : 'false'}, splice: ${['auto', 'always', 'never'][pick(3)]} }`);
  }
  const exclPorts = Array.from(new Set(Array.from({ length: pick(64) }, () => 1 + pick(65535))));
  lines.push(`exclude: { outboundPorts: [${exclPorts.join(', ')}], outboundCIDRs: [${Array.from({ length: pick(5) }, (_, i) => `172.${16 + i}.${pick(255)}.0/24`).join(', ')}] }`);
  if (pick(2)) lines.push(`capture: { outbound: all, includeOutboundCIDRs: [10.${pick(255)}.0.0/16], includeOutboundPorts: [${1 + pick(1000)}] }`);
  return lines.join('\n');
}

describe('reconcile', () => {
  it('random sequences of desired states, capacity edges included: the maps equal each desired state exactly', () => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const r = rng(seed);
      const { maps, all } = fakeMaps();
      let ids = {};
      for (let step = 0; step < 25; step++) {
        // Up to the 64 service ids of this fake map, and exactly at it now and then.
        const n = step % 7 === 6 ? SVC_STATE : Math.floor(r() * 40);
        const cfg = parseConfigText(randomConfig(r, n), `seed ${seed} step ${step}`);
        ids = assignServiceIds(cfg.services.map((s) => s.name), ids, SVC_STATE);
        const d = compileDesired(cfg, ids, SVC_STATE, r() < 0.5 ? ['10.200.0.1/32'] : []);
        if (d.sm_services.length > 300) {
          const before = dumpAll(all);
          expect(() => reconcile(maps, d)).toThrow(CapacityError);
          expect(dumpAll(all)).toEqual(before);
          continue;
        }
        reconcile(maps, d);
        expectEqualsDesired(all, d);
        // Idempotent: the same state again writes nothing.
        expect(reconcile(maps, d).changes).toEqual({});
      }
    }
  });

  it('a write that fails half-way puts every map back: new connections see the old state or the new one only', () => {
    const old = parseConfigText('services: [{ name: a, addresses: [10.96.0.20], ports: [9080] }, { name: b, ports: [9090], redirect: false }]\nexclude: { outboundPorts: [22] }', 'old');
    const next = parseConfigText('services: [{ name: a, addresses: [10.96.0.20], ports: [9080], redirect: false }, { name: c, ports: [7070, 7071] }]\nexclude: { outboundPorts: [23, 24] }', 'new');
    const oldIds = assignServiceIds(old.services.map((s) => s.name), {}, SVC_STATE);
    const nextIds = assignServiceIds(next.services.map((s) => s.name), oldIds, SVC_STATE);
    const dOld = compileDesired(old, oldIds, SVC_STATE);
    const dNext = compileDesired(next, nextIds, SVC_STATE);
    // Fail at every possible write of the apply in turn.
    for (let failAt = 1; failAt < 200; failAt++) {
      const { maps, all } = fakeMaps();
      reconcile(maps, dOld);
      const before = dumpAll(all);
      let writes = 0;
      for (const m of all) m.failAfter = 0;
      // Count-down shared across maps: fail the failAt-th write overall.
      const total = { left: failAt };
      for (const m of all) {
        const orig = m.setManyRaw.bind(m);
        const origDel = m.deleteRaw.bind(m);
        m.setManyRaw = (entries: Entry[]) => { for (const e of entries) { writes++; if (--total.left === 0) throw new SyscallError('bpf_map_update_elem', 1, m.name); orig([e]); } };
        m.deleteRaw = (k: Buffer) => { writes++; if (--total.left === 0) throw new SyscallError('bpf_map_delete_elem', 1, m.name); return origDel(k); };
      }
      let failed = false;
      try {
        reconcile(maps, dNext);
      } catch (e) {
        failed = true;
        expect((e as SyscallError).errno).toBe(1);
      }
      if (!failed) {
        expectEqualsDesired(all, dNext);
        expect(failAt).toBeGreaterThan(writes);
        return; // every write position was tried
      }
      expect(dumpAll(all), `failure at write ${failAt}`).toEqual(before);
    }
    throw new Error('the apply never got through');
  });

  it('checks every map against its capacity before the first write', () => {
    const { maps, all } = fakeMaps();
    const cfg = parseConfigText(`services: []\nexclude: { outboundPorts: [${Array.from({ length: 100 }, (_, i) => i + 1).join(', ')}] }`, 't');
    const before = dumpAll(all);
    expect(() => reconcile(maps, compileDesired(cfg, {}, SVC_STATE))).toThrow(/sm_excl_ports would need 100 entries, it holds 64/);
    expect(dumpAll(all)).toEqual(before);
    expect(CAPACITY.portList).toBeGreaterThanOrEqual(100);
  });
});
