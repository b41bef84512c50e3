// `sockmesh bench --governance`: HTTP/1.1 keep-alive requests through the governance sidecar
// (HAProxy with a service policy: round robin, timeout, retries, ejection, trace context, access
// log and metrics) beside the same engine forwarding plain TCP (the bench's usual sidecar), in both
// capture modes, on the same processes, plus direct. Targets: the p50 the governance sidecar adds
// at most 1.5x what plain forwarding adds; requests/s at least 0.7x.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { down, up } from '../instance/lifecycle.js';
import { requireRoot } from '../util/root.js';
import { parseConfigText } from '../config/load.js';
import { BenchEnv, ENDPOINT_IP, SERVICE_IP, type Sample } from './env.js';
import { ratio, type Spread } from './stats.js';
import { interleaved, spreads, table } from './twopod.js';

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

/** The single-pod bench topology (its HAProxy forwarding TCP on 15001) plus the governance
 * sidecar (15011) and the smload server's HTTP responder; capture switches between them. */
class GovEnv {
  private mode: GovMode | undefined;

  private constructor(readonly env: BenchEnv) {}

  static async create(name: string): Promise<GovEnv> {
    return new GovEnv(await BenchEnv.create(name, {
      httpPort: HTTP_PORT,
      more: async (env) => {
        writeFileSync(join(env.dir, 'policy.yaml'), POLICY);
        const gov = env.topo.spawnNode('bin/sockmesh.js', ['sidecar', '--config', join(env.dir, 'policy.yaml'), '--run-dir', join(env.dir, 'run'),
          '--access-log', join(env.dir, 'access.log'), '--metrics-listen', '127.0.0.1:15021'], { cgroup: 'mesh', label: 'governance sidecar' });
        await gov.waitFor((l) => l.event === 'ready', 30_000);
      },
    }));
  }

  async setMode(mode: GovMode): Promise<void> {
    if (mode === this.mode) return;
    const { instance, topo } = this.env;
    const base = { instance, configSource: '(bench --governance)' };
    await down(instance);
    if (mode !== 'direct') {
      const cfg = captureConfig(mode.endsWith('governance'));
      if (mode.startsWith('iptables')) await up({ ...base, mode: 'iptables', netns: topo.netns, config: cfg });
      else await up({ ...base, mode: 'ebpf', cgroup: topo.cgroup, config: cfg });
    }
    this.mode = mode;
  }

  run(seconds: number): Promise<Sample> {
    return this.env.smloadRun('http', ['http', SERVICE_IP, String(HTTP_PORT), '64', String(seconds)], seconds);
  }

  close(): Promise<void> {
    return this.env.close();
  }
}

export async function runGovernanceBench(opts: { quick: boolean; repeats?: number; seconds?: number }, progress: (m: string) => void, kernel: string): Promise<GovBenchResult> {
  requireRoot();
  const repeats = opts.repeats ?? (opts.quick ? 1 : 5);
  const seconds = opts.seconds ?? (opts.quick ? 0.3 : 1);
  const env = await GovEnv.create(`bench${process.pid}g`);
  let samples: Record<GovMode, Array<Record<string, number>>>;
  try {
    samples = await interleaved(GOV_MODES, repeats, progress, 'governance', async (mode) => {
      await env.setMode(mode);
      await new Promise((res) => setTimeout(res, opts.quick ? 50 : 300));
      const s = await env.run(seconds);
      return { ...s.result, cpuPerReq: s.cpuUsec / s.result.count };
    });
  } finally {
    await env.close();
  }
  const row = (metric: GovRow['metric'], unit: string): GovRow => ({ metric, unit, modes: spreads(GOV_MODES, samples, metric) });
  const rows = [row('p50', 'µs'), row('p99', 'µs'), row('rps', 'req/s'), row('cpuPerReq', 'µs CPU/req')];
  const med = (metric: GovRow['metric'], m: GovMode) => rows.find((r) => r.metric === metric)!.modes[m]!.median;
  const targets = Object.fromEntries((['iptables', 'ebpf'] as const).map((c) => [c, {
    addedP50: (med('p50', `${c}-governance`) - med('p50', 'direct')) / (med('p50', `${c}-tcp`) - med('p50', 'direct')),
    rps: ratio(rows[2].modes[`${c}-governance`]!, rows[2].modes[`${c}-tcp`]!),
  }])) as GovBenchResult['targets'];
  return { startedAt: new Date().toISOString(), kernel, repeats, secondsPerRun: seconds, rows, targets };
}

export function formatGovernanceBench(res: GovBenchResult): string {
  const t = (c: 'iptables' | 'ebpf') => `${c}: added p50 ${res.targets[c].addedP50.toFixed(2)}× of plain forwarding's (target ≤ 1.5×), requests/s ${res.targets[c].rps.toFixed(2)}× (target ≥ 0.7×)`;
  return [
    'Governance: HTTP/1.1 keep-alive requests through the governance sidecar (policy on) and through the same engine forwarding plain TCP',
    '', ...table(GOV_MODES, res.rows, res.repeats), '',
    t('iptables'), t('ebpf'),
    `${res.repeats} repeat(s) of ${res.secondsPerRun}s per cell, modes interleaved; cells are medians${res.repeats > 1 ? ' (min–max)' : ''}; kernel ${res.kernel}.`,
  ].join('\n');
}
