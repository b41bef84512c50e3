// The governance sidecar's access log and metrics, both from HAProxy's log lines (one per request,
// one per connection for TCP services; ACCESS_LOG_FORMAT): each line becomes one JSON access
// record with numbers as numbers, and counts into Prometheus metrics per service and endpoint
// (requests by status, durations as a histogram), served by the sidecar beside the agent's. This
// runs for every request: tab-separated fields, metric children cached per label set.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ACCESS_LOG_FIELDS, ESCAPED_FIELDS } from './haproxy.js';

export interface AccessRecord {
  time: string;
  direction: 'outbound' | 'inbound';
  /** The service (its backend), or "-" for connections passed through to their original destination. */
  service: string;
  method: string | null;
  path: string | null;
  /** HTTP status; null for a TCP connection. */
  status: number | null;
  duration_ms: number;
  upstream: string;
  bytes: number;
  trace_id: string | null;
  termination: string;
  /** The peer's principal (inbound mTLS: <trust domain>/ns/<ns>/sa/<sa>), null when it has none. */
  peer: string | null;
  /** Whether the hop was mesh mTLS (inbound: the client's; outbound: the upstream's). */
  tls: boolean;
  /** The authorization decision (inbound): allow[:policy] or deny:policy; null where none ran. */
  authz: string | null;
  /** The VirtualService route that took the request (outbound), and the subset it went to. */
  route: string | null;
  subset: string | null;
  /** The response's grpc-status where HAProxy saw it (a header; not trailers). */
  grpc_status: number | null;
  /** Tracing on: this hop's span id, its parent's (the span id the request came with), and its start and end (µs since the epoch). */
  span_id: string | null;
  parent_span: string | null;
  start_us: number | null;
  end_us: number | null;
  /** traceparent's flags as this hop sent them on ("01": sampled). */
  trace_flags: string | null;
}

const dash = (v: unknown) => (v === undefined || v === '-' || v === '' ? null : String(v));

/** A field HAProxy JSON-escaped (json(utf8s), no quotes around it), as the client sent it. */
function unescape(v: string): string {
  if (!v.includes('\\')) return v;
  try {
    return JSON.parse(`"${v}"`) as string;
  } catch {
    return v; // not what HAProxy writes: kept as it came
  }
}

const micros = (v: string) => (/^\d{16}$/.test(v) ? Number(v) : null);

/** One HAProxy log line as an access record; undefined for anything that is not one of ours. */
export function parseAccessLine(line: string): AccessRecord | undefined {
  const f = line.split('\t');
  if (f.length !== ACCESS_LOG_FIELDS.length || (f[1] !== 'outbound' && f[1] !== 'inbound' && f[1] !== 'inbound_mtls')) return undefined;
  for (let i = 0; i < f.length; i++) if (ESCAPED_FIELDS.has(ACCESS_LOG_FIELDS[i])) f[i] = unescape(f[i]);
  const raw = Object.fromEntries(ACCESS_LOG_FIELDS.map((k, i) => [k, f[i]])) as Record<(typeof ACCESS_LOG_FIELDS)[number], string>;
  const backend = raw.service;
  // The service the frontend routed for, else its backend's: out_<service>, in_<service>, or a
  // route destination's out_<service>:<n>.
  const service = dash(raw.routed_service) ?? /^(?:out|in)_([^:]+)/.exec(backend)?.[1] ?? '-';
  const grpc = Number(raw.grpc_status);
  const status = Number(raw.status);
  return {
    time: String(raw.time),
    direction: raw.listener === 'outbound' ? 'outbound' : 'inbound',
    service,
    method: dash(raw.method),
    path: dash(raw.path),
    status: Number.isInteger(status) && status > 0 ? status : null,
    duration_ms: Number(raw.duration_ms) || 0,
    upstream: String(raw.upstream ?? '-'),
    bytes: Number(raw.bytes) || 0,
    trace_id: dash(raw.trace_id),
    termination: String(raw.termination ?? '--'),
    peer: dash(raw.peer),
    tls: raw.tls === 'mtls',
    authz: dash(raw.authz),
    route: dash(raw.route),
    subset: dash(raw.subset),
    grpc_status: raw.grpc_status !== '-' && Number.isInteger(grpc) ? grpc : null,
    span_id: dash(raw.span_id),
    parent_span: dash(raw.parent_span),
    start_us: micros(raw.start_us),
    end_us: micros(raw.end_us),
    trace_flags: dash(raw.trace_flags),
  };
}

