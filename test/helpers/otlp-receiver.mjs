// A test OTLP/HTTP trace receiver: POST /v1/traces (protobuf), decoded with the OpenTelemetry proto
// definitions as OpenTelemetry's own packages generate them (otlp-transformer's protobufjs root);
// one JSON line per span, ids in hex. Usage: otlp-receiver.mjs --host H --port P
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';
import { gunzipSync } from 'node:zlib';

const require = createRequire(import.meta.url);
const root = require('otlp-proto-root/build/src/generated/root.js');
const Request = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const Response = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse;
const { values } = parseArgs({ options: { host: { type: 'string', default: '127.0.0.1' }, port: { type: 'string', default: '4318' } } });
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const hex = (b) => Buffer.from(b ?? []).toString('hex');
const value = (v) => (v == null ? null : v.stringValue ?? (v.intValue != null ? Number(v.intValue) : v.boolValue ?? v.doubleValue ?? null));

createServer((req, res) => {
  const chunks = [];
  req.on('data', (d) => chunks.push(d));
  req.on('end', () => {
    if (req.method !== 'POST' || req.url !== '/v1/traces') return res.writeHead(404).end();
    let body = Buffer.concat(chunks);
    if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
    const msg = Request.decode(body);
    for (const rs of msg.resourceSpans) {
      const resource = Object.fromEntries((rs.resource?.attributes ?? []).map((a) => [a.key, value(a.value)]));
      for (const ss of rs.scopeSpans) {
        for (const s of ss.spans) {
          out({
            event: 'span', traceId: hex(s.traceId), spanId: hex(s.spanId), parentSpanId: hex(s.parentSpanId), name: s.name, kind: s.kind,
            start: String(s.startTimeUnixNano), end: String(s.endTimeUnixNano), status: s.status?.code ?? 0, service: resource['service.name'],
            attributes: Object.fromEntries(s.attributes.map((a) => [a.key, value(a.value)])),
          });
        }
      }
    }
    res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(Response.encode({}).finish());
  });
}).listen(Number(values.port), values.host, () => out({ event: 'ready', host: values.host, port: Number(values.port) }));
process.once('SIGTERM', () => process.exit(0));
