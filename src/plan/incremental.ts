// The agent's reconciler: the same two-slot apply as reconcile.ts, but it remembers what it wrote
// into each slot — the validated service objects and their ids, a flags array, the small per-pod maps —
// so an edit costs work in proportion to what changed. The file source hands out the same
// service object for an unchanged item, so "unchanged" is one identity check per service.
//
// It is primed once (prime: both slots made equal to the desired state from what the kernel
// holds); after a failed write it forgets the slot and reads it from the kernel again.
import type { MeshConfig, ServiceConfig } from '../config/model.js';
import { backendEntries, compileDesired, compilePods, serviceEntries, serviceFlags, serviceKeyCount, stateEntry, type Entry, type ResolvedPod, type ServiceIds, type StrEntry } from './desired.js';
import { MAGLEV_M } from './maglev.js';
import { CapacityError, diffAgainst, reconcile, syncSlot, toMap, writeDiff, type ReconcileMaps, type ReconcileReport } from './reconcile.js';

interface SlotMemory {
  /** The services as written, and their ids (both immutable once made). Kept as the config's own
   * array, not a map: with 10,000 services a map per slot costs more than building one per apply. */
  services: readonly ServiceConfig[];
  ids: ServiceIds;
  /** sm_svc_state as written, by service id. */
  flags: Uint32Array;
  /** sm_pods, sm_ports, sm_cidrs, sm_local_addrs as written (key -> value, latin1). */
  small: Map<SmallMap, Map<string, string>>;
  /** This slot's sm_config value (latin1). */
  config: string;
}

type SmallMap = 'sm_pods' | 'sm_ports' | 'sm_cidrs' | 'sm_local_addrs';
const SMALL: Array<[SmallMap, 'pods' | 'ports' | 'cidrs' | 'localAddrs']> = [['sm_pods', 'pods'], ['sm_ports', 'ports'], ['sm_cidrs', 'cidrs'], ['sm_local_addrs', 'localAddrs']];

export class ServiceReconciler {
  private readonly memory: [SlotMemory | undefined, SlotMemory | undefined] = [undefined, undefined];
  /** The sm_config entries of the last apply, per slot. */
  private lastConfig: ((slot: number) => Entry) | undefined;

  constructor(private readonly maps: ReconcileMaps, private readonly svcStateSize: number) {}

  private remember(cfg: MeshConfig, ids: ServiceIds, pods: ResolvedPod[], config: Entry): SlotMemory {
    const flags = new Uint32Array(this.svcStateSize);
    for (const svc of cfg.services) flags[ids[svc.name]] = serviceFlags(svc);
    const small = compilePods(pods);
    return { services: cfg.services, ids, flags, small: new Map(SMALL.map(([n]) => [n, toMap(small[n])])), config: config.value.toString('latin1') };
  }

  /** Makes both slots hold this state (a normal apply first, then the other slot), and remembers. */
  prime(cfg: MeshConfig, ids: ServiceIds, pods: ResolvedPod[], config: (slot: number) => Entry): ReconcileReport {
    const report = reconcile(this.maps, compileDesired(cfg, ids, this.svcStateSize, pods), config);
    this.adopt(cfg, ids, pods, config);
    return report;
  }

  /**
   * The programs read this state now (it was just applied): make the other slot hold it too, and
   * remember both. Only the inactive slot is written.
   */
  adopt(cfg: MeshConfig, ids: ServiceIds, pods: ResolvedPod[], config: (slot: number) => Entry): void {
    const active = this.maps.activeSlot();
    const other = 1 - active;
    this.memory[other] = undefined;
    syncSlot(this.maps, other, compileDesired(cfg, ids, this.svcStateSize, pods), config(other));
    this.memory[active] = this.remember(cfg, ids, pods, config(active));
    this.memory[other] = this.remember(cfg, ids, pods, config(other));
    this.lastConfig = config;
  }

  /**
   * The programs read this state now: remember the active slot only. The other slot is brought up
   * by adopt() later (the agent does it right after it is ready); an apply before that rewrites it
   * whole.
   */
  rememberActive(cfg: MeshConfig, ids: ServiceIds, pods: ResolvedPod[], config: (slot: number) => Entry): void {
    const active = this.maps.activeSlot();
    this.memory[active] = this.remember(cfg, ids, pods, config(active));
    this.memory[1 - active] = undefined;
    this.lastConfig = config;
  }

