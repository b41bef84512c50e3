// A service's L7 traffic management under Istio's names and shapes: DestinationRule subsets and
// consistentHash, VirtualService http routes (match, weighted destinations, timeout, retries,
// headers, rewrite, fault). A config file writes them in the service's `policy:`; the Istio
// documents after the config and the Kubernetes objects are translated into the same form first
// (src/config/istio-traffic.ts), so all three are checked here alike.
import type { ConsistentHash, HeaderOps, HttpMatch, HttpRoute, RouteDestination, ServiceConfig, ServicePolicy, StringMatch, Subset } from '../model.js';
import { join, kind, quote, type Checker } from './checker.js';

/** Longest regex, header value or path a route may carry (they land in HAProxy's config). */
const TEXT_MAX = 1024;
/** A route's name (it is written into HAProxy's configuration and the access log). */
export const ROUTE_NAME_RE = /^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$/;
/** Routes per service: HAProxy evaluates them in order for every request. */
export const ROUTES_MAX = 1000;
/** HTTP header names, lower-case as HTTP/2 sends them: letters, digits, '-', '_', '.' (RFC 9110
 * allows more, but '#', quotes, '$' or '%' would have a meaning in HAProxy's configuration). */
const HEADER_RE = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/** A string HAProxy's configuration can carry: printable, no NUL or line break. */
function text(c: Checker, path: string, v: unknown, allowEmpty = false): string | undefined {
  if (typeof v !== 'string' || (!allowEmpty && v === '')) return c.fail(path, `must be a${allowEmpty ? '' : ' non-empty'} string, got ${kind(v)}`);
  if (v.length > TEXT_MAX) return c.fail(path, `is too long (${v.length} characters, at most ${TEXT_MAX})`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(v)) return c.fail(path, 'must not contain control characters (tabs, line breaks)');
  return v;
}

/**
 * A regex as Istio takes it (RE2, matched against the whole value), checked before it reaches
 * HAProxy (PCRE2): it must compile, and RE2 has no look-around or back-references, which PCRE would
 * accept with another meaning than the user's Istio has.
 */
