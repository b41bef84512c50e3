// Desired state: a validated MeshConfig and the pods as found on the node, compiled into the exact
// entries each config-driven kernel map of one slot should hold. Pure: no I/O, so it is tested
// directly.
import {
  CFG_ENABLED, HOPS, POD_INBOUND, POD_INBOUND_ALL, POD_INCLUDE_ANY, POD_OUTBOUND_ALL, RULE_EXCLUDE, RULE_IN_EXCLUDE, RULE_IN_INCLUDE, RULE_INCLUDE, RULE_LOCAL, SVC_AFFINITY, SVC_AUTO, SVC_KERNEL, SVC_REDIRECT,
  SVC_SPLICE, SVC_UDP, addrKeyCodec, backendCodec, backendKeyCodec, configCodec, localPodCodec, lpmKeyCodec, podCodec, portKeyCodec, svcKeyCodec, svcStateCodec, svcValCodec, u32Codec, u64Codec, u8Codec,
} from '../bpf/codecs.js';
import { Codes, UserError } from '../errors.js';
import { parseCidr } from '../net/addr.js';
import type { Codec } from '../bpf/codec.js';
import type { CaptureConfig, MeshConfig, ServiceConfig, SidecarConfig } from '../config/model.js';
import { maglevTable } from './maglev.js';
import { CAPACITY } from '../config/capacity.js';
import { endpointName } from '../config/constants.js';
import { hasName, nameTable } from '../util/names.js';

export interface Entry {
  key: Buffer;
  value: Buffer;
  /** Key and value bytes as latin1 strings, when the producer has them (see StrEntry). */
  k?: string;
  v?: string;
}

/**
 * An entry held as latin1 strings: the agent keeps tens of thousands of these between applies,
 * and small strings cost far less (heap and GC) than as many small Buffers, each with its own
 * backing store. Buffers are made only when asked for (writes, tests).
 */
export class StrEntry implements Entry {
  constructor(readonly k: string, readonly v: string) {}

  get key(): Buffer {
    return Buffer.from(this.k, 'latin1');
  }

  get value(): Buffer {
    return Buffer.from(this.v, 'latin1');
  }
}

const scratch = Buffer.alloc(64);

/** A value's encoding as a latin1 string (through a scratch buffer). */
function encoded<T>(c: Codec<T>, v: T): string {
  c.encode(v, scratch, 0);
  return scratch.toString('latin1', 0, c.size);
}

/** Encodes key and value into a scratch buffer and keeps them as strings. */
function strEntry<K, V>(kc: Codec<K>, key: K, vc: Codec<V>, value: V): StrEntry {
  return new StrEntry(encoded(kc, key), encoded(vc, value));
}

/** Map contents by map name (without the slot suffix); for the array map sm_svc_state, the ids in
 * use (every other index is zero). */
export interface DesiredMaps {
  sm_pods: Entry[];
  sm_services: Entry[];
  sm_svc_state: Entry[];
  sm_ports: Entry[];
  sm_cidrs: Entry[];
  sm_backends: Entry[];
  sm_local_addrs: Entry[];
}

/** A pod as found on the node: what the kernel identifies it by. */
export interface ResolvedPod {
  name: string;
  /** netns cookie; 0n = any namespace (the single-pod form without --netns). */
  netnsCookie: bigint;
  /** The namespace's path (absent: any namespace). */
  netnsPath?: string;
  cgroupId: bigint;
  cgroupLevel: number;
  /** The cgroup's directory (absent in tables compiled without the node: explain's iptables view). */
  cgroupPath?: string;
  podId: number;
  /** The pod's own addresses as /32 CIDRs (configured or found in its namespace). */
  localAddrs: string[];
  sidecar: SidecarConfig;
  capture: CaptureConfig;
}

function lpmEntries(podId: number, kind: number, cidrs: string[]): Entry[] {
  const one = u8Codec.encode(1);
  return cidrs.map((c) => {
    const { bytes, prefixlen } = parseCidr(c);
    const key = lpmKeyCodec.encode({ prefixlen: 64 + prefixlen, podId, kind, addr: null });
    bytes.copy(key, 12);
    return { key, value: one };
  });
}

