// The reconciler against in-memory maps that behave like the kernel's (two slots and sm_gen,
// capacity, array maps that cannot delete) and can be told to fail: random sequences of desired
// states end with the active slot equal to the desired state, and at every single write the
// programs read one whole state, the old or the new.
import { describe, expect, it } from 'vitest';
import { assignServiceIds, compileDesired, configEntry, type DesiredMaps, type Entry, type ResolvedPod } from '../../src/plan/desired.js';
import { ServiceReconciler } from '../../src/plan/incremental.js';
import { CapacityError, reconcile, type ReconcileMaps } from '../../src/plan/reconcile.js';
import type { MeshConfig } from '../../src/config/model.js';
import { CAPACITY } from '../../src/config/capacity.js';
import { newParseCaches, parseConfigText } from '../../src/config/load.js';
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

function fakeSlot(suffix: string) {
  return {
    pods: new FakeMap(`sm_pods_${suffix}`, { maxEntries: 16 }, false, 8),
    services: new FakeMap(`sm_services_${suffix}`, { maxEntries: 300 }, false, 20),
    svcState: new FakeMap(`sm_svc_state_${suffix}`, { maxEntries: SVC_STATE }, true, 4),
    ports: new FakeMap(`sm_ports_${suffix}`, { maxEntries: 64 }, false, 8),
    cidrs: new FakeMap(`sm_cidrs_${suffix}`, { maxEntries: 64 }, false, 28),
    backends: new FakeMap(`sm_backends_${suffix}`, { maxEntries: 1021 * 64 }, false, 8),
    localAddrs: new FakeMap(`sm_local_addrs_${suffix}`, { maxEntries: 64 }, false, 16),
  };
}

/** Two slots, a config array and sm_gen, like the kernel's; `writes` logs which slot each write hit. */
function fakeMaps() {
  const slots = [fakeSlot('a'), fakeSlot('b')] as const;
  const config = new FakeMap('sm_config', { maxEntries: 2 }, true, 4);
  const state = { gen: 0, flips: 0 };
  const maps: ReconcileMaps = {
    slots: slots as unknown as ReconcileMaps['slots'],
    config,
    activeSlot: () => state.gen,
    setActiveSlot: (slot) => { state.gen = slot; state.flips++; },
  };
  const all = (slot: number) => Object.values(slots[slot]);
  return { maps, slots, config, state, all, active: () => all(state.gen) };
}

/** Map contents; zero entries of array maps are left out (an unused index is zero). */
function dumpAll(all: FakeMap[]): Record<string, string[]> {
  return Object.fromEntries(all.map((m) => [m.name.replace(/_[ab]$/, ''), m.dump().filter((l) => !(m.isArray && /=0+$/.test(l)))]));
}

const NAMES: Record<string, keyof DesiredMaps> = {
  sm_pods: 'sm_pods', sm_services: 'sm_services', sm_svc_state: 'sm_svc_state', sm_ports: 'sm_ports', sm_cidrs: 'sm_cidrs', sm_backends: 'sm_backends', sm_local_addrs: 'sm_local_addrs',
};

function desiredDump(d: DesiredMaps): Record<string, string[]> {
  return Object.fromEntries(Object.entries(NAMES).map(([n, k]) => [n, d[k].map((e) => `${e.key.toString('hex')}=${e.value.toString('hex')}`)
    .filter((l) => !(k === 'sm_svc_state' && /=0+$/.test(l))).sort()]));
}

