// `sockmesh explain`: which rule decides a would-be connection from a pod to DST:PORT, as the
// kernel would decide it now. For an eBPF instance the decision is read from the live maps of the
// slot the programs read (the same checks, in the same order, as sm_decide in
// bpf/include/policy.h); for an iptables instance from the tables its config compiles to, which
// its rules were generated from. The other mode's answer comes from the same tables: the two modes
// decide alike (the parity matrix checks it), and differ in what they can do beyond the decision.
import { SVC_AUTO, SVC_REDIRECT, SVC_SPLICE, type SmPod } from '../bpf/codecs.js';
import { InstanceMaps, type SlotMaps } from '../bpf/maps.js';
import { pinLayout } from '../bpf/pins.js';
import type { MeshConfig } from '../config/model.js';
import { Codes, UserError } from '../errors.js';
import { isIp } from '../net/addr.js';
import { decide, desiredTables, type Tables, type Verdict } from '../plan/decide.js';
import { assignServiceIds, compileDesired, type ResolvedPod, type ServiceIds } from '../plan/desired.js';

export type { Verdict } from '../plan/decide.js';
import { compareRules } from '../iptables/apply.js';
import { podConfig } from './pod-rules.js';
import { readRecord, type Mode } from './record.js';
import { autoMemory } from './counters.js';
import { endpointName } from '../config/constants.js';
import { OverrideStore, type Overrides } from './overrides.js';
import { hasName } from '../util/names.js';
import { localAddresses } from '../util/netns.js';
import { explainSecurity, type ExplainedSecurity } from './explain-security.js';
import type { LocalWorkload } from '../config/workload.js';


export interface ExplainedService {
  name: string;
  id: number;
  /** The switch in effect now. */
  redirect: boolean;
  /** Where it comes from: the agent's override (sockmesh service enable|disable), or the config. */
  redirectFrom: 'override' | 'config';
  splice: string;
  mode: 'sidecar' | 'kernel';
}

export interface Explanation {
  instance: string;
  mode: Mode;
  pod: string;
  destination: string;
  uid: number;
  /** eBPF: the slot the programs read now. */
  slot?: number;
  verdict: Verdict;
  /** Where the connection goes: the sidecar listener, or the destination itself. */
  goesTo: string;
  /** The rule that decided, in words. */
  rule: string;
  /** Each check made, in order, with what it found. */
  checks: string[];
  service?: ExplainedService;
  /** eBPF: whether the app's socket pair would be spliced, and why. */
  splice?: string;
  other: { mode: Mode; verdict: Verdict; note: string };
  /** Captured to the sidecar: whether it goes on with mTLS and what the server's authorization decides. */
  security?: ExplainedSecurity;
  /** iptables: whether the namespace's live rules are the ones this config generates. */
  rules?: { netns: string | null; rules: number; inPlace: boolean; missing: string[]; extra: string[] };
}

function liveTables(slot: SlotMaps): Tables {
  return {
    pod: (cookie) => slot.pods.get(cookie as unknown as number) ?? slot.pods.get(0),
    port: (podId, kind, port) => slot.ports.get({ podId, port, kind }) !== undefined,
    // An LPM trie answers a full-length key with the longest prefix that contains it.
    cidr: (podId, kind, addr) => slot.cidrs.get({ prefixlen: 64 + 128, podId, kind, addr }) !== undefined,
    service: (addr, port) => (slot.services.get({ addr, port }) ?? slot.services.get({ addr: null, port }))?.serviceId,
    flags: (id) => slot.svcState.get(id)?.flags ?? 0,
  };
}

export interface ExplainRequest {
  instance: string;
  pod?: string;
  destination: string;
  uid: number;
  gid?: number;
  /** The address the connecting socket is bound to (the sidecar's passthrough source, 127.0.0.6 or ::6). */
  source?: string;
}

