// The reconciler: compare what the kernel maps hold with the desired entries and write only the
// difference. Running it twice changes nothing the second time.
import type { BpfMap } from '../bpf/map.js';
import type { InstanceMaps } from '../bpf/maps.js';
import { Codes, SockmeshError } from '../errors.js';
import type { DesiredMaps, Entry } from './desired.js';

export interface MapDiff {
  put: Entry[];
  del: Buffer[];
}

/** Pure diff of raw entries; array maps (`isArray`) are never deleted from. */
export function diffEntries(actual: Entry[], desired: Entry[], isArray: boolean): MapDiff {
  const have = new Map(actual.map((e) => [e.key.toString('hex'), e.value]));
  const want = new Set<string>();
  const put: Entry[] = [];
  for (const e of desired) {
    const k = e.key.toString('hex');
    want.add(k);
    const cur = have.get(k);
    if (!cur || !cur.equals(e.value)) put.push(e);
  }
  const del = isArray ? [] : actual.filter((e) => !want.has(e.key.toString('hex'))).map((e) => e.key);
  return { put, del };
}

export interface ReconcileReport {
  /** Entries written and deleted, by map name; empty when nothing changed. */
  changes: Record<string, { put: number; del: number }>;
}

type RawMap = Pick<BpfMap<unknown, unknown>, 'rawEntries' | 'setManyRaw' | 'deleteRaw'> & {
  info: { maxEntries: number };
};

/** A desired map does not fit the live map: refused before anything is written. */
export class CapacityError extends SockmeshError {
  constructor(readonly map: string, readonly wanted: number, readonly max: number) {
    super(Codes.MAP, `map ${map} would need ${wanted} entries, it holds ${max}: nothing was changed`);
    this.name = 'CapacityError';
  }
}

/** Every entry of every config-driven map, to put back after a failed apply. */
export type Snapshot = Map<keyof DesiredMaps, Entry[]>;

/** Deletes first: a hash map near its capacity has room for the new keys only once the old go. */
function writeDiff(map: RawMap, diff: MapDiff): void {
  for (const k of diff.del) map.deleteRaw(k);
  map.setManyRaw(diff.put);
}

/** Puts every map back to the snapshot (only what differs is written). */
export function restoreSnapshot(maps: InstanceMaps, snap: Snapshot): void {
  for (const [name, map, isArray] of mapOrder(maps)) {
    const want = snap.get(name);
    if (want) writeDiff(map, diffEntries(map.rawEntries(), want, isArray));
  }
}

function mapOrder(maps: InstanceMaps): Array<[keyof DesiredMaps, RawMap, boolean]> {
  return [
    ['sm_svc_state', maps.svcState, true],
    ['sm_services', maps.services, false],
    ['sm_excl_ports', maps.exclPorts, false],
    ['sm_excl_cidrs', maps.exclCidrs, false],
    ['sm_incl_ports', maps.inclPorts, false],
    ['sm_incl_cidrs', maps.inclCidrs, false],
    ['sm_local_addrs', maps.localAddrs, false],
    ['sm_config', maps.config, true],
  ];
}

/**
 * Applies the diff map by map. Order matters for live traffic: the service tables first, the
 * config (which switches capture on) last. Capacity is checked for every map before the first
 * write; if a write still fails (EPERM, ENOMEM, a full LRU), every map is put back to what it
 * held before and the error is rethrown. `snapshot` (when given) receives that prior state, so
 * the caller can also undo a successful apply when a later step fails.
 */
export function reconcile(maps: InstanceMaps, desired: DesiredMaps, snapshot: Snapshot = new Map()): ReconcileReport {
  const order = mapOrder(maps);
  const plans = order.map(([name, map, isArray]) => {
    const actual = map.rawEntries();
    snapshot.set(name, actual);
    if (!isArray && desired[name].length > map.info.maxEntries) throw new CapacityError(name, desired[name].length, map.info.maxEntries);
    return { name, map, diff: diffEntries(actual, desired[name], isArray) };
  });
  const report: ReconcileReport = { changes: {} };
  try {
    for (const { name, map, diff } of plans) {
      writeDiff(map, diff);
      if (diff.put.length || diff.del.length) report.changes[name] = { put: diff.put.length, del: diff.del.length };
    }
  } catch (err) {
    try {
      restoreSnapshot(maps, snapshot);
    } catch (undo) {
      throw new SockmeshError(Codes.MAP, 'applying the config failed, and so did putting the maps back', { cause: new AggregateError([err, undo]) });
    }
    throw err;
  }
  return report;
}
