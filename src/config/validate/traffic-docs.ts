// DestinationRule and VirtualService documents after a config file's sockmesh config, with the
// Kubernetes source's semantics (src/config/istio-traffic.ts): each names services by host (a
// service of the file is `reviews`, or `reviews.<namespace>` as the Kubernetes source names them),
// gives them its policy, and is checked as that service's policy block; problems are named by the
// document.
import {
  destinationRulePolicy, hostService, hostsOf, pickFor, virtualServicePolicy, type IstioObject, type KDestinationRule, type KVirtualService,
} from '../istio-traffic.js';
import type { ServiceConfig, ServicePolicy } from '../model.js';
import { join, kind, type Checker } from './checker.js';
import { policy } from './policy.js';

export const NETWORKING_GROUP = 'networking.istio.io';
const VERSIONS = ['v1', 'v1beta1', 'v1alpha3'];

export interface TrafficDocument {
  kind: 'destinationrules' | 'virtualservices';
  obj: IstioObject;
  /** `document N`, as errors name it. */
  path: string;
}

/** A DestinationRule or VirtualService document; undefined when it is another group's. */
export function trafficDocument(c: Checker, path: string, raw: unknown): TrafficDocument | undefined | 'not-traffic' {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not-traffic';
  const o = raw as Record<string, unknown>;
  const [group, version] = typeof o.apiVersion === 'string' ? o.apiVersion.split('/') : [];
  if (group !== NETWORKING_GROUP) return 'not-traffic';
  if (!VERSIONS.includes(version)) return c.fail(join(path, 'apiVersion'), `must be ${NETWORKING_GROUP}/${VERSIONS.join(', /')}, got ${kind(o.apiVersion)}`);
  c.object(path, raw, ['apiVersion', 'kind', 'metadata', 'spec', 'status']);
  const k = o.kind === 'DestinationRule' ? 'destinationrules' : o.kind === 'VirtualService' ? 'virtualservices' : undefined;
  if (!k) return c.fail(join(path, 'kind'), `must be DestinationRule or VirtualService for ${NETWORKING_GROUP}, got ${kind(o.kind)}`);
  const m = (typeof o.metadata === 'object' && o.metadata !== null ? o.metadata : {}) as Record<string, unknown>;
  const name = c.name(join(path, 'metadata.name'), m.name) ?? '';
  const namespace = m.namespace === undefined ? 'default' : c.name(join(path, 'metadata.namespace'), m.namespace) ?? 'default';
  const spec = typeof o.spec === 'object' && o.spec !== null && !Array.isArray(o.spec) ? o.spec as Record<string, unknown> : (c.fail(join(path, 'spec'), 'must be a mapping'), {});
  return { kind: k, obj: { metadata: { name, namespace }, spec } as IstioObject, path };
}

/** The file's service a host names: `name.namespace` as the Kubernetes source names it, else the short name. */
function resolver(services: ServiceConfig[]): (host: unknown, ns: string) => string | undefined {
  const names = new Set(services.map((s) => s.name));
  return (host, ns) => {
    const k8s = hostService(host, ns);
    if (k8s === undefined) return undefined;
    if (names.has(k8s)) return k8s;
    const short = k8s.slice(0, k8s.indexOf('.'));
    return names.has(short) ? short : undefined;
  };
}

/**
 * Gives each service the policy of the DestinationRule and VirtualService that name it (as the
 * Kubernetes source does: the one in its namespace, then the first), over its own `policy:`
 * field by field. Returns what the documents carry that sockmesh does not enforce.
 */
export function applyTrafficDocuments(c: Checker, services: ServiceConfig[], docs: TrafficDocument[]): string[] {
  if (!docs.length) return [];
  const resolve = resolver(services);
  const notices: string[] = [];
  // The services each document names, resolved once.
  const named = new Map(docs.map((d) => [d, hostsOf(d.kind, d.obj).map((h) => resolve(h.slice(0, h.indexOf('.')), h.slice(h.indexOf('.') + 1))).filter((h): h is string => h !== undefined)]));
  for (const [d, hosts] of named) {
    if (!hosts.length) notices.push(`${d.path} (${d.obj.metadata.namespace}/${d.obj.metadata.name}): names no service of this config`);
  }
  for (const [i, s] of services.entries()) {
    const policies: ServicePolicy[] = [];
    for (const k of ['destinationrules', 'virtualservices'] as const) {
      const mine = docs.filter((d) => d.kind === k && named.get(d)!.includes(s.name));
      const chosen = pickFor(s.name.includes('.') ? s.name : `${s.name}.default`, mine.map((d) => d.obj));
      const doc = mine.find((d) => d.obj === chosen);
      if (!doc) continue;
      const f = k === 'destinationrules' ? destinationRulePolicy(doc.obj as KDestinationRule) : virtualServicePolicy(doc.obj as KVirtualService, resolve, s.name);
      for (const field of f.ignored) notices.push(`${doc.path} ${field}: not enforced by sockmesh`);
      const before = c.issues.length;
      const p = policy(c, `${doc.path} (as services[${i}].policy)`, f.policy, s.name);
      if (p && c.issues.length === before) policies.push(p);
    }
    if (!policies.length) continue;
    if (s.mode === 'kernel') {
      c.fail(`services[${i}].mode`, `service "${s.name}" is in kernel mode: the DestinationRule/VirtualService naming it needs the sidecar`);
      continue;
    }
    // A new object: the one validated from the file may be cached for the next version (ServiceCache).
    services[i] = { ...s, policy: Object.assign({}, s.policy, ...policies) as ServicePolicy };
  }
  return notices;
}
