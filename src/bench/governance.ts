// `sockmesh bench --governance`: HTTP/1.1 keep-alive requests through the governance sidecar
// (HAProxy with a service policy: round robin, timeout, retries, ejection, trace context, access
// log and metrics) beside the same engine forwarding plain TCP (the bench's usual sidecar), in both
// capture modes, on the same processes, plus direct. Targets: the p50 the governance sidecar adds
// at most 1.5x what plain forwarding adds; requests/s at least 0.7x.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { down, requireRoot, up } from '../agent/instance.js';
import { parseConfigText } from '../config/load.js';
import { Codes, SockmeshError } from '../errors.js';
import type { Proc } from '../topology/proc.js';
import { Topology } from '../topology/topology.js';
import { checkInterrupted } from '../util/interrupt.js';
import { packageRoot } from '../util/paths.js';
import { ENDPOINT_IP, HAPROXY_CFG, SERVICE_IP, cgroupUsageUsec, waitListening } from './env.js';
import { shuffledOrder } from './run.js';
import { ratio, spread, type Spread } from './stats.js';

export const HTTP_PORT = 9083;
const GOV_OUT = 15011;
const GOV_IN = 15016;

export type GovMode = 'direct' | 'iptables-tcp' | 'iptables-governance' | 'ebpf-tcp' | 'ebpf-governance';
export const GOV_MODES: GovMode[] = ['direct', 'iptables-tcp', 'iptables-governance', 'ebpf-tcp', 'ebpf-governance'];

const POLICY = `
sidecar: { uid: 1337, outboundPort: ${GOV_OUT}, inboundPort: ${GOV_IN} }
services:
  - name: web
    addresses: [${SERVICE_IP}]
    ports: [${HTTP_PORT}]
    protocol: http
    endpoints: ['${ENDPOINT_IP}:${HTTP_PORT}']
    policy:
      loadBalancer: ROUND_ROBIN
      timeout: 5s
      retries: { attempts: 2, retryOn: 'connect-failure,5xx' }
      outlierDetection: { consecutive5xxErrors: 5, interval: 5s, baseEjectionTime: 30s }
      connectionPool: { tcp: { maxConnections: 1000 } }
capture: { includeInboundPorts: [] }
`;

function captureConfig(governance: boolean) {
  return parseConfigText(`
sidecar: { uid: 1337, outboundPort: ${governance ? GOV_OUT : 15001}, inboundPort: ${governance ? GOV_IN : 15006} }
services:
  - { name: web, addresses: [${SERVICE_IP}], ports: [${HTTP_PORT}] }
capture: { includeInboundPorts: [] }
`, '(bench --governance)');
}

export interface GovRow {
  metric: 'p50' | 'p99' | 'rps' | 'cpuPerReq';
  unit: string;
  modes: Partial<Record<GovMode, Spread>>;
}

export interface GovBenchResult {
  startedAt: string;
  kernel: string;
  repeats: number;
  secondsPerRun: number;
  rows: GovRow[];
  /** Per capture mode: (governance p50 - direct p50) / (tcp p50 - direct p50), and rps governance / tcp. */
  targets: Record<'iptables' | 'ebpf', { addedP50: number; rps: number }>;
}