/** Ids by name (services, pods): a null-prototype table (src/util/names.ts). */
export type ServiceIds = Record<string, number>;

/**
 * Stable ids: a name keeps the id it had; new names take the lowest free ids from `first`; ids of
 * removed names are freed. Used for services (ids 0..) and pods (ids 1..).
 */
export function assignServiceIds(names: string[], previous: ServiceIds, max: number, first = 0): ServiceIds {
  const out: ServiceIds = nameTable();
  const used = new Set<number>();
  for (const n of names) {
    const id = hasName(previous, n) ? previous[n] : undefined;
    if (id !== undefined && id >= first && id < max) {
      out[n] = id;
      used.add(id);
    }
  }
  let next = first;
  for (const n of names) {
    if (out[n] !== undefined) continue;
    while (used.has(next)) next++;
    if (next >= max) throw new UserError(Codes.CONFIG_INVALID, `too many: the kernel map holds ${max - first}`);
    out[n] = next;
    used.add(next);
  }
  return out;
}

/** The node-wide settings entry of a slot. */
export function configEntry(cfg: MeshConfig, slot: number): Entry {
  return {
    key: u32Codec.encode(slot),
    value: configCodec.encode({
      flags: CFG_ENABLED,
      hopSplice: HOPS[cfg.spliceHops],
      spliceQueueBytes: cfg.spliceQueueBytes,
    }),
  };
}

/** The sm_services entries of one service (one per address × port; no address: any address). */
export function serviceEntries(s: ServiceConfig, id: number): StrEntry[] {
  const out: StrEntry[] = [];
  for (const addr of s.addresses.length ? s.addresses : [null]) {
    for (const port of s.ports) out.push(strEntry(svcKeyCodec, { addr, port }, svcValCodec, { serviceId: id }));
  }
  return out;
}

/** How many sm_services entries a service takes. */
export function serviceKeyCount(s: ServiceConfig): number {
  return Math.max(1, s.addresses.length) * s.ports.length;
}

/** The sm_svc_state flags of a service. */
export function serviceFlags(s: ServiceConfig): number {
  if (s.mode === 'kernel') return (s.redirect ? SVC_REDIRECT : 0) | SVC_KERNEL | (s.affinity === 'client' ? SVC_AFFINITY : 0) | (s.protocol === 'udp' ? SVC_UDP : 0);
  const splice = s.splice === 'always' ? SVC_SPLICE : s.splice === 'auto' ? SVC_AUTO : 0;
  return (s.redirect ? SVC_REDIRECT : 0) | splice;
}

/** The sm_backends entries of a kernel-mode service: its Maglev table (none without endpoints). */
export function backendEntries(s: ServiceConfig, id: number): StrEntry[] {
  const eps = s.mode === 'kernel' ? s.endpoints ?? [] : [];
  if (!eps.length) return [];
  const table = maglevTable(eps.map((e) => ({ key: endpointName(e), weight: e.weight })));
  const values = eps.map((e) => encoded(backendCodec, { ip4: e.address, port: e.port }));
  return Array.from(table, (ep, slot) => new StrEntry(encoded(backendKeyCodec, { serviceId: id, slot }), values[ep]));
}

/** The sm_svc_state entry of a service id. */
export function stateEntry(id: number, flags: number, svcStateSize: number): StrEntry {
  if (id >= svcStateSize) throw new UserError(Codes.CONFIG_INVALID, `service id ${id} is beyond the kernel map's ${svcStateSize} entries`);
  return strEntry(u32Codec, id, svcStateCodec, { flags });
}

/** The sm_pods flags of a pod's capture options. */
export function podFlags(capture: CaptureConfig): number {
  const inboundAll = capture.includeInboundPorts === '*';
  return (capture.outbound === 'all' ? POD_OUTBOUND_ALL : 0) | (capture.includeOutboundCIDRs.includes('*') ? POD_INCLUDE_ANY : 0)
    | (inboundAll || capture.includeInboundPorts.length ? POD_INBOUND : 0) | (inboundAll ? POD_INBOUND_ALL : 0);
}

/** The per-pod maps (sm_pods, sm_ports, sm_cidrs, sm_local_addrs): small, compiled whole every time.
 * An address claimed by two pods names neither (sm_local_addrs keys on the address alone). */
