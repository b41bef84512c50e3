// `sockmesh bench --governance --mtls`: two meshed pods of one node, each with its governance
// sidecar following a real agent (eBPF capture), the client pod's smload calling the server pod's
// services through both sidecars. The mesh's PeerAuthentication switches between DISABLE
// (plaintext between the sidecars: the plaintext governance path) and STRICT (mTLS with the pods'
// certificates), on the same processes, modes interleaved; direct is the same client reaching the
// server app on ports no capture takes. Targets: HTTP keep-alive added p50 with mTLS <= 1.3x the
// plaintext path's, requests/s >= 0.8x; new connections/s >= 0.5x. Also: 1,000 pod certificates
// issued by the agent's CA code, timed, and the memory they take.
import { MeshCA, selfSignedRoot } from '../identity/ca.js';
import { requireRoot } from '../util/root.js';
import { ECHO_PORT, SINK_PORT, type Sample } from './env.js';
import { HTTP_PORT } from './governance.js';
import { ratio, type Spread } from './stats.js';
import { DIRECT, SERVER, TwoPodEnv, interleaved, spreads, table } from './twopod.js';

const WEB_VIP = '10.96.7.1';
const ECHO_VIP = '10.96.7.2';

export type MtlsMode = 'direct' | 'plaintext' | 'mtls';
export const MTLS_MODES: MtlsMode[] = ['direct', 'plaintext', 'mtls'];

export interface MtlsRow { metric: 'p50' | 'p99' | 'rps' | 'connPerSec'; unit: string; modes: Partial<Record<MtlsMode, Spread>> }

export interface MtlsBenchResult {
  startedAt: string;
  kernel: string;
  repeats: number;
  secondsPerRun: number;
  rows: MtlsRow[];
  targets: { addedP50: number; rps: number; connPerSec: number };
  issuance: { certificates: number; ms: number; heapMiB: number };
}

function mtlsEnv(name: string): Promise<TwoPodEnv> {
  return TwoPodEnv.create(name, {
    variant: 'DISABLE',
    config: (mode, pods, dir) => `services:
  - { name: web, addresses: [${WEB_VIP}], ports: [${HTTP_PORT}], protocol: http, endpoints: ['${SERVER}:${HTTP_PORT}'] }
  - { name: echo, addresses: [${ECHO_VIP}], ports: [${ECHO_PORT}], endpoints: ['${SERVER}:${ECHO_PORT}'] }
capture: { excludeInboundPorts: [${ECHO_PORT + DIRECT}, ${SINK_PORT + DIRECT}, ${HTTP_PORT + DIRECT}, 15008, 15090, 15021, 15020] }
identity: { caDir: ${dir}/ca }
${pods}---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: bench }
spec: { mtls: { mode: ${mode} } }
`,
    servers: (env) => [
      env.node.spawn('server', env.smload, ['server', '0.0.0.0', String(ECHO_PORT), String(SINK_PORT), String(HTTP_PORT)], 'smload server'),
      env.node.spawn('server', env.smload, ['server', '0.0.0.0', String(ECHO_PORT + DIRECT), String(SINK_PORT + DIRECT), String(HTTP_PORT + DIRECT)], 'smload server (direct)'),
    ],
  });
}

/** smload from the client pod: HTTP keep-alive to the web service, or new connections to echo. */
function run(env: TwoPodEnv, mode: MtlsMode, test: 'http' | 'conn', seconds: number): Promise<Sample> {
  const direct = mode === 'direct';
  const [host, port] = test === 'http' ? [direct ? SERVER : WEB_VIP, HTTP_PORT] : [direct ? SERVER : ECHO_VIP, ECHO_PORT];
  return env.load(env.smload, [test, host, String(port + (direct ? DIRECT : 0)), '64', String(seconds)], 'test', seconds, `smload ${test} ${mode}`);
}

