// `sockmesh bench`: every mode on the same processes, interleaved repeats, one table of medians
// with min–max spread and ratios against iptables and direct, all measured in this one run.
import { requireRoot } from '../agent/instance.js';
import { BenchEnv, MODES, type BenchMode } from './env.js';
import { ratio, spread, type Spread } from './stats.js';
import { WORKLOADS, type Metric, type Workload } from './workloads.js';

export interface BenchOptions {
  quick: boolean;
  repeats?: number;
  seconds?: number;
  modes?: BenchMode[];
  workloads?: string[];
}

export interface BenchRow {
  workload: string;
  metric: Metric;
  unit: string;
  better: 'lower' | 'higher';
  /** Per mode: the spread of this figure over the repeats. */
  modes: Partial<Record<BenchMode, Spread>>;
  /** Ratios of medians (eBPF default vs …); absent when a mode was not run. */
  ratios: { ebpfVsIptables?: number; ebpfVsDirect?: number };
}

export interface BenchResult {
  startedAt: string;
  kernel: string;
  repeats: number;
  secondsPerRun: number;
  modes: BenchMode[];
  rows: BenchRow[];
  /** Every sample, for charts and scripts: mode -> workload -> repeats. */
  samples: Record<string, Record<string, Array<Record<string, number>>>>;
}

/** The figure a metric takes from one sample. */
function figure(w: Workload, metric: Metric, s: { result: Record<string, number>; cpuUsec: number }): number {
  if (metric !== 'cpuPerMsg') return s.result[metric];
  const msgs = w.test === 'rr' ? s.result.count : w.test === 'stream' ? s.result.messages : s.result.connections;
  return s.cpuUsec / msgs;
}

export async function runBench(opts: BenchOptions, progress: (msg: string) => void, kernel: string): Promise<BenchResult> {
  requireRoot();
  const repeats = opts.repeats ?? (opts.quick ? 1 : 3);
  const seconds = opts.seconds ?? (opts.quick ? 0.3 : 1.5);
  const modes = opts.modes ?? MODES;
  const workloads = WORKLOADS.filter((w) => !opts.workloads || opts.workloads.includes(w.id));
  const samples: BenchResult['samples'] = {};
  const env = await BenchEnv.create(`bench${process.pid}`);
  const total = repeats * modes.length * workloads.length;
  let done = 0;
  try {
    for (let r = 0; r < repeats; r++) {
      // Rotate the mode order each repeat so no mode always runs first (or last) on a warming machine.
      const order = modes.map((_, i) => modes[(i + r) % modes.length]);
      for (const mode of order) {
        await env.setMode(mode);
        for (const w of workloads) {
          done += 1;
          progress(`[${done}/${total}] repeat ${r + 1}/${repeats} ${mode} ${w.id}`);
          const s = await env.run(w, seconds);
          const perMode = (samples[mode] ??= {});
          (perMode[w.id] ??= []).push({ ...s.result, cpuUsec: s.cpuUsec, ...Object.fromEntries(w.metrics.map((m) => [m.metric, figure(w, m.metric, s)])) });
        }
      }
    }
  } finally {
    await env.close();
  }
  const rows: BenchRow[] = [];
  for (const w of workloads) {
    for (const m of w.metrics) {
      const per: BenchRow['modes'] = {};
      for (const mode of modes) per[mode] = spread((samples[mode]?.[w.id] ?? []).map((x) => x[m.metric]));
      const e = per['ebpf-default'];
      rows.push({
        workload: w.id, metric: m.metric, unit: m.unit, better: m.better, modes: per,
        ratios: {
          ebpfVsIptables: e && per.iptables ? ratio(e, per.iptables) : undefined,
          ebpfVsDirect: e && per.direct ? ratio(e, per.direct) : undefined,
        },
      });
    }
  }
  return { startedAt: new Date().toISOString(), kernel, repeats, secondsPerRun: seconds, modes, rows, samples };
}
