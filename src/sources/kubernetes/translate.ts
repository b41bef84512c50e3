// Kubernetes objects -> config fragments, the same raw shape a config file has, so they go through
// the same validation. Pure: no I/O (finding a pod's cgroup and namespace is in locate.ts).
//
// Names: a Service or Pod `name` in namespace `ns` is `name.ns` in sockmesh (status, metrics,
// `sockmesh service disable reviews.bookinfo`).
import { isIP, isIPv4 } from 'node:net';
import { parseCidr } from '../../net/addr.js';
import type { SpliceMode } from '../../config/model.js';
import { ENDPOINTS_MAX } from '../../config/constants.js';
import { isHttpPort, rateLimitAnnotation } from './istio.js';
import { SERVICE_PORTS_MAX } from './admit.js';

/** The fields of an object's metadata sockmesh reads (the rest is dropped on arrival). */
export interface Meta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  /** metadata.creationTimestamp as ISO text (client-node types that field as a Date): the order in
   * which a node admits objects, oldest first. */
  created?: string;
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
}

export interface KPod {
  metadata: Meta;
  spec: {
    nodeName?: string;
    hostNetwork?: boolean;
    containers: Array<{ name: string; securityContext?: { runAsUser?: number } }>;
    initContainers?: Array<{ name: string; securityContext?: { runAsUser?: number } }>;
  };
  status: { phase?: string; qosClass?: string; podIPs?: Array<{ ip: string }>; podIP?: string };
}

export interface KService {
  metadata: Meta;
  spec: {
    type?: string; clusterIP?: string; clusterIPs?: string[]; sessionAffinity?: string;
    ports?: KServicePort[];
  };
}

export interface KServicePort { port: number; protocol?: string; name?: string; appProtocol?: string; targetPort?: number | string }

export interface KEndpointSlice {
  metadata: Meta;
  addressType: string;
  endpoints: Array<{ addresses: string[]; conditions?: { ready?: boolean | null } }>;
  ports?: Array<{ port?: number | null; protocol?: string; name?: string | null }> | null;
}

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

function meta(m: Meta): Meta {
  const created = (m as { creationTimestamp?: unknown }).creationTimestamp;
  const out: Meta = { name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion };
  if (created instanceof Date) out.created = created.toISOString();
  else if (typeof created === 'string') out.created = created;
  if (m.annotations) out.annotations = pick(m.annotations, (k) => k.startsWith('sockmesh.io/') || k.startsWith('traffic.sidecar.istio.io/') || k.startsWith('sidecar.istio.io/'));
  if (m.labels) out.labels = pick(m.labels, (k) => k === SERVICE_NAME_LABEL || k.startsWith('sockmesh.io/') || k === 'sidecar.istio.io/inject');
  return out;
}

function pick(o: Record<string, string>, keep: (k: string) => boolean): Record<string, string> | undefined {
  const entries = Object.entries(o).filter(([k]) => keep(k));
  return entries.length ? Object.fromEntries(entries) : undefined;
}

type Container = { name: string; securityContext?: { runAsUser?: number } };
const container = (c: Container): Container =>
  (c.securityContext?.runAsUser !== undefined ? { name: c.name, securityContext: { runAsUser: c.securityContext.runAsUser } } : { name: c.name });

/**
 * Keeps only what sockmesh reads: a Service list of 10,000 items with managedFields and
 * last-applied annotations is tens of megabytes the informer cache would otherwise hold.
 */
export function trimPod(o: KPod): KPod {
  const s = o.spec ?? { containers: [] };
  return {
    metadata: meta(o.metadata),
    spec: { nodeName: s.nodeName, hostNetwork: s.hostNetwork, containers: (s.containers ?? []).map(container), initContainers: s.initContainers?.map(container) },
    status: { phase: o.status?.phase, qosClass: o.status?.qosClass, podIPs: o.status?.podIPs?.map((p) => ({ ip: p.ip })), podIP: o.status?.podIP },
  };
}

