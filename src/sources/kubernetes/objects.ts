// The Kubernetes objects sockmesh reads, in the shape it keeps them: each trimmed on arrival to the
// fields it reads (a Service list of 10,000 items with managedFields and last-applied annotations
// is tens of megabytes the informer cache would otherwise hold), and how they are named.
import { keptAnnotation, keptLabel, SERVICE_NAME_LABEL, type Problem } from './annotations.js';

export type { Problem } from './annotations.js';

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
    /** The pod's service account: its workload identity with its namespace. */
    serviceAccountName?: string;
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
  /** targetRef: the pod behind an endpoint (its labels decide DestinationRule subsets). */
  endpoints: Array<{ addresses: string[]; conditions?: { ready?: boolean | null }; targetRef?: { kind?: string; name?: string; namespace?: string } | null }>;
  ports?: Array<{ port?: number | null; protocol?: string; name?: string | null }> | null;
}

function meta(m: Meta): Meta {
  const created = (m as { creationTimestamp?: unknown }).creationTimestamp;
  const out: Meta = { name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion };
  if (created instanceof Date) out.created = created.toISOString();
  else if (typeof created === 'string') out.created = created;
  if (m.annotations) out.annotations = pick(m.annotations, keptAnnotation);
  if (m.labels) out.labels = pick(m.labels, keptLabel);
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
    // Every label of a pod of this node: Istio's selectors may match any of them.
    metadata: { ...meta(o.metadata), ...(o.metadata?.labels ? { labels: { ...o.metadata.labels } } : {}) },
    spec: {
      nodeName: s.nodeName, hostNetwork: s.hostNetwork, serviceAccountName: s.serviceAccountName,
      containers: (s.containers ?? []).map(container), initContainers: s.initContainers?.map(container),
    },
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
    endpoints: (o.endpoints ?? []).map((e) => ({
      addresses: e.addresses, conditions: { ready: e.conditions?.ready ?? null },
      ...(e.targetRef?.kind === 'Pod' && e.targetRef.name ? { targetRef: { kind: 'Pod', name: e.targetRef.name, namespace: e.targetRef.namespace ?? o.metadata.namespace } } : {}),
    })),
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

/** What an object translates to: a value, nothing on purpose, or the problems that keep it out. */
export type Translation<T> = { kind: 'ok'; value: T } | { kind: 'skip'; reason: string } | { kind: 'invalid'; problems: Problem[] };