export function checkRegex(c: Checker, path: string, v: unknown): string | undefined {
  const re = text(c, path, v);
  if (re === undefined) return undefined;
  if (/\(\?<?[=!]|\\[1-9]|\\k</.test(re)) return c.fail(path, `${quote(re)} uses look-around or a back-reference, which Istio's regexes (RE2) do not have`);
  // What JavaScript takes and HAProxy's PCRE2 refuses or reads otherwise: [^] (any character), [] and \u escapes.
  if (/\[\^?\]|\\u/.test(re)) return c.fail(path, `${quote(re)} uses [^], [] or \\u, which HAProxy's regexes (PCRE2) do not take: write [\\s\\S], an escaped ] or the character itself`);
  try {
    new RegExp(re, 'u');
  } catch (e) {
    return c.fail(path, `is not a valid regular expression: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`);
  }
  return re;
}

function stringMatch(c: Checker, path: string, raw: unknown): StringMatch | undefined {
  const o = c.object(path, raw, ['exact', 'prefix', 'regex']);
  if (!o) return undefined;
  const keys = Object.keys(o);
  if (keys.length !== 1) return c.fail(path, `must have exactly one of exact, prefix, regex, got ${keys.length ? keys.join(', ') : 'none'}`);
  if (o.regex !== undefined) {
    const re = checkRegex(c, join(path, 'regex'), o.regex);
    return re === undefined ? undefined : { regex: re };
  }
  const k = keys[0] as 'exact' | 'prefix';
  const v = text(c, join(path, k), o[k], k === 'prefix');
  return v === undefined ? undefined : (k === 'exact' ? { exact: v } : { prefix: v });
}

function match(c: Checker, path: string, raw: unknown): HttpMatch | undefined {
  const o = c.object(path, raw, ['name', 'uri', 'headers', 'method', 'port']);
  if (!o) return undefined;
  const m: HttpMatch = {};
  if (o.uri !== undefined) {
    const u = stringMatch(c, join(path, 'uri'), o.uri);
    if (u && !('regex' in u) && !(('exact' in u ? u.exact : u.prefix).startsWith('/'))) c.fail(join(path, 'uri'), `must start with "/" (a request path), got ${quote('exact' in u ? u.exact : u.prefix)}`);
    else if (u) m.uri = u;
  }
  if (o.method !== undefined) {
    const mm = stringMatch(c, join(path, 'method'), o.method);
    if (mm) m.method = mm;
  }
  if (o.port !== undefined) m.port = c.port(join(path, 'port'), o.port);
  if (o.headers !== undefined) {
    const h = c.object(join(path, 'headers'), o.headers, Object.keys(typeof o.headers === 'object' && o.headers !== null ? o.headers : {})) ?? {};
    // Header names are the user's: keys of a null-prototype object.
    const out: Record<string, StringMatch> = Object.create(null) as Record<string, StringMatch>;
    for (const [name, v] of Object.entries(h)) {
      const lower = name.toLowerCase();
      if (!HEADER_RE.test(lower)) c.fail(join(path, 'headers', name), 'is not an HTTP header name');
      else {
        const sm = stringMatch(c, join(path, 'headers', name), v);
        if (sm) out[lower] = sm;
      }
    }
    if (Object.keys(out).length) m.headers = out;
  }
  return m;
}

function headerOps(c: Checker, path: string, raw: unknown): HeaderOps | undefined {
  const o = c.object(path, raw, ['set', 'add', 'remove']);
  if (!o) return undefined;
  const ops: HeaderOps = {};
  for (const k of ['set', 'add'] as const) {
    if (o[k] === undefined) continue;
    const m = c.object(join(path, k), o[k], Object.keys(typeof o[k] === 'object' && o[k] !== null ? o[k] as object : {})) ?? {};
    const out: Record<string, string> = Object.create(null) as Record<string, string>;
    for (const [name, v] of Object.entries(m)) {
      if (!HEADER_RE.test(name.toLowerCase())) c.fail(join(path, k, name), 'is not an HTTP header name');
      else {
        const val = text(c, join(path, k, name), v, true);
        if (val !== undefined) out[name.toLowerCase()] = val;
      }
    }
    ops[k] = out;
  }
  if (o.remove !== undefined) {
    ops.remove = (c.array(join(path, 'remove'), o.remove) ?? []).flatMap((v, i) => (typeof v === 'string' && HEADER_RE.test(v.toLowerCase()) ? [v.toLowerCase()] : (c.fail(`${join(path, 'remove')}[${i}]`, `must be an HTTP header name, got ${kind(v)}`), [])));
  }
  return ops;
}

/** Istio's Percent: `{ value: 0..100 }` (a double); unset: 0 (Istio injects no fault without one). */
function percent(c: Checker, path: string, raw: unknown): number | undefined {
  if (raw === undefined) return 0;
  const o = c.object(path, raw, ['value']);
  if (!o) return undefined;
  if (typeof o.value !== 'number' || !(o.value >= 0 && o.value <= 100)) return c.fail(join(path, 'value'), `must be a number from 0 to 100, got ${kind(o.value)}`);
  return o.value;
}

function fault(c: Checker, path: string, raw: unknown): HttpRoute['fault'] {
  const o = c.object(path, raw, ['delay', 'abort']);
  if (!o) return undefined;
  const f: NonNullable<HttpRoute['fault']> = {};
  if (o.delay !== undefined) {
    const d = c.object(join(path, 'delay'), o.delay, ['fixedDelay', 'percentage']);
    if (d) {
      if (d.fixedDelay === undefined) c.fail(join(path, 'delay', 'fixedDelay'), 'is required');
      const ms = d.fixedDelay === undefined ? undefined : c.duration(join(path, 'delay', 'fixedDelay'), d.fixedDelay, 600_000);
      const p = percent(c, join(path, 'delay', 'percentage'), d.percentage);
      if (ms !== undefined && p !== undefined) f.delay = { fixedDelayMs: ms, percent: p };
    }
  }
  if (o.abort !== undefined) {
    const a = c.object(join(path, 'abort'), o.abort, ['httpStatus', 'percentage']);
    if (a) {
      if (a.httpStatus === undefined) c.fail(join(path, 'abort', 'httpStatus'), 'is required (gRPC aborts are not supported: use httpStatus)');
      const st = a.httpStatus === undefined ? undefined : c.int(join(path, 'abort', 'httpStatus'), a.httpStatus, 200, 599);
      const p = percent(c, join(path, 'abort', 'percentage'), a.percentage);
      if (st !== undefined && p !== undefined) f.abort = { httpStatus: st, percent: p };
    }
  }
  return f;
}

function destination(c: Checker, path: string, raw: unknown, self: string): RouteDestination | undefined {
  const o = c.object(path, raw, ['destination', 'weight', 'headers']);
  if (!o) return undefined;
  if (o.headers !== undefined) c.fail(join(path, 'headers'), 'per-destination headers are not supported: set them on the route');
  const d = o.destination === undefined ? { host: self } : c.object(join(path, 'destination'), o.destination, ['host', 'subset', 'port']) ?? {};
  let port: number | undefined;
  if (d.port !== undefined) {
    const po = c.object(join(path, 'destination', 'port'), d.port, ['number']);
    port = po ? c.port(join(path, 'destination', 'port', 'number'), po.number) : undefined;
  }
  const host = d.host === undefined ? self : c.name(join(path, 'destination', 'host'), d.host);
  const subset = d.subset === undefined ? undefined : c.name(join(path, 'destination', 'subset'), d.subset);
  const weight = o.weight === undefined ? 0 : c.int(join(path, 'weight'), o.weight, 0, 1_000_000);
  if (host === undefined) return undefined;
  return { host, ...(subset !== undefined ? { subset } : {}), ...(port !== undefined ? { port } : {}), weight: weight ?? 0 };
}

function route(c: Checker, path: string, raw: unknown, i: number, self: string, retries: (path: string, raw: unknown) => ServicePolicy['retries']): HttpRoute | undefined {
  const o = c.object(path, raw, ['name', 'match', 'route', 'timeout', 'retries', 'headers', 'rewrite', 'fault']);
  if (!o) return undefined;
  const name = o.name === undefined ? `route-${i}` : c.match(join(path, 'name'), o.name, ROUTE_NAME_RE, 'a route name (letters, digits, "-", "_", ".", at most 63)');
  const matches = o.match === undefined ? [] : (c.array(join(path, 'match'), o.match) ?? []).map((m, j) => match(c, `${join(path, 'match')}[${j}]`, m)).filter((m): m is HttpMatch => m !== undefined);
  const dests = o.route === undefined ? [{ host: self, weight: 0 }] : (c.array(join(path, 'route'), o.route) ?? []).map((d, j) => destination(c, `${join(path, 'route')}[${j}]`, d, self)).filter((d): d is RouteDestination => d !== undefined);
  if (o.route !== undefined && Array.isArray(o.route) && o.route.length === 0) c.fail(join(path, 'route'), 'must list at least one destination');
  // Istio: one destination takes every request; several share them by weight (relative: weight /
  // their sum; an unset weight is 0).
  if (dests.length === 1) dests[0].weight = 100;
  else if (dests.length > 1 && dests.every((d) => d.weight === 0)) c.fail(join(path, 'route'), 'give the destinations weights: with several, an unset weight is 0 and none would get a request');
  const r: HttpRoute = { name: name ?? `route-${i}`, match: matches, route: dests };
  if (o.timeout !== undefined) r.timeoutMs = c.duration(join(path, 'timeout'), o.timeout);
  if (o.retries !== undefined) r.retries = retries(join(path, 'retries'), o.retries);
  if (o.headers !== undefined) {
    const h = c.object(join(path, 'headers'), o.headers, ['request', 'response']);
    if (h) {
      const request = h.request === undefined ? undefined : headerOps(c, join(path, 'headers', 'request'), h.request);
      const response = h.response === undefined ? undefined : headerOps(c, join(path, 'headers', 'response'), h.response);
      r.headers = { ...(request ? { request } : {}), ...(response ? { response } : {}) };
    }
  }
  if (o.rewrite !== undefined) {
    const rw = c.object(join(path, 'rewrite'), o.rewrite, ['uri']);
    const uri = rw?.uri === undefined ? undefined : text(c, join(path, 'rewrite', 'uri'), rw.uri);
    if (uri !== undefined && !uri.startsWith('/')) c.fail(join(path, 'rewrite', 'uri'), `must start with "/", got ${quote(uri)}`);
    else if (uri !== undefined) r.rewriteUri = uri;
  }
  if (o.fault !== undefined) {
    const f = fault(c, join(path, 'fault'), o.fault);
    if (f && (f.delay || f.abort)) r.fault = f;
  }
  return r;
}

/** policy.routes: VirtualService http routes, in order. */
export function routes(c: Checker, path: string, raw: unknown, self: string, retries: (path: string, raw: unknown) => ServicePolicy['retries']): HttpRoute[] {
  const list = c.array(path, raw) ?? [];
  if (list.length > ROUTES_MAX) c.fail(path, `lists ${list.length} routes, at most ${ROUTES_MAX}`);
  const out = list.map((r, i) => route(c, `${path}[${i}]`, r, i, self, retries)).filter((r): r is HttpRoute => r !== undefined);
  const seen = new Set<string>();
  out.forEach((r, i) => {
    if (seen.has(r.name)) c.fail(`${path}[${i}].name`, `route name ${quote(r.name)} is used twice`);
    seen.add(r.name);
  });
  return out;
}

export function consistentHash(c: Checker, path: string, raw: unknown): ConsistentHash | undefined {
  const o = c.object(path, raw, ['httpHeaderName', 'httpCookie', 'useSourceIp']);
  if (!o) return undefined;
  const keys = Object.keys(o);
  if (keys.length !== 1) return c.fail(path, `must have exactly one of httpHeaderName, httpCookie, useSourceIp, got ${keys.length ? keys.join(', ') : 'none'}`);
  if (o.useSourceIp !== undefined) return c.bool(join(path, 'useSourceIp'), o.useSourceIp) ? { useSourceIp: true } : c.fail(join(path, 'useSourceIp'), 'must be true (leave consistentHash out for none)');
  if (o.httpHeaderName !== undefined) {
    const h = typeof o.httpHeaderName === 'string' ? o.httpHeaderName.toLowerCase() : '';
    return HEADER_RE.test(h) ? { httpHeaderName: h } : c.fail(join(path, 'httpHeaderName'), `must be an HTTP header name, got ${kind(o.httpHeaderName)}`);
  }
  // Istio's httpCookie is { name, ttl, path }: sockmesh hashes an existing cookie (it never sets one).
  const ck = typeof o.httpCookie === 'string' ? { name: o.httpCookie } : c.object(join(path, 'httpCookie'), o.httpCookie, ['name']);
  const name = ck?.name;
  return typeof name === 'string' && /^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$/.test(name) ? { httpCookie: name } : c.fail(join(path, 'httpCookie', 'name'), `must be a cookie name, got ${kind(name)}`);
}

/** policy.subsets: DestinationRule subsets, each with labels and its own traffic policy. */
export function subsets(c: Checker, path: string, raw: unknown, trafficPolicy: (path: string, raw: unknown) => Subset['trafficPolicy']): Subset[] {
  const list = c.array(path, raw) ?? [];
  const out: Subset[] = [];
  list.forEach((s, i) => {
    const at = `${path}[${i}]`;
    const o = c.object(at, s, ['name', 'labels', 'trafficPolicy']);
    if (!o) return;
    const name = c.name(join(at, 'name'), o.name);
    const labels = o.labels === undefined ? {} : c.labels(join(at, 'labels'), o.labels);
    if (name === undefined) return;
    if (out.some((x) => x.name === name)) c.fail(join(at, 'name'), `subset ${quote(name)} is defined twice`);
    const tp = o.trafficPolicy === undefined ? undefined : trafficPolicy(join(at, 'trafficPolicy'), o.trafficPolicy);
    out.push({ name, labels, ...(tp && Object.keys(tp).length ? { trafficPolicy: tp } : {}) });
  });
  return out;
}

/** Whether a service's protocol is one the sidecar proxies per request. */
export function isHttpService(s: Pick<ServiceConfig, 'protocol'>): boolean {
  return s.protocol === 'http' || s.protocol === 'http2' || s.protocol === 'grpc';
}

/** A config file's routing needs per-request proxying, and its routes' destinations must exist (a typo is an error, not a 503). */
export function routeTargets(c: Checker, services: ServiceConfig[]): void {
  const byName = new Map(services.map((s) => [s.name, s]));
  services.forEach((s, i) => {
    const p = s.policy;
    if (!p) return;
    const at = `services[${i}].policy`;
    const l7 = [p.routes?.length ? 'routes' : '', p.subsets?.length ? 'subsets' : '', p.consistentHash && !('useSourceIp' in p.consistentHash) ? 'consistentHash' : ''].filter(Boolean);
    if (l7.length && !isHttpService(s)) c.fail(join(at, l7[0]), `needs protocol: http, http2 or grpc (the sidecar routes requests; service "${s.name}" is TCP)`);
    p.routes?.forEach((r, j) => r.route.forEach((d, k) => {
      const target = byName.get(d.host);
      const path = `${at}.routes[${j}].route[${k}].destination`;
      if (!target) c.fail(join(path, 'host'), `names no service of this config: ${quote(d.host)}`);
      else if (target.mode === 'kernel') c.fail(join(path, 'host'), `service "${d.host}" is in kernel mode: a route's destination needs the sidecar`);
      else if (d.port !== undefined && !target.ports.includes(d.port)) c.fail(join(path, 'port', 'number'), `service "${d.host}" has no port ${d.port} (its ports: ${target.ports.join(', ')})`);
      else if (d.subset !== undefined && !target.policy?.subsets?.some((x) => x.name === d.subset)) c.fail(join(path, 'subset'), `service "${d.host}" has no subset ${quote(d.subset)} (its DestinationRule defines ${target.policy?.subsets?.map((x) => x.name).join(', ') || 'none'})`);
    }));
  });
}
