// `sockmesh bench`: every mode on the same processes, interleaved repeats, one table of medians
// with min–max spread and ratios against iptables and direct, all measured in this one run.
import { requireRoot } from '../util/root.js';
import { checkInterrupted } from '../util/interrupt.js';
import { BenchEnv, MODES, type BenchMode, type BenchTopology } from './env.js';
import { SameNodeEnv } from './samenode.js';
import { ratio, spread, type Spread } from './stats.js';
import { WORKLOADS, type Metric, type Workload } from './workloads.js';

/** single: a client pod and a remote server (today's table); same-node: two meshed pods of one
 * node, each with its own sidecar. */
export type Topology = 'single' | 'same-node';
export const TOPOLOGIES: Topology[] = ['single', 'same-node'];

export interface BenchOptions {
  quick: boolean;
  topology?: Topology;
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
  ratios: { ebpfVsIptables?: number; ebpfVsDirect?: number; kernelVsIptables?: number; kernelVsDirect?: number };
  /** The best of the eBPF modes on this figure, and how far the default is from it (a fraction:
   * 0.07 = 7 % worse; 0 when the default is the best). Absent unless two eBPF modes ran. */
  bestEbpf?: { mode: BenchMode; defaultBehind: number };
}

export interface BenchResult {
  topology: Topology;
  startedAt: string;
  kernel: string;
  repeats: number;
  secondsPerRun: number;
  modes: BenchMode[];
  /** The mode order of each (repeat, workload) step (shuffled, so no mode always follows the same one). */
  orders: BenchMode[][];
  rows: BenchRow[];
  /** Every sample, for charts and scripts: mode -> workload -> repeats. */
  samples: Record<string, Record<string, Array<Record<string, number>>>>;
}

/**
 * A different order for every repeat: a fixed rotation would make each mode always follow the
 * same neighbour, and one mode's after-effects (e.g. the kernel tearing down thousands of spliced
 * sockets after the connection test) would always land on that neighbour. Seeded, so a run is
 * reproducible.
 */
export function shuffledOrder<T>(items: T[], repeat: number): T[] {
  const out = [...items];
  let seed = 0x2545f491 ^ (repeat * 0x9e3779b9);
  for (let i = out.length - 1; i > 0; i--) {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
    const j = (seed >>> 0) % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** The figure a metric takes from one sample. */
function figure(w: Workload, metric: Metric, s: { result: Record<string, number>; cpuUsec: number }): number {
  if (metric !== 'cpuPerMsg') return s.result[metric];
  const msgs = w.test === 'rr' ? s.result.count : w.test === 'stream' || w.test === 'nagle' ? s.result.messages : s.result.connections;
  return s.cpuUsec / msgs;
}

export async function runBench(opts: BenchOptions, progress: (msg: string) => void, kernel: string): Promise<BenchResult> {
  requireRoot();
  const repeats = opts.repeats ?? (opts.quick ? 1 : 5);
  const seconds = opts.seconds ?? (opts.quick ? 0.3 : 1);
  const topology = opts.topology ?? 'single';
  // Kernel mode has no same-node row: its client still reaches the server pod's sidecar inbound.
  const modes = (opts.modes ?? MODES).filter((m) => topology === 'single' || m !== 'ebpf-kernel');
  const workloads = WORKLOADS.filter((w) => !opts.workloads || opts.workloads.includes(w.id));
  const samples: BenchResult['samples'] = {};
  const env: BenchTopology = topology === 'single' ? await BenchEnv.create(`bench${process.pid}`) : await SameNodeEnv.create(`bench${process.pid}n`);
  const total = repeats * modes.length * workloads.length;
  let done = 0;
  const orders: BenchMode[][] = [];
  const settleMs = opts.quick ? 50 : 300;
  try {
    for (let r = 0; r < repeats; r++) {
      for (const [wi, w] of workloads.entries()) {
        // Every workload compares all modes within a few seconds of each other, so a slow phase
        // of a shared machine hits all of them alike instead of one mode's whole block.
        const order = shuffledOrder(modes, r * workloads.length + wi);
        orders.push(order);
        for (const mode of order) {
          checkInterrupted();
          await env.setMode(mode);
          // Let deferred kernel work of the previous mode (socket teardown, RCU) finish first.
          await new Promise((res) => setTimeout(res, settleMs));
          done += 1;
          progress(`[${done}/${total}] ${topology} repeat ${r + 1}/${repeats} ${w.id} ${mode}`);
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
      const k = per['ebpf-kernel'];
      rows.push({
        workload: w.id, metric: m.metric, unit: m.unit, better: m.better, modes: per,
        ratios: {
          ebpfVsIptables: e && per.iptables ? ratio(e, per.iptables) : undefined,
          ebpfVsDirect: e && per.direct ? ratio(e, per.direct) : undefined,
          kernelVsIptables: k && per.iptables ? ratio(k, per.iptables) : undefined,
          kernelVsDirect: k && per.direct ? ratio(k, per.direct) : undefined,
        },
        ...bestEbpf(per, m.better),
      });
    }
  }
  return { topology, startedAt: new Date().toISOString(), kernel, repeats, secondsPerRun: seconds, modes, orders, rows, samples };
}

const EBPF_MODES: BenchMode[] = ['ebpf-capture', 'ebpf-splice', 'ebpf-default'];

/** Which eBPF mode did best on a figure (by median), and how far behind the default is. */
export function bestEbpf(per: BenchRow['modes'], better: 'lower' | 'higher'): Pick<BenchRow, 'bestEbpf'> {
  const ran = EBPF_MODES.filter((m) => per[m]?.n);
  const d = per['ebpf-default'];
  if (ran.length < 2 || !d?.n) return {};
  const score = (m: BenchMode) => per[m]!.median;
  const best = ran.reduce((a, b) => ((better === 'higher' ? score(b) > score(a) : score(b) < score(a)) ? b : a));
  const behind = better === 'higher' ? 1 - d.median / score(best) : d.median / score(best) - 1;
  return { bestEbpf: { mode: best, defaultBehind: Math.max(0, behind) } };
}
