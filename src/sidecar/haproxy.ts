// The governance sidecar's data path is HAProxy; this renders its configuration from the mesh
// config (pure: config in, haproxy.cfg text out). The outbound listener routes by the original
// destination (HAProxy's `dst`/`dst_port`, read through SO_ORIGINAL_DST under either capture mode)
// to each service's endpoints with its policy; everything else passes through to where it was
// going. The inbound listener applies the server-side policy (rate limit, access log) and passes
// on to the app from 127.0.0.6. HTTP services get per-request policy, other TCP services
// per-connection balancing and timeouts.
import type { ConsistentHash, Endpoint, LoadBalancer, MeshConfig, ServiceConfig, SidecarConfig, TracingConfig } from '../config/model.js';
import { isHttpService } from '../config/validate/routes.js';
import { HTTP_VARS, traceLines } from './http-vars.js';
import { frontendRouting, isH2, routePlan, routedInFrontend, type OutboundBackend } from './routes.js';
import { endpointTls, httpAuthzLines, inboundSecurityLines, mtlsListener, peerRoutes, tcpAuthzLines, type SidecarSecurity } from './security.js';

export interface RenderOptions {
  sidecar: SidecarConfig;
  /** Directory of the runtime API socket (admin.sock). */
  runDir: string;
  /** The policy version this configuration carries (shown by status). */
  version: string;
  /** Drop to the sidecar uid/gid (when started as root). */
  dropPrivileges: boolean;
  /** The pod's workload security (mTLS, authorization), when the agent serves one. */
  security?: SidecarSecurity;
  /** Refuse every inbound connection (a sidecar following an agent, before its first answer: the pod's mTLS mode is not known yet). */
  inboundClosed?: boolean;
  /** The Lua file of the routes' fault delays (src/sidecar/routes.ts TRAFFIC_LUA), when a route has one. */
  trafficLua?: string;
}

const BALANCE: Record<LoadBalancer, string> = { ROUND_ROBIN: 'roundrobin', LEAST_REQUEST: 'leastconn', RANDOM: 'random' };

/** Istio retryOn conditions as HAProxy retry-on keywords. */
const RETRY_ON: Record<string, string[]> = {
  'connect-failure': ['conn-failure'],
  'refused-stream': ['conn-failure'],
  reset: ['empty-response', 'junk-response'],
  '5xx': ['500', '501', '502', '503', '504'],
  'gateway-error': ['502', '503', '504'],
  'retriable-status-codes': ['503'],
};

/**
 * HAProxy's log line per request (per connection for TCP services): tab-separated fields in
 * ACCESS_LOG_FIELDS order (cheap to split at thousands of requests a second). The listeners are
 * TCP frontends (they route by original destination before knowing the protocol), whose log format
 * may not use HTTP-only variables, so the HTTP fields are variables the HTTP backends set
 * (HTTP_VARS), "-" where there is no HTTP transaction. The sidecar turns each line into the access
 * log's JSON record and its metrics (src/sidecar/accesslog.ts).
 */
export const ACCESS_LOG_FIELDS = ['time', 'listener', 'service', 'method', 'path', 'status', 'duration_ms', 'upstream', 'bytes', 'trace_id', 'termination', 'peer', 'tls', 'authz',
  'route', 'subset', 'grpc_status', 'span_id', 'parent_span', 'start_us', 'end_us', 'trace_flags', 'routed_service'] as const;
// Fields a client chooses (method, path, a header) are JSON-escaped by HAProxy (json(utf8s): a tab
// becomes \t, a quote \", anything outside ASCII \uXXXX): a tab in a header used to split the line
// into too many fields, and that request was missing from the log and the metrics.
// The last three: the peer's principal (inbound mTLS), whether the hop was mTLS (inbound: the
// listener's variable; outbound: the server connection's), and the authorization decision.
const COMMON_FORMAT = ['%t', '%f', '%b', '%[var(txn.method),json(utf8s)]', '%[var(txn.path),json(utf8s)]', '%[var(txn.status)]', '%Tt', '%si:%sp', '%B',
  '%[var(txn.trace_id),json(utf8s)]', '%ts'];
