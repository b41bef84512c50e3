// Istio's traffic policy objects -> the `policy` block of a sockmesh service, under Istio's names:
// a DestinationRule's trafficPolicy (loadBalancer.simple, connectionPool.tcp.maxConnections,
// outlierDetection) and a VirtualService's catch-all HTTP route (timeout, retries). Pure: no I/O.
//
// Which object applies to which Service follows Istio: a host is the Service's name, short
// (`ratings`, in the object's namespace) or qualified (`ratings.shop.svc.cluster.local`,
// `ratings.shop.svc`); wildcards and hosts outside the cluster match no Service. When several
// objects name one Service, the one in the Service's namespace wins, then the oldest (Istio takes
// the first it sees and warns). What sockmesh does not enforce (subsets, TLS settings, matches,
// traffic shifting, fault injection, …) is listed so the agent can say so on the object.
import { hasName } from '../../util/names.js';
import { RETRY_ON } from '../../config/constants.js';
import type { Meta } from './objects.js';

export const ISTIO_GROUP = 'networking.istio.io';
/** The API versions sockmesh reads (the fields it uses are the same in all three), newest first. */
export const ISTIO_VERSIONS = ['v1', 'v1beta1', 'v1alpha3'] as const;

export interface KDestinationRule {
  metadata: Meta;
  /** metadata.creationTimestamp, kept beside it (the client library types that field as a Date). */
  created?: string;
  spec: { host?: string; trafficPolicy?: Record<string, unknown>; [k: string]: unknown };
}

export interface KVirtualService {
  metadata: Meta;
  created?: string;
  spec: { hosts?: string[]; http?: Array<Record<string, unknown>>; [k: string]: unknown };
}

export type IstioObject = KDestinationRule | KVirtualService;

/** Keeps the metadata sockmesh reads and the spec (small: a policy, not a workload). */
export function trimIstio<T extends IstioObject>(o: T): T {
  const m = o.metadata as Meta & { creationTimestamp?: unknown };
  const created = m.creationTimestamp instanceof Date ? m.creationTimestamp.toISOString() : typeof m.creationTimestamp === 'string' ? m.creationTimestamp : undefined;
  return { metadata: { name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion }, created, spec: o.spec ?? {} } as T;
}

/**
 * The Service (name.namespace) a host names, or undefined for a wildcard, an external name or a
 * malformed host. `ns` is the namespace of the object that names it.
 */
export function hostService(host: unknown, ns: string): string | undefined {
  if (typeof host !== 'string' || !host || host.includes('*') || host.includes('/')) return undefined;
  const parts = host.split('.');
  if (parts.length === 1) return `${parts[0]}.${ns}`;
  if (parts.length >= 3 && parts[2] === 'svc') return `${parts[0]}.${parts[1]}`;
  return undefined;
}

/** The Services a DestinationRule (its host) or VirtualService (its hosts) names. */
export function hostsOf(kind: 'destinationrules' | 'virtualservices', o: IstioObject): string[] {
  const ns = o.metadata.namespace ?? 'default';
  const spec = o.spec as Record<string, unknown>;
  const hosts: unknown[] = kind === 'destinationrules' ? [spec.host] : Array.isArray(spec.hosts) ? spec.hosts : [];
  return [...new Set(hosts.map((h) => hostService(h, ns)).filter((h): h is string => h !== undefined))];
}

/** Of several objects naming one Service, the one that applies: same namespace first, then oldest, then by name. */
export function pickFor<T extends IstioObject>(service: string, candidates: T[]): T | undefined {
  const svcNs = service.slice(service.indexOf('.') + 1);
  const rank = (o: T) => [o.metadata.namespace === svcNs ? 0 : 1, o.created ?? '', `${o.metadata.namespace}/${o.metadata.name}`] as const;
  return [...candidates].sort((a, b) => {
    const x = rank(a);
    const y = rank(b);
    for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
  })[0];
}

/** A policy fragment (raw, as a config file writes it) and the fields sockmesh leaves to others. */
export interface PolicyFragment {
  policy: Record<string, unknown>;
  ignored: string[];
}

const GO_UNITS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 1e-3, 'µs': 1e-3, ns: 1e-6 };

/**
 * An Istio duration (Go's form, as the CRDs take it: "10s", "1m30s", "0.5s", "250ms") as the
 * config's "<n>ms"; a value that is none of those is passed on as it is, for validation to name.
 */
export function istioDuration(v: unknown): unknown {
  if (typeof v !== 'string' || !/^(\d+(\.\d+)?(h|m|s|ms|us|µs|ns))+$/.test(v)) return v;
  let ms = 0;
  for (const m of v.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)/g)) ms += Number(m[1]) * GO_UNITS[m[2]];
  return `${Math.ceil(ms)}ms`;
}

