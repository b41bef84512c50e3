// A service's traffic policy, under Istio's names (DestinationRule trafficPolicy, VirtualService
// http route), enforced by the governance sidecar.
import { LOAD_BALANCERS, RETRY_ON } from '../constants.js';
import type { ServicePolicy } from '../model.js';
import { join, kind, type Checker } from './checker.js';

export function policy(c: Checker, path: string, raw: unknown): ServicePolicy | undefined {
  const o = c.object(path, raw, ['loadBalancer', 'timeout', 'retries', 'outlierDetection', 'connectionPool', 'rateLimit']);
  if (!o) return undefined;
  const p: ServicePolicy = {};
  if (o.loadBalancer !== undefined) {
    const lb = c.oneOf(join(path, 'loadBalancer'), o.loadBalancer, LOAD_BALANCERS);
    if (lb) p.loadBalancer = lb;
  }
  if (o.timeout !== undefined) p.timeoutMs = c.duration(join(path, 'timeout'), o.timeout);
  if (o.retries !== undefined) {
    const r = c.object(join(path, 'retries'), o.retries, ['attempts', 'perTryTimeout', 'retryOn']);
    if (r) {
      const attempts = c.int(join(path, 'retries', 'attempts'), r.attempts, 0, 10);
      const perTryTimeoutMs = r.perTryTimeout === undefined ? undefined : c.duration(join(path, 'retries', 'perTryTimeout'), r.perTryTimeout);
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
  return p;
}
