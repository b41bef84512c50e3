// Istio's traffic objects -> the `policy` block of a sockmesh service, under Istio's names: a
// DestinationRule's trafficPolicy (loadBalancer simple / consistentHash, connectionPool.tcp.
// maxConnections, outlierDetection) and subsets; a VirtualService's http routes (match, weighted
// destinations across hosts and subsets, timeout, retries, headers, rewrite.uri, fault). Pure: the
// Kubernetes source and the Istio documents of a config file translate with these same functions,
// then validate the result as a service's policy.
//
// Which object applies to which Service follows Istio: a host is the Service's name, short
// (`ratings`, in the object's namespace) or qualified (`ratings.shop.svc.cluster.local`,
// `ratings.shop.svc`); wildcards and hosts outside the cluster match no Service. When several
// objects name one Service, the one in the Service's namespace wins, then the oldest (Istio takes
// the first it sees and warns). What sockmesh does not enforce is listed so it can be reported.
import { RETRY_ON } from './constants.js';
import { ROUTE_NAME_RE } from './validate/routes.js';

export interface IstioMeta { name: string; namespace?: string; uid?: string; resourceVersion?: string }

export interface KDestinationRule {
  metadata: IstioMeta;
  /** metadata.creationTimestamp, kept beside it (the client library types that field as a Date). */
  created?: string;
  spec: { host?: string; trafficPolicy?: Record<string, unknown>; subsets?: unknown[]; [k: string]: unknown };
}

export interface KVirtualService {
  metadata: IstioMeta;
  created?: string;
  spec: { hosts?: string[]; http?: Array<Record<string, unknown>>; [k: string]: unknown };
}

export type IstioObject = KDestinationRule | KVirtualService;

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

/** A trafficPolicy (the DestinationRule's or a subset's) as sockmesh's policy fields. */
function trafficPolicy(tp: Record<string, unknown>, at: string, ignored: string[]): Record<string, unknown> {
  const policy: Record<string, unknown> = {};
  ignored.push(...others(tp, ['loadBalancer', 'connectionPool', 'outlierDetection'], at));
  const lb = tp.loadBalancer;
  if (isObject(lb)) {
    ignored.push(...others(lb, ['simple', 'consistentHash'], `${at}.loadBalancer`));
    if (lb.simple !== undefined) {
      const mapped = typeof lb.simple === 'string' && Object.hasOwn(SIMPLE, lb.simple) ? SIMPLE[lb.simple] : undefined;
      if (mapped) policy.loadBalancer = mapped;
      // PASSTHROUGH (no balancing) and unknown values: named for validation to refuse.
      else if (mapped === undefined) policy.loadBalancer = lb.simple;
    }
    if (isObject(lb.consistentHash)) {
      const ch = lb.consistentHash;
      ignored.push(...others(ch, ['httpHeaderName', 'httpCookie', 'useSourceIp'], `${at}.loadBalancer.consistentHash`));
      if (isObject(ch.httpCookie)) ignored.push(...others(ch.httpCookie, ['name'], `${at}.loadBalancer.consistentHash.httpCookie`));
      const out: Record<string, unknown> = {};
      for (const k of ['httpHeaderName', 'httpCookie', 'useSourceIp']) if (ch[k] !== undefined) out[k] = k === 'httpCookie' && isObject(ch[k]) ? { name: (ch[k] as Record<string, unknown>).name } : ch[k];
      policy.consistentHash = out;
    }
  }
  const cp = tp.connectionPool;
  if (isObject(cp)) {
    ignored.push(...others(cp, ['tcp'], `${at}.connectionPool`));
    if (isObject(cp.tcp)) {
      ignored.push(...others(cp.tcp, ['maxConnections'], `${at}.connectionPool.tcp`));
      if (cp.tcp.maxConnections !== undefined) policy.connectionPool = { tcp: { maxConnections: cp.tcp.maxConnections } };
    }
  }
  const od = tp.outlierDetection;
  if (isObject(od)) {
    ignored.push(...others(od, ['consecutive5xxErrors', 'interval', 'baseEjectionTime'], `${at}.outlierDetection`));
    const out: Record<string, unknown> = {};
    if (od.consecutive5xxErrors !== undefined) out.consecutive5xxErrors = od.consecutive5xxErrors;
    if (od.interval !== undefined) out.interval = istioDuration(od.interval);
    if (od.baseEjectionTime !== undefined) out.baseEjectionTime = istioDuration(od.baseEjectionTime);
    // Istio: consecutive5xxErrors 0 turns 5xx ejection off.
    if (out.consecutive5xxErrors !== 0) policy.outlierDetection = out;
  }
  return policy;
}

