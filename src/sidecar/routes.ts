// L7 routing in HAProxy (pure: config in, configuration lines out): a service with VirtualService
// routes, or one spoken over HTTP/2, is switched to HTTP in the outbound frontend itself
// (`tcp-request content switch-mode http`), where every request of a connection is matched on its
// own: the first route whose match holds names itself in txn.sm_rt, its faults, header changes
// and rewrite apply, a weighted pick chooses one of its destinations, and `use_backend` takes the
// backend of that destination: the destination service's endpoints, or its subset's, with the
// subset's traffic policy and the route's timeout and retries. Routes that send to the same
// (service, subset, port, timeout, retries) share one backend, so an endpoint has one health check
// and one connection limit however many routes reach it. The weights are process variables, so a
// new split goes through the runtime API without a reload. What the access log and the span need
// is recorded here too (src/sidecar/http-vars.ts), so a request the frontend answers itself (no
// route: 404; a fault's abort) is logged and counted like any other.
import { selects } from '../config/mesh-policy.js';
import type { HttpMatch, HttpRoute, MeshConfig, RouteDestination, ServiceConfig, ServicePolicy, StringMatch, TracingConfig } from '../config/model.js';
import { HTTP_VARS, traceLines } from './http-vars.js';

/** One backend the outbound side renders: its name, the service whose endpoints (or subset's) it holds, and the policy it runs with. */
export interface OutboundBackend {
  name: string;
  /** The service as this backend serves it: endpoints filtered to the subset, policy merged. */
  service: ServiceConfig;
  subset?: string;
  /** No endpoint list: the connection's original destination (a service without endpoints). */
  original: boolean;
  /** Its requests come from the frontend's routing, which records them (no HTTP_VARS of its own). */
  routed: boolean;
}

