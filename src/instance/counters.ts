// The kernel's per-CPU counters as numbers: per pod id (sm_stats: pod_id * SM_STAT_MAX + stat),
// per service id (sm_svc_stats) and per kernel-mode endpoint (sm_endpoint_stats), summed over CPUs.
// Read by status, explain and the agent's /metrics; decoded here once.
import { AUTO_NAGLE_CLIENTS, COUNTER_NAMES, endpointKeyCodec, STATS, SVC_COUNTER_NAMES, SVC_STATS } from '../bpf/codecs.js';
import type { InstanceMaps } from '../bpf/maps.js';

/** Counter names by their index in a pod's (or a service's) block. */
export const POD_COUNTERS: ReadonlyArray<{ index: number; name: string }> = Object.entries(COUNTER_NAMES).map(([c, name]) => ({ index: STATS[c as keyof typeof STATS], name }));
export const SERVICE_COUNTERS: ReadonlyArray<{ index: number; name: string }> = Object.entries(SVC_COUNTER_NAMES).map(([c, name]) => ({ index: SVC_STATS[c as keyof typeof SVC_STATS], name }));

export interface AllCounters {
  /** Node totals (every pod id, and 0: what belongs to no pod). */
  total: Record<string, number>;
  /** Pods with a non-zero counter, by pod id. */
  pods: Map<number, Record<string, number>>;
  /** Services with a non-zero counter, by service id. */
  services: Map<number, Record<string, number>>;
}

/** The blocks with a non-zero counter, as name -> value (no object for the thousands that are all zero). */
function blocks(sums: Float64Array, stride: number, names: ReadonlyArray<{ index: number; name: string }>, each?: (id: number, v: Record<string, number>) => void): Map<number, Record<string, number>> {
  const out = new Map<number, Record<string, number>>();
  for (let id = 0, base = 0; base < sums.length; id++, base += stride) {
    let any = false;
    for (const n of names) if (sums[base + n.index] > 0) { any = true; break; }
    if (!any) continue;
    const c: Record<string, number> = {};
    for (const n of names) c[n.name] = sums[base + n.index];
    out.set(id, c);
    each?.(id, c);
  }
  return out;
}

/** Every counter: node totals, per pod id and per service id. */
export function readAllCounters(maps: InstanceMaps): AllCounters {
  const total: Record<string, number> = Object.fromEntries(POD_COUNTERS.map((n) => [n.name, 0]));
  const pods = blocks(maps.stats.sums(), STATS.SM_STAT_MAX, POD_COUNTERS, (_id, c) => { for (const k in c) total[k] += c[k]; });
  const services = blocks(maps.svcStats.sums(), SVC_STATS.SM_SVC_STAT_MAX, SERVICE_COUNTERS);
  return { total, pods, services };
}

export interface EndpointCount {
  serviceId: number;
  address: string;
  /** 0: the connection's own port (an endpoint listed without one). */
  port: number;
  /** Connections (UDP: sockets) kernel mode gave it since the instance started. */
  connections: number;
}

/** Connections per endpoint of kernel-mode services (since the instance started). */
export function endpointCounters(maps: InstanceMaps): EndpointCount[] {
  return maps.endpointSums().map(({ key, sum }) => {
    const k = endpointKeyCodec.decode(key);
    return { serviceId: k.serviceId, address: k.ip4, port: k.port, connections: sum };
  });
}

/** splice: auto in eBPF mode, learned at each close: what the service's clients that connect
 * with Nagle on do later, and whether its last connection was a bulk stream. */
export interface AutoMemory { nagleClients: (typeof AUTO_NAGLE_CLIENTS)[number]; bulk: boolean; observed: number }

/** What splice: auto has learned about a service's Nagle-at-connect clients. */
export function autoMemory(maps: InstanceMaps, id: number): AutoMemory {
  const a = maps.svcAuto.get(id) ?? { nagleClients: 0, bulk: 0, observed: 0 };
  return { nagleClients: AUTO_NAGLE_CLIENTS[a.nagleClients] ?? 'unknown', bulk: a.bulk !== 0, observed: a.observed };
}