function pods(cfg: MeshConfig, n: number): ResolvedPod[] {
  return Array.from({ length: n }, (_, i) => ({
    name: `p${i}`, netnsCookie: BigInt(4096 + i), cgroupId: BigInt(100 + i), cgroupLevel: 2, podId: i + 1,
    localAddrs: [`10.200.0.${i + 1}/32`], sidecar: cfg.sidecar, capture: cfg.capture,
  }));
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
    // One in six in kernel mode, with 0-3 endpoints (their Maglev tables in sm_backends).
    const kernel = pick(6) === 0;
    const mode = kernel
      ? `mode: kernel, endpoints: [${Array.from({ length: pick(4) }, (_, k) => `10.1.${i}.${k + 1}${pick(2) ? ':80' : ''}`).join(', ')}]${pick(2) ? ', affinity: client' : ''}`
      : `splice: ${['auto', 'always', 'never'][pick(3)]}`;
    lines.push(`  - { name: s${pick(40)}x${i}, ${addrs ? `${addrs}, ` : ''}ports: [${ports}], redirect: ${pick(2) ? 'true' : 'false'}, ${mode} }`);
  }
  const exclPorts = Array.from(new Set(Array.from({ length: pick(64) }, () => 1 + pick(65535))));
  lines.push(`exclude: { outboundPorts: [${exclPorts.join(', ')}], outboundCIDRs: [${Array.from({ length: pick(5) }, (_, i) => `172.${16 + i}.${pick(255)}.0/24`).join(', ')}] }`);
  if (pick(2)) lines.push(`capture: { outbound: all, includeOutboundCIDRs: [10.${pick(255)}.0.0/16], includeOutboundPorts: [${1 + pick(1000)}] }`);
  return lines.join('\n');
}

describe('reconcile', () => {
  it('random sequences of desired states, capacity edges included: the active slot equals each desired state exactly', () => {
    let capacityRefusals = 0;
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const r = rng(seed);
      const f = fakeMaps();
      let ids = {};
      for (let step = 0; step < 25; step++) {
        // Up to the 64 service ids of this fake map, and exactly at it now and then.
        const n = step % 7 === 6 ? SVC_STATE : Math.floor(r() * 40);
        const cfg = parseConfigText(randomConfig(r, n), `seed ${seed} step ${step}`);
        ids = assignServiceIds(cfg.services.map((s) => s.name), ids, SVC_STATE);
        const d = compileDesired(cfg, ids, SVC_STATE, pods(cfg, 1 + Math.floor(r() * 3)));
        const before = dumpAll(f.active());
        if (d.sm_services.length > 300 || d.sm_ports.length > 64 || d.sm_cidrs.length > 64) {
          expect(() => reconcile(f.maps, d, (slot) => configEntry(cfg, slot))).toThrow(CapacityError);
          expect(dumpAll(f.active())).toEqual(before);
          capacityRefusals++;
          continue;
        }
        reconcile(f.maps, d, (slot) => configEntry(cfg, slot));
        expect(dumpAll(f.active())).toEqual(desiredDump(d));
        expect(f.config.dump()).toContain(`${le32(f.state.gen)}=${configEntry(cfg, f.state.gen).value.toString('hex')}`);
        // Idempotent: the same state again writes nothing and does not flip.
        const flips = f.state.flips;
        expect(reconcile(f.maps, d, (slot) => configEntry(cfg, slot)).changes).toEqual({});
        expect(f.state.flips).toBe(flips);
      }
    }
    expect(capacityRefusals).toBeGreaterThan(0);
  });

  it('a write that fails half-way never touches the slot the programs read: they see the old state or the new one only', () => {
    const old = parseConfigText('services: [{ name: a, addresses: [10.96.0.20], ports: [9080] }, { name: b, ports: [9090], redirect: false }]\nexclude: { outboundPorts: [22] }', 'old');
    const next = parseConfigText('services: [{ name: a, addresses: [10.96.0.20], ports: [9080], redirect: false }, { name: c, ports: [7070, 7071] }]\nexclude: { outboundPorts: [23, 24] }', 'new');
    const oldIds = assignServiceIds(old.services.map((s) => s.name), {}, SVC_STATE);
    const nextIds = assignServiceIds(next.services.map((s) => s.name), oldIds, SVC_STATE);
    const dOld = compileDesired(old, oldIds, SVC_STATE, pods(old, 2));
    const dNext = compileDesired(next, nextIds, SVC_STATE, pods(next, 2));
    const states = [JSON.stringify(desiredDump(dOld)), JSON.stringify(desiredDump(dNext))];
    let tried = 0;
    for (let failAt = 1; ; failAt++) {
      const f = fakeMaps();
      reconcile(f.maps, dOld, (slot) => configEntry(old, slot));
      reconcile(f.maps, dOld, (slot) => configEntry(old, slot)); // a no-op: still one slot written
      const total = { left: failAt, writes: 0 };
      for (const m of [...f.all(0), ...f.all(1), f.config]) {
        const put = m.setManyRaw.bind(m);
        const del = m.deleteRaw.bind(m);
        const step = () => {
          // What the programs read at this moment is one whole state.
          expect(states).toContain(JSON.stringify(dumpAll(f.active())));
          total.writes++;
          if (--total.left === 0) throw new SyscallError('bpf_map_update_elem', 1, m.name);
        };
        m.setManyRaw = (entries: Entry[]) => { for (const e of entries) { step(); put([e]); } };
        m.deleteRaw = (k: Buffer) => { step(); return del(k); };
      }
      try {
        reconcile(f.maps, dNext, (slot) => configEntry(next, slot));
      } catch (e) {
        expect((e as SyscallError).errno).toBe(1);
        expect(JSON.stringify(dumpAll(f.active()))).toBe(states[0]);
        tried++;
        continue;
      }
      expect(JSON.stringify(dumpAll(f.active()))).toBe(states[1]);
      expect(tried).toBe(total.writes);
      expect(tried).toBeGreaterThan(10);
      return;
    }
  });

  it('checks every map against its capacity before the first write', () => {
    const f = fakeMaps();
    const cfg = parseConfigText(`services: []\nexclude: { outboundPorts: [${Array.from({ length: 100 }, (_, i) => i + 1).join(', ')}] }`, 't');
    const before = [dumpAll(f.all(0)), dumpAll(f.all(1))];
    expect(() => reconcile(f.maps, compileDesired(cfg, {}, SVC_STATE, pods(cfg, 1)), (slot) => configEntry(cfg, slot)))
      .toThrow(/sm_ports_b would need 104 entries, it holds 64/); // 100 excluded outbound + Istio's 4 inbound ports
    expect([dumpAll(f.all(0)), dumpAll(f.all(1))]).toEqual(before);
    expect(CAPACITY.portRules).toBeGreaterThanOrEqual(100);
  });
});

