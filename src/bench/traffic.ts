// `sockmesh bench --governance --traffic`: the costs of L7 traffic management, measured side by side
// in one run on the two-pod environment (both pods meshed, each with its governance sidecar
// following an agent, eBPF capture): HTTP/1.1 keep-alive requests to a service with one route and
// to one with 200 routes (the request matches the last, so HAProxy looks at all of them), the same
// one-route service with tracing on at 100 % (spans exported over OTLP/HTTP to a receiver in the
// server pod), and gRPC unary calls through both sidecars proxied as HTTP/2 beside the same calls
// forwarded as plain TCP by the same sidecars. Direct is the same client reaching the server apps
// on ports no capture takes. Targets: 200 routes' added p50 <= 1.15x one route's; gRPC's added p50
// <= 1.5x plain TCP forwarding's; requests/s with tracing >= 0.9x without.
import { join } from 'node:path';
import { requireRoot } from '../util/root.js';
import { packageRoot } from '../util/paths.js';
import { ECHO_PORT, SINK_PORT } from './env.js';
import { HTTP_PORT } from './governance.js';
import { ratio, type Spread } from './stats.js';
import { DIRECT, SERVER, TwoPodEnv, interleaved, spreads, table } from './twopod.js';

const VIP = { one: '10.96.8.1', many: '10.96.8.2', grpc: '10.96.8.3', tcp: '10.96.8.4' };
const GRPC_PORT = 50051;
const GRPC_TCP_PORT = 50052;
const COLLECTOR_PORT = 4318;
/** gRPC calls in flight: one, so p50 is the latency a call sees (the Node client, not the path, is what more would measure on 2 cores). */
const GRPC_IN_FLIGHT = 1;
export const ROUTES = 200;

export type TrafficMode = 'http-direct' | 'http-1-route' | 'http-200-routes' | 'http-traced' | 'grpc-direct' | 'grpc-h2' | 'grpc-tcp';
export const TRAFFIC_MODES: TrafficMode[] = ['http-direct', 'http-1-route', 'http-200-routes', 'http-traced', 'grpc-direct', 'grpc-h2', 'grpc-tcp'];

export interface TrafficRow { metric: 'p50' | 'p99' | 'rps' | 'cpuPerReq'; unit: string; modes: Partial<Record<TrafficMode, Spread>> }

export interface TrafficBenchResult {
  startedAt: string;
  kernel: string;
  repeats: number;
  secondsPerRun: number;
  rows: TrafficRow[];
  targets: { routesAddedP50: number; grpcAddedP50: number; tracedRps: number };
}

/** The services: one route, 200 routes (199 that do not match, then the catch-all), gRPC as h2 and as TCP. */
function config(tracing: string, pods: string, dir: string): string {
  const many = Array.from({ length: ROUTES - 1 }, (_, i) => `        - { name: r${i}, match: [{ headers: { x-route: { exact: "r${i}" } } }, { uri: { prefix: "/r${i}/" } }], route: [{ destination: { host: many } }] }`);
  return `services:
  - name: one
    addresses: [${VIP.one}]
    ports: [${HTTP_PORT}]
    protocol: http
    endpoints: ['${SERVER}:${HTTP_PORT}']
    policy: { routes: [{ name: all, route: [{ destination: { host: one } }] }] }
  - name: many
    addresses: [${VIP.many}]
    ports: [${HTTP_PORT}]
    protocol: http
    endpoints: ['${SERVER}:${HTTP_PORT}']
    policy:
      routes:
${many.join('\n')}
        - { name: all, route: [{ destination: { host: many } }] }
  - { name: grpc, addresses: [${VIP.grpc}], ports: [${GRPC_PORT}], protocol: grpc, endpoints: ['${SERVER}:${GRPC_PORT}'] }
  - { name: grpctcp, addresses: [${VIP.tcp}], ports: [${GRPC_TCP_PORT}], endpoints: ['${SERVER}:${GRPC_TCP_PORT}'] }
capture: { excludeInboundPorts: [${HTTP_PORT + DIRECT}, ${GRPC_PORT + DIRECT}, ${COLLECTOR_PORT}, 15008, 15090, 15021, 15020] }
identity: { caDir: ${dir}/ca }
${tracing === 'on' ? `tracing: { collector: 'http://${SERVER}:${COLLECTOR_PORT}/v1/traces', randomSamplingPercentage: 100 }\n` : ''}${pods}`;
}

/** A collector that takes every export and answers 200 (an empty ExportTraceServiceResponse). */
const RECEIVER = `require('http').createServer((q, s) => { q.resume(); q.on('end', () => s.writeHead(200, { 'content-type': 'application/x-protobuf' }).end()); })
  .listen(${COLLECTOR_PORT}, '0.0.0.0', () => console.log(JSON.stringify({ event: 'ready' })));`;