  /** Applies a new state: writes the inactive slot (only what differs from what it holds), flips. */
  apply(cfg: MeshConfig, ids: ServiceIds, pods: ResolvedPod[], config: (slot: number) => Entry): ReconcileReport {
    const active = this.maps.activeSlot();
    const target = 1 - active;
    const before = this.memory[target];
    const now = this.memory[active];
    if (!before || !now) return this.prime(cfg, ids, pods, config);

    const flags = new Uint32Array(this.svcStateSize);
    let keys = 0;
    for (const svc of cfg.services) {
      flags[ids[svc.name]] = serviceFlags(svc);
      keys += serviceKeyCount(svc);
    }
    const servicesMap = this.maps.slots[target].services;
    if (keys > servicesMap.info.maxEntries) throw new CapacityError(`sm_services_${target ? 'b' : 'a'}`, keys, servicesMap.info.maxEntries);
    const slots = cfg.services.reduce((n, s) => n + (s.mode === 'kernel' && s.endpoints?.length ? MAGLEV_M : 0), 0);
    const backendsMap = this.maps.slots[target].backends;
    if (slots > backendsMap.info.maxEntries) throw new CapacityError(`sm_backends_${target ? 'b' : 'a'}`, slots, backendsMap.info.maxEntries);
    const small = compilePods(pods);
    const smallWant = new Map(SMALL.map(([n]) => [n, toMap(small[n])]));
    for (const [n, f] of SMALL) {
      const max = this.maps.slots[target][f].info.maxEntries;
      if (smallWant.get(n)!.size > max) throw new CapacityError(`${n}_${target ? 'b' : 'a'}`, smallWant.get(n)!.size, max);
    }

    const changes: ReconcileReport['changes'] = {};
    const svcVsActive = serviceDiff(now.services, now.ids, cfg.services, ids, serviceEntries);
    const backendsVsActive = serviceDiff(now.services, now.ids, cfg.services, ids, backendEntries);
    const stateVsActive = flagDiff(now.flags, flags, this.svcStateSize);
    if (svcVsActive.put.length || svcVsActive.del.length) changes.sm_services = { put: svcVsActive.put.length, del: svcVsActive.del.length };
    if (backendsVsActive.put.length || backendsVsActive.del.length) changes.sm_backends = { put: backendsVsActive.put.length, del: backendsVsActive.del.length };
    if (stateVsActive.length) changes.sm_svc_state = { put: stateVsActive.length, del: 0 };
    for (const [n] of SMALL) {
      const d = diffAgainst(now.small.get(n)!, smallWant.get(n)!, false);
      if (d.put.length || d.del.length) changes[n] = { put: d.put.length, del: d.del.length };
    }
    const cfgActive = config(active).value.toString('latin1');
    if (cfgActive !== now.config) changes.sm_config = { put: 1, del: 0 };
    if (!Object.keys(changes).length) return { changes, slot: active };

    // Write the inactive slot: it holds `before` (the state of two applies ago, or the same).
    this.writeSlot(target, before, { services: cfg.services, ids, flags, small: smallWant, config: '' }, config(target));
    this.lastConfig = config;
    this.maps.setActiveSlot(target);
    return { changes, slot: target };
  }

  /**
   * After a flip the slot the programs stopped reading still holds the state before it (a deleted
   * pod's entries, a removed service's keys). This brings it up to the active state, so no map
   * keeps what the config no longer says; the agent runs it a moment after an apply, when no
   * program still reads the old slot. Returns whether anything was written.
   */
  catchUp(): boolean {
    const active = this.maps.activeSlot();
    const other = 1 - active;
    const now = this.memory[active];
    const before = this.memory[other];
    if (!now || !before || !this.lastConfig) return false;
    const cfgOther = this.lastConfig(other);
    if (before.services === now.services && before.ids === now.ids && before.config === cfgOther.value.toString('latin1')
      && sameFlags(before.flags, now.flags) && SMALL.every(([n]) => sameMap(before.small.get(n)!, now.small.get(n)!))) return false;
    this.writeSlot(other, before, now, cfgOther);
    return true;
  }