describe('ServiceReconciler (the agent\'s incremental apply)', () => {
  /** A config text of n services; `edit` changes a few of them between versions. */
  function text(n: number, edit: (i: number) => string = () => ''): string {
    const lines = ['services:'];
    for (let i = 0; i < n; i++) lines.push(`  - { name: s${i}, addresses: [10.96.${i >> 8}.${i & 255}], ports: [${8000 + (i % 50)}, ${9000 + (i % 7)}]${edit(i)} }`);
    return `${lines.join('\n')}\n`;
  }

  it('keeps the active slot equal to every desired state of random edits, writing only what changed', () => {
    const r = rng(42);
    const f = fakeMaps();
    const caches = newParseCaches();
    const inc = new ServiceReconciler(f.maps, SVC_STATE);
    let cfg = parseConfigText(text(40), 'v0', caches);
    let ids = assignServiceIds(cfg.services.map((s) => s.name), {}, SVC_STATE);
    inc.prime(cfg, ids, pods(cfg, 2), (slot) => configEntry(cfg, slot));
    expect(dumpAll(f.active())).toEqual(desiredDump(compileDesired(cfg, ids, SVC_STATE, pods(cfg, 2))));
    let n = 40;
    for (let v = 1; v < 60; v++) {
      n = Math.max(36, Math.min(44, n + Math.floor(r() * 5) - 2)); // a few services come and go
      const touched = new Set(Array.from({ length: 3 }, () => Math.floor(r() * n)));
      cfg = parseConfigText(text(n, (i) => (touched.has(i) ? (r() < 0.5 ? ', redirect: false' : ', splice: always') : '')), `v${v}`, caches);
      ids = assignServiceIds(cfg.services.map((s) => s.name), ids, SVC_STATE);
      const p = pods(cfg, 1 + (v % 3));
      let writes = 0;
      for (const m of [...f.all(0), ...f.all(1)]) {
        const put = m.setManyRaw.bind(m);
        m.setManyRaw = (entries: Entry[]) => { writes += entries.length; put(entries); };
      }
      inc.apply(cfg, ids, p, (slot) => configEntry(cfg, slot));
      expect(dumpAll(f.active()), `version ${v}`).toEqual(desiredDump(compileDesired(cfg, ids, SVC_STATE, p)));
      // The inactive slot lags two versions: at most two versions' changes (3 edited and up to 2
      // added or removed services each, 2 keys and a flag apiece) plus the small pod maps — where a
      // full rewrite would be 3 writes per service.
      expect(writes).toBeLessThanOrEqual(2 * (3 + 2) * 3 + 12);
      expect(writes).toBeLessThan(cfg.services.length * 3);
    }
  });

  it('catchUp brings the slot the programs left to the applied state, without touching the active one', () => {
    const r = rng(7);
    const f = fakeMaps();
    const caches = newParseCaches();
    const inc = new ServiceReconciler(f.maps, SVC_STATE);
    let cfg = parseConfigText(text(30), 'v0', caches);
    let ids = assignServiceIds(cfg.services.map((s) => s.name), {}, SVC_STATE);
    inc.prime(cfg, ids, pods(cfg, 3), (slot) => configEntry(cfg, slot));
    expect(inc.catchUp()).toBe(false); // primed: both slots already equal
    let caughtUp = 0;
    for (let v = 1; v < 20; v++) {
      const n = 25 + Math.floor(r() * 10);
      cfg = parseConfigText(text(n, () => (r() < 0.1 ? ', redirect: false' : '')), `v${v}`, caches);
      ids = assignServiceIds(cfg.services.map((s) => s.name), ids, SVC_STATE);
      const p = pods(cfg, 1 + (v % 3)); // pods come and go
      inc.apply(cfg, ids, p, (slot) => configEntry(cfg, slot));
      const want = desiredDump(compileDesired(cfg, ids, SVC_STATE, p));
      const active = f.state.gen;
      const activeBefore = JSON.stringify(dumpAll(f.all(active)));
      if (!inc.catchUp()) continue;
      caughtUp++;
      expect(f.state.gen).toBe(active);
      expect(JSON.stringify(dumpAll(f.all(active)))).toBe(activeBefore);
      expect(dumpAll(f.all(1 - active)), `version ${v}`).toEqual(want);
      expect(inc.catchUp()).toBe(false);
    }
    expect(caughtUp).toBeGreaterThan(15);
  });

  it('a failed write leaves the programs on the old state; the next apply recovers', () => {
    const caches = newParseCaches();
    const old = parseConfigText(text(20), 'old', caches);
    const next = parseConfigText(text(20, (i) => (i % 5 === 0 ? ', redirect: false' : i % 7 === 0 ? ', splice: never' : '')), 'new', caches);
    const ids = assignServiceIds(old.services.map((s) => s.name), {}, SVC_STATE);
    const states = [JSON.stringify(desiredDump(compileDesired(old, ids, SVC_STATE, pods(old, 2)))),
      JSON.stringify(desiredDump(compileDesired(next, ids, SVC_STATE, pods(next, 2))))];
    for (let failAt = 1; failAt < 30; failAt++) {
      const f = fakeMaps();
      const inc = new ServiceReconciler(f.maps, SVC_STATE);
      inc.prime(old, ids, pods(old, 2), (slot) => configEntry(old, slot));
      const total = { left: failAt };
      const restore: Array<() => void> = [];
      for (const m of [...f.all(0), ...f.all(1), f.config]) {
        const put = m.setManyRaw.bind(m);
        const del = m.deleteRaw.bind(m);
        m.setManyRaw = (entries: Entry[]) => { for (const e of entries) { expect(states).toContain(JSON.stringify(dumpAll(f.active()))); if (--total.left === 0) throw new SyscallError('bpf_map_update_elem', 1, m.name); put([e]); } };
        m.deleteRaw = (k: Buffer) => { if (--total.left === 0) throw new SyscallError('bpf_map_delete_elem', 1, m.name); return del(k); };
        restore.push(() => { m.setManyRaw = put; m.deleteRaw = del; });
      }
      let failed = false;
      try {
        inc.apply(next, ids, pods(next, 2), (slot) => configEntry(next, slot));
      } catch {
        failed = true;
      }
      expect(JSON.stringify(dumpAll(f.active()))).toBe(states[failed ? 0 : 1]);
      for (const r of restore) r();
      inc.apply(next, ids, pods(next, 2), (slot) => configEntry(next, slot));
      expect(JSON.stringify(dumpAll(f.active()))).toBe(states[1]);
      if (!failed) return;
    }
    throw new Error('the apply never got through');
  });
});