class GovEnv {
  private mode: GovMode | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), 'sockmesh-bench-gov-'));
  private readonly smload = join(packageRoot(), 'dist', 'smload');

  private constructor(readonly topo: Topology, readonly instance: string) {}

  static async create(name: string): Promise<GovEnv> {
    const env = new GovEnv(await Topology.create(name, { remote: { addresses: [SERVICE_IP, ENDPOINT_IP] } }), name);
    try {
      const exec = (cmd: string, args: string[]) => env.topo.exec(cmd, args);
      const server = env.topo.spawn(env.smload, ['server', '0.0.0.0', '9080', '9081', String(HTTP_PORT)], { netns: 'remote', cgroup: 'outside', label: 'smload server' });
      await server.waitFor((l) => l.event === 'ready');
      writeFileSync(join(env.dir, 'haproxy.cfg'), HAPROXY_CFG);
      const tcp = env.topo.spawn('haproxy', ['-db', '-f', join(env.dir, 'haproxy.cfg')], { cgroup: 'mesh', label: 'haproxy tcp sidecar' });
      await waitListening(exec, 15001, tcp);
      writeFileSync(join(env.dir, 'policy.yaml'), POLICY);
      const gov: Proc = env.topo.spawnNode('bin/sockmesh.js', ['sidecar', '--config', join(env.dir, 'policy.yaml'), '--run-dir', join(env.dir, 'run'),
        '--access-log', join(env.dir, 'access.log'), '--metrics-listen', '127.0.0.1:15021'], { cgroup: 'mesh', label: 'governance sidecar' });
      await gov.waitFor((l) => l.event === 'ready', 30_000);
    } catch (err) {
      await env.close();
      throw err;
    }
    return env;
  }

  async setMode(mode: GovMode): Promise<void> {
    if (mode === this.mode) return;
    const base = { instance: this.instance, configSource: '(bench --governance)' };
    await down(this.instance);
    if (mode !== 'direct') {
      const cfg = captureConfig(mode.endsWith('governance'));
      if (mode.startsWith('iptables')) await up({ ...base, mode: 'iptables', netns: this.topo.netns, config: cfg });
      else await up({ ...base, mode: 'ebpf', cgroup: this.topo.cgroup, config: cfg });
    }
    this.mode = mode;
  }

  async run(seconds: number): Promise<{ result: Record<string, number>; cpuUsec: number }> {
    const cpu = () => cgroupUsageUsec(this.topo.cgroup) + cgroupUsageUsec(this.topo.outsideCgroup);
    const cpu0 = cpu();
    const p = this.topo.spawn(this.smload, ['http', SERVICE_IP, String(HTTP_PORT), '64', String(seconds)], { cgroup: 'mesh', label: 'smload http' });
    const line = await p.waitFor((l) => l.test === 'http', (seconds + 30) * 1000);
    if ((await p.exited) !== 0) throw new SockmeshError(Codes.TOPOLOGY, `smload http exited: ${p.stderr}`);
    return { result: line as Record<string, number>, cpuUsec: cpu() - cpu0 };
  }

  async close(): Promise<void> {
    try {
      await down(this.instance);
    } finally {
      await this.topo.close();
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

export async function runGovernanceBench(opts: { quick: boolean; repeats?: number; seconds?: number }, progress: (m: string) => void, kernel: string): Promise<GovBenchResult> {
  requireRoot();
  const repeats = opts.repeats ?? (opts.quick ? 1 : 5);
  const seconds = opts.seconds ?? (opts.quick ? 0.3 : 1);
  const samples: Record<string, Array<Record<string, number>>> = {};
  const env = await GovEnv.create(`bench${process.pid}g`);
  try {
    let done = 0;
    for (let r = 0; r < repeats; r++) {
      for (const mode of shuffledOrder(GOV_MODES, r)) {
        checkInterrupted();
        await env.setMode(mode);
        await new Promise((res) => setTimeout(res, opts.quick ? 50 : 300));
        progress(`[${++done}/${repeats * GOV_MODES.length}] governance repeat ${r + 1}/${repeats} ${mode}`);
        const s = await env.run(seconds);
        (samples[mode] ??= []).push({ ...s.result, cpuPerReq: s.cpuUsec / s.result.count });
      }
    }
  } finally {
    await env.close();
  }
  const row = (metric: GovRow['metric'], unit: string): GovRow => ({
    metric, unit, modes: Object.fromEntries(GOV_MODES.map((m) => [m, spread((samples[m] ?? []).map((x) => x[metric]))])),
  });
  const rows = [row('p50', 'µs'), row('p99', 'µs'), row('rps', 'req/s'), row('cpuPerReq', 'µs CPU/req')];
  const med = (metric: GovRow['metric'], m: GovMode) => rows.find((r) => r.metric === metric)!.modes[m]!.median;
  const targets = Object.fromEntries((['iptables', 'ebpf'] as const).map((c) => [c, {
    addedP50: (med('p50', `${c}-governance`) - med('p50', 'direct')) / (med('p50', `${c}-tcp`) - med('p50', 'direct')),
    rps: ratio(rows[2].modes[`${c}-governance`]!, rows[2].modes[`${c}-tcp`]!),
  }])) as GovBenchResult['targets'];
  return { startedAt: new Date().toISOString(), kernel, repeats, secondsPerRun: seconds, rows, targets };
}

export function formatGovernanceBench(res: GovBenchResult): string {
  const fmt = (s: Spread | undefined) => (!s || !s.n ? '-' : res.repeats > 1 ? `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})` : s.median.toFixed(1));
  const header = ['figure', ...GOV_MODES];
  const rows = res.rows.map((r) => [`${r.metric} ${r.unit}`, ...GOV_MODES.map((m) => fmt(r.modes[m]))]);
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((row) => row[i].length)));
  const line = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const t = (c: 'iptables' | 'ebpf') => `${c}: added p50 ${res.targets[c].addedP50.toFixed(2)}× of plain forwarding's (target ≤ 1.5×), requests/s ${res.targets[c].rps.toFixed(2)}× (target ≥ 0.7×)`;
  return [
    'Governance: HTTP/1.1 keep-alive requests through the governance sidecar (policy on) and through the same engine forwarding plain TCP',
    '', line(header), ...rows.map(line), '',
    t('iptables'), t('ebpf'),
    `${res.repeats} repeat(s) of ${res.secondsPerRun}s per cell, modes interleaved; cells are medians${res.repeats > 1 ? ' (min–max)' : ''}; kernel ${res.kernel}.`,
  ].join('\n');
}
