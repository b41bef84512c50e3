// `sockmesh bench --governance --mtls`: two meshed pods of one node, each with its governance
// sidecar following a real agent (eBPF capture), the client pod's smload calling the server pod's
// services through both sidecars. The mesh's PeerAuthentication switches between DISABLE
// (plaintext between the sidecars: the plaintext governance path) and STRICT (mTLS with the pods'
// certificates), on the same processes, modes interleaved; direct is the same client reaching the
// server app on ports no capture takes. Targets: HTTP keep-alive added p50 with mTLS <= 1.3x the
// plaintext path's, requests/s >= 0.8x; new connections/s >= 0.5x. Also: 1,000 pod certificates
// issued by the agent's CA code, timed, and the memory they take.
import { mkdtempSync, rmSync, writeFileSync, renameSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MeshCA, selfSignedRoot } from '../identity/ca.js';
import { down } from '../instance/lifecycle.js';
import { Codes, SockmeshError } from '../errors.js';
import { NodeTopology } from '../topology/node.js';
import { Proc } from '../topology/proc.js';
import { checkInterrupted } from '../util/interrupt.js';
import { packageRoot } from '../util/paths.js';
import { requireRoot } from '../util/root.js';
import { cgroupUsageUsec, ECHO_PORT, SINK_PORT, type Sample } from './env.js';
import { HTTP_PORT } from './governance.js';
import { shuffledOrder } from './run.js';
import { ratio, spread, type Spread } from './stats.js';

const CLIENT = '10.204.0.21';
const SERVER = '10.204.0.22';
const WEB_VIP = '10.96.7.1';
const ECHO_VIP = '10.96.7.2';
/** The server app's ports for direct: +100, never captured. */
const DIRECT = 100;

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