export function compilePods(pods: ResolvedPod[]): Pick<DesiredMaps, 'sm_pods' | 'sm_ports' | 'sm_cidrs' | 'sm_local_addrs'> {
  const one = u8Codec.encode(1);
  const sm_pods: Entry[] = [];
  const sm_ports: Entry[] = [];
  const sm_cidrs: Entry[] = [];
  const owners = new Map<string, ResolvedPod | null>();
  for (const p of pods) {
    if (!p.netnsCookie) continue; // the any-namespace pod has no addresses of its own to name
    for (const c of p.localAddrs) {
      const a = c.replace(/\/\d+$/, '');
      owners.set(a, owners.has(a) ? null : p);
    }
  }
  const sm_local_addrs = [...owners].filter(([, p]) => p).map(([addr, p]) => ({
    key: addrKeyCodec.encode({ addr }),
    value: localPodCodec.encode({ netns: p!.netnsCookie, podId: p!.podId }),
  }));
  for (const p of pods) {
    const { capture, sidecar } = p;
    const includeAny = capture.includeOutboundCIDRs.includes('*');
    sm_pods.push({
      key: u64Codec.encode(p.netnsCookie as unknown as number),
      value: podCodec.encode({
        cgroupId: p.cgroupId,
        cgroupLevel: p.cgroupLevel,
        podId: p.podId,
        sidecarUid: sidecar.uid,
        sidecarGid: sidecar.gid,
        outboundIp4: sidecar.address,
        outboundPort: sidecar.outboundPort,
        inboundPort: sidecar.inboundPort,
        flags: podFlags(capture),
      }),
    });
    const inbound: Array<readonly [number, readonly number[]]> = [[RULE_IN_EXCLUDE, capture.excludeInboundPorts],
      [RULE_IN_INCLUDE, capture.includeInboundPorts === '*' ? [] : capture.includeInboundPorts]];
    for (const [kind, ports] of [[RULE_EXCLUDE, capture.excludeOutboundPorts], [RULE_INCLUDE, capture.includeOutboundPorts], ...inbound] as const) {
      for (const port of ports) sm_ports.push({ key: portKeyCodec.encode({ podId: p.podId, port, kind }), value: one });
    }
    sm_cidrs.push(
      ...lpmEntries(p.podId, RULE_EXCLUDE, capture.excludeOutboundCIDRs),
      ...lpmEntries(p.podId, RULE_INCLUDE, includeAny ? [] : capture.includeOutboundCIDRs),
      ...lpmEntries(p.podId, RULE_LOCAL, p.localAddrs),
    );
  }
  return { sm_pods, sm_ports, sm_cidrs, sm_local_addrs };
}

/** The entries of every config-driven map of a slot for this config and these pods. */
export function compileDesired(cfg: MeshConfig, ids: ServiceIds, svcStateSize: number, pods: ResolvedPod[]): DesiredMaps {
  const services: Entry[] = [];
  const backends: Entry[] = [];
  const states = new Map<number, number>();
  for (const s of cfg.services) {
    const id = ids[s.name];
    for (const e of serviceEntries(s, id)) services.push(e);
    for (const e of backendEntries(s, id)) backends.push(e);
    states.set(id, serviceFlags(s));
  }
  const sm_svc_state = [...states].sort((a, b) => a[0] - b[0]).map(([id, flags]) => stateEntry(id, flags, svcStateSize));
  return { ...compilePods(pods), sm_services: services, sm_svc_state, sm_backends: backends };
}

/**
 * How many entries each config-driven map of a slot holds for this state (by the names the slot's
 * maps have in InstanceMaps), without compiling the services' entries: what /metrics reports.
 */
export function entryCounts(cfg: MeshConfig, pods: ResolvedPod[]): Record<string, number> {
  const small = compilePods(pods);
  let services = 0;
  let backends = 0;
  for (const s of cfg.services) {
    services += serviceKeyCount(s);
    if (s.mode === 'kernel' && s.endpoints?.length) backends += CAPACITY.maglevSlots;
  }
  return { pods: small.sm_pods.length, services, ports: small.sm_ports.length, cidrs: small.sm_cidrs.length, backends, localAddrs: small.sm_local_addrs.length };
}
