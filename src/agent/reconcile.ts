// The reconciler: compare what the kernel maps hold with the desired entries and write only the
// difference. Running it twice changes nothing the second time.
import type { BpfMap } from '../bpf/map.js';
import type { InstanceMaps } from '../bpf/maps.js';
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

type RawMap = Pick<BpfMap<unknown, unknown>, 'rawEntries' | 'setManyRaw' | 'deleteRaw'>;

/**
 * Applies the diff map by map. Order matters for live traffic: the service tables first, the
 * config (which switches capture on) last.
 */
export function reconcile(maps: InstanceMaps, desired: DesiredMaps): ReconcileReport {
  const order: Array<[keyof DesiredMaps, RawMap, boolean]> = [
    ['sm_svc_state', maps.svcState, true],
    ['sm_services', maps.services, false],
    ['sm_excl_ports', maps.exclPorts, false],
    ['sm_excl_cidrs', maps.exclCidrs, false],
    ['sm_incl_ports', maps.inclPorts, false],
    ['sm_incl_cidrs', maps.inclCidrs, false],
    ['sm_local_addrs', maps.localAddrs, false],
    ['sm_config', maps.config, true],
  ];
  const report: ReconcileReport = { changes: {} };
  for (const [name, map, isArray] of order) {
    const diff = diffEntries(map.rawEntries(), desired[name], isArray);
    map.setManyRaw(diff.put);
    for (const k of diff.del) map.deleteRaw(k);
    if (diff.put.length || diff.del.length) report.changes[name] = { put: diff.put.length, del: diff.del.length };
  }
  return report;
}
