// `tracing:` — where the sidecars send their spans (an OTLP/HTTP collector) and how many requests
// make one, under the names of Istio's Telemetry API (randomSamplingPercentage, default 1 %).
import type { TracingConfig } from '../model.js';
import { join, kind, quote, type Checker } from './checker.js';

export const TRACING_DEFAULTS = { randomSamplingPercentage: 1, maxQueueSize: 2048 };

export function tracing(c: Checker, raw: unknown): TracingConfig | undefined {
  const o = c.object('tracing', raw, ['collector', 'randomSamplingPercentage', 'maxQueueSize']);
  if (!o) return undefined;
  let collector: string | undefined;
  if (o.collector === undefined) c.fail('tracing.collector', 'is required: the OTLP/HTTP traces endpoint, e.g. http://otel-collector.observability:4318/v1/traces');
  else {
    try {
      const u = new URL(String(o.collector));
      if (typeof o.collector !== 'string' || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new Error('scheme');
      collector = u.pathname === '/' ? new URL('/v1/traces', u).toString() : u.toString();
    } catch {
      c.fail('tracing.collector', `must be an http:// or https:// URL of an OTLP/HTTP collector (its /v1/traces), got ${typeof o.collector === 'string' ? quote(o.collector) : kind(o.collector)}`);
    }
  }
  let pct = TRACING_DEFAULTS.randomSamplingPercentage;
  if (o.randomSamplingPercentage !== undefined) {
    if (typeof o.randomSamplingPercentage !== 'number' || !(o.randomSamplingPercentage >= 0 && o.randomSamplingPercentage <= 100)) {
      c.fail(join('tracing', 'randomSamplingPercentage'), `must be a number from 0 to 100, got ${kind(o.randomSamplingPercentage)}`);
    } else pct = o.randomSamplingPercentage;
  }
  const maxQueueSize = o.maxQueueSize === undefined ? TRACING_DEFAULTS.maxQueueSize : c.int('tracing.maxQueueSize', o.maxQueueSize, 1, 1_000_000) ?? TRACING_DEFAULTS.maxQueueSize;
  return collector === undefined ? undefined : { collector, randomSamplingPercentage: pct, maxQueueSize };
}
