// Validation at the boundary: raw YAML/JSON in, a complete MeshConfig out, or every problem at
// once, each located by its field path. Pure: no I/O.
import { isIPv4, isIPv6 } from 'node:net';
import { posix } from 'node:path';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { parseCidr } from '../net/addr.js';
import { CAPACITY } from './capacity.js';
import type { CaptureConfig, Endpoint, LoadBalancer, MeshConfig, PodConfig, ServiceConfig, ServicePolicy, SidecarConfig, SpliceMode } from './model.js';

/** Ports Istio never captures inbound (HBONE, Prometheus, health, agent). */
export const ISTIO_INBOUND_EXCLUDED = [15008, 15090, 15021, 15020];

/** Service and pod names: lower-case DNS subdomains (`reviews`, or `reviews.bookinfo` as the
 * Kubernetes source names a Service: name.namespace). */
export const NAME_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
export const NAME_MAX = 253;
const SPLICE_MODES: readonly SpliceMode[] = ['auto', 'always', 'never'];

class Checker {
  readonly issues: ConfigIssue[] = [];

  fail(path: string, message: string): undefined {
    this.issues.push({ path, message });
    return undefined;
  }

  /** An object with only the given keys; returns it, or undefined after reporting. */
  object(path: string, v: unknown, allowed: readonly string[]): Record<string, unknown> | undefined {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return this.fail(path, `must be a mapping, got ${kind(v)}`);
    for (const key of Object.keys(v)) {
      if (!allowed.includes(key)) this.fail(join(path, key), `unknown key (allowed: ${allowed.join(', ')})`);
    }
    return v as Record<string, unknown>;
  }

  array(path: string, v: unknown): unknown[] | undefined {
    if (!Array.isArray(v)) return this.fail(path, `must be a list, got ${kind(v)}`);
    return v;
  }

  int(path: string, v: unknown, min: number, max: number): number | undefined {
    if (typeof v !== 'number' || !Number.isInteger(v)) return this.fail(path, `must be an integer, got ${kind(v)}`);
    if (v < min || v > max) return this.fail(path, `must be between ${min} and ${max}, got ${v}`);
    return v;
  }

  port(path: string, v: unknown): number | undefined {
    return this.int(path, v, 1, 65535);
  }

  ports(path: string, v: unknown): number[] {
    const list = this.array(path, v) ?? [];
    const out = list.map((p, i) => this.port(`${path}[${i}]`, p)).filter((p): p is number => p !== undefined);
    const dup = out.find((p, i) => out.indexOf(p) !== i);
    if (dup !== undefined) this.fail(path, `port ${dup} is listed twice`);
    return out;
  }

  bool(path: string, v: unknown): boolean | undefined {
    if (typeof v !== 'boolean') return this.fail(path, `must be true or false, got ${kind(v)}`);
    return v;
  }

  ipv4(path: string, v: unknown): string | undefined {
    if (typeof v !== 'string' || !isIPv4(v)) return this.fail(path, `must be an IPv4 address, got ${quote(v)}`);
    return v;
  }

  /** An IPv4 or IPv6 address; IPv4-mapped IPv6 (::ffff:a.b.c.d) is written as the IPv4 address,
   * the one form the maps and rules know. */
  ip(path: string, v: unknown): string | undefined {
    if (typeof v === 'string' && isIPv4(v)) return v;
    if (typeof v !== 'string' || !isIPv6(v)) return this.fail(path, `must be an IPv4 or IPv6 address, got ${quote(v)}`);
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(v);
    return mapped ? mapped[1] : v.toLowerCase();
  }
}

/** Errors quote at most this much of a value: a 50 MB value must not come back on stderr. */
const QUOTE_MAX = 60;

