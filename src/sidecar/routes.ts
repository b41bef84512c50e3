// L7 routing in HAProxy (pure: config in, configuration lines out): a service with VirtualService
// routes, or one spoken over HTTP/2, is switched to HTTP in the outbound frontend itself
// (`tcp-request content switch-mode http`), where every request of a connection is matched on its
// own: the first route whose match holds names itself in txn.sm_rt, its faults, header changes
// and rewrite apply, a weighted pick chooses one of its destinations, and `use_backend` takes the
// backend of that (route, destination): the destination service's endpoints, or its subset's, with
// the subset's traffic policy and the route's timeout and retries. The weights are process
// variables, so a new split goes through the runtime API without a reload.
import { selects } from '../config/mesh-policy.js';
import type { HttpMatch, HttpRoute, MeshConfig, ServiceConfig, ServicePolicy, StringMatch } from '../config/model.js';

/** One backend the outbound side renders: its name, the service whose endpoints (or subset's) it holds, and the policy it runs with. */
export interface OutboundBackend {
  name: string;
  /** The service as this backend serves it: endpoints filtered to the subset, policy merged. */
  service: ServiceConfig;
  route?: string;
  subset?: string;
  /** No endpoint list: the connection's original destination (a service without endpoints). */
  original: boolean;
}