/** Parses IPV4:PORT or [IPV6]:PORT (an IPv4-mapped IPv6 address is the IPv4 one, as connect6 sees it). */
export function parseDestination(s: string): { addr: string; port: number } {
  const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(s) ?? /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !isIp(m[1]) || !(port >= 1 && port <= 65535)) {
    throw new UserError(Codes.USAGE, `destination must be IPV4:PORT or [IPV6]:PORT (port 1-65535), got ${JSON.stringify(s.slice(0, 60))}`);
  }
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(m[1]);
  return { addr: mapped ? mapped[1] : m[1].toLowerCase(), port };
}

/** A source address as the kernel sees it (an IPv4-mapped IPv6 address is the IPv4 one). */
function parseSource(s: string): string {
  const a = s.replace(/^\[|\]$/g, '');
  if (!isIp(a)) throw new UserError(Codes.USAGE, `--source must be an IPv4 or IPv6 address, got ${JSON.stringify(s.slice(0, 60))}`);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return mapped ? mapped[1] : a.toLowerCase();
}

/**
 * The service of a decision. `redirect` is the switch in effect (`live`: the kernel's flag, eBPF
 * mode; else the recorded config's), and `redirectFrom` where it comes from: an agent's override
 * (sockmesh service enable|disable) or the config.
 */
function serviceName(cfg: MeshConfig, ids: ServiceIds, id: number | undefined, overrides: Overrides, live?: boolean): ExplainedService | undefined {
  if (id === undefined) return undefined;
  const name = Object.entries(ids).find(([, v]) => v === id)?.[0];
  const s = cfg.services.find((x) => x.name === name);
  const from = name !== undefined && hasName(overrides, name) ? 'override' as const : 'config' as const;
  return s ? { name: s.name, id, redirect: live ?? s.redirect, redirectFrom: from, splice: s.splice, mode: s.mode ?? 'sidecar' as const }
    : { name: name ?? `(id ${id})`, id, redirect: live ?? true, redirectFrom: from, splice: 'auto', mode: 'sidecar' as const };
}

/** The overrides an agent keeps for the instance (none when it has none, or the file is damaged). */
function overridesOf(instance: string): Overrides {
  const store = OverrideStore.forInstance(instance);
  store.load();
  return store.all();
}

/** Where a connection to a kernel-mode service (by name) goes (bpf/include/kernelmode.h). */
function kernelTarget(cfg: MeshConfig, name: string | undefined): string {
  const s = cfg.services.find((x) => x.name === name);
  const eps = s?.endpoints ?? [];
  if (!eps.length) return 'nowhere: the service has no endpoint, connect() fails with ECONNREFUSED';
  const list = eps.map((e) => `${endpointName(e)}${e.weight !== 1 ? ` (weight ${e.weight})` : ''}`).join(', ');
  return `one of ${list}, straight, no sidecar: ${s?.affinity === 'client' ? 'the one the client pod hashes to (Maglev table: it keeps it while it stays listed)' : 'picked at random per connection (Maglev table, by weight)'}`;
}

/** The rule of splice: auto (bpf/include/splice.h). */
export const AUTO_SPLICE_RULE = 'left to TCP while the service\'s last connection was a bulk stream; else spliced when the app\'s socket '
  + 'has TCP_NODELAY on (and no TCP_CORK) as it connects; a socket that connects with Nagle on is spliced only when the service\'s '
  + 'last such socket had turned TCP_NODELAY on by its close (as Go and Node do right after connecting), else TCP carries it and '
  + 'coalesces its writes';

const NAGLE_CLIENTS: Record<string, string> = {
  unknown: 'nothing learned yet: stays on the stack',
  'turn-nodelay': 'they turn TCP_NODELAY on later: spliced',
  'stay-nagle': 'they keep Nagle on: stays on the stack',
};

/** The splice choice sockops would make for a captured outbound connection of this service. */
function spliceChoice(flags: number, auto: { nagleClients: string; bulk: boolean; observed: number }): string {
  if (flags & SVC_SPLICE) return 'spliced (splice: always)';
  if (!(flags & SVC_AUTO)) return 'not spliced (splice: never)';
  const now = auto.bulk ? 'its last connection was a bulk stream: every new connection stays on the stack'
    : `TCP_NODELAY at connect: spliced; Nagle at connect: ${NAGLE_CLIENTS[auto.nagleClients]}`;
  return `splice: auto: ${AUTO_SPLICE_RULE}. This service now: ${now} (learned from ${auto.observed} closes)`;
}