/** HAProxy single-quoted text (nothing is interpreted inside; a quote is closed, escaped and reopened). */
export function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A log-format string (set-header values, replace-path's replacement): % written as %%; empty as an empty sample (HAProxy takes no empty argument). */
function lf(s: string): string {
  return s === '' ? `'%[str()]'` : q(s.replace(/%/g, '%%'));
}

function reEscape(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

/** Whether the outbound frontend itself proxies this service's requests (routes, or HTTP/2). */
export function routedInFrontend(s: ServiceConfig): boolean {
  return !!s.policy?.routes?.length || s.protocol === 'http2' || s.protocol === 'grpc';
}

export function isH2(s: Pick<ServiceConfig, 'protocol'>): boolean {
  return s.protocol === 'http2' || s.protocol === 'grpc';
}

/** The process variable holding the cumulative share (per mille) up to destination d of route r of the service at index si. */
export function weightVar(si: number, r: number, d: number): string {
  return `proc.sm_w_${si}_${r}_${d}`;
}

/** Cumulative shares per mille of a route's destinations (Istio's relative weights). */
function thresholds(r: HttpRoute): number[] {
  const total = r.route.reduce((s, d) => s + d.weight, 0) || 1;
  let sum = 0;
  return r.route.map((d) => {
    sum += d.weight;
    return Math.round((sum * 1000) / total);
  });
}

/**
 * A destination's backend service: the target's endpoints (a subset's), at the destination's port
 * (its `port`, else the request's port when the target has it, else the target's first), the
 * subset's balancing, the route's timeout and retries, spoken as the routing service speaks.
 */
function destinationService(from: ServiceConfig, target: ServiceConfig, d: RouteDestination, route: HttpRoute): { service: ServiceConfig; original: boolean } {
  const base = target.policy ?? {};
  const subset = d.subset === undefined ? undefined : base.subsets?.find((x) => x.name === d.subset);
  const tp = subset?.trafficPolicy ?? {};
  const balancing: Pick<ServicePolicy, 'loadBalancer' | 'consistentHash'> = tp.loadBalancer || tp.consistentHash
    ? { ...(tp.loadBalancer ? { loadBalancer: tp.loadBalancer } : {}), ...(tp.consistentHash ? { consistentHash: tp.consistentHash } : {}) }
    : { ...(base.loadBalancer ? { loadBalancer: base.loadBalancer } : {}), ...(base.consistentHash ? { consistentHash: base.consistentHash } : {}) };
  const od = tp.outlierDetection ?? base.outlierDetection;
  const cp = tp.connectionPool ?? base.connectionPool;
  const policy: ServicePolicy = {
    ...balancing, ...(od ? { outlierDetection: od } : {}), ...(cp ? { connectionPool: cp } : {}),
    ...(route.timeoutMs !== undefined ? { timeoutMs: route.timeoutMs } : {}), ...(route.retries ? { retries: route.retries } : {}),
  };
  const keepsPort = d.port === undefined && (target === from || from.ports.every((p) => target.ports.includes(p)));
  const port = keepsPort ? 0 : d.port ?? target.ports[0];
  // A subset's labels select its endpoints (no labels: every endpoint); a subset the service does
  // not define has none (Istio: 503, no healthy upstream).
  const listed = d.subset === undefined ? target.endpoints : subset ? (target.endpoints ?? []).filter((e) => selects(subset.labels, e.labels ?? {})) : [];
  let endpoints = listed?.map((e) => (e.port || !port ? e : { ...e, port }));
  let original = false;
  if (!target.endpoints?.length && d.subset === undefined) {
    // A service the state lists no endpoints for: the connection's own destination when it is the
    // routing service at its own port; else the target's address (the sidecar is never captured).
    if (target === from && keepsPort) original = true;
    else endpoints = target.addresses.length ? [{ address: target.addresses[0], port: port || target.ports[0], weight: 1 }] : [];
  }
  return { service: { ...target, protocol: from.protocol, policy, ...(endpoints ? { endpoints } : {}) }, original };
}

/** A service's routes and the backends they send to (one per distinct destination), with each (route, destination)'s backend. */
export interface RoutePlan {
  backends: OutboundBackend[];
  /** backendOf[route][destination]: the backend's name. */
  backendOf: string[][];
}

export function routePlan(cfg: MeshConfig, s: ServiceConfig): RoutePlan {
  const routes = s.policy?.routes;
  if (!routes?.length) return { backends: [{ name: `out_${s.name}`, service: s, original: !s.endpoints?.length, routed: routedInFrontend(s) }], backendOf: [] };
  const byName = new Map(cfg.services.map((x) => [x.name, x]));
  const byKey = new Map<string, OutboundBackend>();
  const backendOf = routes.map((r) => r.route.map((d) => {
    const key = JSON.stringify([d.host, d.subset ?? null, d.port ?? null, r.timeoutMs ?? null, r.retries ?? null]);
    let b = byKey.get(key);
    if (!b) {
      const target = byName.get(d.host);
      // A destination the state does not have (the Kubernetes source: a Service not there yet): no server, HAProxy answers 503.
      const dest = target ? destinationService(s, target, d, r) : { service: { ...s, endpoints: [], policy: {} }, original: false };
      b = { name: `out_${s.name}:${byKey.size}`, service: dest.service, ...(d.subset ? { subset: d.subset } : {}), original: dest.original, routed: true };
      byKey.set(key, b);
    }
    return b.name;
  }));
  return { backends: [...byKey.values()], backendOf };
}

/** Every outbound backend of a service: the route-less one, or one per distinct route destination. */
export function outboundBackends(cfg: MeshConfig, s: ServiceConfig): OutboundBackend[] {
  return routePlan(cfg, s).backends;
}

function stringAcl(fetch: string, m: StringMatch): string {
  if ('exact' in m) return `{ ${fetch} -m str ${q(m.exact)} }`;
  if ('prefix' in m) return m.prefix === '' ? `{ ${fetch} -m found }` : `{ ${fetch} -m beg ${q(m.prefix)} }`;
  // Istio's regexes match the whole value (RE2 full match); PCRE's find anywhere.
  return `{ ${fetch} -m reg ${q(`^(?:${m.regex})$`)} }`;
}

/** The conditions of one match block (all must hold), as HAProxy ACLs. A header is its whole value (req.fhdr: commas included). */
function matchAcls(m: HttpMatch): string[] {
  const out: string[] = [];
  if (m.uri) out.push(stringAcl('path', m.uri));
  if (m.method) out.push(stringAcl('method', m.method));
  if (m.port !== undefined) out.push(`{ dst_port ${m.port} }`);
  for (const [h, v] of Object.entries(m.headers ?? {})) out.push(stringAcl(`req.fhdr(${h})`, v));
  return out;
}

/** `{ rand(1000000) -m int lt N }` for a percentage (nothing for 100 %). */
function chance(percent: number): string {
  if (percent >= 100) return '';
  return ` { rand(1000000) -m int lt ${Math.round(percent * 10_000)} }`;
}

export interface FrontendRouting {
  /** Global lines: the weights' process variables. */
  global: string[];
  /** Outbound frontend lines, before its use_backend rules. */
  frontend: string[];
  /** Whether a route delays requests (the Lua action sm_delay must be loaded). */
  delays: boolean;
}

/** One route's rules: its faults, header changes, rewrite and the pick of a destination. */
function routeRules(si: number, ri: number, r: HttpRoute, backends: string[], out: FrontendRouting): void {
  const id = `${si}.${ri}.`;
  const on = `{ var(txn.sm_rt) -m beg ${id} }`;
  const f = out.frontend;
  f.push(`  http-request set-var(txn.sm_route) str(${r.name}) if ${on}`);
  if (r.fault?.delay && r.fault.delay.percent > 0) {
    out.delays = true;
    f.push(`  http-request lua.sm_delay ${r.fault.delay.fixedDelayMs} if ${on}${chance(r.fault.delay.percent)}`);
  }
  if (r.fault?.abort && r.fault.abort.percent > 0) f.push(`  http-request return status ${r.fault.abort.httpStatus} if ${on}${chance(r.fault.abort.percent)}`);
  const req = r.headers?.request;
  for (const [h, v] of Object.entries(req?.set ?? {})) f.push(`  http-request set-header ${h} ${lf(v)} if ${on}`);
  for (const [h, v] of Object.entries(req?.add ?? {})) f.push(`  http-request add-header ${h} ${lf(v)} if ${on}`);
  for (const h of req?.remove ?? []) f.push(`  http-request del-header ${h} if ${on}`);
  const res = r.headers?.response;
  for (const [h, v] of Object.entries(res?.set ?? {})) f.push(`  http-response set-header ${h} ${lf(v)} if ${on}`);
  for (const [h, v] of Object.entries(res?.add ?? {})) f.push(`  http-response add-header ${h} ${lf(v)} if ${on}`);
  for (const h of res?.remove ?? []) f.push(`  http-response del-header ${h} if ${on}`);
  if (r.rewriteUri !== undefined) {
    // Istio: a prefix match has its prefix replaced; an exact or regex match, the whole path; a
    // route without a uri match, the leading "/".
    const blocks = r.match.length ? r.match.map((m, mi) => ({ m, tag: `${id}${mi}` })) : [{ m: {} as HttpMatch, tag: `${id}-` }];
    for (const { m, tag } of blocks) {
      const at = `{ var(txn.sm_rt) -m str ${tag} }`;
      if (m.uri && ('exact' in m.uri || 'regex' in m.uri)) f.push(`  http-request set-path ${lf(r.rewriteUri)} if ${at}`);
      else {
        const prefix = m.uri && 'prefix' in m.uri ? m.uri.prefix : '/';
        f.push(`  http-request replace-path ${q(`^${reEscape(prefix)}(.*)`)} ${q(`${r.rewriteUri.replace(/%/g, '%%').replace(/\\/g, '\\\\')}\\1`)} if ${at}`);
      }
    }
  }
  if (r.route.length === 1) {
    f.push(`  http-request set-var(txn.sm_be) str(${backends[0]}) if ${on}`);
    return;
  }
  f.push(`  http-request set-var(txn.sm_pick) rand(1000) if ${on}`);
  const cum = thresholds(r);
  r.route.forEach((_d, di) => {
    out.global.push(`  set-var ${weightVar(si, ri, di)} int(${cum[di]})`);
    const last = di === r.route.length - 1;
    f.push(`  http-request set-var(txn.sm_be) str(${backends[di]}) if ${on} !{ var(txn.sm_be) -m found }${last ? '' : ` { var(txn.sm_pick),sub(${weightVar(si, ri, di)}) -m int lt 0 }`}`);
  });
}

/**
 * The outbound frontend's rules for the services it proxies per request. `planOf` is each
 * service's route plan (the one its backends are rendered from); `svcAcl` the condition that a
 * connection is to service `s` (its addresses and ports).
 */
export function frontendRouting(services: ServiceConfig[], planOf: (s: ServiceConfig) => RoutePlan, svcAcl: (s: ServiceConfig) => string, tracing: TracingConfig | undefined): FrontendRouting {
  const out: FrontendRouting = { global: [], frontend: [], delays: false };
  const routed = services.map((s, si) => ({ s, si })).filter(({ s }) => routedInFrontend(s));
  if (!routed.length) return out;
  for (const { s } of routed) out.frontend.push(`  tcp-request content switch-mode http${isH2(s) ? ' proto h2' : ''} if ${svcAcl(s)}`);
  // Only the streams switched above are HTTP: these rules run for them alone.
  out.frontend.push(...traceLines(tracing), ...HTTP_VARS);
  for (const { s, si } of routed) {
    const svc = `{ var(txn.sm_svc) -m str ${s.name} }`;
    out.frontend.push(`  # service ${s.name}${s.policy?.routes?.length ? `: ${s.policy.routes.length} route(s)` : ''}`,
      `  http-request set-var(txn.sm_svc) str(${s.name}) if ${svcAcl(s)}`);
    const routes = s.policy?.routes ?? [];
    if (!routes.length) {
      out.frontend.push(`  http-request set-var(txn.sm_be) str(out_${s.name}) if ${svc}`);
      continue;
    }
    const unset = '!{ var(txn.sm_rt) -m found }';
    routes.forEach((r, ri) => {
      const id = `${si}.${ri}.`;
      const conds = r.match.length ? r.match.map((m, mi) => ({ acls: matchAcls(m), tag: `${id}${mi}` })) : [{ acls: [], tag: `${id}-` }];
      // The match first: most lines fail there, at one condition (HAProxy stops at the first false).
      for (const c of conds) out.frontend.push(`  http-request set-var(txn.sm_rt) str(${c.tag}) if ${[...c.acls, svc, unset].join(' ')}`);
    });
    // No route took the request: Istio answers 404 (no route).
    out.frontend.push(`  http-request return status 404 if ${svc} ${unset}`);
    const plan = planOf(s);
    routes.forEach((r, ri) => routeRules(si, ri, r, plan.backendOf[ri], out));
  }
  out.frontend.push('  use_backend %[var(txn.sm_be)] if { var(txn.sm_be) -m found }');
  return out;
}

/** The runtime API commands that give the routes of `after` their weights (same routes as `before`, other weights). */
export function weightCommands(before: ServiceConfig[], after: ServiceConfig[]): string[] {
  const cmds: string[] = [];
  after.forEach((s, si) => {
    if (!routedInFrontend(s)) return;
    s.policy?.routes?.forEach((r, ri) => {
      const old = before[si]?.policy?.routes?.[ri];
      if (r.route.length < 2 || !old) return;
      const was = thresholds(old);
      thresholds(r).forEach((cum, di) => {
        if (cum !== was[di]) cmds.push(`experimental-mode on; set var ${weightVar(si, ri, di)} int(${cum})`);
      });
    });
  });
  return cmds;
}

/** The Lua the routes need: a fault's delay (HAProxy has no sleep of its own for a request). */
export const TRAFFIC_LUA = `-- sockmesh: fault injection's delay (rendered; do not edit)
core.register_action("sm_delay", { "http-req" }, function(txn, ms) core.msleep(tonumber(ms)) end, 1)
`;
