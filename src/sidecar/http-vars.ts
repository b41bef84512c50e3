// What an HTTP proxy of the governance sidecar records for the access log and its span, in the
// place that proxies the request: an HTTP backend (a service the frontend hands over whole), or the
// outbound frontend itself (a service whose requests it routes, src/sidecar/routes.ts).
import type { TracingConfig } from '../config/model.js';

/** Method, path, trace id, status (also HAProxy's own answers: 404, 429, 503, 504, a fault's abort) and a header grpc-status. */
export const HTTP_VARS = [
  '  http-request set-var(txn.method) method',
  '  http-request set-var(txn.path) pathq',
  '  http-request set-var(txn.trace_id) req.hdr(traceparent),field(2,-)',
  '  http-after-response set-var(txn.status) status',
  '  http-response set-var(txn.sm_grpc) res.hdr(grpc-status) if { res.hdr(grpc-status) -m found }',
  // Before a reload (src/sidecar/haproxy-process.ts): HTTP/1 clients are told to reconnect (to the new workers).
  '  http-after-response set-header connection close if { var(proc.sm_drain) -m int gt 0 } !{ req.ver 2.0 }',
];

/**
 * W3C trace context. Without tracing: kept when the request has one, started when it has none.
 * With tracing, each hop is a span: its parent is the span id the request came with, its own id is
 * new and goes on in traceparent (the next hop's parent); the trace id and the sampled flag are
 * kept, and a new trace is sampled at random at randomSamplingPercentage (every later hop follows
 * the flag, as Envoy does: the first sidecar of a trace decides).
 */
export function traceLines(tracing: TracingConfig | undefined): string[] {
  if (!tracing) return ['  http-request set-header traceparent 00-%[uuid(4),regsub(-,,g)]-%[uuid(4),regsub(-,,g),bytes(0,16)]-01 if !{ req.hdr(traceparent) -m found }'];
  const pct = tracing.randomSamplingPercentage;
  return [
    '  http-request set-var(txn.sm_t0) date(0,us)',
    '  http-request set-var(txn.sm_trace) req.hdr(traceparent),field(2,-) if { req.hdr(traceparent) -m reg ^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$ }',
    '  http-request set-var(txn.sm_parent) req.hdr(traceparent),field(3,-) if { var(txn.sm_trace) -m found }',
    '  http-request set-var(txn.sm_flags) req.hdr(traceparent),field(4,-) if { var(txn.sm_trace) -m found }',
    ...(pct > 0 ? [`  http-request set-var(txn.sm_flags) str(01) unless { var(txn.sm_trace) -m found }${pct >= 100 ? '' : ` || { rand(1000000) -m int ge ${Math.round(pct * 10_000)} }`}`] : []),
    '  http-request set-var(txn.sm_flags) str(00) unless { var(txn.sm_flags) -m found }',
    '  http-request set-var(txn.sm_trace) uuid(4),regsub(-,,g) unless { var(txn.sm_trace) -m found }',
    '  http-request set-var(txn.sm_span) uuid(4),regsub(-,,g),bytes(0,16)',
    '  http-request set-header traceparent 00-%[var(txn.sm_trace)]-%[var(txn.sm_span)]-%[var(txn.sm_flags)]',
  ];
}