/** A value for an error message, cut to a short prefix. */
export function quote(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > QUOTE_MAX ? `${text.slice(0, QUOTE_MAX)}… (${text.length} characters)` : text;
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${quote(v)}`;
}

function join(path: string, ...keys: Array<string | number>): string {
  if (keys.length !== 1) return keys.reduce<string>((p, k) => join(p, k), path);
  const key = keys[0];
  if (typeof key === 'number') return `${path}[${key}]`;
  const k = key.length > QUOTE_MAX ? `${key.slice(0, QUOTE_MAX)}…` : key;
  return path ? `${path}.${k}` : k;
}

const UID_MAX = 0xfffffffe;
/** Default of spliceQueueBytes: 4 MiB per spliced socket, within what one TCP flow may hold (see bpf/include/redirect.h). */
export const SPLICE_QUEUE_DEFAULT = 4 * 1024 * 1024;

const SIDECAR_DEFAULTS: SidecarConfig = { uid: 1337, gid: 1337, address: '127.0.0.1', outboundPort: 15001, inboundPort: 15006 };

/** The sidecar block at `path`; unset fields come from `base` (the node's, for a pod override). */
function sidecar(c: Checker, raw: unknown, path = 'sidecar', base?: SidecarConfig): SidecarConfig {
  const o = c.object(path, raw ?? {}, ['uid', 'gid', 'address', 'outboundPort', 'inboundPort']) ?? {};
  const d = base ?? SIDECAR_DEFAULTS;
  const uid = o.uid === undefined ? d.uid : c.int(`${path}.uid`, o.uid, 0, UID_MAX) ?? d.uid;
  // gid follows a uid given here; otherwise it is the base's.
  const gidDefault = o.uid !== undefined ? uid : d.gid;
  const out: SidecarConfig = {
    uid,
    gid: o.gid === undefined ? gidDefault : c.int(`${path}.gid`, o.gid, 0, UID_MAX) ?? gidDefault,
    address: o.address === undefined ? d.address : c.ipv4(`${path}.address`, o.address) ?? d.address,
    outboundPort: o.outboundPort === undefined ? d.outboundPort : c.port(`${path}.outboundPort`, o.outboundPort) ?? d.outboundPort,
    inboundPort: o.inboundPort === undefined ? d.inboundPort : c.port(`${path}.inboundPort`, o.inboundPort) ?? d.inboundPort,
  };
  if (out.outboundPort === out.inboundPort) c.fail(`${path}.inboundPort`, 'must differ from sidecar.outboundPort');
  return out;
}

function nonEmptyString(c: Checker, path: string, v: unknown): string | undefined {
  if (typeof v !== 'string' || !v.trim()) return c.fail(path, `must be a non-empty string, got ${kind(v)}`);
  if (v.length > 4096) return c.fail(path, `is too long (${v.length} characters)`);
  if (v.includes('\0')) return c.fail(path, 'must not contain NUL bytes');
  return v;
}

function pod(c: Checker, path: string, raw: unknown, node: { sidecar: SidecarConfig; capture: CaptureConfig }): PodConfig | undefined {
  const o = c.object(path, raw, ['name', 'cgroup', 'netns', 'addresses', 'sidecar', 'capture']);
  if (!o) return undefined;
  let name = '';
  if (typeof o.name !== 'string' || !NAME_RE.test(o.name) || o.name.length > NAME_MAX) {
    c.fail(join(path, 'name'), `must be a lower-case DNS name (a-z, 0-9, '-', '.', at most 253), got ${kind(o.name)}`);
  } else {
    name = o.name;
  }
  if (o.cgroup === undefined) c.fail(join(path, 'cgroup'), 'is required');
  const spelled = o.cgroup === undefined ? '' : nonEmptyString(c, join(path, 'cgroup'), o.cgroup) ?? '';
  if (spelled.split('/').includes('..')) c.fail(join(path, 'cgroup'), 'must not contain ".." (a pod cgroup lies below the instance\'s --cgroup)');
  // One spelling per directory (`./a/`, `a//`, `a` are one cgroup): compared and recorded so.
  const cgroup = spelled && normalizeCgroup(spelled);
  if (spelled && cgroup === '.') c.fail(join(path, 'cgroup'), 'names the instance\'s --cgroup itself: a pod\'s cgroup lies below it');
  if (o.netns === undefined) c.fail(join(path, 'netns'), 'is required (a name under /var/run/netns or a path such as /proc/PID/ns/net)');
  const netns = o.netns === undefined ? undefined : nonEmptyString(c, join(path, 'netns'), o.netns);
  if (netns !== undefined && !netns.startsWith('/') && !/^[A-Za-z0-9_.-]+$/.test(netns)) {
    c.fail(join(path, 'netns'), `must be a namespace name (letters, digits, '_', '.', '-') or an absolute path, got ${quote(netns)}`);
  }
  const addresses = o.addresses === undefined ? undefined : (c.array(join(path, 'addresses'), o.addresses) ?? [])
    .map((a, i) => c.ip(`${join(path, 'addresses')}[${i}]`, a))
    .filter((a): a is string => a !== undefined);
  const sc = o.sidecar === undefined ? node.sidecar : sidecar(c, o.sidecar, join(path, 'sidecar'), node.sidecar);
  const cap = o.capture === undefined ? node.capture : captureBlock(c, o.capture, [], [], join(path, 'capture'), node.capture);
  return { name, cgroup, netns, addresses, sidecar: sc, capture: cap };
}