// Then the route and subset that took the request (outbound), and the response's grpc-status where
// HAProxy can read it (a header: gRPC's Trailers-Only answers; HAProxy 2.6 has no fetch for trailers).
// Last, what a span needs (tracing on): this hop's span id, its parent's, when the request came and when it was done (µs).
// Then its sampled flag, and the service the frontend routed the request for (its own answers have no backend).
const ROUTE_FORMAT = ['%[var(txn.sm_route)]', '%[var(txn.sm_subset)]', '%[var(txn.sm_grpc)]', '%[var(txn.sm_span)]', '%[var(txn.sm_parent)]', '%[var(txn.sm_t0)]', '%[date(0,us)]',
  '%[var(txn.sm_flags)]', '%[var(txn.sm_svc)]'];
export const ACCESS_LOG_FORMAT = [...COMMON_FORMAT, '%[var(sess.sm_peer)]', '%[var(sess.sm_tls)]', '%[var(txn.sm_authz)]', ...ROUTE_FORMAT].join('\t');
const OUTBOUND_LOG_FORMAT = [...COMMON_FORMAT, '-', '%[ssl_bc,iif(mtls,-)]', '-', ...ROUTE_FORMAT].join('\t');
/** The fields of ACCESS_LOG_FIELDS that HAProxy JSON-escapes (see ACCESS_LOG_FORMAT). */
export const ESCAPED_FIELDS: ReadonlySet<(typeof ACCESS_LOG_FIELDS)[number]> = new Set(['method', 'path', 'trace_id']);
/** HAProxy's longest log line (its default, 1024 bytes, cut long paths off: such lines were lost). */
export const LOG_LINE_MAX = 16384;

/** A backend's name for a service (HAProxy names: letters, digits, '-', '_', '.', ':'). */
export function backendName(direction: 'out' | 'in', service: string): string {
  return `${direction}_${service}`;
}

/** A server's name in its backend: its endpoint, so a new policy version names the same endpoint
 * the same way (the runtime API addresses servers by name). */
export function serverName(e: Endpoint): string {
  return `ep-${e.address}-${e.port}`;
}

/** A server's options (weight, connection limit, ejection), as the config and `add server` take them. */
export function serverOptions(e: Endpoint, s: ServiceConfig): string[] {
  const p = s.policy;
  const opts: string[] = [`weight ${e.weight}`];
  if (isH2(s)) opts.push('proto h2');
  if (p?.connectionPool) opts.push(`maxconn ${p.connectionPool.tcp.maxConnections}`);
  if (p?.outlierDetection) {
    const d = p.outlierDetection;
    // Ejection: consecutive 5xx (or connection errors) mark the server down; a check every
    // baseEjectionTime brings it back once it answers again.
    opts.push('check', `inter ${d.intervalMs}`, `downinter ${d.baseEjectionTimeMs}`, 'rise 1', 'fall 1',
      'observe layer7', `error-limit ${d.consecutive5xxErrors}`, 'on-error mark-down');
    // An endpoint that keeps the connection's port is checked on the service's (first) port.
    if (!e.port) opts.push(`port ${s.ports[0]}`);
  }
  return opts;
}

/** The address a server connects to (no port: the connection's own). */
export function serverAddr(e: Endpoint): string {
  return `${e.address}${e.port ? `:${e.port}` : ''}`;
}

function serverLine(e: Endpoint, s: ServiceConfig, sec: SidecarSecurity | undefined): string {
  return `  server ${serverName(e)} ${serverAddr(e)} ${[...serverOptions(e, s), ...endpointTls(sec, e, s)].join(' ')}`;
}

/** HAProxy's balance for a policy: consistent hashing (a ring) on a header, a cookie or the client's address, else the simple balancer. */
function balanceLines(lb: LoadBalancer | undefined, hash: ConsistentHash | undefined): string[] {
  if (!hash) return [`  balance ${BALANCE[lb ?? 'ROUND_ROBIN']}`];
  const by = 'httpHeaderName' in hash ? `hdr(${hash.httpHeaderName})` : 'httpCookie' in hash ? `hash req.cook(${hash.httpCookie})` : 'source';
  return [`  balance ${by}`, '  hash-type consistent'];
}