const SIMPLE: Record<string, string | null> = {
  ROUND_ROBIN: 'ROUND_ROBIN', LEAST_REQUEST: 'LEAST_REQUEST', LEAST_CONN: 'LEAST_REQUEST', RANDOM: 'RANDOM', UNSPECIFIED: null,
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Keys of `o` other than `known`, as `prefix.key`. */
function others(o: Record<string, unknown>, known: string[], prefix: string): string[] {
  return Object.keys(o).filter((k) => !known.includes(k)).map((k) => `${prefix}.${k}`);
}

/** A DestinationRule's trafficPolicy as sockmesh's policy fields. */
export function destinationRulePolicy(dr: KDestinationRule): PolicyFragment {
  const policy: Record<string, unknown> = {};
  const ignored = others(dr.spec, ['host', 'trafficPolicy', 'exportTo'], 'spec');
  const tp = dr.spec.trafficPolicy;
  if (!isObject(tp)) return { policy, ignored };
  ignored.push(...others(tp, ['loadBalancer', 'connectionPool', 'outlierDetection'], 'spec.trafficPolicy'));
  const lb = tp.loadBalancer;
  if (isObject(lb)) {
    ignored.push(...others(lb, ['simple'], 'spec.trafficPolicy.loadBalancer'));
    if (lb.simple !== undefined) {
      const mapped = typeof lb.simple === 'string' && hasName(SIMPLE, lb.simple) ? SIMPLE[lb.simple] : undefined;
      if (mapped) policy.loadBalancer = mapped;
      // PASSTHROUGH (no balancing) and unknown values: named for validation to refuse.
      else if (mapped === undefined) policy.loadBalancer = lb.simple;
    }
  }
  const cp = tp.connectionPool;
  if (isObject(cp)) {
    ignored.push(...others(cp, ['tcp'], 'spec.trafficPolicy.connectionPool'));
    if (isObject(cp.tcp)) {
      ignored.push(...others(cp.tcp, ['maxConnections'], 'spec.trafficPolicy.connectionPool.tcp'));
      if (cp.tcp.maxConnections !== undefined) policy.connectionPool = { tcp: { maxConnections: cp.tcp.maxConnections } };
    }
  }
  const od = tp.outlierDetection;
  if (isObject(od)) {
    ignored.push(...others(od, ['consecutive5xxErrors', 'interval', 'baseEjectionTime'], 'spec.trafficPolicy.outlierDetection'));
    const out: Record<string, unknown> = {};
    if (od.consecutive5xxErrors !== undefined) out.consecutive5xxErrors = od.consecutive5xxErrors;
    if (od.interval !== undefined) out.interval = istioDuration(od.interval);
    if (od.baseEjectionTime !== undefined) out.baseEjectionTime = istioDuration(od.baseEjectionTime);
    // Istio: consecutive5xxErrors 0 turns 5xx ejection off.
    if (out.consecutive5xxErrors !== 0) policy.outlierDetection = out;
  }
  return { policy, ignored };
}

/**
 * A VirtualService's policy for its hosts: timeout and retries of its catch-all HTTP route (the
 * first with no match). Routes that match on headers or paths, and destinations other than the
 * hosts themselves (subsets, traffic shifting), are routing sockmesh does not do: listed as ignored.
 */
export function virtualServicePolicy(vs: KVirtualService): PolicyFragment {
  const policy: Record<string, unknown> = {};
  const ignored = others(vs.spec, ['hosts', 'http', 'exportTo'], 'spec');
  const routes = Array.isArray(vs.spec.http) ? vs.spec.http.filter(isObject) : [];
  const i = routes.findIndex((r) => !Array.isArray(r.match) || r.match.length === 0);
  routes.forEach((_r, j) => { if (j !== i) ignored.push(`spec.http[${j}] (${j < i || i < 0 ? 'a route with match' : 'after the catch-all route'})`); });
  const route = routes[i];
  if (!route) return { policy, ignored };
  ignored.push(...others(route, ['name', 'match', 'route', 'timeout', 'retries'], `spec.http[${i}]`));
  const ns = vs.metadata.namespace ?? 'default';
  const own = hostsOf('virtualservices', vs);
  const dests = Array.isArray(route.route) ? route.route.filter(isObject) : [];
  const elsewhere = dests.filter((d) => {
    const dest = isObject(d.destination) ? d.destination : {};
    const to = hostService(dest.host, ns);
    return to === undefined || !own.includes(to) || dest.subset !== undefined;
  });
  if (elsewhere.length) ignored.push(`spec.http[${i}].route (destinations other than the Service itself)`);
  if (route.timeout !== undefined) policy.timeout = istioDuration(route.timeout);
  if (isObject(route.retries)) {
    const r = route.retries;
    ignored.push(...others(r, ['attempts', 'perTryTimeout', 'retryOn'], `spec.http[${i}].retries`));
    const out: Record<string, unknown> = { attempts: r.attempts ?? 0 };
    if (r.perTryTimeout !== undefined) out.perTryTimeout = istioDuration(r.perTryTimeout);
    if (typeof r.retryOn === 'string') {
      const conds = r.retryOn.split(',').map((s) => s.trim()).filter(Boolean);
      const known = (c: string) => (RETRY_ON as readonly string[]).includes(c);
      const kept = conds.filter(known);
      const dropped = conds.filter((c) => !known(c));
      if (dropped.length) ignored.push(`spec.http[${i}].retries.retryOn: ${dropped.join(',')}`);
      if (kept.length) out.retryOn = kept.join(',');
    } else if (r.retryOn !== undefined) out.retryOn = r.retryOn;
    policy.retries = out;
  }
  return { policy, ignored };
}