/** A pod cgroup as one spelling: `./a/`, `a//b` and `a/./b/` are `a` and `a/b`. */
export function normalizeCgroup(cgroup: string): string {
  const n = posix.normalize(cgroup);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** What a pod's netns names, as one key: a name is its /var/run/netns path (/run is /var/run). */
export function netnsKey(netns: string): string {
  const path = posix.normalize(netns.startsWith('/') ? netns : `/var/run/netns/${netns}`);
  return path.startsWith('/run/') ? `/var${path}` : path;
}

function service(c: Checker, path: string, raw: unknown): ServiceConfig | undefined {
  const o = c.object(path, raw, ['name', 'addresses', 'ports', 'redirect', 'splice', 'mode', 'endpoints', 'affinity', 'terminateOnRemove', 'protocol', 'policy']);
  if (!o) return undefined;
  let name = '';
  if (typeof o.name !== 'string' || !NAME_RE.test(o.name) || o.name.length > NAME_MAX) {
    c.fail(join(path, 'name'), `must be a lower-case DNS name (a-z, 0-9, '-', '.', at most ${NAME_MAX}), got ${kind(o.name)}`);
  } else {
    name = o.name;
  }
  const addresses = ((o.addresses === undefined ? [] : c.array(join(path, 'addresses'), o.addresses)) ?? [])
    .map((a, i) => c.ip(`${join(path, 'addresses')}[${i}]`, a))
    .filter((a): a is string => a !== undefined);
  if (o.ports === undefined) c.fail(join(path, 'ports'), 'is required');
  const ports = o.ports === undefined ? [] : c.ports(join(path, 'ports'), o.ports);
  if (o.ports !== undefined && Array.isArray(o.ports) && o.ports.length === 0) c.fail(join(path, 'ports'), 'must list at least one port');
  const redirect = o.redirect === undefined ? true : c.bool(join(path, 'redirect'), o.redirect) ?? true;
  let splice: SpliceMode = 'auto';
  if (o.splice !== undefined) {
    if (SPLICE_MODES.includes(o.splice as SpliceMode)) splice = o.splice as SpliceMode;
    else c.fail(join(path, 'splice'), `must be one of ${SPLICE_MODES.join(', ')}, got ${kind(o.splice)}`);
  }
  const svc: ServiceConfig = { name, addresses: shared(o.addresses, addresses), ports: shared(o.ports, ports), redirect, splice };
  kernelMode(c, path, o, svc);
  if (o.policy !== undefined) {
    if (svc.mode === 'kernel') c.fail(join(path, 'policy'), 'needs the sidecar: a kernel-mode service has no L7 policy (mode: sidecar)');
    else {
      const p = policy(c, join(path, 'policy'), o.policy);
      if (p) svc.policy = p;
    }
  }
  return svc;
}

const LOAD_BALANCERS: readonly LoadBalancer[] = ['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM'];

/** Istio's retryOn conditions the sidecar can honour (HAProxy retry-on). */
export const RETRY_ON = ['connect-failure', 'refused-stream', 'reset', '5xx', 'gateway-error', 'retriable-status-codes'] as const;

/** "1s", "300ms", "1.5s", "2m": a duration as Istio writes it, in ms (1 ms to 1 h). */
function duration(c: Checker, path: string, v: unknown): number | undefined {
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v) : null;
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'] : NaN;
  if (!(ms >= 1 && ms <= 3_600_000) || !Number.isInteger(ms)) return c.fail(path, `must be a duration such as 300ms, 1s or 2m (1 ms to 1 h), got ${kind(v)}`);
  return ms;
}