/** The outbound backend of a service with endpoints or HTTP policy (or of one route's destination). */
function outboundBackend(b: OutboundBackend, sec: SidecarSecurity | undefined, tracing: TracingConfig | undefined): string[] {
  const s = b.service;
  const p = s.policy;
  const http = isHttpService(s);
  const lines = [`backend ${b.name}`, `  mode ${http ? 'http' : 'tcp'}`, ...balanceLines(p?.loadBalancer, p?.consistentHash)];
  if (b.subset) lines.push(`  http-request set-var(txn.sm_subset) str(${b.subset})`);
  const perTry = p?.retries?.perTryTimeoutMs ?? p?.timeoutMs;
  if (perTry) lines.push(`  timeout server ${perTry}ms`);
  if (p?.outlierDetection && http) {
    // An ejected endpoint comes back once it answers the check (2xx/3xx) again.
    lines.push('  option httpchk GET /');
  }
  if (p?.retries) {
    lines.push(`  retries ${p.retries.attempts}`, '  option redispatch 1');
    if (http) lines.push(`  retry-on ${[...new Set(p.retries.retryOn.flatMap((r) => RETRY_ON[r] ?? []))].join(' ') || 'conn-failure'}`);
  }
  // A backend the frontend's routing sends to: the frontend recorded the request already.
  if (http && !b.routed) lines.push(...traceLines(tracing), ...HTTP_VARS);
  const eps = s.endpoints ?? [];
  if (eps.length) eps.forEach((e) => lines.push(serverLine(e, s, sec)));
  else if (b.original) lines.push(`  server orig 0.0.0.0:0${p?.connectionPool ? ` maxconn ${p.connectionPool.tcp.maxConnections}` : ''}${isH2(s) ? ' proto h2' : ''}`);
  // else: a subset no endpoint is in (yet): HAProxy answers 503, as Istio does (no healthy upstream).
  return lines;
}

/** The inbound backend of an HTTP service with server-side policy: rate limit, access log. */
function inboundBackend(s: ServiceConfig, sec: SidecarSecurity | undefined, tracing: TracingConfig | undefined): string[] {
  const rl = s.policy?.rateLimit;
  // What the access log records, then authorization: a refused request is logged with its method
  // and path, and never spends the rate limit's budget. With tracing, this hop's server span.
  const lines = [`backend ${backendName('in', s.name)}`, '  mode http', ...(tracing ? traceLines(tracing) : []), ...HTTP_VARS, ...httpAuthzLines(sec)];
  if (rl) {
    // One counter for the whole service, of the requests let through: while the last second holds
    // rate + burst of them, the next gets 429 (denied requests do not count, so a flood still gets
    // the configured rate through).
    lines.push('  stick-table type integer size 1 expire 10s store gpc0,gpc0_rate(1s)', '  http-request track-sc0 int(0)',
      `  http-request deny deny_status 429 if { sc_gpc0_rate(0) ge ${rl.requestsPerSecond + rl.burst} }`, '  http-request sc-inc-gpc0(0)');
  }
  lines.push(`  server app 0.0.0.0:0 source 127.0.0.6${isH2(s) ? ' proto h2' : ''}`);
  return lines;
}

/** The ports a service's endpoints listen on (inbound: what arrives at the server pod). */
export function targetPorts(s: ServiceConfig): number[] {
  const eps = s.endpoints ?? [];
  return [...new Set(eps.length ? eps.map((e) => e.port || 0).flatMap((p) => (p ? [p] : s.ports)) : s.ports)];
}

/** The services the sidecar routes itself (endpoints, policy or HTTP); others pass through. */
export function governed(cfg: MeshConfig): ServiceConfig[] {
  return cfg.services.filter((s) => s.mode !== 'kernel' && (s.endpoints?.length || s.policy || isHttpService(s)));
}

/** Rules that name an address first, the others after, each group in its own order. */
function specificFirst(rules: Array<{ specific: boolean; line: string }>): string[] {
  return [...rules.filter((r) => r.specific), ...rules.filter((r) => !r.specific)].map((r) => r.line);
}

/**
 * The condition that a connection is to service s: one of its addresses, if it has any, and one
 * of its ports. A service on any address leaves out the addresses of services that name theirs on
 * one of its ports (they come first: connect4 looks an exact address:port up first).
 */
function serviceAcl(s: ServiceConfig, all: ServiceConfig[]): string {
  const ports = `{ dst_port ${s.ports.join(' ')} }`;
  if (s.addresses.length) return `${ports} { dst ${s.addresses.join(' ')} }`;
  const claimed = [...new Set(all.filter((o) => o !== s && o.addresses.length && o.ports.some((p) => s.ports.includes(p))).flatMap((o) => o.addresses))];
  return claimed.length ? `${ports} !{ dst ${claimed.join(' ')} }` : ports;
}

