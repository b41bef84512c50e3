// The reconciler: make the kernel maps hold the desired state, writing only the difference.
//
// The config-driven maps exist in two slots; the programs read the slot sm_gen names. An apply
// writes the inactive slot until it equals the desired state (capacity checked first), writes
// that slot's node-wide settings, and then flips sm_gen with one 4-byte write: a new connection
// decides on the old state or the new one, never on a mix, and a failure before the flip leaves
// what the programs read untouched. Running it twice changes nothing the second time.
import type { BpfMap } from '../bpf/map.js';
import type { InstanceMaps, SlotMaps } from '../bpf/maps.js';
import { Codes, SockmeshError } from '../errors.js';
import type { DesiredMaps, Entry } from './desired.js';

export interface MapDiff {
  put: Entry[];
  del: Buffer[];
}

/**
 * Pure diff of raw entries. Array maps (`isArray`) cannot delete: desired lists only the indexes
 * in use, and an index in use before but not now is put back to zero.
 */
export function diffEntries(actual: Entry[], desired: Entry[], isArray: boolean): MapDiff {
  return diffAgainst(toMap(actual), toMap(desired), isArray);
}

export interface ReconcileReport {
  /** Entries that differ from what the programs read before, by map name; empty when nothing changed. */
  changes: Record<string, { put: number; del: number }>;
  /** The slot the programs read after this apply. */
  slot: number;
}

export type RawMap = Pick<BpfMap<unknown, unknown>, 'rawEntries' | 'setManyRaw' | 'deleteRaw'> & {
  info: { maxEntries: number };
};

/** A slot's contents: map field -> (key bytes -> value bytes, as latin1). */
type SlotContents = Map<keyof SlotMaps, Map<string, string>>;

/** What reconcile needs of the instance's maps (InstanceMaps, or a fake in tests). */
export interface ReconcileMaps {
  slots: [Record<keyof SlotMaps, RawMap>, Record<keyof SlotMaps, RawMap>];
  config: RawMap;
  activeSlot(): number;
  setActiveSlot(slot: number): void;
}

/** A desired map does not fit the live map: refused before anything is written. */
export class CapacityError extends SockmeshError {
  constructor(readonly map: string, readonly wanted: number, readonly max: number) {
    super(Codes.MAP, `map ${map} would need ${wanted} entries, it holds ${max}: nothing was changed`);
    this.name = 'CapacityError';
  }
}

const ORDER: Array<[keyof DesiredMaps, keyof SlotMaps, boolean]> = [
  ['sm_pods', 'pods', false],
  ['sm_services', 'services', false],
  ['sm_svc_state', 'svcState', true],
  ['sm_ports', 'ports', false],
  ['sm_cidrs', 'cidrs', false],
  ['sm_backends', 'backends', false],
  ['sm_local_addrs', 'localAddrs', false],
];

/** Deletes first: a hash map near its capacity has room for the new keys only once the old go. */
export function writeDiff(map: RawMap, diff: MapDiff): void {
  for (const k of diff.del) map.deleteRaw(k);
  map.setManyRaw(diff.put);
}

export function toMap(entries: Entry[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of entries) m.set(e.k ?? e.key.toString('latin1'), e.v ?? e.value.toString('latin1'));
  return m;
}

const ZEROS = /^\0*$/;

/** diffEntries over known contents (see diffEntries for array maps). */
export function diffAgainst(have: Map<string, string>, desired: Map<string, string>, isArray: boolean): MapDiff {
  const put: Entry[] = [];
  for (const [k, v] of desired) {
    if (have.get(k) !== v) put.push({ key: Buffer.from(k, 'latin1'), value: Buffer.from(v, 'latin1') });
  }
  const del: Buffer[] = [];
  for (const [k, v] of have) {
    if (desired.has(k)) continue;
    if (!isArray) del.push(Buffer.from(k, 'latin1'));
    else if (!ZEROS.test(v)) put.push({ key: Buffer.from(k, 'latin1'), value: Buffer.alloc(v.length) });
  }
  return { put, del };
}

/** Adapts InstanceMaps to what reconcile needs. */
export function reconcileMaps(maps: InstanceMaps): ReconcileMaps {
  return {
    slots: maps.slots as unknown as ReconcileMaps['slots'],
    config: maps.config as unknown as RawMap,
    activeSlot: () => maps.activeSlot(),
    setActiveSlot: (slot) => maps.gen.set(0, slot),
  };
}

/** What a slot holds, read from the kernel. */
function readSlot(maps: ReconcileMaps, slot: number): SlotContents {
  return new Map(ORDER.map(([, field]) => [field, toMap(maps.slots[slot][field].rawEntries())]));
}

/** Makes one slot hold the desired state without flipping (the slot the programs do not read). */
export function syncSlot(maps: ReconcileMaps, slot: number, desired: DesiredMaps, config: Entry): void {
  if (slot === maps.activeSlot()) throw new SockmeshError(Codes.INTERNAL, 'syncSlot must not write the active slot');
  const now = readSlot(maps, slot);
  for (const [name, field, isArray] of ORDER) writeDiff(maps.slots[slot][field], diffAgainst(now.get(field)!, toMap(desired[name]), isArray));
  maps.config.setManyRaw([config]);
}

/**
 * Applies the desired state (the slot maps and the node-wide config entry for a slot, made by
 * `config(slot)`). Returns what changed relative to the state the programs read before.
 */
export function reconcile(maps: ReconcileMaps, desired: DesiredMaps, config: (slot: number) => Entry): ReconcileReport {
  const active = maps.activeSlot();
  const target = 1 - active;
  const changes: ReconcileReport['changes'] = {};
  const activeNow = readSlot(maps, active);
  const targetNow = readSlot(maps, target);
  const plans = ORDER.map(([name, field, isArray]) => {
    const map = maps.slots[target][field];
    const w = toMap(desired[name]);
    if (!isArray && w.size > map.info.maxEntries) throw new CapacityError(`${name}_${target ? 'b' : 'a'}`, w.size, map.info.maxEntries);
    const vsActive = diffAgainst(activeNow.get(field)!, w, isArray);
    if (vsActive.put.length || vsActive.del.length) changes[name] = { put: vsActive.put.length, del: vsActive.del.length };
    return { map, diff: diffAgainst(targetNow.get(field)!, w, isArray) };
  });
  const cfgNow = maps.config.rawEntries().find((e) => e.key.readUInt32LE(0) === active);
  if (!cfgNow || !cfgNow.value.equals(config(active).value)) changes.sm_config = { put: 1, del: 0 };
  if (!Object.keys(changes).length) return { changes, slot: active };
  for (const { map, diff } of plans) writeDiff(map, diff);
  maps.config.setManyRaw([config(target)]);
  maps.setActiveSlot(target);
  return { changes, slot: target };
}