/** A service's traffic policy (DestinationRule / VirtualService field names). */
function policy(c: Checker, path: string, raw: unknown): ServicePolicy | undefined {
  const o = c.object(path, raw, ['loadBalancer', 'timeout', 'retries', 'outlierDetection', 'connectionPool', 'rateLimit']);
  if (!o) return undefined;
  const p: ServicePolicy = {};
  if (o.loadBalancer !== undefined) {
    if (LOAD_BALANCERS.includes(o.loadBalancer as LoadBalancer)) p.loadBalancer = o.loadBalancer as LoadBalancer;
    else c.fail(join(path, 'loadBalancer'), `must be one of ${LOAD_BALANCERS.join(', ')}, got ${kind(o.loadBalancer)}`);
  }
  if (o.timeout !== undefined) p.timeoutMs = duration(c, join(path, 'timeout'), o.timeout);
  if (o.retries !== undefined) {
    const r = c.object(join(path, 'retries'), o.retries, ['attempts', 'perTryTimeout', 'retryOn']);
    if (r) {
      const attempts = c.int(join(path, 'retries', 'attempts'), r.attempts, 0, 10);
      const perTryTimeoutMs = r.perTryTimeout === undefined ? undefined : duration(c, join(path, 'retries', 'perTryTimeout'), r.perTryTimeout);
      // Istio writes retryOn as one comma-separated string.
      const on = r.retryOn === undefined ? ['connect-failure', 'refused-stream', 'gateway-error'] : typeof r.retryOn === 'string' ? r.retryOn.split(',').map((s) => s.trim()) : [];
      if (r.retryOn !== undefined && typeof r.retryOn !== 'string') c.fail(join(path, 'retries', 'retryOn'), `must be a comma-separated string such as "connect-failure,5xx", got ${kind(r.retryOn)}`);
      for (const x of on) if (!(RETRY_ON as readonly string[]).includes(x)) c.fail(join(path, 'retries', 'retryOn'), `${JSON.stringify(x.slice(0, 40))} is not one of ${RETRY_ON.join(', ')}`);
      if (attempts !== undefined) p.retries = { attempts, retryOn: on, ...(perTryTimeoutMs !== undefined ? { perTryTimeoutMs } : {}) };
    }
  }
  if (o.outlierDetection !== undefined) {
    const d = c.object(join(path, 'outlierDetection'), o.outlierDetection, ['consecutive5xxErrors', 'interval', 'baseEjectionTime']);
    if (d) {
      const n = d.consecutive5xxErrors === undefined ? 5 : c.int(join(path, 'outlierDetection', 'consecutive5xxErrors'), d.consecutive5xxErrors, 1, 100);
      const intervalMs = d.interval === undefined ? 10_000 : duration(c, join(path, 'outlierDetection', 'interval'), d.interval);
      const baseEjectionTimeMs = d.baseEjectionTime === undefined ? 30_000 : duration(c, join(path, 'outlierDetection', 'baseEjectionTime'), d.baseEjectionTime);
      if (n !== undefined && intervalMs !== undefined && baseEjectionTimeMs !== undefined) p.outlierDetection = { consecutive5xxErrors: n, intervalMs, baseEjectionTimeMs };
    }
  }
  if (o.connectionPool !== undefined) {
    const cp = c.object(join(path, 'connectionPool'), o.connectionPool, ['tcp']);
    const tcp = cp?.tcp === undefined ? undefined : c.object(join(path, 'connectionPool', 'tcp'), cp.tcp, ['maxConnections']);
    const max = tcp?.maxConnections === undefined ? undefined : c.int(join(path, 'connectionPool', 'tcp', 'maxConnections'), tcp.maxConnections, 1, 1_000_000);
    if (max !== undefined) p.connectionPool = { tcp: { maxConnections: max } };
  }
  if (o.rateLimit !== undefined) {
    const rl = c.object(join(path, 'rateLimit'), o.rateLimit, ['requestsPerSecond', 'burst']);
    const rps = rl ? c.int(join(path, 'rateLimit', 'requestsPerSecond'), rl.requestsPerSecond, 1, 1_000_000) : undefined;
    const burst = rl?.burst === undefined ? 0 : c.int(join(path, 'rateLimit', 'burst'), rl.burst, 0, 1_000_000);
    if (rps !== undefined && burst !== undefined) p.rateLimit = { requestsPerSecond: rps, burst };
  }
  return p;
}

/** How an endpoint is written: address:port, or the address alone when it keeps the connection's port. */
export function endpointName(e: { address: string; port: number }): string {
  return e.port ? `${e.address}:${e.port}` : e.address;
}