/** A DestinationRule's trafficPolicy and subsets as sockmesh's policy fields. */
export function destinationRulePolicy(dr: KDestinationRule): PolicyFragment {
  const ignored = others(dr.spec, ['host', 'trafficPolicy', 'subsets', 'exportTo'], 'spec');
  const policy = isObject(dr.spec.trafficPolicy) ? trafficPolicy(dr.spec.trafficPolicy, 'spec.trafficPolicy', ignored) : {};
  if (Array.isArray(dr.spec.subsets)) {
    policy.subsets = dr.spec.subsets.map((s, i) => {
      if (!isObject(s)) return s;
      const at = `spec.subsets[${i}]`;
      ignored.push(...others(s, ['name', 'labels', 'trafficPolicy'], at));
      const tp = isObject(s.trafficPolicy) ? trafficPolicy(s.trafficPolicy, `${at}.trafficPolicy`, ignored) : undefined;
      return { name: s.name, labels: s.labels ?? {}, ...(tp && Object.keys(tp).length ? { trafficPolicy: tp } : {}) };
    });
  }
  return { policy, ignored };
}

/** What a route's destinations may be: the Service a host names, by the name sockmesh knows it. */
export type HostResolver = (host: unknown, namespace: string) => string | undefined;

/** Match conditions sockmesh checks; any other key in a match block makes it one sockmesh cannot. */
const MATCH_KEYS = ['name', 'uri', 'headers', 'method', 'port'];
const ROUTE_KEYS = ['name', 'match', 'route', 'timeout', 'retries', 'headers', 'rewrite', 'fault'];
/** A route with one of these answers itself or goes elsewhere: sockmesh cannot do what it says. */
const ROUTE_ACTIONS = ['redirect', 'directResponse', 'delegate'];

function retries(r: Record<string, unknown>, at: string, ignored: string[]): Record<string, unknown> {
  ignored.push(...others(r, ['attempts', 'perTryTimeout', 'retryOn'], at));
  const out: Record<string, unknown> = { attempts: r.attempts ?? 0 };
  if (r.perTryTimeout !== undefined && !isZero(r.perTryTimeout)) out.perTryTimeout = istioDuration(r.perTryTimeout);
  if (typeof r.retryOn === 'string') {
    const conds = r.retryOn.split(',').map((s) => s.trim()).filter(Boolean);
    const known = (c: string) => (RETRY_ON as readonly string[]).includes(c);
    const dropped = conds.filter((c) => !known(c));
    if (dropped.length) ignored.push(`${at}.retryOn: ${dropped.join(',')}${conds.some(known) ? '' : ' (retries on connect-failure only)'}`);
    // None sockmesh can act on: connection failures only, never the default conditions nobody asked for.
    out.retryOn = conds.some(known) ? conds.filter(known).join(',') : 'connect-failure';
  } else if (r.retryOn !== undefined) out.retryOn = r.retryOn;
  return out;
}

/** Istio's "0s": no timeout at all. */
function isZero(v: unknown): boolean {
  return typeof v === 'string' && /^0+(\.0+)?(h|m|s|ms|us|µs|ns)?$/.test(v);
}

/** Istio's fault (delay.fixedDelay / percentage, abort.httpStatus / percentage; `percent` is the old integer form). */
function fault(f: Record<string, unknown>, at: string, ignored: string[]): Record<string, unknown> {
  ignored.push(...others(f, ['delay', 'abort'], at));
  const out: Record<string, unknown> = {};
  const pct = (o: Record<string, unknown>) => (o.percentage !== undefined ? o.percentage : o.percent !== undefined ? { value: o.percent } : undefined);
  if (isObject(f.delay)) {
    ignored.push(...others(f.delay, ['fixedDelay', 'percentage', 'percent'], `${at}.delay`));
    const p = pct(f.delay);
    out.delay = { fixedDelay: istioDuration(f.delay.fixedDelay), ...(p !== undefined ? { percentage: p } : {}) };
  }
  if (isObject(f.abort)) {
    ignored.push(...others(f.abort, ['httpStatus', 'percentage', 'percent'], `${at}.abort`));
    const p = pct(f.abort);
    out.abort = { httpStatus: f.abort.httpStatus, ...(p !== undefined ? { percentage: p } : {}) };
  }
  return out;
}

