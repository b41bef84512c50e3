import { mkdirSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { MODES, type BenchMode } from '../bench/modes.js';
import { WORKLOADS } from '../bench/workloads.js';
import { Codes, UserError } from '../errors.js';
import { installInterruptHandlers } from '../util/interrupt.js';

interface BenchOpts {
  quick?: boolean;
  json?: boolean;
  out?: string;
  repeats?: string;
  seconds?: string;
  modes?: string;
  workloads?: string;
  topology?: string;
  agent?: boolean;
  governance?: boolean;
  mtls?: boolean;
  traffic?: boolean;
  kubernetes?: boolean;
  soak?: boolean;
  minutes?: string;
}

function list<T extends string>(what: string, value: string | undefined, allowed: readonly T[]): T[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((s) => s.trim()) as T[];
  const bad = items.filter((i) => !allowed.includes(i));
  if (bad.length) throw new UserError(Codes.USAGE, `unknown ${what} ${bad.join(', ')} (known: ${allowed.join(', ')})`);
  return items;
}

function positive(what: string, value: string | undefined, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(n > 0 && n <= max)) throw new UserError(Codes.USAGE, `${what} must be a number in (0, ${max}]`);
  return n;
}

export function register(program: Command): void {
  program
    .command('bench')
    .description('measure direct, iptables and eBPF capture side by side in one run, in a private namespace and cgroup')
    .option('--quick', 'one short repeat (a smoke test, not a measurement)')
    .option('--json', 'print the result as JSON (progress goes to stderr)')
    .option('--out <dir>', 'write bench.json and bench.svg (a chart) into this directory')
    .option('--repeats <n>', 'interleaved repeats (default 5, quick 1)')
    .option('--seconds <s>', 'seconds per measurement (default 1, quick 0.3)')
    .option('--modes <list>', `comma-separated subset of ${MODES.join(',')}`)
    .option('--workloads <list>', `comma-separated subset of ${WORKLOADS.map((w) => w.id).join(',')}`)
    .option('--topology <list>', 'single (a client pod and a remote server), same-node (two meshed pods of one node, each with its own sidecar; no kernel-mode row), or both', 'single,same-node')
    .option('--governance', 'measure the governance sidecar instead: HTTP keep-alive requests through HAProxy with a service policy beside plain TCP forwarding by the same engine, in both capture modes (targets: added p50 <= 1.5x, requests/s >= 0.7x)')
    .option('--mtls', 'with --governance: two meshed pods, each with its governance sidecar following an agent; plaintext between the sidecars (PeerAuthentication DISABLE) beside mTLS (STRICT), HTTP keep-alive and new connections, and 1,000 pod certificates issued (targets: added p50 <= 1.3x, requests/s >= 0.8x, connections/s >= 0.5x, issuance < 2 s)')
    .option('--traffic', 'with --governance: two meshed pods with their governance sidecars; HTTP keep-alive to a service with one route and with 200 routes, one route with tracing at 100 %, and gRPC unary calls proxied as HTTP/2 beside plain TCP forwarding (targets: 200 routes\' added p50 <= 1.15x one route\'s, gRPC added p50 <= 1.5x TCP\'s, requests/s traced >= 0.9x)')
    .option('--agent', 'measure the node agent instead: 10,000-service apply, file switch latency, RSS, idle CPU (--quick: 1,000 services)')
    .option('--kubernetes', 'measure the agent following a cluster instead: initial sync of 10,000 Services and 50,000 endpoints from a local API server, RSS, annotation change -> kernel (--quick: 1,000)')
    .option('--soak', 'a soak run of the agent instead: mixed load, service switches and agent restarts; samples RSS, descriptors and map entries, fails on growth')
    .option('--minutes <n>', 'with --soak: how long (default 10)')
    .addHelpText('after', `
Builds its own namespaces (pod + remote server; for same-node, two pods on a bridge), cgroups and
HAProxy sidecars, runs the smload client against every mode on the same processes, and removes
everything afterwards. One table per topology. Compare ratios within one run: the machine may be
shared and noisy.`)
    .action(async (opts: BenchOpts) => {
      if (opts.soak) {
        const minutes = opts.minutes === undefined ? 10 : Number(opts.minutes);
        if (!(minutes > 0 && minutes <= 24 * 60)) throw new UserError(Codes.USAGE, `--minutes must be a number of minutes (0-1440], got ${JSON.stringify(opts.minutes)}`);
        const tty = process.stderr.isTTY;
        installInterruptHandlers();
        const { runSoak, formatSoak } = await import('../bench/soak.js');
        const res = await runSoak({ minutes, pods: 4, services: 200 }, (m) => process.stderr.write(tty ? `\r\x1b[K${m}` : `${m}\n`));
        if (tty) process.stderr.write('\r\x1b[K');
        process.stdout.write(opts.json ? `${JSON.stringify(res, null, 2)}\n` : `${formatSoak(res)}\n`);
        if (!res.ok) process.exitCode = 1;
        return;
      }
      if (opts.minutes !== undefined) throw new UserError(Codes.USAGE, '--minutes is for --soak');
      if (opts.kubernetes) {
        const { KUBE_BENCH_DEFAULTS, KUBE_BENCH_QUICK, formatKubeBench, runKubeBench } = await import('../bench/kubernetes.js');
        await report(opts, 'bench-kubernetes.json', (progress) => runKubeBench(opts.quick ? KUBE_BENCH_QUICK : KUBE_BENCH_DEFAULTS, progress), formatKubeBench);
        return;
      }
      for (const [flag, on] of [['--mtls', opts.mtls], ['--traffic', opts.traffic]] as const) {
        if (on && !opts.governance) throw new UserError(Codes.USAGE, `${flag} measures the governance sidecar: use it with --governance`);
      }
      if (opts.mtls && opts.traffic) throw new UserError(Codes.USAGE, '--mtls and --traffic are two benches: run one, then the other');
      if (opts.governance) {
        const repeats = positive('--repeats', opts.repeats, 50);
        const seconds = positive('--seconds', opts.seconds, 60);
        const o = { quick: !!opts.quick, repeats, seconds };
        if (opts.mtls) {
          const { formatMtlsBench, runMtlsBench } = await import('../bench/mtls.js');
          await report(opts, 'bench-mtls.json', (progress) => runMtlsBench(o, progress, release()), formatMtlsBench);
        } else if (opts.traffic) {
          const { formatTrafficBench, runTrafficBench } = await import('../bench/traffic.js');
          await report(opts, 'bench-traffic.json', (progress) => runTrafficBench(o, progress, release()), formatTrafficBench);
        } else {
          const { formatGovernanceBench, runGovernanceBench } = await import('../bench/governance.js');
          await report(opts, 'bench-governance.json', (progress) => runGovernanceBench(o, progress, release()), formatGovernanceBench);
        }
        return;
      }
      if (opts.agent) {
        // Loaded on use: the agent runs this CLI too, and should not carry the bench in memory.
        const { AGENT_BENCH_DEFAULTS, AGENT_BENCH_QUICK, formatAgentBench, runAgentBench } = await import('../bench/agent.js');
        await report(opts, 'bench-agent.json', (progress) => runAgentBench(opts.quick ? AGENT_BENCH_QUICK : AGENT_BENCH_DEFAULTS, progress), formatAgentBench);
        return;
      }
      const modes = list<BenchMode>('mode', opts.modes, MODES);
      const workloads = list('workload', opts.workloads, WORKLOADS.map((w) => w.id));
      const repeats = positive('--repeats', opts.repeats, 50);
      const seconds = positive('--seconds', opts.seconds, 60);
      const tty = process.stderr.isTTY;
      const progress = (m: string) => process.stderr.write(tty ? `\r\x1b[K${m}` : `${m}\n`);
      installInterruptHandlers();
      const [{ runBench, TOPOLOGIES }, { formatTable, toSvg }] = await Promise.all([import('../bench/run.js'), import('../bench/report.js')]);
      const topologies = list('topology', opts.topology, TOPOLOGIES)!;
      if (modes?.length === 1 && modes[0] === 'ebpf-kernel' && topologies.includes('same-node')) {
        throw new UserError(Codes.USAGE, 'the same-node topology has no kernel-mode row: add other modes, or --topology single');
      }
      const results = [];
      for (const topology of topologies) results.push(await runBench({ quick: !!opts.quick, topology, modes, workloads, repeats, seconds }, progress, release()));
      if (tty) process.stderr.write('\r\x1b[K');
      // One JSON: the first topology's result, the same-node one beside it when both ran.
      const same = results.find((r) => r.topology === 'same-node');
      const res = results[0].topology === 'single' && same ? { ...results[0], sameNode: same } : results[0];
      const written: string[] = [];
      if (opts.out) {
        mkdirSync(opts.out, { recursive: true });
        writeFileSync(join(opts.out, 'bench.json'), `${JSON.stringify(res, null, 2)}\n`);
        written.push(join(opts.out, 'bench.json'));
        for (const r of results) {
          const svg = join(opts.out, r.topology === 'single' ? 'bench.svg' : 'bench-same-node.svg');
          writeFileSync(svg, toSvg(r));
          written.push(svg);
        }
      }
      process.stdout.write(opts.json ? `${JSON.stringify(res, null, 2)}\n` : `${results.map(formatTable).join('\n\n')}\n`);
      if (written.length && !opts.json) process.stdout.write(`wrote ${written.join(', ')}\n`);
    });
}

/**
 * Runs one of the agent's benches with progress on stderr (one line, redrawn on a terminal),
 * writes its JSON into --out, and prints the table (or the JSON with --json).
 */
async function report<R>(opts: BenchOpts, file: string, run: (progress: (m: string) => void) => Promise<R>, format: (r: R) => string): Promise<void> {
  const tty = process.stderr.isTTY;
  installInterruptHandlers();
  const res = await run((m) => process.stderr.write(tty ? `\r\x1b[K${m}` : `${m}\n`));
  if (tty) process.stderr.write('\r\x1b[K');
  if (opts.out) {
    mkdirSync(opts.out, { recursive: true });
    writeFileSync(join(opts.out, file), `${JSON.stringify(res, null, 2)}\n`);
  }
  process.stdout.write(opts.json ? `${JSON.stringify(res, null, 2)}\n` : `${format(res)}\n`);
}