/** At most this many endpoints per service: the Maglev table (1,021 slots) stays within ~3 % of even. */
export const ENDPOINTS_MAX = 64;

/** mode, endpoints and affinity of a service (the kernel L4 mode), added to svc when set. */
function kernelMode(c: Checker, path: string, o: Record<string, unknown>, svc: ServiceConfig): void {
  if (o.mode !== undefined && o.mode !== 'sidecar' && o.mode !== 'kernel') c.fail(join(path, 'mode'), `must be sidecar or kernel, got ${kind(o.mode)}`);
  const kernel = o.mode === 'kernel';
  if (kernel) {
    svc.mode = 'kernel';
    if (o.splice !== undefined) c.fail(join(path, 'splice'), 'does not apply to mode: kernel (no sidecar hop to splice)');
    if (o.endpoints === undefined) c.fail(join(path, 'endpoints'), 'is required with mode: kernel (an empty list refuses connections)');
    svc.addresses.forEach((a, i) => {
      if (a.includes(':')) c.fail(`${join(path, 'addresses')}[${i}]`, `${a} is IPv6: kernel mode serves IPv4 services (IPv6 sockets reach them through their IPv4-mapped addresses)`);
    });
  }
  if (o.affinity !== undefined) {
    if (o.affinity !== 'none' && o.affinity !== 'client') c.fail(join(path, 'affinity'), `must be none or client, got ${kind(o.affinity)}`);
    else if (!kernel) c.fail(join(path, 'affinity'), 'applies to mode: kernel only');
    else if (o.affinity === 'client') svc.affinity = 'client';
  }
  if (o.protocol !== undefined) {
    if (o.protocol !== 'tcp' && o.protocol !== 'udp' && o.protocol !== 'http') c.fail(join(path, 'protocol'), `must be tcp, http or udp, got ${kind(o.protocol)}`);
    else if (o.protocol === 'udp' && !kernel) c.fail(join(path, 'protocol'), 'udp needs mode: kernel (the sidecar path carries TCP only)');
    else if (o.protocol === 'http' && kernel) c.fail(join(path, 'protocol'), 'http needs the sidecar (per-request policy): mode: kernel carries connections');
    else if (o.protocol !== 'tcp') svc.protocol = o.protocol;
  }
  if (o.terminateOnRemove !== undefined) {
    const on = c.bool(join(path, 'terminateOnRemove'), o.terminateOnRemove);
    if (on && !kernel) c.fail(join(path, 'terminateOnRemove'), 'applies to mode: kernel only');
    else if (on) svc.terminateOnRemove = true;
  }
  if (o.endpoints === undefined) return;
  const list = c.array(join(path, 'endpoints'), o.endpoints) ?? [];
  if (list.length > ENDPOINTS_MAX) c.fail(join(path, 'endpoints'), `lists ${list.length} endpoints, at most ${ENDPOINTS_MAX}`);
  const seen = new Set<string>();
  svc.endpoints = list.flatMap((raw, i) => {
    const at = `${join(path, 'endpoints')}[${i}]`;
    const e = endpoint(c, at, raw);
    if (!e) return [];
    const key = endpointName(e);
    if (seen.has(key)) return c.fail(at, `${key} is listed twice`) ?? [];
    seen.add(key);
    return [e];
  });
}

/** "a.b.c.d[:port]", or { address: "a.b.c.d[:port]", weight: n }; without a port, the connection's own port. */
function endpoint(c: Checker, at: string, raw: unknown): Endpoint | undefined {
  let text = raw;
  let weight = 1;
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) {
    const o = c.object(at, raw, ['address', 'weight']);
    if (!o) return undefined;
    text = o.address;
    if (o.weight !== undefined) weight = c.int(join(at, 'weight'), o.weight, 1, 1000) ?? 1;
  }
  const m = typeof text === 'string' ? /^([^:]+)(?::(\d+))?$/.exec(text) : null;
  if (!m) return c.fail(at, `must be IPV4[:PORT] or { address: IPV4[:PORT], weight: N }, got ${kind(text)}`);
  const address = c.ipv4(at, m[1]);
  const port = m[2] === undefined ? 0 : c.port(at, Number(m[2]));
  return address === undefined || port === undefined ? undefined : { address, port, weight };
}

/**
 * The parsed array itself when it is frozen (the agent's incremental parse: shared between
 * versions, nobody can change it) and holds exactly the validated values; else the validated
 * copy. The agent keeps services by the ten thousand: one array each instead of two.
 */