class MtlsEnv {
  private mode: MtlsMode | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), 'sockmesh-bench-'));
  private readonly smload = join(packageRoot(), 'dist', 'smload');
  private readonly cli = join(packageRoot(), 'bin', 'sockmesh.js');
  private agent: Proc | undefined;
  private readonly sidecars: Proc[] = [];

  private constructor(readonly node: NodeTopology, readonly instance: string) {}

  static async create(name: string): Promise<MtlsEnv> {
    const env = new MtlsEnv(await NodeTopology.create(name, [['client', CLIENT], ['server', SERVER]]), name);
    try {
      await env.start();
    } catch (err) {
      await env.close();
      throw err;
    }
    return env;
  }

  private config(mode: 'DISABLE' | 'STRICT'): string {
    const pod = (n: string) => `  - { name: ${n}, cgroup: ${n}, netns: ${this.node.pod(n).netns}, namespace: bench, serviceAccount: ${n} }`;
    return `services:
  - { name: web, addresses: [${WEB_VIP}], ports: [${HTTP_PORT}], protocol: http, endpoints: ['${SERVER}:${HTTP_PORT}'] }
  - { name: echo, addresses: [${ECHO_VIP}], ports: [${ECHO_PORT}], endpoints: ['${SERVER}:${ECHO_PORT}'] }
capture: { excludeInboundPorts: [${ECHO_PORT + DIRECT}, ${SINK_PORT + DIRECT}, ${HTTP_PORT + DIRECT}, 15008, 15090, 15021, 15020] }
identity: { caDir: ${join(this.dir, 'ca')} }
pods:
${pod('client')}
${pod('server')}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: bench }
spec: { mtls: { mode: ${mode} } }
`;
  }

  private save(text: string): void {
    const tmp = join(this.dir, '.mesh.yaml.tmp');
    writeFileSync(tmp, text);
    renameSync(tmp, join(this.dir, 'mesh.yaml'));
  }

  private async start(): Promise<void> {
    // HAProxy's workers (uid 1337) pass through the run directories to their mTLS socket.
    chmodSync(this.dir, 0o711);
    this.save(this.config('DISABLE'));
    const servers = [
      this.node.spawn('server', this.smload, ['server', '0.0.0.0', String(ECHO_PORT), String(SINK_PORT), String(HTTP_PORT)], 'smload server'),
      this.node.spawn('server', this.smload, ['server', '0.0.0.0', String(ECHO_PORT + DIRECT), String(SINK_PORT + DIRECT), String(HTTP_PORT + DIRECT)], 'smload server (direct)'),
    ];
    for (const pod of ['client', 'server']) {
      this.sidecars.push(this.node.spawnNode(pod, 'bin/sockmesh.js', ['sidecar', '--config', join(this.dir, 'mesh.yaml'), '--instance', this.instance, '--id', pod,
        '--run-dir', join(this.dir, `run-${pod}`), '--access-log', join(this.dir, `access-${pod}.log`), '--metrics-listen', ''], `governance sidecar ${pod}`));
    }
    await Promise.all([...servers, ...this.sidecars].map((p) => p.waitFor((l) => l.event === 'ready', 30_000)));
    this.agent = new Proc('agent', process.execPath, [this.cli, 'agent', '--config', join(this.dir, 'mesh.yaml'), '--cgroup', this.node.parent, '--instance', this.instance, '--listen', '127.0.0.1:0']);
    await this.agent.waitFor((l) => l.msg === 'agent ready', 60_000);
    await Promise.all(this.sidecars.map((s) => s.waitFor((l) => l.event === 'policy' && l.from === 'agent', 30_000)));
    this.mode = 'plaintext';
  }

  async setMode(mode: MtlsMode): Promise<void> {
    if (mode === 'direct' || mode === this.mode) {
      this.mode = mode === 'direct' ? this.mode : mode;
      return;
    }
    const marks = this.sidecars.map((s) => s.lines.length);
    this.save(this.config(mode === 'mtls' ? 'STRICT' : 'DISABLE'));
    await Promise.all(this.sidecars.map((s, i) => s.waitForFrom(marks[i], (l) => l.event === 'policy-applied', 30_000)));
    // The old workers' listeners go; the new ones serve.
    await new Promise((r) => setTimeout(r, 500));
    this.mode = mode;
  }

  async run(mode: MtlsMode, test: 'http' | 'conn', seconds: number): Promise<Sample> {
    const direct = mode === 'direct';
    const [host, port] = test === 'http' ? [direct ? SERVER : WEB_VIP, HTTP_PORT] : [direct ? SERVER : ECHO_VIP, ECHO_PORT];
    const args = test === 'http' ? ['http', host, String(port + (direct ? DIRECT : 0)), '64', String(seconds)] : ['conn', host, String(port + (direct ? DIRECT : 0)), '64', String(seconds)];
    const cpu = () => cgroupUsageUsec(this.node.parent);
    const cpu0 = cpu();
    const p = this.node.spawn('client', this.smload, args, `smload ${test} ${mode}`);
    const line = await p.waitFor((l) => typeof l.test === 'string', (seconds + 30) * 1000);
    const code = await p.exited;
    if (code !== 0) throw new SockmeshError(Codes.TOPOLOGY, `smload ${test} (${mode}) exited ${code}: ${p.stderr}`);
    return { result: line as Record<string, number>, cpuUsec: cpu() - cpu0 };
  }

  async close(): Promise<void> {
    try {
      await this.agent?.kill(10_000);
      for (const s of this.sidecars) await s.kill(10_000);
      await down(this.instance);
    } finally {
      await this.node.close();
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
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
  const samples: Record<string, Array<Record<string, number>>> = {};
  const env = await MtlsEnv.create(`bench${process.pid}m`);
  try {
    let done = 0;
    for (let r = 0; r < repeats; r++) {
      for (const mode of shuffledOrder(MTLS_MODES, r)) {
        checkInterrupted();
        await env.setMode(mode);
        progress(`[${++done}/${repeats * MTLS_MODES.length}] mTLS repeat ${r + 1}/${repeats} ${mode}`);
        const http = await env.run(mode, 'http', seconds);
        const conn = await env.run(mode, 'conn', seconds);
        (samples[mode] ??= []).push({ p50: http.result.p50, p99: http.result.p99, rps: http.result.rps, connPerSec: conn.result.cps });
      }
    }
  } finally {
    await env.close();
  }
  const row = (metric: MtlsRow['metric'], unit: string): MtlsRow => ({ metric, unit, modes: Object.fromEntries(MTLS_MODES.map((m) => [m, spread((samples[m] ?? []).map((x) => x[metric]))])) });
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
  const fmt = (s: Spread | undefined) => (!s || !s.n ? '-' : res.repeats > 1 ? `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})` : s.median.toFixed(1));
  const header = ['figure', ...MTLS_MODES];
  const rows = res.rows.map((r) => [`${r.metric} ${r.unit}`, ...MTLS_MODES.map((m) => fmt(r.modes[m]))]);
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((row) => row[i].length)));
  const line = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const t = res.targets;
  return [
    'mTLS: two meshed pods, each with its governance sidecar; HTTP/1.1 keep-alive (p50, p99, req/s) and new TCP connections (conn/s) through both sidecars,',
    'plaintext between them (PeerAuthentication DISABLE) and mTLS (STRICT); direct: the same client to the server app, no sidecar',
    '', line(header), ...rows.map(line), '',
    `added p50 with mTLS ${t.addedP50.toFixed(2)}× the plaintext path's (target ≤ 1.3×), requests/s ${t.rps.toFixed(2)}× (target ≥ 0.8×), new connections/s ${t.connPerSec.toFixed(2)}× (target ≥ 0.5×)`,
    `${res.issuance.certificates} pod certificates issued in ${res.issuance.ms.toFixed(0)} ms (target < 2000 ms), holding ${res.issuance.heapMiB.toFixed(1)} MiB of heap`,
    `${res.repeats} repeat(s) of ${res.secondsPerRun}s per cell, modes interleaved; cells are medians${res.repeats > 1 ? ' (min–max)' : ''}; kernel ${res.kernel}.`,
  ].join('\n');
}