/** HAProxy single-quoted text (nothing is interpreted inside; a quote is closed, escaped and reopened). */
export function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A log-format string (set-header values, replace-path's replacement): % written as %%. */
function lf(s: string): string {
  return q(s.replace(/%/g, '%%'));
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

/** A route's backend for its destination d (the route-less service's is out_<name>). */
export function routeBackendName(service: string, r: number, d: number): string {
  return `out_${service}:${r}:${d}`;
}

/** The process variable holding the cumulative weight up to destination d of route r of the service at index si. */
export function weightVar(si: number, r: number, d: number): string {
  return `proc.sm_w_${si}_${r}_${d}`;
}

/** A destination's backend service: the target's endpoints (a subset's), the subset's balancing, the route's timeout and retries. */
function destinationService(target: ServiceConfig, subsetName: string | undefined, route: HttpRoute): ServiceConfig {
  const base = target.policy ?? {};
  const subset = subsetName === undefined ? undefined : base.subsets?.find((x) => x.name === subsetName);
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
  // A subset's labels select its endpoints (no labels: every endpoint); a subset the service does
  // not define has none (Istio: 503, no healthy upstream).
  const endpoints = subsetName === undefined ? target.endpoints : subset ? (target.endpoints ?? []).filter((e) => selects(subset.labels, e.labels ?? {})) : [];
  return { ...target, policy, ...(endpoints ? { endpoints } : {}) };
}

/** Every outbound backend of a service: the route-less one, or one per (route, destination). */
export function outboundBackends(cfg: MeshConfig, s: ServiceConfig): OutboundBackend[] {
  const routes = s.policy?.routes;
  if (!routes?.length) return [{ name: `out_${s.name}`, service: s, original: !s.endpoints?.length }];
  const byName = new Map(cfg.services.map((x) => [x.name, x]));
  return routes.flatMap((r, ri) => r.route.map((d, di) => {
    const target = byName.get(d.host);
    // A destination the state does not have (the Kubernetes source: a Service not there yet): no server, HAProxy answers 503.
    const svc = target ? destinationService(target, d.subset, r) : { ...s, endpoints: [], policy: {} };
    const b: OutboundBackend = { name: routeBackendName(s.name, ri, di), service: svc, route: r.name, ...(d.subset ? { subset: d.subset } : {}), original: false };
    if (target && !target.endpoints?.length && d.subset === undefined) {
      // A service the state lists no endpoints for: the connection's own destination when it is
      // this service; another service's address (the sidecar's connections are never captured).
      if (target === s) b.original = true;
      else if (target.addresses.length) b.service = { ...svc, endpoints: [{ address: target.addresses[0], port: target.ports[0], weight: 1 }] };
    }
    return b;
  }));
}

function stringAcl(fetch: string, m: StringMatch): string {
  if ('exact' in m) return `{ ${fetch} -m str ${q(m.exact)} }`;
  if ('prefix' in m) return m.prefix === '' ? `{ ${fetch} -m found }` : `{ ${fetch} -m beg ${q(m.prefix)} }`;
  // Istio's regexes match the whole value (RE2 full match); PCRE's find anywhere.
  return `{ ${fetch} -m reg ${q(`^(?:${m.regex})$`)} }`;
}

/** The conditions of one match block (all must hold), as HAProxy ACLs. */
function matchAcls(m: HttpMatch): string[] {
  const out: string[] = [];
  if (m.uri) out.push(stringAcl('path', m.uri));
  if (m.method) out.push(stringAcl('method', m.method));
  if (m.port !== undefined) out.push(`{ dst_port ${m.port} }`);
  for (const [h, v] of Object.entries(m.headers ?? {})) out.push(stringAcl(`req.hdr(${h})`, v));
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

/**
 * The outbound frontend's rules for the services it proxies per request. `svcAcl` is the condition
 * that a connection is to service `s` (its addresses and ports).
 */
export function frontendRouting(services: ServiceConfig[], svcAcl: (s: ServiceConfig) => string): FrontendRouting {
  const out: FrontendRouting = { global: [], frontend: [], delays: false };
  services.forEach((s, si) => {
    if (!routedInFrontend(s)) return;
    const svc = svcAcl(s);
    out.frontend.push(`  # service ${s.name}${s.policy?.routes?.length ? `: ${s.policy.routes.length} route(s)` : ''}`,
      `  tcp-request content switch-mode http${isH2(s) ? ' proto h2' : ''} if ${svc}`);
    const routes = s.policy?.routes ?? [];
    if (!routes.length) {
      out.frontend.push(`  http-request set-var(txn.sm_be) str(out_${s.name}) if ${svc} !{ var(txn.sm_be) -m found }`);
      return;
    }
    const unset = '!{ var(txn.sm_rt) -m found }';
    routes.forEach((r, ri) => {
      const id = `${si}.${ri}.`;
      const conds = r.match.length ? r.match.map((m, mi) => ({ acls: matchAcls(m), tag: `${id}${mi}` })) : [{ acls: [], tag: `${id}-` }];
      for (const c of conds) out.frontend.push(`  http-request set-var(txn.sm_rt) str(${c.tag}) if ${svc} ${unset}${c.acls.length ? ` ${c.acls.join(' ')}` : ''}`);
    });
    // No route took the request: Istio answers 404 (no route).
    out.frontend.push(`  http-request return status 404 if ${svc} ${unset}`);
    routes.forEach((r, ri) => {
      const id = `${si}.${ri}.`;
      const on = `{ var(txn.sm_rt) -m beg ${id} }`;
      out.frontend.push(`  http-request set-var(txn.sm_route) str(${r.name}) if ${on}`);
      if (r.fault?.delay) {
        out.delays = true;
        out.frontend.push(`  http-request lua.sm_delay ${r.fault.delay.fixedDelayMs} if ${on}${chance(r.fault.delay.percent)}`);
      }
      if (r.fault?.abort) out.frontend.push(`  http-request return status ${r.fault.abort.httpStatus} if ${on}${chance(r.fault.abort.percent)}`);
      const req = r.headers?.request;
      for (const [h, v] of Object.entries(req?.set ?? {})) out.frontend.push(`  http-request set-header ${h} ${lf(v)} if ${on}`);
      for (const [h, v] of Object.entries(req?.add ?? {})) out.frontend.push(`  http-request add-header ${h} ${lf(v)} if ${on}`);
      for (const h of req?.remove ?? []) out.frontend.push(`  http-request del-header ${h} if ${on}`);
      const res = r.headers?.response;
      for (const [h, v] of Object.entries(res?.set ?? {})) out.frontend.push(`  http-response set-header ${h} ${lf(v)} if ${on}`);
      for (const [h, v] of Object.entries(res?.add ?? {})) out.frontend.push(`  http-response add-header ${h} ${lf(v)} if ${on}`);
      for (const h of res?.remove ?? []) out.frontend.push(`  http-response del-header ${h} if ${on}`);
      if (r.rewriteUri !== undefined) {
        // Istio: a prefix match has its prefix replaced; an exact or regex match, the whole path;
        // a route without a uri match, the leading "/".
        const blocks = r.match.length ? r.match.map((m, mi) => ({ m, tag: `${id}${mi}` })) : [{ m: {} as HttpMatch, tag: `${id}-` }];
        for (const { m, tag } of blocks) {
          const at = `{ var(txn.sm_rt) -m str ${tag} }`;
          if (m.uri && ('exact' in m.uri || 'regex' in m.uri)) out.frontend.push(`  http-request set-path ${lf(r.rewriteUri)} if ${at}`);
          else {
            const prefix = m.uri && 'prefix' in m.uri ? m.uri.prefix : '/';
            out.frontend.push(`  http-request replace-path ${q(`^${reEscape(prefix)}(.*)`)} ${q(`${r.rewriteUri.replace(/%/g, '%%').replace(/\\/g, '\\\\')}\\1`)} if ${at}`);
          }
        }
      }
      if (r.route.length === 1) out.frontend.push(`  http-request set-var(txn.sm_be) str(${routeBackendName(s.name, ri, 0)}) if ${on}`);
      else {
        out.frontend.push(`  http-request set-var(txn.sm_pick) rand(100) if ${on}`);
        let sum = 0;
        r.route.forEach((d, di) => {
          sum += d.weight;
          out.global.push(`  set-var ${weightVar(si, ri, di)} int(${sum})`);
          const last = di === r.route.length - 1;
          out.frontend.push(`  http-request set-var(txn.sm_be) str(${routeBackendName(s.name, ri, di)}) if ${on} !{ var(txn.sm_be) -m found }${last ? '' : ` { var(txn.sm_pick),sub(${weightVar(si, ri, di)}) -m int lt 0 }`}`);
        });
      }
    });
  });
  if (out.frontend.length) out.frontend.push('  use_backend %[var(txn.sm_be)] if { var(txn.sm_be) -m found }');
  return out;
}

/** The runtime API commands that give the routes of `after` their weights (same routes as `before`, other weights). */
export function weightCommands(before: ServiceConfig[], after: ServiceConfig[]): string[] {
  const cmds: string[] = [];
  after.forEach((s, si) => {
    if (!routedInFrontend(s)) return;
    s.policy?.routes?.forEach((r, ri) => {
      if (r.route.length < 2) return;
      const old = before[si]?.policy?.routes?.[ri];
      let sum = 0;
      let oldSum = 0;
      r.route.forEach((d, di) => {
        sum += d.weight;
        oldSum += old?.route[di]?.weight ?? -1;
        if (sum !== oldSum) cmds.push(`experimental-mode on; set var ${weightVar(si, ri, di)} int(${sum})`);
      });
    });
  });
  return cmds;
}

/** The Lua the routes need: a fault's delay (HAProxy has no sleep of its own for a request). */
export const TRAFFIC_LUA = `-- sockmesh: fault injection's delay (rendered; do not edit)
core.register_action("sm_delay", { "http-req" }, function(txn, ms) core.msleep(tonumber(ms)) end, 1)
`;