function shared<T>(raw: unknown, out: T[]): T[] {
  if (Array.isArray(raw) && Object.isFrozen(raw) && raw.length === out.length && raw.every((x, i) => x === out[i])) return raw as T[];
  return out;
}

/** Validates one service on its own (the Kubernetes source checks each Service as it changes). */
export function validateService(raw: unknown, path: string, source: string): ServiceConfig {
  const c = new Checker();
  const svc = service(c, path, raw);
  if (c.issues.length || !svc) throw new ConfigError(source, c.issues);
  return svc;
}

/**
 * Services already validated, by their parsed object: a long-lived caller that re-parses
 * incrementally (the agent) gets the same frozen object for an unchanged item and skips it.
 */
export type ServiceCache = WeakMap<object, ServiceConfig>;

/** Validates a parsed config document; throws ConfigError listing every problem. */
export function validateConfig(raw: unknown, source: string, cache?: ServiceCache): MeshConfig {
  const c = new Checker();
  // An empty document (empty file, only comments, /dev/null) is a mistake, never "no services":
  // applied to a live instance it would switch every service off.
  if (raw === null || raw === undefined) {
    c.fail('', 'the config is empty; to mesh no services, write `services: []`');
    throw new ConfigError(source, c.issues);
  }
  const top = c.object('', raw, ['sidecar', 'services', 'exclude', 'capture', 'autoSplice', 'spliceQueueBytes', 'spliceHops', 'pods']) ?? {};
  let spliceHops: SpliceMode = 'auto';
  if (top.spliceHops !== undefined) {
    if (SPLICE_MODES.includes(top.spliceHops as SpliceMode)) spliceHops = top.spliceHops as SpliceMode;
    else c.fail('spliceHops', `must be one of ${SPLICE_MODES.join(', ')}, got ${kind(top.spliceHops)}`);
  }
  const spliceQueueBytes = top.spliceQueueBytes === undefined ? SPLICE_QUEUE_DEFAULT
    : c.int('spliceQueueBytes', top.spliceQueueBytes, 65536, 64 * 1024 * 1024) ?? SPLICE_QUEUE_DEFAULT;
  if (top.services === undefined) c.fail('services', 'is required (write `services: []` to mesh no services)');
  if (top.autoSplice !== undefined) {
    c.fail('autoSplice', 'was removed: splice: auto no longer votes per service, it decides per connection from the app\'s socket '
      + '(TCP_NODELAY: spliced; Nagle or TCP_CORK: left to TCP). Delete this block.');
  }
  const sc = sidecar(c, top.sidecar);

  const services: ServiceConfig[] = [];
  const rawServices = top.services === undefined ? [] : c.array('services', top.services) ?? [];
  rawServices.forEach((s, i) => {
    const known = cache && typeof s === 'object' && s !== null ? cache.get(s) : undefined;
    if (known) {
      services.push(known);
      return;
    }
    const before = c.issues.length;
    const svc = service(c, `services[${i}]`, s);
    if (svc) services.push(svc);
    if (svc && cache && c.issues.length === before && Object.isFrozen(s)) cache.set(s as object, svc);
  });
  const seenNames = new Map<string, number>();
  const seenKeys = new Map<string, string>();
  services.forEach((s, i) => {
    if (!s.name) return;
    const first = seenNames.get(s.name);
    if (first !== undefined) c.fail(`services[${i}].name`, `duplicate service name "${s.name}" (also services[${first}])`);
    else seenNames.set(s.name, i);
    for (const addr of s.addresses.length ? s.addresses : ['*']) {
      for (const port of s.ports) {
        const key = `${addr}:${port}`;
        const other = seenKeys.get(key);
        if (other !== undefined && other !== s.name) c.fail(`services[${i}]`, `${key} is already claimed by service "${other}"`);
        seenKeys.set(key, s.name);
      }
    }
  });

  const ex = c.object('exclude', top.exclude ?? {}, ['outboundPorts', 'outboundCIDRs']) ?? {};
  const outboundPorts = ex.outboundPorts === undefined ? [] : c.ports('exclude.outboundPorts', ex.outboundPorts);
  const outboundCIDRs = cidrs(c, 'exclude.outboundCIDRs', ex.outboundCIDRs);
  const capture = captureBlock(c, top.capture, outboundPorts, outboundCIDRs);

  const pods: PodConfig[] = [];
  const rawPods = top.pods === undefined ? [] : c.array('pods', top.pods) ?? [];
  rawPods.forEach((p, i) => {
    const v = pod(c, `pods[${i}]`, p, { sidecar: sc, capture });
    if (v) pods.push(v);
  });
  const seen = new Map<string, number>();
  // Compared as what they name: a namespace name and its /var/run/netns path are one namespace
  // (aliases only the kernel can tell apart, such as two links to one file, are refused when the
  // pods are found).
  for (const [field, of] of [['name', (p: PodConfig) => p.name], ['cgroup', (p: PodConfig) => p.cgroup], ['netns', (p: PodConfig) => (p.netns ? netnsKey(p.netns) : '')]] as const) {
    seen.clear();
    pods.forEach((p, i) => {
      const v = of(p);
      if (!v) return;
      const first = seen.get(v);
      if (first !== undefined) c.fail(`pods[${i}].${field}`, `${quote(field === 'netns' ? p.netns : v)} is also the ${field} of pods[${first}]${field === 'netns' && p.netns !== pods[first].netns ? ` (${quote(pods[first].netns)})` : ''}`);
      else seen.set(v, i);
    });
  }
  // A pod's own address names it in the kernel (sm_local_addrs): two pods cannot share one.
  const owners = new Map<string, number>();
  pods.forEach((p, i) => (p.addresses ?? []).forEach((a, j) => {
    const first = owners.get(a);
    if (first !== undefined && first !== i) c.fail(`pods[${i}].addresses[${j}]`, `${a} is also an address of pods[${first}] (${pods[first].name})`);
    else owners.set(a, i);
  }));
  checkCapacity(c, services, capture, pods);

  if (c.issues.length) throw new ConfigError(source, c.issues);
  return { sidecar: sc, services, exclude: { outboundPorts, outboundCIDRs }, capture, spliceQueueBytes, spliceHops, pods };
}

