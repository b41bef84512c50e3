// Kubernetes objects -> config fragments, the same raw shape a config file has, so they go through
// the same validation. Pure: no I/O (finding a pod's cgroup and namespace is in locate.ts).
//
// Names: a Service or Pod `name` in namespace `ns` is `name.ns` in sockmesh (status, metrics,
// `sockmesh service disable reviews.bookinfo`).
import { isIP, isIPv4 } from 'node:net';
import type { PeerWorkload, SpliceMode } from '../../config/model.js';
import { ENDPOINTS_MAX } from '../../config/constants.js';
import { SERVICE_PORTS_MAX } from './admit.js';
import {
  boolAnnotation, cidrList, ISTIO_INJECT, ISTIO_STATUS, MESH_LABEL, oneOfAnnotation, POD_ANNOTATIONS, portList, rateLimitAnnotation, SERVICE_ANNOTATIONS as A,
  type Problem,
} from './annotations.js';
import { objectName, trimPod, type KEndpointSlice, type KPod, type KService, type KServicePort, type Translation } from './objects.js';

export { objectName, sliceService, trimPod, trimService, trimSlice } from './objects.js';
export type { KEndpointSlice, KPod, KService, KServicePort, Meta, Problem, Translation } from './objects.js';

/** Whether a pod is meshed: an Istio sidecar (injected container or status annotation) or the
 * sockmesh.io/mesh label; sidecar.istio.io/inject "false" opts out. */
export function meshReason(p: KPod): string | undefined {
  const a = p.metadata.annotations ?? {};
  const l = p.metadata.labels ?? {};
  if (a[ISTIO_INJECT] === 'false' || l[ISTIO_INJECT] === 'false') return undefined;
  if (l[MESH_LABEL] === 'enabled') return `label ${MESH_LABEL}`;
  if (p.spec.containers.some((c) => c.name === 'istio-proxy') || p.spec.initContainers?.some((c) => c.name === 'istio-proxy')) return 'istio-proxy container';
  if (a[ISTIO_STATUS] !== undefined) return `annotation ${ISTIO_STATUS}`;
  return undefined;
}

/**
 * Istio's protocol selection for a Service port: appProtocol (`http`, `http2`, `grpc`,
 * `kubernetes.io/h2c`), else the port name (`http`, `http-…`, `http2-…`, `grpc-…`); anything else
 * is TCP. HTTP/2 and gRPC ports are proxied as HTTP/2 (h2c between app and sidecar).
 */
export function protocolOf(p: { name?: string; appProtocol?: string }): 'http' | 'http2' | 'grpc' | 'tcp' {
  const named = (n: string): 'http' | 'http2' | 'grpc' | 'tcp' => {
    for (const proto of ['http2', 'grpc', 'http'] as const) if (n === proto || n.startsWith(`${proto}-`)) return proto;
    return 'tcp';
  };
  if (p.appProtocol) {
    const a = p.appProtocol.toLowerCase();
    return a === 'kubernetes.io/h2c' ? 'http2' : a === 'http' || a === 'http2' || a === 'grpc' ? a : 'tcp';
  }
  return named((p.name ?? '').toLowerCase());
}

/** Whether a Service port is HTTP/1.1 by Istio's protocol selection. */
export function isHttpPort(p: { name?: string; appProtocol?: string }): boolean {
  return protocolOf(p) === 'http';
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
  /** Its workload identity (namespace, service account) and the labels Istio's selectors match. */
  namespace: string;
  serviceAccount: string;
  labels: Record<string, string>;
}

/**
 * A cluster pod for the peers watch (every node's): a meshed one keeps what its identity and
 * addresses need, any other only its name (the watch's cache holds every pod of the cluster).
 */
export function trimPeer(o: KPod): KPod {
  const p = trimPod(o);
  // Any other pod: only its labels (DestinationRule subsets select endpoints by their pods' labels).
  if (!meshReason(p)) return { metadata: { name: p.metadata.name, namespace: p.metadata.namespace, uid: p.metadata.uid, resourceVersion: p.metadata.resourceVersion, ...(p.metadata.labels ? { labels: p.metadata.labels } : {}) }, spec: { containers: [] }, status: {} };
  return p;
}

