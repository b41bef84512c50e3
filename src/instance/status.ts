// What `sockmesh status` shows of an instance: its record (services, pods, mode) and what the
// kernel holds now (programs, counters, listeners, the slot, the spliced sockets).
import { programStatus, type ProgramStatus } from '../bpf/attach.js';
import { COUNTER_NAMES, SVC_COUNTER_NAMES } from '../bpf/codecs.js';
import { InstanceMaps } from '../bpf/maps.js';
import { isFullyPinned, pinLayout } from '../bpf/pins.js';
import { endpointName } from '../config/constants.js';
import type { ServiceConfig } from '../config/model.js';
import { Codes, SockmeshError, UserError } from '../errors.js';
import { redirectCounts } from '../iptables/apply.js';
import { hasName } from '../util/names.js';
import { requireRoot } from '../util/root.js';
import { autoMemory, endpointCounters, readAllCounters, type AutoMemory } from './counters.js';
import { checkInstanceName } from './name.js';
import { readRecord, type InstanceRecord, type Mode, type PodRecord } from './record.js';
import { iptablesNamespace } from './view.js';

export interface ServiceStatus {
  name: string;
  id: number;
  addresses: string[];
  ports: number[];
  redirect: boolean;
  splice: string;
  /** sidecar: through the sidecar; kernel: straight to an endpoint (eBPF mode; iptables mode captures it to the sidecar). */
  mode: 'sidecar' | 'kernel';
  /** Kernel mode: its endpoints, and in eBPF mode the connections each was given since the instance started. */
  endpoints?: Array<{ address: string; port: number; weight: number; connections?: number }>;
  affinity?: 'client';
  protocol?: ServiceConfig['protocol'];
  terminateOnRemove?: boolean;
  /** splice: auto in eBPF mode, learned at each close: what the service's clients that connect
   * with Nagle on do later, and whether its last connection was a bulk stream. */
  auto?: AutoMemory;
  /** eBPF mode: this service's kernel counters. */
  counters?: Record<string, number>;
}

export interface PodStatus extends PodRecord {
  counters: Record<string, number>;
  /** eBPF mode: whether its sidecar's inbound listener is registered (inbound capture hands it
   * the pod's inbound connections; without one they are refused). */
  inboundListener?: boolean;
}

export interface InstanceStatus {
  instance: string;
  mode: Mode;
  cgroup: string | null;
  netns: string | null;
  pinRoot: string;
  configSource: string;
  programs: ProgramStatus[];
  services: ServiceStatus[];
  counters: Record<string, number>;
  /** eBPF mode: the meshed pods with their counters. */
  pods: PodStatus[];
  /** eBPF mode: the slot of the config-driven maps the programs read (flips on every apply). */
  slot?: number;
  /** Sockets in the sockhash now (each spliced connection has two); 0 in iptables mode. */
  splicedSockets: number;
}

export function requireRecord(instance: string): InstanceRecord {
  const rec = readRecord(checkInstanceName(instance));
  if (!rec) throw new UserError(Codes.INSTANCE_MISSING, `no sockmesh instance "${instance}" is up (sockmesh up --instance ${instance} …)`);
  return rec;
}


export async function status(instanceName: string): Promise<InstanceStatus> {
  requireRoot();
  const rec = requireRecord(instanceName);
  const services: ServiceStatus[] = rec.config.services.map((s) => ({
    name: s.name, id: hasName(rec.serviceIds, s.name) ? rec.serviceIds[s.name] : -1, addresses: s.addresses, ports: s.ports, redirect: s.redirect, splice: s.splice,
    mode: s.mode ?? 'sidecar', ...(s.mode === 'kernel' ? { endpoints: (s.endpoints ?? []).map((e) => ({ ...e })), ...(s.affinity ? { affinity: s.affinity } : {}),
      ...(s.protocol ? { protocol: s.protocol } : {}), ...(s.terminateOnRemove ? { terminateOnRemove: true } : {}) } : {}),
  }));
  const common = {
    instance: rec.instance, mode: rec.mode, cgroup: rec.cgroup ?? null, netns: rec.netns ?? null,
    pinRoot: rec.pinRoot, configSource: rec.configSource, services,
  };
  if (rec.mode === 'iptables') {
    // The agent's iptables mode has a rule set in every pod's namespace.
    const counts = { outbound: 0, inbound: 0 };
    for (const ns of rec.podNetns ? rec.podNetns.map((p) => p.netns) : [iptablesNamespace(rec)]) {
      const c = await redirectCounts(ns).catch(() => ({ outbound: 0, inbound: 0 })); // a pod gone with its namespace
      counts.outbound += c.outbound;
      counts.inbound += c.inbound;
    }
    return { ...common, programs: [], counters: { connectRewrites: counts.outbound, inboundRedirects: counts.inbound }, pods: [], splicedSockets: 0 };
  }
  const layout = pinLayout(rec.pinRoot);
  if (!isFullyPinned(layout)) {
    throw new SockmeshError(Codes.INSTANCE_MISSING, `instance "${rec.instance}" is recorded but its pins under ${layout.root} are missing; run sockmesh down --instance ${rec.instance}`);
  }
  const maps = new InstanceMaps(layout);
  try {
    const all = readAllCounters(maps);
    const zeros = (names: Record<string, string>) => Object.fromEntries(Object.values(names).map((n) => [n, 0]));
    const perEndpoint = new Map(endpointCounters(maps).map((e) => [`${e.serviceId}\u0000${endpointName(e)}`, e.connections]));
    for (const s of common.services) {
      if (s.id < 0) continue;
      s.counters = all.services.get(s.id) ?? zeros(SVC_COUNTER_NAMES);
      if (s.mode === 'kernel') for (const e of s.endpoints ?? []) e.connections = perEndpoint.get(`${s.id}\u0000${endpointName(e)}`) ?? 0;
      else if (s.splice === 'auto') s.auto = autoMemory(maps, s.id);
    }
    return {
      ...common,
      programs: programStatus(layout, rec.cgroup),
      counters: all.total,
      pods: (rec.pods ?? []).map((p) => ({ ...p, counters: all.pods.get(p.podId) ?? zeros(COUNTER_NAMES), inboundListener: maps.listeners.get(p.podId) !== undefined })),
      slot: maps.activeSlot(),
      splicedSockets: maps.sockhash.rawEntries().length,
    };
  } finally {
    maps.close();
  }
}