/** Every count against the kernel maps' capacity, so a config that cannot fit is refused whole. */
function checkCapacity(c: Checker, services: ServiceConfig[], capture: CaptureConfig, pods: PodConfig[]): void {
  const over = (path: string, n: number, what: string, max: number, map: string) => {
    if (n > max) c.fail(path, `${n} ${what}, the kernel map ${map} holds ${max}`);
  };
  over('services', services.length, 'services', CAPACITY.services, 'sm_svc_state');
  const keys = services.reduce((n, s) => n + Math.max(1, s.addresses.length) * s.ports.length, 0);
  over('services', keys, 'service keys (addresses × ports)', CAPACITY.serviceKeys, 'sm_services');
  over('pods', pods.length, 'pods', CAPACITY.pods, 'sm_pods');
  const kernelServices = services.filter((s) => s.mode === 'kernel' && s.endpoints?.length).length;
  over('services', kernelServices * CAPACITY.maglevSlots, `Maglev table slots (${CAPACITY.maglevSlots} per kernel-mode service with endpoints)`, CAPACITY.backendSlots, 'sm_backends');
  // Every pod (or the one implicit pod) writes its own port and CIDR rules.
  const caps = pods.length ? pods.map((p, i) => [`pods[${i}].capture`, p.capture] as const) : [['capture', capture] as const];
  const ports = caps.reduce((n, [, cp]) => n + cp.excludeOutboundPorts.length + cp.includeOutboundPorts.length
    + cp.excludeInboundPorts.length + (cp.includeInboundPorts === '*' ? 0 : cp.includeInboundPorts.length), 0);
  const cidrs = caps.reduce((n, [, cp]) => n + cp.excludeOutboundCIDRs.length + cp.includeOutboundCIDRs.filter((x) => x !== '*').length, 0)
    + pods.reduce((n, p) => n + (p.addresses?.length ?? 0), 0);
  const single = !pods.length;
  over(single ? 'capture.excludeOutboundPorts' : 'pods', ports, single ? 'excluded and included ports, outbound and inbound (exclude.outboundPorts included)' : 'port rules (excluded and included ports of every pod, outbound and inbound)', CAPACITY.portRules, 'sm_ports');
  over(single ? 'capture.excludeOutboundCIDRs' : 'pods', cidrs, single ? 'excluded and included CIDRs (exclude.outboundCIDRs included)' : 'CIDR rules (excluded, included and own addresses of every pod)', CAPACITY.cidrRules, 'sm_cidrs');
}

