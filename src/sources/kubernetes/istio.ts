// Istio's traffic policy objects as the Kubernetes API serves them: their group and versions, and
// what of an object is kept. The translation into a service's policy block is the config layer's
// (src/config/istio-traffic.ts), shared with the Istio documents of a config file.
import type { IstioObject } from '../../config/istio-traffic.js';
import type { Meta } from './objects.js';

export {
  destinationRulePolicy, hostService, hostsOf, istioDuration, pickFor, virtualServicePolicy,
  type IstioObject, type KDestinationRule, type KVirtualService, type PolicyFragment,
} from '../../config/istio-traffic.js';

export const ISTIO_GROUP = 'networking.istio.io';
/** The API versions sockmesh reads (the fields it uses are the same in all three), newest first. */
export const ISTIO_VERSIONS = ['v1', 'v1beta1', 'v1alpha3'] as const;

/** Keeps the metadata sockmesh reads and the spec (small: a policy, not a workload). */
export function trimIstio<T extends IstioObject>(o: T): T {
  const m = o.metadata as Meta & { creationTimestamp?: unknown };
  const created = m.creationTimestamp instanceof Date ? m.creationTimestamp.toISOString() : typeof m.creationTimestamp === 'string' ? m.creationTimestamp : undefined;
  return { metadata: { name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion }, created, spec: o.spec ?? {} } as T;
}