/**
 * A TLS handshake HAProxy could not complete on the mTLS listener, from its own log line
 * (`<client> [<date>] inbound_mtls/<bind>: <reason>`), e.g. "SSL client certificate not trusted".
 */
export function parseHandshakeFailure(line: string): { reason: string } | undefined {
  const m = /^\S+ \[[^\]]+\] inbound_mtls\/\S+: (.+)$/.exec(line);
  return m ? { reason: m[1].trim() } : undefined;
}

/** The sidecar's metrics, fed by access records. */
export class SidecarMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'sockmesh_sidecar_requests_total',
    help: 'Requests (HTTP services) and connections (TCP services) through the governance sidecar, by service, endpoint and status (0: TCP or no response).',
    labelNames: ['direction', 'service', 'endpoint', 'code'] as const,
    registers: [this.registry],
  });
  private readonly errors = new Counter({
    name: 'sockmesh_sidecar_request_errors_total',
    help: 'Requests answered with 5xx (or ended without a response) through the governance sidecar.',
    labelNames: ['direction', 'service', 'endpoint'] as const,
    registers: [this.registry],
  });
  private readonly durations = new Histogram({
    name: 'sockmesh_sidecar_request_duration_seconds',
    help: 'Request (or connection) durations through the governance sidecar.',
    labelNames: ['direction', 'service'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly version = new Gauge({ name: 'sockmesh_sidecar_policy_version', help: 'The policy version the sidecar runs.', registers: [this.registry] });
  /** 1 while HAProxy runs and serves (0 while the sidecar restarts it). */
  readonly up = new Gauge({ name: 'sockmesh_sidecar_haproxy_up', help: '1 while the sidecar\'s HAProxy runs, 0 while it is being restarted.', registers: [this.registry] });
  readonly restarts = new Counter({ name: 'sockmesh_sidecar_haproxy_restarts_total', help: 'Times HAProxy exited unasked and the sidecar started it again.', registers: [this.registry] });
  /** HAProxy's own count of log lines it could not write (its DroppedLogs, summed over its workers). */
  readonly droppedLines = new Counter({ name: 'sockmesh_sidecar_access_log_dropped_total', help: 'Access lines HAProxy could not hand to the sidecar (its log pipe was full): requests missing from the access log and these metrics.', registers: [this.registry] });
  /** Lines from HAProxy that are not access lines of ours (never silently dropped). */
  readonly unparsedLines = new Counter({ name: 'sockmesh_sidecar_access_log_unparsed_total', help: 'Lines HAProxy logged that are not access lines the sidecar can read.', registers: [this.registry] });

  readonly handshakeFailures = new Counter({
    name: 'sockmesh_sidecar_tls_handshake_failures_total', labelNames: ['reason'] as const, registers: [this.registry],
    help: 'Inbound mTLS handshakes that failed, by HAProxy\'s reason (e.g. "SSL client certificate not trusted", "SSL handshake failure").',
  });
  private readonly denials = new Counter({
    name: 'sockmesh_sidecar_authz_denials_total', labelNames: ['policy'] as const, registers: [this.registry],
    help: 'Inbound requests (HTTP) and connections (TCP) refused by authorization, by the deciding policy (no-allow-match: ALLOW policies exist and none matched).',
  });

  private readonly children = new Map<string, { requests: Counter.Internal; errors: Counter.Internal; durations: Histogram.Internal<string> }>();

  observe(r: AccessRecord): void {
    const key = `${r.direction} ${r.service} ${r.upstream} ${r.status ?? 0}`;
    let c = this.children.get(key);
    if (!c) {
      c = {
        requests: this.requests.labels(r.direction, r.service, r.upstream, String(r.status ?? 0)),
        errors: this.errors.labels(r.direction, r.service, r.upstream),
        durations: this.durations.labels(r.direction, r.service),
      };
      this.children.set(key, c);
    }
    c.requests.inc();
    if (r.status === null ? r.method !== null : r.status >= 500) c.errors.inc();
    c.durations.observe(r.duration_ms / 1000);
    if (r.authz?.startsWith('deny:')) this.denials.inc({ policy: r.authz.slice(5) });
  }
}