export function renderHaproxy(cfg: MeshConfig, o: RenderOptions): string {
  const sc = o.sidecar;
  const services = governed(cfg);
  const inbound = services.filter(isHttpService);
  // First match wins in HAProxy: the rules naming an address come before any-address ones, as
  // connect4 looks a service up (its exact address:port first, then the any-address entry), so a
  // service listed first with no address cannot take another's traffic.
  // (A service whose requests the frontend routes has its use_backend there: routing.frontend.)
  const outboundRules = specificFirst(services.filter((s) => !routedInFrontend(s)).flatMap((s) => (s.addresses.length ? s.addresses : [undefined]).flatMap((a) => s.ports.map((p) => ({
    specific: a !== undefined, line: `  use_backend ${backendName('out', s.name)} if { dst_port ${p} }${a ? ` { dst ${a} }` : ''}`,
  })))));
  // Inbound: a service whose endpoints are listed owns their addresses at its ports; one without
  // owns the port on any address.
  const inboundRules = specificFirst(inbound.flatMap((s) => {
    const addrs = [...new Set((s.endpoints ?? []).map((e) => e.address))];
    return targetPorts(s).map((p) => ({ specific: addrs.length > 0, line: `  use_backend ${backendName('in', s.name)} if { dst_port ${p} }${addrs.length ? ` { dst ${addrs.join(' ')} }` : ''}` }));
  }));
  const sec = o.security;
  const peers = peerRoutes(sec);
  const plans = new Map(services.map((s) => [s, routePlan(cfg, s)]));
  const routing = frontendRouting(services, (s) => plans.get(s)!, (s) => serviceAcl(s, services), cfg.tracing);
  const lines = [
    `# sockmesh governance sidecar, policy version ${o.version} (rendered; do not edit)${sec ? `, workload ${sec.workload.spiffeId}` : ''}`,
    'global',
    '  nbthread 1',
    '  maxconn 4000',
    ...(o.dropPrivileges ? [`  uid ${sc.uid}`, `  gid ${sc.gid}`] : []),
    `  log stdout len ${LOG_LINE_MAX} format raw local0 info`,
    `  stats socket ${o.runDir}/admin.sock mode 600 level admin expose-fd listeners`,
    ...(sec ? [`  lua-load ${sec.luaFile}`] : []),
    ...(routing.delays && o.trafficLua ? [`  lua-load ${o.trafficLua}`] : []),
    ...routing.global,
    '  hard-stop-after 30s',
    '  set-var proc.sm_drain int(0)',

    'defaults',
    '  log global',
    '  timeout connect 5s',
    '  timeout client 1h',
    '  timeout server 1h',
    '  timeout http-request 30s',
    '  option dontlognull',
    'frontend outbound',
    `  bind ${sc.address}:${sc.outboundPort}`,
    '  mode tcp',
    `  log-format '${OUTBOUND_LOG_FORMAT}'`,
    ...routing.frontend,
    ...outboundRules,
    ...peers.rules,
    '  default_backend passthrough',
    'frontend inbound',
    `  bind 0.0.0.0:${sc.inboundPort}`,
    '  mode tcp',
    `  log-format '${ACCESS_LOG_FORMAT}'`,
    ...(o.inboundClosed ? ['  # closed until the agent says what this pod\'s inbound mTLS mode is', '  tcp-request connection reject'] : []),
    ...(sec ? inboundSecurityLines(sec) : []),
    ...inboundRules,
    '  default_backend inbound_app',
    ...(sec ? mtlsListener(sec, ACCESS_LOG_FORMAT, inboundRules) : []),
    'backend passthrough',
    '  mode tcp',
    '  # 0.0.0.0:0 = the connection\'s original destination (SO_ORIGINAL_DST)',
    '  server orig 0.0.0.0:0',
    'backend inbound_app',
    '  mode tcp',
    ...tcpAuthzLines(sec),
    '  server app 0.0.0.0:0 source 127.0.0.6',
    ...services.flatMap((s) => plans.get(s)!.backends.flatMap((b) => outboundBackend(b, sec, cfg.tracing))),
    ...peers.backends,
    ...inbound.flatMap((s) => inboundBackend(s, sec, cfg.tracing)),
  ];
  return `${lines.join('\n')}\n`;
}
