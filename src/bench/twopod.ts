// The two-pod bench environment (`bench --governance --mtls`, `--traffic`): two meshed pods of one
// node, each with its governance sidecar following a real agent (eBPF capture) whose config file
// the bench rewrites to switch a variant (mTLS mode, tracing); the client pod's load reaches the
// server pod's services through both sidecars; direct is the same client reaching the server app on
// ports no capture takes. Also what the governance benches share: the interleaved repeat loop and
// the table they print.
import { chmodSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Codes, SockmeshError } from '../errors.js';
import { down } from '../instance/lifecycle.js';
import { NodeTopology } from '../topology/node.js';
import { Proc, type Line } from '../topology/proc.js';
import { checkInterrupted } from '../util/interrupt.js';
import { packageRoot } from '../util/paths.js';
import { cgroupUsageUsec, type Sample } from './env.js';
import { shuffledOrder } from './run.js';
import { spread, type Spread } from './stats.js';

export const CLIENT = '10.204.0.21';
export const SERVER = '10.204.0.22';
/** The server app's ports for direct: +100, never captured. */
export const DIRECT = 100;

export interface TwoPodOptions {
  /** The agent's config for a variant (services, capture, identity; the pods are added). */
  config: (variant: string, pods: string, dir: string) => string;
  variant: string;
  /** The server pod's apps, started before the sidecars. */
  servers: (env: TwoPodEnv) => Proc[];
}

export class TwoPodEnv {
  private variant: string;
  readonly dir = mkdtempSync(join(tmpdir(), 'sockmesh-bench-'));
  readonly smload = join(packageRoot(), 'dist', 'smload');
  private readonly cli = join(packageRoot(), 'bin', 'sockmesh.js');
  private agent: Proc | undefined;
  private readonly sidecars: Proc[] = [];

  private constructor(readonly node: NodeTopology, readonly instance: string, private readonly opts: TwoPodOptions) {
    this.variant = opts.variant;
  }

  static async create(name: string, opts: TwoPodOptions): Promise<TwoPodEnv> {
    const env = new TwoPodEnv(await NodeTopology.create(name, [['client', CLIENT], ['server', SERVER]]), name, opts);
    try {
      await env.start();
    } catch (err) {
      await env.close();
      throw err;
    }
    return env;
  }

  private save(variant: string): void {
    const pod = (n: string) => `  - { name: ${n}, cgroup: ${n}, netns: ${this.node.pod(n).netns}, namespace: bench, serviceAccount: ${n} }`;
    const tmp = join(this.dir, '.mesh.yaml.tmp');
    writeFileSync(tmp, this.opts.config(variant, `pods:\n${pod('client')}\n${pod('server')}\n`, this.dir));
    renameSync(tmp, join(this.dir, 'mesh.yaml'));
  }

  private async start(): Promise<void> {
    // HAProxy's workers (uid 1337) pass through the run directories to their mTLS socket.
    chmodSync(this.dir, 0o711);
    this.save(this.variant);
    const servers = this.opts.servers(this);
    for (const pod of ['client', 'server']) {
      this.sidecars.push(this.node.spawnNode(pod, 'bin/sockmesh.js', ['sidecar', '--config', join(this.dir, 'mesh.yaml'), '--instance', this.instance, '--id', pod,
        '--run-dir', join(this.dir, `run-${pod}`), '--access-log', join(this.dir, `access-${pod}.log`), '--metrics-listen', ''], `governance sidecar ${pod}`));
    }
    await Promise.all([...servers, ...this.sidecars].map((p) => p.waitFor((l) => l.event === 'ready', 30_000)));
    this.agent = new Proc('agent', process.execPath, [this.cli, 'agent', '--config', join(this.dir, 'mesh.yaml'), '--cgroup', this.node.parent, '--instance', this.instance, '--listen', '127.0.0.1:0']);
    await this.agent.waitFor((l) => l.msg === 'agent ready', 60_000);
    await Promise.all(this.sidecars.map((s) => s.waitFor((l) => l.event === 'policy' && l.from === 'agent', 30_000)));
  }

  /** Switches the agent's config to a variant and waits until both sidecars serve it. */
  async setVariant(variant: string): Promise<void> {
    if (variant === this.variant) return;
    const marks = this.sidecars.map((s) => s.lines.length);
    this.save(variant);
    await Promise.all(this.sidecars.map((s, i) => s.waitForFrom(marks[i], (l) => l.event === 'policy-applied', 30_000)));
    // The old workers' listeners go; the new ones serve.
    await new Promise((r) => setTimeout(r, 500));
    this.variant = variant;
  }

  /** A load client in the client pod: its first line with `key`, and the CPU of the node's processes. */
  async load(cmd: string, args: string[], key: string, seconds: number, label: string): Promise<Sample> {
    const cpu = () => cgroupUsageUsec(this.node.parent);
    const cpu0 = cpu();
    const p = this.node.spawn('client', cmd, args, label);
    const line = await p.waitFor((l: Line) => l[key] !== undefined, (seconds + 30) * 1000);
    const code = await p.exited;
    if (code !== 0) throw new SockmeshError(Codes.TOPOLOGY, `${label} exited ${code}: ${p.stderr}`);
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

/**
 * Every mode once per repeat, in a shuffled order each time (slow drifts of a shared machine fall
 * on every mode alike): `measure` gives a mode's figures; returns each mode's figures per repeat.
 */
export async function interleaved<M extends string>(modes: M[], repeats: number, progress: (m: string) => void, what: string,
  measure: (mode: M) => Promise<Record<string, number>>): Promise<Record<M, Array<Record<string, number>>>> {
  const samples = Object.fromEntries(modes.map((m) => [m, []])) as unknown as Record<M, Array<Record<string, number>>>;
  let done = 0;
  for (let r = 0; r < repeats; r++) {
    for (const mode of shuffledOrder(modes, r)) {
      checkInterrupted();
      progress(`[${++done}/${repeats * modes.length}] ${what} repeat ${r + 1}/${repeats} ${mode}`);
      samples[mode].push(await measure(mode));
    }
  }
  return samples;
}

/** Each metric's spread per mode. */
export function spreads<M extends string>(modes: M[], samples: Record<M, Array<Record<string, number>>>, metric: string): Partial<Record<M, Spread>> {
  return Object.fromEntries(modes.map((m) => [m, spread((samples[m] ?? []).map((x) => x[metric]).filter((v) => v !== undefined))])) as Partial<Record<M, Spread>>;
}

/** The benches' table: a figure per row, a mode per column, medians (min–max over the repeats). */
export function table<M extends string>(modes: M[], rows: Array<{ metric: string; unit: string; modes: Partial<Record<M, Spread>> }>, repeats: number): string[] {
  const fmt = (s: Spread | undefined) => (!s || !s.n ? '-' : repeats > 1 ? `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})` : s.median.toFixed(1));
  const header = ['figure', ...modes];
  const body = rows.map((r) => [`${r.metric} ${r.unit}`, ...modes.map((m) => fmt(r.modes[m]))]);
  const all = [header, ...body];
  const widths = header.map((_, i) => Math.max(...all.map((row) => row[i].length)));
  const line = (row: string[]) => row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), ...body.map(line)];
}
