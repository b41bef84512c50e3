// A service: its addresses and ports, its switch and splice choice, the kernel L4 mode (endpoints,
// affinity, UDP) and, through the sidecar, its traffic policy.
import { ENDPOINTS_MAX, SPLICE_MODES, endpointName } from '../constants.js';
import type { Endpoint, ServiceConfig, SpliceMode } from '../model.js';
import { join, kind, type Checker } from './checker.js';
import { policy } from './policy.js';

export function service(c: Checker, path: string, raw: unknown): ServiceConfig | undefined {
  const o = c.object(path, raw, ['name', 'addresses', 'ports', 'redirect', 'splice', 'mode', 'endpoints', 'affinity', 'terminateOnRemove', 'protocol', 'policy']);
  if (!o) return undefined;
  const name = c.name(join(path, 'name'), o.name) ?? '';
  const addresses = ((o.addresses === undefined ? [] : c.array(join(path, 'addresses'), o.addresses)) ?? [])
    .map((a, i) => c.ip(`${join(path, 'addresses')}[${i}]`, a))
    .filter((a): a is string => a !== undefined);
  if (o.ports === undefined) c.fail(join(path, 'ports'), 'is required');
  const ports = o.ports === undefined ? [] : c.ports(join(path, 'ports'), o.ports);
  if (o.ports !== undefined && Array.isArray(o.ports) && o.ports.length === 0) c.fail(join(path, 'ports'), 'must list at least one port');
  const redirect = o.redirect === undefined ? true : c.bool(join(path, 'redirect'), o.redirect) ?? true;
  const splice: SpliceMode = o.splice === undefined ? 'auto' : c.oneOf(join(path, 'splice'), o.splice, SPLICE_MODES) ?? 'auto';
  const svc: ServiceConfig = { name, addresses: shared(o.addresses, addresses), ports: shared(o.ports, ports), redirect, splice };
  kernelMode(c, path, o, svc);
  if (o.policy !== undefined) {
    if (svc.mode === 'kernel') c.fail(join(path, 'policy'), 'needs the sidecar: a kernel-mode service has no L7 policy (mode: sidecar)');
    else {
      const p = policy(c, join(path, 'policy'), o.policy, name);
      if (p) svc.policy = p;
    }
  }
  return svc;
}

/** mode, endpoints and affinity of a service (the kernel L4 mode), added to svc when set. */
function kernelMode(c: Checker, path: string, o: Record<string, unknown>, svc: ServiceConfig): void {
  if (o.mode !== undefined) c.oneOf(join(path, 'mode'), o.mode, ['sidecar', 'kernel'], 'sidecar or kernel');
  const kernel = o.mode === 'kernel';
  if (kernel) {
    svc.mode = 'kernel';
    if (o.splice !== undefined) c.fail(join(path, 'splice'), 'does not apply to mode: kernel (no sidecar hop to splice)');
    if (o.endpoints === undefined) c.fail(join(path, 'endpoints'), 'is required with mode: kernel (an empty list refuses connections)');
    svc.addresses.forEach((a, i) => {
      if (a.includes(':')) c.fail(`${join(path, 'addresses')}[${i}]`, `${a} is IPv6: kernel mode serves IPv4 services (IPv6 sockets reach them through their IPv4-mapped addresses)`);
    });
  }
  if (o.affinity !== undefined && c.oneOf(join(path, 'affinity'), o.affinity, ['none', 'client'], 'none or client')) {
    if (!kernel) c.fail(join(path, 'affinity'), 'applies to mode: kernel only');
    else if (o.affinity === 'client') svc.affinity = 'client';
  }
  if (o.protocol !== undefined) {
    const protocol = c.oneOf(join(path, 'protocol'), o.protocol, ['tcp', 'http', 'http2', 'grpc', 'udp'], 'tcp, http, http2, grpc or udp');
    if (protocol === 'udp' && !kernel) c.fail(join(path, 'protocol'), 'udp needs mode: kernel (the sidecar path carries TCP only)');
    else if (protocol && protocol !== 'udp' && protocol !== 'tcp' && kernel) c.fail(join(path, 'protocol'), `${protocol} needs the sidecar (per-request policy): mode: kernel carries connections`);
    else if (protocol && protocol !== 'tcp') svc.protocol = protocol;
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
  let labels: Record<string, string> | undefined;
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw)) {
    const o = c.object(at, raw, ['address', 'weight', 'labels']);
    if (!o) return undefined;
    text = o.address;
    if (o.weight !== undefined) weight = c.int(join(at, 'weight'), o.weight, 1, 1000) ?? 1;
    if (o.labels !== undefined) labels = c.labels(join(at, 'labels'), o.labels);
  }
  const m = typeof text === 'string' ? /^([^:]+)(?::(\d+))?$/.exec(text) : null;
  if (!m) return c.fail(at, `must be IPV4[:PORT] or { address: IPV4[:PORT], weight: N, labels: {…} }, got ${kind(text)}`);
  const address = c.ipv4(at, m[1]);
  const port = m[2] === undefined ? 0 : c.port(at, Number(m[2]));
  return address === undefined || port === undefined ? undefined : { address, port, weight, ...(labels && Object.keys(labels).length ? { labels: { ...labels } } : {}) };
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

/** Two services never claim one address:port (nor one name). */
export function serviceConflicts(c: Checker, services: ServiceConfig[]): void {
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
}