function cidrs(c: Checker, path: string, raw: unknown): string[] {
  const out: string[] = [];
  const list = raw === undefined ? [] : c.array(path, raw) ?? [];
  list.forEach((v, i) => {
    try {
      if (typeof v !== 'string') throw new TypeError(`got ${kind(v)}`);
      out.push(parseCidr(v).text);
    } catch (e) {
      c.fail(`${path}[${i}]`, `must be a CIDR like 10.0.0.0/8, got ${typeof v === 'string' ? quote(v) : kind(v)}`);
    }
  });
  return out;
}

function union<T>(a: T[], b: T[]): T[] {
  return [...new Set([...a, ...b])];
}

/** The capture block at `path`; with `base` (a pod override) unset fields come from it. */
function captureBlock(c: Checker, raw: unknown, exclPorts: number[], exclCidrs: string[], path = 'capture', base?: CaptureConfig): CaptureConfig {
  const o = c.object(path, raw ?? {}, [
    'outbound', 'includeOutboundCIDRs', 'excludeOutboundCIDRs', 'includeOutboundPorts', 'excludeOutboundPorts',
    'includeInboundPorts', 'excludeInboundPorts',
  ]) ?? {};
  const at = (k: string) => `${path}.${k}`;
  let outbound: CaptureConfig['outbound'] = base?.outbound ?? 'services';
  if (o.outbound !== undefined) {
    if (o.outbound === 'services' || o.outbound === 'all') outbound = o.outbound;
    else c.fail(at('outbound'), `must be services or all, got ${kind(o.outbound)}`);
  }
  const wildcard = (v: unknown) => Array.isArray(v) && v.length === 1 && v[0] === '*';
  const includeOutboundCIDRs = o.includeOutboundCIDRs === undefined ? base?.includeOutboundCIDRs ?? ['*']
    : wildcard(o.includeOutboundCIDRs) ? ['*'] : cidrs(c, at('includeOutboundCIDRs'), o.includeOutboundCIDRs);
  const includeInboundPorts = o.includeInboundPorts === undefined ? base?.includeInboundPorts ?? '*'
    : wildcard(o.includeInboundPorts) ? '*' as const : c.ports(at('includeInboundPorts'), o.includeInboundPorts);
  return {
    outbound,
    includeOutboundCIDRs,
    excludeOutboundCIDRs: o.excludeOutboundCIDRs === undefined && base ? base.excludeOutboundCIDRs
      : union(cidrs(c, at('excludeOutboundCIDRs'), o.excludeOutboundCIDRs), exclCidrs),
    includeOutboundPorts: o.includeOutboundPorts === undefined ? base?.includeOutboundPorts ?? [] : c.ports(at('includeOutboundPorts'), o.includeOutboundPorts),
    excludeOutboundPorts: o.excludeOutboundPorts === undefined && base ? base.excludeOutboundPorts
      : union(o.excludeOutboundPorts === undefined ? [] : c.ports(at('excludeOutboundPorts'), o.excludeOutboundPorts), exclPorts),
    includeInboundPorts,
    excludeInboundPorts: o.excludeInboundPorts === undefined && base ? base.excludeInboundPorts
      : union(ISTIO_INBOUND_EXCLUDED, o.excludeInboundPorts === undefined ? [] : c.ports(at('excludeInboundPorts'), o.excludeInboundPorts)),
  };
}

/**
 * What a config asks that the chosen capture mode cannot express, by field path (empty when it
 * fits). eBPF mode takes every valid config; iptables mode meshes one namespace.
 */
export function modeIssues(cfg: MeshConfig, mode: 'ebpf' | 'iptables'): ConfigIssue[] {
  if (mode !== 'iptables') return [];
  const issues: ConfigIssue[] = [];
  if (cfg.pods.length) issues.push({ path: 'pods', message: 'iptables mode meshes one pod, the namespace given with --netns; leave pods out' });
  return issues;
}

/** Throws a ConfigError when the config does not fit the mode (see modeIssues). */
export function checkMode(cfg: MeshConfig, mode: 'ebpf' | 'iptables', source: string): void {
  const issues = modeIssues(cfg, mode);
  if (issues.length) throw new ConfigError(`${source} (for ${mode} mode)`, issues);
}