export function trimService(o: KService): KService {
  const s = o.spec ?? {};
  return {
    metadata: meta(o.metadata),
    spec: {
      type: s.type, clusterIP: s.clusterIP, clusterIPs: s.clusterIPs, sessionAffinity: s.sessionAffinity,
      ports: (s.ports ?? []).map((p) => ({ port: p.port, protocol: p.protocol, name: p.name, appProtocol: p.appProtocol, targetPort: p.targetPort })),
    },
  };
}

export function trimSlice(o: KEndpointSlice): KEndpointSlice {
  return {
    metadata: meta(o.metadata),
    addressType: o.addressType,
    endpoints: (o.endpoints ?? []).map((e) => ({ addresses: e.addresses, conditions: { ready: e.conditions?.ready ?? null } })),
    ports: o.ports?.map((p) => ({ port: p.port ?? null, protocol: p.protocol, name: p.name ?? null })) ?? null,
  };
}

/** The sockmesh name of a namespaced object: name.namespace. */
export function objectName(m: Meta): string {
  return `${m.name}.${m.namespace ?? 'default'}`;
}

/** The Service an EndpointSlice belongs to (name.namespace), from its kubernetes.io/service-name label. */
export function sliceService(s: KEndpointSlice): string | undefined {
  const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
  return svc ? `${svc}.${s.metadata.namespace ?? 'default'}` : undefined;
}

/** A malformed annotation or field, reported as an Event on its object. */
export interface Problem {
  field: string;
  message: string;
}

export type Translation<T> = { kind: 'ok'; value: T } | { kind: 'skip'; reason: string } | { kind: 'invalid'; problems: Problem[] };

function portList(field: string, text: string, problems: Problem[], allowStar: boolean): number[] | '*' | undefined {
  const items = text.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (allowStar && items.length === 1 && items[0] === '*') return '*';
  const out: number[] = [];
  for (const item of items) {
    const n = /^\d{1,5}$/.test(item) ? Number(item) : NaN;
    if (!(n >= 1 && n <= 65535)) {
      problems.push({ field, message: `${JSON.stringify(item.slice(0, 40))} is not a port (1-65535)${allowStar ? ' or *' : ''}` });
      return undefined;
    }
    if (!out.includes(n)) out.push(n);
  }
  return out;
}

function cidrList(field: string, text: string, problems: Problem[], allowStar: boolean): string[] | undefined {
  const items = text.split(',').map((x) => x.trim()).filter((x) => x !== '');
  if (allowStar && items.length === 1 && items[0] === '*') return ['*'];
  const out: string[] = [];
  for (const item of items) {
    try {
      const c = parseCidr(item);
      if (c.text.includes(':')) continue; // IPv6 ranges: sockmesh captures IPv4 only for now
      out.push(c.text);
    } catch {
      problems.push({ field, message: `${JSON.stringify(item.slice(0, 60))} is not a CIDR${allowStar ? ' or *' : ''}` });
      return undefined;
    }
  }
  return out;
}

const ISTIO = 'traffic.sidecar.istio.io/';
/** Istio's per-pod capture annotations and the capture field each sets. */
const POD_ANNOTATIONS = [
  ['includeInboundPorts', 'includeInboundPorts', 'ports*'],
  ['excludeInboundPorts', 'excludeInboundPorts', 'ports'],
  ['includeOutboundPorts', 'includeOutboundPorts', 'ports'],
  ['excludeOutboundPorts', 'excludeOutboundPorts', 'ports'],
  ['includeOutboundIPRanges', 'includeOutboundCIDRs', 'cidrs*'],
  ['excludeOutboundIPRanges', 'excludeOutboundCIDRs', 'cidrs'],
] as const;

/** Whether a pod is meshed: an Istio sidecar (injected container or status annotation) or the
 * sockmesh.io/mesh label; sidecar.istio.io/inject "false" opts out. */
export function meshReason(p: KPod): string | undefined {
  const a = p.metadata.annotations ?? {};
  const l = p.metadata.labels ?? {};
  if (a['sidecar.istio.io/inject'] === 'false' || l['sidecar.istio.io/inject'] === 'false') return undefined;
  if (l['sockmesh.io/mesh'] === 'enabled') return 'label sockmesh.io/mesh';
  if (p.spec.containers.some((c) => c.name === 'istio-proxy') || p.spec.initContainers?.some((c) => c.name === 'istio-proxy')) return 'istio-proxy container';
  if (a['sidecar.istio.io/status'] !== undefined) return 'annotation sidecar.istio.io/status';
  return undefined;
}