export async function runTrafficBench(opts: { quick: boolean; repeats?: number; seconds?: number }, progress: (m: string) => void, kernel: string): Promise<TrafficBenchResult> {
  requireRoot();
  const repeats = opts.repeats ?? (opts.quick ? 1 : 5);
  const seconds = opts.seconds ?? (opts.quick ? 0.3 : 1);
  const grpcLoad = join(packageRoot(), 'dist', 'src', 'bench', 'grpc-load.js');
  const env = await TwoPodEnv.create(`bench${process.pid}t`, {
    variant: 'off',
    config,
    servers: (e) => [
      e.node.spawn('server', e.smload, ['server', '0.0.0.0', String(ECHO_PORT), String(SINK_PORT), String(HTTP_PORT)], 'smload server'),
      e.node.spawn('server', e.smload, ['server', '0.0.0.0', String(ECHO_PORT + DIRECT), String(SINK_PORT + DIRECT), String(HTTP_PORT + DIRECT)], 'smload server (direct)'),
      e.node.spawn('server', process.execPath, [grpcLoad, 'serve', '0.0.0.0', String(GRPC_PORT), String(GRPC_TCP_PORT), String(GRPC_PORT + DIRECT)], 'grpc server'),
      e.node.spawn('server', process.execPath, ['-e', RECEIVER], 'otlp receiver'),
    ],
  });
  let samples: Record<TrafficMode, Array<Record<string, number>>>;
  try {
    samples = await interleaved(TRAFFIC_MODES, repeats, progress, 'traffic', async (mode) => {
      await env.setVariant(mode === 'http-traced' ? 'on' : 'off');
      const s = mode.startsWith('grpc')
        ? await env.load(process.execPath, [grpcLoad, 'call', mode === 'grpc-direct' ? SERVER : mode === 'grpc-h2' ? VIP.grpc : VIP.tcp,
          String(mode === 'grpc-direct' ? GRPC_PORT + DIRECT : mode === 'grpc-h2' ? GRPC_PORT : GRPC_TCP_PORT), String(GRPC_IN_FLIGHT), String(seconds)], 'grpc', seconds, `grpc ${mode}`)
        : await env.load(env.smload, ['http', mode === 'http-direct' ? SERVER : mode === 'http-200-routes' ? VIP.many : VIP.one,
          String(HTTP_PORT + (mode === 'http-direct' ? DIRECT : 0)), '64', String(seconds)], 'test', seconds, `smload ${mode}`);
      return { p50: s.result.p50, p99: s.result.p99, rps: s.result.rps, cpuPerReq: s.cpuUsec / s.result.count };
    });
  } finally {
    await env.close();
  }
  const row = (metric: TrafficRow['metric'], unit: string): TrafficRow => ({ metric, unit, modes: spreads(TRAFFIC_MODES, samples, metric) });
  const rows = [row('p50', 'µs'), row('p99', 'µs'), row('rps', 'req/s'), row('cpuPerReq', 'µs CPU/req')];
  const med = (m: TrafficMode) => rows[0].modes[m]!.median;
  return {
    startedAt: new Date().toISOString(), kernel, repeats, secondsPerRun: seconds, rows,
    targets: {
      routesAddedP50: (med('http-200-routes') - med('http-direct')) / (med('http-1-route') - med('http-direct')),
      grpcAddedP50: (med('grpc-h2') - med('grpc-direct')) / (med('grpc-tcp') - med('grpc-direct')),
      tracedRps: ratio(rows[2].modes['http-traced']!, rows[2].modes['http-1-route']!),
    },
  };
}

export function formatTrafficBench(res: TrafficBenchResult): string {
  const t = res.targets;
  return [
    'Traffic management: two meshed pods, each with its governance sidecar; HTTP/1.1 keep-alive through both sidecars to a service with one route,',
    `one with ${ROUTES} routes (the last matches), and one route with tracing on (100 %); gRPC unary calls (${GRPC_IN_FLIGHT} in flight on one channel) through both`,
    'sidecars as HTTP/2 and as plain TCP forwarding; direct: the same clients to the server apps, no sidecar',
    '', ...table(TRAFFIC_MODES, res.rows, res.repeats), '',
    `${ROUTES} routes: added p50 ${t.routesAddedP50.toFixed(2)}× one route's (target ≤ 1.15×)`,
    `gRPC as HTTP/2: added p50 ${t.grpcAddedP50.toFixed(2)}× plain TCP forwarding's (target ≤ 1.5×)`,
    `tracing at 100 %: requests/s ${t.tracedRps.toFixed(2)}× tracing off (target ≥ 0.9×)`,
    `${res.repeats} repeat(s) of ${res.secondsPerRun}s per cell, modes interleaved; cells are medians${res.repeats > 1 ? ' (min–max)' : ''}; kernel ${res.kernel}.`,
  ].join('\n');
}