export async function explain(req: ExplainRequest): Promise<Explanation> {
  const rec = readRecord(req.instance);
  if (!rec) throw new UserError(Codes.INSTANCE_MISSING, `no sockmesh instance "${req.instance}"`);
  const { addr, port } = parseDestination(req.destination);
  const cfg = rec.config;
  const gid = req.gid ?? req.uid;
  const source = req.source === undefined ? undefined : parseSource(req.source);
  // eBPF instances record their pods; the agent's iptables mode, each pod's namespace.
  const pods = (rec.pods ?? rec.podNetns ?? []).map((p) => p.name);
  const podName = req.pod ?? (pods.length <= 1 ? pods[0] ?? 'pod' : undefined);
  if (!podName) throw new UserError(Codes.USAGE, `instance "${req.instance}" meshes ${pods.length} pods: name one with --pod (${pods.join(', ')})`);
  if (pods.length && !pods.includes(podName)) {
    if (cfg.pods.some((p) => p.name === podName)) {
      throw new UserError(Codes.INSTANCE_MISSING, `pod "${podName}" is listed but not meshed: it was not found on the node, or it names a cgroup, namespace or address of another pod (sockmesh status lists why); its connections are not captured`);
    }
    throw new UserError(Codes.USAGE, `no pod "${podName}" in instance "${req.instance}" (pods: ${pods.join(', ')})`);
  }
  const podRec = rec.pods?.find((p) => p.name === podName);
  const base = { instance: rec.instance, mode: rec.mode, pod: podName, destination: addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`, uid: req.uid };

  if (rec.mode === 'ebpf') {
    const maps = new InstanceMaps(pinLayout(rec.pinRoot));
    try {
      const slot = maps.activeSlot();
      const t = liveTables(maps.slots[slot]);
      const pod = t.pod(BigInt(podRec?.netnsCookie ?? '0'));
      if (!pod) throw new UserError(Codes.INSTANCE_MISSING, `pod "${podName}" has no entry in the kernel's sm_pods (slot ${slot}): not meshed`);
      if (podRec && pod.podId !== podRec.podId) {
        throw new UserError(Codes.INSTANCE_MISSING, `pod "${podName}"'s namespace entry in sm_pods (slot ${slot}) is pod id ${pod.podId}'s, not its own (${podRec.podId}): not meshed as itself`);
      }
      const d = decide(t, pod, req.uid, gid, addr, port, true, source);
      const service = serviceName(cfg, rec.serviceIds, d.serviceId, overridesOf(rec.instance), d.serviceId === undefined ? undefined : (t.flags(d.serviceId) & SVC_REDIRECT) !== 0);
      const splice = d.verdict === 'sidecar-outbound' && d.serviceId !== undefined
        ? spliceChoice(t.flags(d.serviceId), autoMemory(maps, d.serviceId))
        : d.verdict === 'sidecar-outbound' ? 'not spliced (no listed service)' : undefined;
      const security = d.verdict === 'sidecar-outbound'
        ? explainSecurity(cfg, localWorkloads(cfg, rec.pods ?? []), podName, cfg.services.find((x) => x.name === service?.name), addr, port) : undefined;
      return {
        ...base, slot, verdict: d.verdict, goesTo: d.verdict === 'kernel' ? kernelTarget(cfg, service?.name) : goesTo(d.verdict, pod, addr, port), rule: d.rule, checks: d.checks,
        ...(service ? { service } : {}), ...(splice ? { splice } : {}), ...(security ? { security } : {}),
        other: d.verdict === 'kernel'
          ? { mode: 'iptables', verdict: 'sidecar-outbound', note: 'iptables mode has no kernel mode: it captures the service to the sidecar' }
          : { mode: 'iptables', verdict: d.verdict, note: 'istio-iptables rules from the same config decide alike; iptables mode captures every process of the pod\'s namespace (not only its cgroup) and never splices' },
      };
    } finally {
      maps.close();
    }
  }
  // iptables: the tables its config compiles to (its rules were generated from the same config).
  // What is local there is what the kernel routes through lo: every address of the namespace.
  const ns = rec.podNetns ? rec.podNetns.find((p) => p.name === podName)?.netns : rec.netns;
  const localAddrs = await localAddresses(ns ?? '/proc/self/ns/net').catch(() => []);
  const one: ResolvedPod = {
    name: podName, netnsCookie: 0n, cgroupId: 0n, cgroupLevel: 0, podId: 1, localAddrs, sidecar: cfg.sidecar, capture: cfg.capture,
  };
  // iptables instances keep no service ids: number the services here, as eBPF mode would.
  const size = cfg.services.length + 1;
  const ids = assignServiceIds(cfg.services.map((s) => s.name), rec.serviceIds, size);
  const t = desiredTables(compileDesired(cfg, ids, size, [one]));
  const pod = t.pod(0n)!;
  const d = decide(t, pod, req.uid, gid, addr, port, false, source);
  const service = serviceName(cfg, ids, d.serviceId, overridesOf(rec.instance));
  // The live rules of the pod's namespace against the ones this config generates.
  const podCfg = rec.podNetns ? cfg.pods.find((p) => p.name === podName) : undefined;
  const live = await compareRules(ns, podCfg ? podConfig(cfg, podCfg) : cfg, rec.instance);
  return {
    rules: { netns: ns ?? null, rules: live.rules, inPlace: !live.missing.length && !live.extra.length, missing: live.missing, extra: live.extra },
    ...base, verdict: d.verdict, goesTo: goesTo(d.verdict, pod, addr, port), rule: d.rule, checks: d.checks, ...(service ? { service } : {}),
    other: service?.mode === 'kernel' && d.verdict === 'sidecar-outbound' ? {
      mode: 'ebpf', verdict: 'kernel', note: `eBPF mode sends it to ${kernelTarget(cfg, service.name)}`,
    } : {
      mode: 'ebpf', verdict: d.verdict,
      note: `eBPF mode decides alike in connect4${d.verdict === 'sidecar-outbound' && service ? `; its socket pair would be ${service.splice === 'always' ? 'spliced' : service.splice === 'never' ? 'not spliced' : `${AUTO_SPLICE_RULE} (splice: auto)`}` : ''}`,
    },
  };
}