/** What the source knows of a meshed pod before finding it on the node. */
export interface PodWanted {
  name: string;
  uid: string;
  qos: string;
  addresses: string[];
  /** The sidecar's uid (the istio-proxy container's runAsUser), when it differs from the node's. */
  sidecarUid?: number;
  /** capture overrides from annotations, in the config file's field names. */
  capture: Record<string, unknown>;
}

/** A pod of this node as sockmesh meshes it, or why not. */
export function translatePod(p: KPod, node: string): Translation<PodWanted> {
  if (p.spec.nodeName !== node) return { kind: 'skip', reason: `scheduled on ${p.spec.nodeName ?? 'no node'}` };
  if (p.spec.hostNetwork) return { kind: 'skip', reason: 'host network: the node\'s own namespace is never meshed' };
  if (p.status.phase === 'Succeeded' || p.status.phase === 'Failed') return { kind: 'skip', reason: `phase ${p.status.phase}` };
  if (!meshReason(p)) return { kind: 'skip', reason: 'not meshed (no istio-proxy, no sockmesh.io/mesh: enabled)' };
  if (!p.metadata.uid) return { kind: 'invalid', problems: [{ field: 'metadata.uid', message: 'is missing' }] };
  const problems: Problem[] = [];
  const a = p.metadata.annotations ?? {};
  const capture: Record<string, unknown> = {};
  for (const [annotation, field, kind] of POD_ANNOTATIONS) {
    const text = a[ISTIO + annotation];
    if (text === undefined) continue;
    const star = kind.endsWith('*');
    const v = kind.startsWith('ports') ? portList(ISTIO + annotation, text, problems, star) : cidrList(ISTIO + annotation, text, problems, star);
    if (v !== undefined) capture[field] = v;
  }
  const proxy = p.spec.containers.find((c) => c.name === 'istio-proxy') ?? p.spec.initContainers?.find((c) => c.name === 'istio-proxy');
  const uid = proxy?.securityContext?.runAsUser;
  if (uid !== undefined && !(Number.isInteger(uid) && uid >= 0 && uid <= 0xfffffffe)) problems.push({ field: 'istio-proxy securityContext.runAsUser', message: `${uid} is not a uid` });
  if (problems.length) return { kind: 'invalid', problems };
  const ips = (p.status.podIPs?.map((x) => x.ip) ?? (p.status.podIP ? [p.status.podIP] : [])).filter((ip) => isIP(ip));
  return {
    kind: 'ok',
    value: { name: objectName(p.metadata), uid: p.metadata.uid, qos: p.status.qosClass ?? 'BestEffort', addresses: ips, sidecarUid: uid, capture },
  };
}

/**
 * Where the kubelet puts a pod's cgroup, relative to the cgroup2 root, for both cgroup drivers:
 * cgroupfs `kubepods/<qos>/pod<uid>` (Guaranteed pods directly under kubepods), systemd
 * `kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid with _ for ->.slice`.
 */
export function podCgroupCandidates(uid: string, qos: string): string[] {
  const q = qos.toLowerCase();
  const guaranteed = q === 'guaranteed';
  const u = uid.replace(/-/g, '_');
  return [
    guaranteed ? `kubepods/pod${uid}` : `kubepods/${q}/pod${uid}`,
    guaranteed ? `kubepods.slice/kubepods-pod${u}.slice` : `kubepods.slice/kubepods-${q}.slice/kubepods-${q}-pod${u}.slice`,
  ];
}

/**
 * A Service as a config file would list it (raw, validated by the caller), or why not. `policy`:
 * the traffic policy Istio's objects give it (raw, see istio.ts).
 */
