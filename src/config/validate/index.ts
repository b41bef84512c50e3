// Validation at the boundary: raw YAML/JSON in, a complete MeshConfig out, or every problem at
// once, each located by its field path. Pure: no I/O. One file per concern beside this one:
// checker (primitives), capture (the sidecar and capture blocks), service (services and kernel
// mode), policy (the governance policy), pods, capacity (against the kernel maps), mode.
import { ConfigError } from '../../errors.js';
import { SPLICE_MODES, SPLICE_QUEUE_DEFAULT } from '../constants.js';
import type { AuthorizationPolicy, MeshConfig, PeerAuthentication, PeerWorkload, PodConfig, ServiceConfig, SpliceMode } from '../model.js';
import { checkCapacity } from './capacity.js';
import { captureBlock, sidecar } from './capture.js';
import { Checker } from './checker.js';
import { pod, podConflicts } from './pods.js';
import { service, serviceConflicts } from './service.js';
import { routeTargets } from './routes.js';
import { applyTrafficDocuments } from './traffic-docs.js';
import { documents, identity, kernelModeUnderStrict } from './security.js';
import { tracing } from './tracing.js';
import { istioSecurity, type IstioSecurity } from './istio.js';

export { checkMode, modeIssues } from './mode.js';
export { netnsKey, normalizeCgroup } from './pods.js';
export { quote } from './checker.js';

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

/**
 * Validates a parsed config document, and the Istio documents that follow it in the file;
 * throws ConfigError listing every problem.
 */
export function validateConfig(raw: unknown, source: string, cache?: ServiceCache, istioDocuments: unknown[] = []): MeshConfig {
  const c = new Checker();
  // An empty document (empty file, only comments, /dev/null) is a mistake, never "no services":
  // applied to a live instance it would switch every service off.
  if (raw === null || raw === undefined) {
    c.fail('', 'the config is empty; to mesh no services, write `services: []`');
    throw new ConfigError(source, c.issues);
  }
  const top = c.object('', raw, ['sidecar', 'services', 'exclude', 'capture', 'autoSplice', 'spliceQueueBytes', 'spliceHops', 'pods', 'identity', 'tracing']) ?? {};
  const spliceHops: SpliceMode = top.spliceHops === undefined ? 'auto' : c.oneOf('spliceHops', top.spliceHops, SPLICE_MODES) ?? 'auto';
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
  serviceConflicts(c, services);
  const docs = documents(c, istioDocuments);
  const trafficNotices = applyTrafficDocuments(c, services, docs.traffic);
  routeTargets(c, services);

  const ex = c.object('exclude', top.exclude ?? {}, ['outboundPorts', 'outboundCIDRs']) ?? {};
  const outboundPorts = ex.outboundPorts === undefined ? [] : c.ports('exclude.outboundPorts', ex.outboundPorts);
  const outboundCIDRs = c.cidrs('exclude.outboundCIDRs', ex.outboundCIDRs);
  const capture = captureBlock(c, top.capture, outboundPorts, outboundCIDRs);

  const pods: PodConfig[] = [];
  const rawPods = top.pods === undefined ? [] : c.array('pods', top.pods) ?? [];
  rawPods.forEach((p, i) => {
    const v = pod(c, `pods[${i}]`, p, { sidecar: sc, capture });
    if (v) pods.push(v);
  });
  podConflicts(c, pods);
  checkCapacity(c, services, capture, pods);
  const id = identity(c, top.identity);
  const traces = top.tracing === undefined ? undefined : tracing(c, top.tracing);
  const security = { identity: id, peerAuthentications: docs.peerAuthentications, authorizationPolicies: docs.authorizationPolicies, peers: [] as PeerWorkload[] };
  kernelModeUnderStrict(c, services, pods, security);

  if (c.issues.length) throw new ConfigError(source, c.issues);
  return {
    sidecar: sc, services, exclude: { outboundPorts, outboundCIDRs }, capture, spliceQueueBytes, spliceHops, pods, ...security, ...(traces ? { tracing: traces } : {}),
    ...(docs.notices.length || trafficNotices.length ? { notices: [...docs.notices, ...trafficNotices] } : {}),
  };
}

/**
 * A node's state from parts already validated one by one (the Kubernetes source validates each
 * Service as it changes): the node-wide settings of `base`, these services, and the pods as a
 * config file would list them. Only what concerns the whole is checked here (two services or pods
 * that collide, the kernel maps' capacity) and the pods themselves; problems are named
 * services[i] / pods[i] in the order given.
 */
export function validateState(base: MeshConfig, services: ServiceConfig[], rawPods: unknown[], source: string,
  security: { peerAuthentications: PeerAuthentication[]; authorizationPolicies: AuthorizationPolicy[]; peers: PeerWorkload[] } = { peerAuthentications: [], authorizationPolicies: [], peers: [] }): MeshConfig {
  const c = new Checker();
  serviceConflicts(c, services);
  const pods: PodConfig[] = [];
  rawPods.forEach((p, i) => {
    const v = pod(c, `pods[${i}]`, p, { sidecar: base.sidecar, capture: base.capture });
    if (v) pods.push(v);
  });
  podConflicts(c, pods);
  checkCapacity(c, services, base.capture, pods);
  const withSecurity = { ...base, ...security };
  kernelModeUnderStrict(c, services, pods, withSecurity);
  if (c.issues.length) throw new ConfigError(source, c.issues);
  return { ...withSecurity, services, pods };
}

/**
 * One Istio security object as the Kubernetes source reads it (the same translation as a document
 * of the config file); throws a ConfigError naming its fields (spec.…) when it is not valid.
 */
export function validateIstioSecurity(raw: unknown, source: string): IstioSecurity {
  const c = new Checker();
  const r = istioSecurity(c, '', raw, 'default');
  if (c.issues.length || !r) throw new ConfigError(source, c.issues.length ? c.issues : [{ path: 'apiVersion', message: 'is not security.istio.io' }]);
  return { ...r, ignored: r.ignored.map((f) => f.replace(/^\./, '')) };
}
