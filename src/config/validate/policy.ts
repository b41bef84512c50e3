// A service's traffic policy, under Istio's names (DestinationRule trafficPolicy, VirtualService
// http route), enforced by the governance sidecar.
import { LOAD_BALANCERS, RETRY_ON } from '../constants.js';
import type { ServicePolicy } from '../model.js';
import { join, kind, type Checker } from './checker.js';
import { consistentHash, routes, subsets } from './routes.js';

const POLICY_KEYS = ['loadBalancer', 'consistentHash', 'timeout', 'retries', 'outlierDetection', 'connectionPool', 'rateLimit', 'subsets', 'routes'];
/** What a subset's trafficPolicy may set (DestinationRule subsets: balancing and the endpoints' limits). */
const SUBSET_KEYS = ['loadBalancer', 'consistentHash', 'outlierDetection', 'connectionPool'];

/** A service's policy block; `self` is the service's name (a route's default destination). */
export function policy(c: Checker, path: string, raw: unknown, self = '', keys: readonly string[] = POLICY_KEYS): ServicePolicy | undefined {
  const o = c.object(path, raw, keys);
  if (!o) return undefined;
  const p: ServicePolicy = {};
  if (o.loadBalancer !== undefined) {
    const lb = c.oneOf(join(path, 'loadBalancer'), o.loadBalancer, LOAD_BALANCERS);
    if (lb) p.loadBalancer = lb;
  }
  if (o.timeout !== undefined) p.timeoutMs = c.duration(join(path, 'timeout'), o.timeout);
  if (o.consistentHash !== undefined) {
    const h = consistentHash(c, join(path, 'consistentHash'), o.consistentHash);
    if (h) p.consistentHash = h;
    if (h && o.loadBalancer !== undefined) c.fail(join(path, 'loadBalancer'), 'cannot be set with consistentHash (Istio: one of simple or consistentHash)');
  }
  if (o.retries !== undefined) {
    const r = retries(c, join(path, 'retries'), o.retries);
    if (r) p.retries = r;
  }
  if (o.outlierDetection !== undefined) {
    const d = c.object(join(path, 'outlierDetection'), o.outlierDetection, ['consecutive5xxErrors', 'interval', 'baseEjectionTime']);
    if (d) {
      const n = d.consecutive5xxErrors === undefined ? 5 : c.int(join(path, 'outlierDetection', 'consecutive5xxErrors'), d.consecutive5xxErrors, 1, 100);
      const intervalMs = d.interval === undefined ? 10_000 : c.duration(join(path, 'outlierDetection', 'interval'), d.interval);
      const baseEjectionTimeMs = d.baseEjectionTime === undefined ? 30_000 : c.duration(join(path, 'outlierDetection', 'baseEjectionTime'), d.baseEjectionTime);
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
  if (o.subsets !== undefined) p.subsets = subsets(c, join(path, 'subsets'), o.subsets, (at, tp) => policy(c, at, tp, self, SUBSET_KEYS));
  if (o.routes !== undefined) p.routes = routes(c, join(path, 'routes'), o.routes, self, (at, r) => retries(c, at, r));
  return p;
}

/** Istio's HTTPRetry: attempts, perTryTimeout, retryOn (one comma-separated string). */
function retries(c: Checker, path: string, raw: unknown): ServicePolicy['retries'] {
  const r = c.object(path, raw, ['attempts', 'perTryTimeout', 'retryOn']);
  if (!r) return undefined;
  const attempts = c.int(join(path, 'attempts'), r.attempts, 0, 10);
  const perTryTimeoutMs = r.perTryTimeout === undefined ? undefined : c.duration(join(path, 'perTryTimeout'), r.perTryTimeout);
  const on = r.retryOn === undefined ? ['connect-failure', 'refused-stream', 'gateway-error'] : typeof r.retryOn === 'string' ? r.retryOn.split(',').map((s) => s.trim()) : [];
  if (r.retryOn !== undefined && typeof r.retryOn !== 'string') c.fail(join(path, 'retryOn'), `must be a comma-separated string such as "connect-failure,5xx", got ${kind(r.retryOn)}`);
  for (const x of on) if (!(RETRY_ON as readonly string[]).includes(x)) c.fail(join(path, 'retryOn'), `${JSON.stringify(x.slice(0, 40))} is not one of ${RETRY_ON.join(', ')}`);
  return attempts === undefined ? undefined : { attempts, retryOn: on, ...(perTryTimeoutMs !== undefined ? { perTryTimeoutMs } : {}) };
}