/** One http route in sockmesh's form, or why sockmesh cannot enforce it (it is then left out). */
function route(r: Record<string, unknown>, at: string, ns: string, resolve: HostResolver, ignored: string[]): Record<string, unknown> | string {
  const action = ROUTE_ACTIONS.find((k) => r[k] !== undefined);
  if (action) return `${action} (sockmesh routes to destinations only)`;
  ignored.push(...others(r, [...ROUTE_KEYS, 'mirror', 'mirrorPercentage', 'mirrors', 'corsPolicy'], at));
  for (const k of ['mirror', 'mirrorPercentage', 'mirrors', 'corsPolicy']) if (r[k] !== undefined) ignored.push(`${at}.${k}`);
  const out: Record<string, unknown> = {};
  // A name sockmesh cannot write into HAProxy's configuration: the route keeps its place, numbered.
  if (typeof r.name === 'string' && ROUTE_NAME_RE.test(r.name)) out.name = r.name;
  else if (r.name !== undefined) ignored.push(`${at}.name (${JSON.stringify(String(r.name).slice(0, 40))}: letters, digits, "-", "_", "." only; the route is numbered)`);
  if (Array.isArray(r.match)) {
    const matches: unknown[] = [];
    for (const [j, m] of r.match.entries()) {
      if (!isObject(m)) { matches.push(m); continue; }
      const extra = Object.keys(m).filter((k) => !MATCH_KEYS.includes(k));
      // A match block with a condition sockmesh cannot check would match more than it says: left out.
      if (extra.length) { ignored.push(`${at}.match[${j}] (${extra.join(', ')}: the block is left out)`); continue; }
      const { name: _n, ...rest } = m;
      matches.push(rest);
    }
    if (r.match.length && !matches.length) return 'no match block sockmesh can check';
    out.match = matches;
  }
  if (r.route !== undefined) {
    const dests = Array.isArray(r.route) ? r.route : [];
    const list: unknown[] = [];
    for (const [j, d] of dests.entries()) {
      if (!isObject(d)) { list.push(d); continue; }
      ignored.push(...others(d, ['destination', 'weight', 'headers'], `${at}.route[${j}]`));
      const dest = isObject(d.destination) ? d.destination : {};
      ignored.push(...others(dest, ['host', 'subset', 'port'], `${at}.route[${j}].destination`));
      const host = resolve(dest.host, ns);
      if (host === undefined) return `route[${j}].destination.host ${JSON.stringify(dest.host)} is not a Service sockmesh knows`;
      if (d.headers !== undefined) ignored.push(`${at}.route[${j}].headers`);
      const port = isObject(dest.port) && dest.port.number !== undefined ? { port: { number: dest.port.number } } : {};
      list.push({ destination: { host, ...(dest.subset !== undefined ? { subset: dest.subset } : {}), ...port }, ...(d.weight !== undefined ? { weight: d.weight } : {}) });
    }
    out.route = list;
  }
  if (r.timeout !== undefined && !isZero(r.timeout)) out.timeout = istioDuration(r.timeout);
  if (isObject(r.retries)) out.retries = retries(r.retries, `${at}.retries`, ignored);
  if (isObject(r.headers)) {
    ignored.push(...others(r.headers, ['request', 'response'], `${at}.headers`));
    out.headers = r.headers;
  }
  if (isObject(r.rewrite)) {
    ignored.push(...others(r.rewrite, ['uri'], `${at}.rewrite`));
    if (r.rewrite.uri !== undefined) out.rewrite = { uri: r.rewrite.uri };
  }
  if (isObject(r.fault)) out.fault = fault(r.fault, `${at}.fault`, ignored);
  return out;
}

/** The route-less form of a route: one catch-all route to the Service itself with at most timeout and retries (today's policy fields). */
function routeless(r: Record<string, unknown>, own: string): boolean {
  const dests = Array.isArray(r.route) ? r.route : [];
  const d = dests[0] as Record<string, unknown> | undefined;
  const dest = d?.destination as Record<string, unknown> | undefined;
  return !(Array.isArray(r.match) && r.match.length) && dests.length <= 1 && (!dest || (dest.host === own && dest.subset === undefined))
    && Object.keys(r).every((k) => ['name', 'match', 'route', 'timeout', 'retries'].includes(k));
}

/**
 * A VirtualService's policy for one of its hosts (`own`): its http routes, in order, with
 * destinations as the Services sockmesh knows (`resolve`). One catch-all route to that Service
 * itself becomes the route-less policy (timeout, retries). Routes sockmesh cannot enforce are left
 * out and listed.
 */
export function virtualServicePolicy(vs: KVirtualService, resolve: HostResolver = hostService, own = resolve(vs.spec.hosts?.[0], vs.metadata.namespace ?? 'default')): PolicyFragment {
  const policy: Record<string, unknown> = {};
  const ignored = others(vs.spec, ['hosts', 'http', 'exportTo', 'gateways'], 'spec');
  if (Array.isArray(vs.spec.gateways) && vs.spec.gateways.some((g) => g !== 'mesh')) ignored.push('spec.gateways (sockmesh applies the routes to the mesh\'s sidecars only)');
  const ns = vs.metadata.namespace ?? 'default';
  const routes: Record<string, unknown>[] = [];
  (Array.isArray(vs.spec.http) ? vs.spec.http : []).forEach((r, i) => {
    if (!isObject(r)) return;
    const out = route(r, `spec.http[${i}]`, ns, resolve, ignored);
    if (typeof out === 'string') ignored.push(`spec.http[${i}] (${out}: the route is left out)`);
    else routes.push(out);
  });
  if (routes.length === 1 && own !== undefined && routeless(routes[0], own)) {
    const r = routes[0];
    if (r.timeout !== undefined) policy.timeout = r.timeout;
    if (r.retries !== undefined) policy.retries = r.retries;
  } else if (routes.length) policy.routes = routes;
  return { policy, ignored };
}