/** 1,000 pod certificates from the agent's CA code (a per-node intermediate under a new root), timed, and the heap they hold. */
export async function issuance(count = 1000): Promise<MtlsBenchResult['issuance']> {
  const ca = new MeshCA({ description: 'memory', load: async () => selfSignedRoot('cluster.local') }, 'cluster.local', 'bench');
  await ca.refresh(24 * 3600_000);
  globalThis.gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  const held = [];
  for (let i = 0; i < count; i++) held.push(ca.issue(`spiffe://cluster.local/ns/bench/sa/pod-${i}`, `pod-${i}.sa.bench.ns.cluster.local`, 24 * 3600_000));
  const ms = performance.now() - t0;
  const heapMiB = (process.memoryUsage().heapUsed - heap0) / 1048576;
  return { certificates: held.length, ms, heapMiB };
}

export async function runMtlsBench(opts: { quick: boolean; repeats?: number; seconds?: number }, progress: (m: string) => void, kernel: string): Promise<MtlsBenchResult> {
  requireRoot();
  const repeats = opts.repeats ?? (opts.quick ? 1 : 5);
  const seconds = opts.seconds ?? (opts.quick ? 0.3 : 1);
  progress('issuing 1,000 pod certificates');
  const issued = await issuance();
  const env = await mtlsEnv(`bench${process.pid}m`);
  let samples: Record<MtlsMode, Array<Record<string, number>>>;
  try {
    samples = await interleaved(MTLS_MODES, repeats, progress, 'mTLS', async (mode) => {
      if (mode !== 'direct') await env.setVariant(mode === 'mtls' ? 'STRICT' : 'DISABLE');
      const http = await run(env, mode, 'http', seconds);
      const conn = await run(env, mode, 'conn', seconds);
      return { p50: http.result.p50, p99: http.result.p99, rps: http.result.rps, connPerSec: conn.result.cps };
    });
  } finally {
    await env.close();
  }
  const row = (metric: MtlsRow['metric'], unit: string): MtlsRow => ({ metric, unit, modes: spreads(MTLS_MODES, samples, metric) });
  const rows = [row('p50', 'µs'), row('p99', 'µs'), row('rps', 'req/s'), row('connPerSec', 'conn/s')];
  const med = (metric: MtlsRow['metric'], m: MtlsMode) => rows.find((r) => r.metric === metric)!.modes[m]!.median;
  return {
    startedAt: new Date().toISOString(), kernel, repeats, secondsPerRun: seconds, rows, issuance: issued,
    targets: {
      addedP50: (med('p50', 'mtls') - med('p50', 'direct')) / (med('p50', 'plaintext') - med('p50', 'direct')),
      rps: ratio(rows[2].modes.mtls!, rows[2].modes.plaintext!),
      connPerSec: ratio(rows[3].modes.mtls!, rows[3].modes.plaintext!),
    },
  };
}

export function formatMtlsBench(res: MtlsBenchResult): string {
  const t = res.targets;
  return [
    'mTLS: two meshed pods, each with its governance sidecar; HTTP/1.1 keep-alive (p50, p99, req/s) and new TCP connections (conn/s) through both sidecars,',
    'plaintext between them (PeerAuthentication DISABLE) and mTLS (STRICT); direct: the same client to the server app, no sidecar',
    '', ...table(MTLS_MODES, res.rows, res.repeats), '',
    `added p50 with mTLS ${t.addedP50.toFixed(2)}× the plaintext path's (target ≤ 1.3×), requests/s ${t.rps.toFixed(2)}× (target ≥ 0.8×), new connections/s ${t.connPerSec.toFixed(2)}× (target ≥ 0.5×)`,
    `${res.issuance.certificates} pod certificates issued in ${res.issuance.ms.toFixed(0)} ms (target < 2000 ms), holding ${res.issuance.heapMiB.toFixed(1)} MiB of heap`,
    `${res.repeats} repeat(s) of ${res.secondsPerRun}s per cell, modes interleaved; cells are medians${res.repeats > 1 ? ' (min–max)' : ''}; kernel ${res.kernel}.`,
  ].join('\n');
}
