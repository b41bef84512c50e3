// HAProxy's log lines as access records: one line per request, tab-separated, the fields a client
// chooses JSON-escaped by HAProxy (a tab inside a traceparent header used to split the line, and
// that request went missing from the log and the metrics).
import { describe, expect, it } from 'vitest';
import { parseAccessLine, parseHandshakeFailure, SidecarMetrics } from '../../src/sidecar/accesslog.js';
import { ACCESS_LOG_FIELDS } from '../../src/sidecar/haproxy.js';

/** A line of HAProxy's; the security fields (peer, tls, authz) "-" unless given. */
const line = (fields: string[]) => [...fields, ...Array(ACCESS_LOG_FIELDS.length - fields.length).fill('-')].join('\t');

describe('access lines', () => {
  it('reads a request line, numbers as numbers, "-" as null', () => {
    const r = parseAccessLine(line(['03/Dec/2026:10:00:00.123', 'outbound', 'out_ratings', 'GET', '/r?x=1', '200', '12', '10.0.0.11:9080', '345', '4bf92f3577b34da6a3ce929d0e0e4736', '--']));
    expect(r).toEqual({
      time: '03/Dec/2026:10:00:00.123', direction: 'outbound', service: 'ratings', method: 'GET', path: '/r?x=1', status: 200,
      duration_ms: 12, upstream: '10.0.0.11:9080', bytes: 345, trace_id: '4bf92f3577b34da6a3ce929d0e0e4736', termination: '--',
      peer: null, tls: false, authz: null, route: null, subset: null, grpc_status: null, span_id: null, parent_span: null, start_us: null, end_us: null, trace_flags: null,
    });
    // A route's backend names its service; the route, subset and grpc-status fields come after authz.
    const routed = parseAccessLine(line(['t', 'outbound', 'out_reviews:2:1', 'POST', '/x', '200', '3', '10.0.0.13:9080', '10', '-', '--', '-', '-', '-', 'canary', 'v2', '0',
      'b7ad6b7169203331', '00f067aa0ba902b7', '1796419896848779', '1796419896849082']));
    expect(routed).toMatchObject({ service: 'reviews', route: 'canary', subset: 'v2', grpc_status: 0, span_id: 'b7ad6b7169203331', parent_span: '00f067aa0ba902b7', start_us: 1796419896848779, end_us: 1796419896849082 });
    expect(parseAccessLine(line(['t', 'inbound', 'inbound_app', '-', '-', '-', '5', '127.0.0.1:9080', '10', '-', 'cD']))).toMatchObject({ service: '-', method: null, status: null, trace_id: null });
  });

  it('takes back what HAProxy escaped (json(utf8s)): a tab, a quote, a backslash, non-ASCII', () => {
    const r = parseAccessLine(line(['t', 'outbound', 'out_a', 'GET', '/caf\\u00e9', '200', '1', '1.2.3.4:80', '1', '00-ab\\tcd\\"e\\\\f-01', '--']));
    expect(r?.trace_id).toBe('00-ab\tcd"e\\f-01');
    expect(r?.path).toBe('/café');
  });

  it('is not fooled by a line that is not one of ours', () => {
    expect(parseAccessLine('[WARNING] (12) : Server out_a/ep is DOWN')).toBeUndefined();
    expect(parseAccessLine(line(['t', 'sideways', 'b', 'GET', '/', '200', '1', 'u', '1', '-', '--']))).toBeUndefined();
    expect(parseAccessLine(['t', 'outbound', 'b', 'GET', '/', '200', '1', 'u', '1', '-', '--'].join('\t'))).toBeUndefined();
  });

  it('reads the mTLS listener\'s lines: the peer, mTLS, the authorization decision; counts denials and failed handshakes', async () => {
    const r = parseAccessLine(line(['t', 'inbound_mtls', 'in_ratings', 'GET', '/', '403', '1', '127.0.0.1:9080', '1', '-', 'PR', 'cluster.local/ns/shop/sa/other', 'mtls', 'deny:no-allow-match']));
    expect(r).toMatchObject({ direction: 'inbound', service: 'ratings', status: 403, peer: 'cluster.local/ns/shop/sa/other', tls: true, authz: 'deny:no-allow-match' });
    const out = parseAccessLine(line(['t', 'outbound', 'out_ratings', 'GET', '/', '200', '1', '10.0.0.1:9080', '1', '-', '--', '-', 'mtls', '-']));
    expect(out).toMatchObject({ direction: 'outbound', tls: true, peer: null, authz: null });
    const m = new SidecarMetrics();
    m.observe(r!);
    expect(parseHandshakeFailure('10.0.0.7:41234 [04/Dec/2026:18:48:15.822] inbound_mtls/1: SSL client certificate not trusted')).toEqual({ reason: 'SSL client certificate not trusted' });
    expect(parseHandshakeFailure('10.0.0.7:41234 [04/Dec/2026:18:48:15.822] outbound/1: SSL handshake failure')).toBeUndefined();
    m.handshakeFailures.inc({ reason: 'SSL handshake failure' });
    const text = await m.registry.metrics();
    expect(text).toMatch(/sockmesh_sidecar_authz_denials_total\{policy="no-allow-match"\} 1/);
    expect(text).toMatch(/sockmesh_sidecar_tls_handshake_failures_total\{reason="SSL handshake failure"\} 1/);
  });

  it('counts requests, errors and durations per service, endpoint and status', async () => {
    const m = new SidecarMetrics();
    m.observe(parseAccessLine(line(['t', 'outbound', 'out_a', 'GET', '/', '503', '7', '10.0.0.1:80', '1', '-', 'SC']))!);
    m.observe(parseAccessLine(line(['t', 'outbound', 'out_a', 'GET', '/', '200', '3', '10.0.0.1:80', '1', '-', '--']))!);
    const text = await m.registry.metrics();
    expect(text).toMatch(/sockmesh_sidecar_requests_total\{direction="outbound",service="a",endpoint="10\.0\.0\.1:80",code="503"\} 1/);
    expect(text).toMatch(/sockmesh_sidecar_request_errors_total\{direction="outbound",service="a",endpoint="10\.0\.0\.1:80"\} 1/);
  });
});