  /** Writes `slot` from what it holds (`before`) to `want`; forgets the slot until it is done. */
  private writeSlot(slot: number, before: SlotMemory, want: SlotMemory, config: Entry): void {
    this.memory[slot] = undefined; // until every write went through
    writeDiff(this.maps.slots[slot].services, serviceDiff(before.services, before.ids, want.services, want.ids, serviceEntries));
    writeDiff(this.maps.slots[slot].backends, serviceDiff(before.services, before.ids, want.services, want.ids, backendEntries));
    this.maps.slots[slot].svcState.setManyRaw(flagDiff(before.flags, want.flags, this.svcStateSize));
    for (const [n, f] of SMALL) writeDiff(this.maps.slots[slot][f], diffAgainst(before.small.get(n)!, want.small.get(n)!, false));
    this.maps.config.setManyRaw([config]);
    this.memory[slot] = { ...want, config: config.value.toString('latin1') };
  }
}

function sameFlags(a: Uint32Array, b: Uint32Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function sameMap(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

type ByName = Map<string, { svc: ServiceConfig; id: number }>;

function byName(services: readonly ServiceConfig[], ids: ServiceIds): ByName {
  return new Map(services.map((s) => [s.name, { svc: s, id: ids[s.name] }] as const));
}

/**
 * The services that differ between two lists, as (had, wants) pairs; undefined on one side for a
 * service that came or went. Lists of the same names in the same order (an edit: the common case)
 * are compared index by index, without building a map of either.
 */
function changedServices(have: readonly ServiceConfig[], haveIds: ServiceIds, want: readonly ServiceConfig[], wantIds: ServiceIds):
  Array<[{ svc: ServiceConfig; id: number } | undefined, { svc: ServiceConfig; id: number } | undefined]> {
  const out: Array<[{ svc: ServiceConfig; id: number } | undefined, { svc: ServiceConfig; id: number } | undefined]> = [];
  if (have.length === want.length && (haveIds === wantIds || have.every((h, i) => h.name === want[i].name && haveIds[h.name] === wantIds[h.name]))) {
    if (have === want) return out;
    for (let i = 0; i < want.length; i++) {
      const h = have[i];
      const w = want[i];
      if (h !== w && h.name === w.name) out.push([{ svc: h, id: haveIds[h.name] }, { svc: w, id: wantIds[w.name] }]);
    }
    return out;
  }
  const hb = byName(have, haveIds);
  const wb = byName(want, wantIds);
  for (const [name, w] of wb) {
    const h = hb.get(name);
    if (!h || h.svc !== w.svc || h.id !== w.id) out.push([h, w]);
  }
  for (const [name, h] of hb) if (!wb.has(name)) out.push([h, undefined]);
  return out;
}

/**
 * Changes of a per-service map (sm_services, sm_backends: `entries` compiles a service's entries)
 * between two states: only services whose object or id differ are encoded.
 */
function serviceDiff(haveList: readonly ServiceConfig[], haveIds: ServiceIds, wantList: readonly ServiceConfig[], wantIds: ServiceIds,
  entries: (s: ServiceConfig, id: number) => StrEntry[]): { put: Entry[]; del: Buffer[] } {
  const put = new Map<string, StrEntry>();
  const gone: StrEntry[] = [];
  for (const [h, w] of changedServices(haveList, haveIds, wantList, wantIds)) {
    if (w) for (const e of entries(w.svc, w.id)) put.set(e.k, e);
    if (h) gone.push(...entries(h.svc, h.id));
  }
  // A key that moved to another service (or stayed with a changed one) is overwritten, not deleted.
  const del = gone.filter((e) => !put.has(e.k)).map((e) => e.key);
  // Unchanged puts are harmless but skipped: a changed service keeps most of its keys.
  const old = new Map(gone.map((e) => [e.k, e.v]));
  return { put: [...put.values()].filter((e) => old.get(e.k) !== e.v), del };
}

/** sm_svc_state entries that differ between two flag arrays. */
function flagDiff(have: Uint32Array, want: Uint32Array, size: number): Entry[] {
  const out: Entry[] = [];
  for (let id = 0; id < size; id++) if (have[id] !== want[id]) out.push(stateEntry(id, want[id], size));
  return out;
}