/** The listed pods as meshed (their recorded addresses, else their configured ones), as the policies see them. */
function localWorkloads(cfg: MeshConfig, recorded: Array<{ name: string; localAddrs: string[] }>): LocalWorkload[] {
  return cfg.pods.map((p) => {
    const r = recorded.find((x) => x.name === p.name);
    const addresses = r ? r.localAddrs.map((c) => c.replace(/\/(32|128)$/, '')) : p.addresses ?? [];
    return { name: p.name, addresses, namespace: p.namespace, serviceAccount: p.serviceAccount, labels: p.labels };
  });
}

function goesTo(v: Verdict, pod: SmPod, addr: string, port: number): string {
  // IPv6 destinations go to the sidecar's listeners on ::1 (connect6), IPv4 ones to its IPv4 address.
  const v6 = addr.includes(':');
  const at = (p: number) => (v6 ? `[::1]:${p}` : `${pod.outboundIp4}:${p}`);
  const dst = v6 ? `[${addr}]:${port}` : `${addr}:${port}`;
  if (v === 'sidecar-outbound') return `${at(pod.outboundPort)} (the sidecar's outbound listener; ${v6 ? 'IP6T_SO_ORIGINAL_DST' : 'SO_ORIGINAL_DST'} ${dst})`;
  if (v === 'sidecar-inbound') return `${at(pod.inboundPort)} (the sidecar's inbound listener; ${v6 ? 'IP6T_SO_ORIGINAL_DST' : 'SO_ORIGINAL_DST'} ${dst})`;
  return `${dst} (not captured)`;
}