export function translateService(s: KService, endpoints: () => string[], slices: () => Iterable<KEndpointSlice> = () => [], policy: () => Record<string, unknown> | undefined = () => undefined): Translation<Record<string, unknown>> {
  const a = s.metadata.annotations ?? {};
  const problems: Problem[] = [];
  let redirect = true;
  const r = a['sockmesh.io/redirect'];
  if (r !== undefined) {
    if (r === 'true' || r === 'false') redirect = r === 'true';
    else problems.push({ field: 'sockmesh.io/redirect', message: `must be "true" or "false", got ${JSON.stringify(r.slice(0, 40))}` });
  }
  let splice: SpliceMode = 'auto';
  const sp = a['sockmesh.io/splice'];
  if (sp !== undefined) {
    if (sp === 'auto' || sp === 'always' || sp === 'never') splice = sp;
    else problems.push({ field: 'sockmesh.io/splice', message: `must be auto, always or never, got ${JSON.stringify(sp.slice(0, 40))}` });
  }
  const mode = a['sockmesh.io/mode'];
  if (mode !== undefined && mode !== 'kernel' && mode !== 'sidecar') {
    problems.push({ field: 'sockmesh.io/mode', message: `must be sidecar or kernel, got ${JSON.stringify(mode.slice(0, 40))}` });
  }
  const term = a['sockmesh.io/terminate-on-remove'];
  if (term !== undefined && term !== 'true' && term !== 'false') {
    problems.push({ field: 'sockmesh.io/terminate-on-remove', message: `must be "true" or "false", got ${JSON.stringify(term.slice(0, 40))}` });
  }
  const rl = a['sockmesh.io/rate-limit'] === undefined ? undefined : rateLimitAnnotation(a['sockmesh.io/rate-limit']);
  if (rl && 'problem' in rl) problems.push(rl.problem);
  else if (rl && mode === 'kernel') problems.push({ field: 'sockmesh.io/rate-limit', message: 'needs the sidecar: a kernel-mode Service has no L7 policy' });
  if (problems.length) return { kind: 'invalid', problems };
  if (mode === 'kernel') return kernelService(s, redirect, term === 'true', slices);
  const type = s.spec.type ?? 'ClusterIP';
  if (type === 'ExternalName') return { kind: 'skip', reason: 'ExternalName: no address to capture' };
  const ports = [...new Set((s.spec.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => p.port))];
  if (!ports.length) return { kind: 'skip', reason: 'no TCP ports' };
  if (ports.length > SERVICE_PORTS_MAX) {
    return { kind: 'invalid', problems: [{ field: 'spec.ports', message: `has ${ports.length} TCP ports; sockmesh captures Services with at most ${SERVICE_PORTS_MAX} (one Service must not fill the node's service map)` }] };
  }
  const headless = s.spec.clusterIP === 'None';
  // A headless Service has no virtual address: its clients connect to the endpoints themselves.
  // Dual-stack Services: every cluster address (IPv4 and IPv6).
  const addresses = headless ? endpoints() : (s.spec.clusterIPs ?? (s.spec.clusterIP ? [s.spec.clusterIP] : [])).filter((ip) => isIP(ip));
  if (!addresses.length) return { kind: 'skip', reason: headless ? 'headless with no ready endpoint' : 'no cluster address' };
  const value: Record<string, unknown> = { name: objectName(s.metadata), addresses, ports, redirect, splice };
  // Governance: HTTP ports (Istio's protocol selection) get per-request policy; a Service with
  // policy or HTTP is balanced by the sidecar over its ready endpoints (a headless one's clients
  // pick their endpoint themselves).
  const tcp = (s.spec.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP');
  const http = tcp.every(isHttpPort);
  const p = { ...(policy() ?? {}), ...(rl && 'value' in rl ? { rateLimit: rl.value } : {}) };
  if (http) value.protocol = 'http';
  if (Object.keys(p).length) value.policy = p;
  if ((http || value.policy) && !headless) {
    const eps = targetEndpoints(tcp, [...slices()]);
    if ('endpoints' in eps && eps.endpoints.length <= ENDPOINTS_MAX) value.endpoints = eps.endpoints;
  }
  return { kind: 'ok', value };
}

/**
 * A Service's ready IPv4 endpoints at its ports' target ports: the address alone when every
 * target port is the port itself (the connection keeps its port), `address:target` for a Service
 * with one port; a Service whose several ports map to other target ports cannot be listed so.
 */
function targetEndpoints(ports: KServicePort[], list: KEndpointSlice[]): { endpoints: string[] } | { problem: string } {
  const named = new Map(list.flatMap((sl) => (sl.ports ?? []).filter((p) => p.name && p.port).map((p) => [p.name!, p.port!] as const)));
  const targets = ports.map((p) => (typeof p.targetPort === 'number' ? p.targetPort : typeof p.targetPort === 'string' ? named.get(p.targetPort) : p.port));
  const same = ports.every((p, i) => targets[i] === p.port);
  if (!same && ports.length > 1) return { problem: 'its ports map to other target ports: its endpoints can be listed for a Service with one port (or target ports equal to its ports)' };
  const ips = sliceAddresses(list);
  // A named target port the slices do not name yet: no endpoint to reach (connections are refused).
  return { endpoints: same ? ips : targets[0] === undefined ? [] : ips.map((ip) => `${ip}:${targets[0]}`) };
}

/**
 * A Service with `sockmesh.io/mode: kernel`: its cluster addresses go straight to its ready
 * endpoints (from its EndpointSlices) at their target port; sessionAffinity: ClientIP keeps a
 * client pod on its endpoint. TCP ports, or the UDP ports of a UDP-only Service.
 */
function kernelService(s: KService, redirect: boolean, terminateOnRemove: boolean, slices: () => Iterable<KEndpointSlice>): Translation<Record<string, unknown>> {
  const fail = (message: string): Translation<Record<string, unknown>> => ({ kind: 'invalid', problems: [{ field: 'sockmesh.io/mode', message }] });
  if ((s.spec.type ?? 'ClusterIP') === 'ExternalName') return fail('kernel mode needs a cluster address; an ExternalName Service has none');
  if (s.spec.clusterIP === 'None') return fail('kernel mode needs a cluster address; a headless Service has none (its clients connect to the endpoints already)');
  const addresses = (s.spec.clusterIPs ?? (s.spec.clusterIP ? [s.spec.clusterIP] : [])).filter((ip) => isIPv4(ip));
  if (!addresses.length) return { kind: 'skip', reason: 'no IPv4 cluster address' };
  const all = s.spec.ports ?? [];
  const tcp = all.filter((p) => (p.protocol ?? 'TCP') === 'TCP');
  const chosen = tcp.length ? tcp : all.filter((p) => p.protocol === 'UDP');
  if (!chosen.length) return { kind: 'skip', reason: 'no TCP or UDP ports' };
  const eps = targetEndpoints(chosen, [...slices()]);
  if ('problem' in eps) return fail(eps.problem);
  const { endpoints } = eps;
  return {
    kind: 'ok',
    value: {
      name: objectName(s.metadata), addresses, ports: [...new Set(chosen.map((p) => p.port))], redirect, mode: 'kernel', endpoints,
      ...(s.spec.sessionAffinity === 'ClientIP' ? { affinity: 'client' } : {}),
      ...(!tcp.length ? { protocol: 'udp' } : {}),
      ...(terminateOnRemove ? { terminateOnRemove: true } : {}),
    },
  };
}

/** The ready endpoint addresses of a Service's slices, each once, sorted: IPv4 only (kernel mode's
 * endpoints), or IPv4 and IPv6 (a headless Service's addresses). */
export function sliceAddresses(slices: Iterable<KEndpointSlice>, families: 'ipv4' | 'all' = 'ipv4'): string[] {
  const out = new Set<string>();
  for (const s of slices) {
    if (s.addressType !== 'IPv4' && !(families === 'all' && s.addressType === 'IPv6')) continue;
    for (const e of s.endpoints) {
      if (e.conditions?.ready === false) continue;
      for (const ip of e.addresses) if (families === 'all' ? isIP(ip) : isIPv4(ip)) out.add(ip);
    }
  }
  return [...out].sort();
}
