// Exported traces: one span per HTTP request through the sidecar (a client span outbound, a server
// span inbound), made from the access records HAProxy already writes, with OpenTelemetry's SDK and
// its OTLP/HTTP (protobuf) exporter. HAProxy gives each request its own span id and passes it on in
// `traceparent`, so the server side's span is the child of the client side's. HAProxy also decides
// the sampling (a trace's first sidecar at random, every later hop by traceparent's sampled flag):
// a span is made for the sampled requests only. The queue is bounded:
// a span that finds it full is dropped and counted, and so are spans whose export fails; requests
// never wait for any of it (the records are read after HAProxy answered).
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, context, trace, type Context, type Tracer } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider, BatchSpanProcessor, type IdGenerator, type ReadableSpan, type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { Counter, type Registry } from 'prom-client';
import type { TracingConfig } from '../config/model.js';
import type { AccessRecord } from './accesslog.js';

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

/** Hands the SDK the ids HAProxy chose (it asks once per span: a span id, and a trace id for a root). */
class GivenIds implements IdGenerator {
  traceId = '';
  spanId = '';
  generateTraceId(): string { return this.traceId; }
  generateSpanId(): string { return this.spanId; }
}

/** The OTLP exporter, counting what it exports and what it loses. */
class CountingExporter implements SpanExporter {
  constructor(private readonly inner: SpanExporter, private readonly exported: Counter.Internal, private readonly failed: Counter.Internal,
    private readonly handed: (n: number) => void) {}

  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.handed(spans.length);
    this.inner.export(spans, (r) => {
      (r.code === ExportResultCode.SUCCESS ? this.exported : this.failed).inc(spans.length);
      done(r);
    });
  }

  shutdown(): Promise<void> { return this.inner.shutdown(); }
  forceFlush(): Promise<void> { return this.inner.forceFlush?.() ?? Promise.resolve(); }
}

export interface SpanMetrics {
  exported: Counter<'reason'>;
  dropped: Counter<'reason'>;
}

export function spanMetrics(registry: Registry): SpanMetrics {
  return {
    exported: new Counter({ name: 'sockmesh_sidecar_spans_exported_total', help: 'Spans the collector accepted.', labelNames: ['reason'] as const, registers: [registry] }),
    dropped: new Counter({
      name: 'sockmesh_sidecar_spans_dropped_total', labelNames: ['reason'] as const, registers: [registry],
      help: 'Spans not exported, by reason: queue_full (the bounded queue was full), export_failed (the collector refused them or could not be reached).',
    }),
  };
}

/** One sidecar's span export to one collector. */
export class SpanExport {
  private readonly provider: BasicTracerProvider;
  private readonly tracer: Tracer;
  private readonly ids = new GivenIds();
  /** Spans ended and not yet handed to the exporter: what the batch processor's queue holds. */
  private queued = 0;
  private readonly queueFull: Counter.Internal;

  constructor(readonly config: TracingConfig, serviceName: string, metrics: SpanMetrics) {
    this.queueFull = metrics.dropped.labels('queue_full');
    const exporter = new CountingExporter(new OTLPTraceExporter({ url: config.collector, timeoutMillis: 5000 }),
      metrics.exported.labels(''), metrics.dropped.labels('export_failed'), (n) => { this.queued -= n; });
    this.provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName }),
      idGenerator: this.ids,
      spanProcessors: [new BatchSpanProcessor(exporter, { maxQueueSize: config.maxQueueSize, maxExportBatchSize: Math.min(512, config.maxQueueSize), scheduledDelayMillis: 200 })],
    });
    this.tracer = this.provider.getTracer('sockmesh-sidecar');
  }

  /** A span for an HTTP access record that carries HAProxy's trace ids (sampled ones only). */
  record(r: AccessRecord): void {
    if (!r.method || !r.trace_id || !r.span_id || !HEX32.test(r.trace_id) || !HEX16.test(r.span_id)) return;
    // HAProxy decided (the trace's first sidecar at random, every later hop by the flag it got).
    if (!r.trace_flags || !(Number.parseInt(r.trace_flags, 16) & 1)) return;
    // The batch processor would drop it without a word: dropped here, and counted.
    if (this.queued >= this.config.maxQueueSize) {
      this.queueFull.inc();
      return;
    }
    const parent: Context = r.parent_span && HEX16.test(r.parent_span)
      ? trace.setSpanContext(context.active(), { traceId: r.trace_id, spanId: r.parent_span, traceFlags: TraceFlags.SAMPLED, isRemote: true })
      : ROOT_CONTEXT;
    this.ids.traceId = r.trace_id;
    this.ids.spanId = r.span_id;
    const end = r.end_us ?? Date.now() * 1000;
    const start = r.start_us ?? end - r.duration_ms * 1000;
    const span = this.tracer.startSpan(`${r.method} ${r.service}`, {
      kind: r.direction === 'outbound' ? SpanKind.CLIENT : SpanKind.SERVER,
      startTime: [Math.floor(start / 1e6), (start % 1e6) * 1000],
      root: parent === ROOT_CONTEXT,
      attributes: {
        'http.request.method': r.method, 'url.path': r.path ?? '', 'sockmesh.service': r.service, 'server.address': r.upstream,
        ...(r.status !== null ? { 'http.response.status_code': r.status } : {}),
        ...(r.route ? { 'sockmesh.route': r.route } : {}), ...(r.subset ? { 'sockmesh.subset': r.subset } : {}),
        ...(r.grpc_status !== null ? { 'rpc.grpc.status_code': r.grpc_status } : {}),
        ...(r.peer ? { 'sockmesh.peer': r.peer } : {}),
      },
    }, parent);
    if (r.status === null || r.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: r.status === null ? `no response (${r.termination})` : `HTTP ${r.status}` });
    this.queued += 1;
    span.end([Math.floor(end / 1e6), (end % 1e6) * 1000]);
  }

  /** Exports what is queued, then stops. */
  async stop(): Promise<void> {
    await this.provider.shutdown().catch(() => undefined);
  }
}