/** A meshed pod of another node, as this node's sidecars call it (auto mTLS, the identity expected); undefined for any other pod. */
export function translatePeer(p: KPod, node: string): PeerWorkload | undefined {
  if (!p.spec.nodeName || p.spec.nodeName === node || p.spec.hostNetwork) return undefined;
  if (p.status.phase === 'Succeeded' || p.status.phase === 'Failed') return undefined;
  if (!meshReason(p)) return undefined;
  const addresses = (p.status.podIPs?.map((x) => x.ip) ?? (p.status.podIP ? [p.status.podIP] : [])).filter((ip) => isIP(ip));
  if (!addresses.length) return undefined;
  return { addresses, namespace: p.metadata.namespace ?? 'default', serviceAccount: p.spec.serviceAccountName ?? 'default', labels: p.metadata.labels ?? {} };
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
  for (const { annotation, field, kind, star } of POD_ANNOTATIONS) {
    const text = a[annotation];
    if (text === undefined) continue;
    const v = kind === 'ports' ? portList(annotation, text, problems, star) : cidrList(annotation, text, problems, star);
    if (v !== undefined) capture[field] = v;
  }
  const proxy = p.spec.containers.find((c) => c.name === 'istio-proxy') ?? p.spec.initContainers?.find((c) => c.name === 'istio-proxy');
  const uid = proxy?.securityContext?.runAsUser;
  if (uid !== undefined && !(Number.isInteger(uid) && uid >= 0 && uid <= 0xfffffffe)) problems.push({ field: 'istio-proxy securityContext.runAsUser', message: `${uid} is not a uid` });
  if (problems.length) return { kind: 'invalid', problems };
  const ips = (p.status.podIPs?.map((x) => x.ip) ?? (p.status.podIP ? [p.status.podIP] : [])).filter((ip) => isIP(ip));
  return {
    kind: 'ok',
    value: {
      name: objectName(p.metadata), uid: p.metadata.uid, qos: p.status.qosClass ?? 'BestEffort', addresses: ips, sidecarUid: uid, capture,
      namespace: p.metadata.namespace ?? 'default', serviceAccount: p.spec.serviceAccountName ?? 'default', labels: p.metadata.labels ?? {},
    },
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
export function translateService(s: KService, endpoints: () => string[], slices: () => Iterable<KEndpointSlice> = () => [], policy: () => Record<string, unknown> | undefined = () => undefined,
  podLabels: (namespace: string, name: string) => Record<string, string> | undefined = () => undefined): Translation<Record<string, unknown>> {
  const a = s.metadata.annotations ?? {};
  const problems: Problem[] = [];
  const redirect = a[A.redirect] === undefined ? true : boolAnnotation(A.redirect, a[A.redirect], problems) ?? true;
  const splice: SpliceMode = a[A.splice] === undefined ? 'auto' : oneOfAnnotation(A.splice, a[A.splice], ['auto', 'always', 'never'], 'auto, always or never', problems) ?? 'auto';
  const mode = a[A.mode] === undefined ? undefined : oneOfAnnotation(A.mode, a[A.mode], ['sidecar', 'kernel'], 'sidecar or kernel', problems);
  const term = a[A.terminateOnRemove] === undefined ? undefined : boolAnnotation(A.terminateOnRemove, a[A.terminateOnRemove], problems);
  const rl = a[A.rateLimit] === undefined ? undefined : rateLimitAnnotation(a[A.rateLimit]);
  if (rl && 'problem' in rl) problems.push(rl.problem);
  else if (rl && mode === 'kernel') problems.push({ field: A.rateLimit, message: 'needs the sidecar: a kernel-mode Service has no L7 policy' });
  if (problems.length) return { kind: 'invalid', problems };
  if (mode === 'kernel') return kernelService(s, redirect, term === true, slices);
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
  // One protocol for the whole Service: HTTP/1.1 on every port, or HTTP/2 (gRPC) on every port; a
  // Service that mixes them (or has a TCP port) is proxied per connection.
  const protos = new Set(tcp.map(protocolOf));
  const h2 = protos.size > 0 && [...protos].every((x) => x === 'http2' || x === 'grpc');
  const http = h2 || (protos.size === 1 && protos.has('http'));
  const p: Record<string, unknown> = { ...(policy() ?? {}), ...(rl && 'value' in rl ? { rateLimit: rl.value } : {}) };
  // Routes and subsets route requests: a Service whose ports are not HTTP (Istio's protocol
  // selection) is proxied per connection, and keeps only its connection-level policy.
  if (!http) {
    for (const k of ['routes', 'subsets']) delete p[k];
    const hash = p.consistentHash as Record<string, unknown> | undefined;
    if (hash && hash.useSourceIp === undefined) delete p.consistentHash;
  }
  if (h2) value.protocol = protos.has('http2') ? 'http2' : 'grpc';
  if (http && !h2) value.protocol = 'http';
  if (Object.keys(p).length) value.policy = p;
  if ((http || value.policy) && !headless) {
    const list = [...slices()];
    const eps = targetEndpoints(tcp, list);
    if ('endpoints' in eps && eps.endpoints.length <= ENDPOINTS_MAX) {
      // With subsets, each endpoint carries its pod's labels (from the slice's targetRef).
      value.endpoints = p.subsets === undefined ? eps.endpoints : withLabels(eps.endpoints, list, podLabels);
    }
  }
  return { kind: 'ok', value };
}

/** Endpoints ("ip[:port]") with the labels of the pods the slices say are behind them. */
function withLabels(endpoints: string[], slices: KEndpointSlice[], podLabels: (namespace: string, name: string) => Record<string, string> | undefined): Array<string | Record<string, unknown>> {
  const byIp = new Map<string, Record<string, string>>();
  for (const sl of slices) {
    for (const e of sl.endpoints) {
      const ref = e.targetRef;
      const labels = ref?.name ? podLabels(ref.namespace ?? sl.metadata.namespace ?? 'default', ref.name) : undefined;
      if (labels) for (const ip of e.addresses) byIp.set(ip, labels);
    }
  }
  return endpoints.map((ep) => {
    const labels = byIp.get(ep.includes(':') ? ep.slice(0, ep.lastIndexOf(':')) : ep);
    return labels && Object.keys(labels).length ? { address: ep, labels } : ep;
  });
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
  const fail = (message: string): Translation<Record<string, unknown>> => ({ kind: 'invalid', problems: [{ field: A.mode, message }] });
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
