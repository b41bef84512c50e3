// Kubernetes objects in the shape the API server returns them (core/v1 Pod and Service,
// discovery.k8s.io/v1 EndpointSlice), with the bulk a real server adds (managedFields, the
// last-applied annotation, status conditions), for the fake API server of tests and the bench.
import { randomUUID } from 'node:crypto';

const managedFields = (manager: string) => [{
  manager, operation: 'Update', apiVersion: 'v1', time: '2026-11-26T10:00:00Z', fieldsType: 'FieldsV1',
  fieldsV1: { 'f:metadata': { 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:ports': {}, 'f:selector': {} } },
}];

export interface PodSpecOptions {
  name: string;
  namespace?: string;
  node: string;
  uid?: string;
  qos?: 'Guaranteed' | 'Burstable' | 'BestEffort';
  ips?: string[];
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  /** Adds an istio-proxy container (runAsUser as given, default 1337). */
  istioProxy?: boolean | { runAsUser: number };
  phase?: string;
  /** metadata.creationTimestamp (default: a fixed time). */
  created?: string;
}

export function podObject(o: PodSpecOptions): { metadata: { name: string; namespace: string; uid: string; [k: string]: unknown }; spec: { nodeName: string; [k: string]: unknown }; [k: string]: unknown } {
  const containers: unknown[] = [{
    name: 'app', image: 'registry.example/app:1.0', ports: [{ containerPort: 9080, protocol: 'TCP' }],
    resources: {}, terminationMessagePath: '/dev/termination-log', terminationMessagePolicy: 'File', imagePullPolicy: 'IfNotPresent',
  }];
  if (o.istioProxy) {
    const runAsUser = typeof o.istioProxy === 'object' ? o.istioProxy.runAsUser : 1337;
    containers.push({
      name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.24.0', args: ['proxy', 'sidecar'],
      securityContext: { runAsUser, runAsGroup: runAsUser, runAsNonRoot: true, allowPrivilegeEscalation: false },
    });
  }
  const ips = o.ips ?? [];
  return {
    metadata: {
      name: o.name, namespace: o.namespace ?? 'default', uid: o.uid ?? randomUUID(), creationTimestamp: o.created ?? '2026-11-26T10:00:00Z',
      labels: { app: o.name, ...(o.labels ?? {}) },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ kind: 'Pod', metadata: { name: o.name } }), ...(o.annotations ?? {}) },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${o.name}-rs`, uid: randomUUID(), controller: true, blockOwnerDeletion: true }],
      managedFields: managedFields('kubelet'),
    },
    spec: {
      nodeName: o.node, containers, restartPolicy: 'Always', terminationGracePeriodSeconds: 30, dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default', securityContext: {}, schedulerName: 'default-scheduler',
      tolerations: [{ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }],
    },
    status: {
      phase: o.phase ?? 'Running', qosClass: o.qos ?? 'BestEffort', hostIP: '192.168.1.10', hostIPs: [{ ip: '192.168.1.10' }],
      podIP: ips[0], podIPs: ips.map((ip) => ({ ip })), startTime: '2026-11-26T10:00:00Z',
      conditions: [{ type: 'Ready', status: 'True', lastProbeTime: null, lastTransitionTime: '2026-11-26T10:00:01Z' }],
      containerStatuses: [{ name: 'app', ready: true, restartCount: 0, image: 'registry.example/app:1.0', imageID: '', containerID: 'containerd://0', started: true, state: { running: { startedAt: '2026-11-26T10:00:01Z' } } }],
    },
  };
}

export function serviceObject(o: { name: string; namespace?: string; clusterIP: string; ports: number[]; annotations?: Record<string, string>; http?: boolean; targetPort?: number; created?: string }): { metadata: { name: string; namespace: string; [k: string]: unknown }; [k: string]: unknown } {
  return {
    metadata: {
      name: o.name, namespace: o.namespace ?? 'default', uid: randomUUID(), creationTimestamp: o.created ?? '2026-11-26T10:00:00Z',
      labels: { app: o.name }, annotations: { ...(o.annotations ?? {}) }, managedFields: managedFields('kubectl-client-side-apply'),
    },
    spec: {
      type: 'ClusterIP', clusterIP: o.clusterIP, clusterIPs: o.clusterIP === 'None' ? ['None'] : [o.clusterIP], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack',
      ports: o.ports.map((p) => ({ name: `${o.http ? 'http' : 'tcp'}-${p}`, port: p, protocol: 'TCP', targetPort: o.targetPort ?? p })), selector: { app: o.name }, sessionAffinity: 'None', internalTrafficPolicy: 'Cluster',
    },
    status: { loadBalancer: {} },
  };
}

export function sliceObject(o: { name: string; namespace?: string; service: string; addresses: string[]; port: number; node?: string; pods?: string[] }): { metadata: { name: string; namespace: string; [k: string]: unknown }; [k: string]: unknown } {
  return {
    metadata: {
      name: o.name, namespace: o.namespace ?? 'default', uid: randomUUID(), generateName: `${o.service}-`,
      labels: { 'kubernetes.io/service-name': o.service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': '2026-11-26T10:00:00Z' },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: o.service, uid: randomUUID(), controller: true, blockOwnerDeletion: true }],
      managedFields: managedFields('endpointslice-controller'),
    },
    addressType: 'IPv4',
    endpoints: o.addresses.map((ip, i) => ({
      addresses: [ip], conditions: { ready: true, serving: true, terminating: false }, nodeName: o.node ?? 'node-1',
      targetRef: { kind: 'Pod', namespace: o.namespace ?? 'default', name: o.pods?.[i] ?? `${o.service}-${i}`, uid: randomUUID() },
    })),
    ports: [{ name: `tcp-${o.port}`, port: o.port, protocol: 'TCP' }],
  };
}

const istioMeta = (name: string, namespace: string | undefined, created: string | undefined) => ({
  name, namespace: namespace ?? 'default', uid: randomUUID(), generation: 1, creationTimestamp: created ?? '2026-11-26T10:00:00Z',
  annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' }, managedFields: managedFields('kubectl-client-side-apply'),
});

/** An Istio DestinationRule (networking.istio.io/v1). */
export function destinationRuleObject(o: { name: string; namespace?: string; host: string; trafficPolicy?: Record<string, unknown>; created?: string; [k: string]: unknown }): { metadata: { name: string; namespace: string; [k: string]: unknown }; [k: string]: unknown } {
  const { name, namespace, host, trafficPolicy, created, ...rest } = o;
  return { metadata: istioMeta(name, namespace, created), spec: { host, ...(trafficPolicy ? { trafficPolicy } : {}), ...rest } };
}

/** An Istio VirtualService (networking.istio.io/v1). */
export function virtualServiceObject(o: { name: string; namespace?: string; hosts: string[]; http: Array<Record<string, unknown>>; created?: string }): { metadata: { name: string; namespace: string; [k: string]: unknown }; [k: string]: unknown } {
  return { metadata: istioMeta(o.name, o.namespace, o.created), spec: { hosts: o.hosts, http: o.http } };
}

/** An Istio PeerAuthentication (security.istio.io/v1). */
export function peerAuthenticationObject(o: { name: string; namespace?: string; spec: Record<string, unknown>; created?: string }): { metadata: { name: string; namespace: string; [k: string]: unknown }; [k: string]: unknown } {
  return { metadata: istioMeta(o.name, o.namespace, o.created), spec: o.spec };
}

/** An Istio AuthorizationPolicy (security.istio.io/v1). */
export function authorizationPolicyObject(o: { name: string; namespace?: string; spec: Record<string, unknown>; created?: string }): { metadata: { name: string; namespace: string; [k: string]: unknown }; [k: string]: unknown } {
  return { metadata: istioMeta(o.name, o.namespace, o.created), spec: o.spec };
}
