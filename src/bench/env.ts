// The benchmark's private topology: a pod namespace with the client (in the mesh cgroup) and an
// HAProxy sidecar (mesh cgroup, uid 1337, forwarding every connection to its SO_ORIGINAL_DST), a
// remote namespace with the smload server (outside cgroup), and one sockmesh instance whose mode
// is switched between measurements on the very same processes.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { down, up } from '../instance/lifecycle.js';
import { parseConfigText } from '../config/load.js';
import type { MeshConfig, SpliceMode } from '../config/model.js';
import { Codes, SockmeshError } from '../errors.js';
import type { Proc } from '../topology/proc.js';
import { Topology } from '../topology/topology.js';
import { packageRoot } from '../util/paths.js';
import type { Workload } from './workloads.js';
import type { BenchMode } from './modes.js';

export { MODES, MODE_LABELS, type BenchMode } from './modes.js';

export const SERVICE_IP = '10.96.0.20';
/** The server's own address: the endpoint of the kernel-mode service (the server listens on every address). */
export const ENDPOINT_IP = '10.0.96.20';
export const ECHO_PORT = 9080;
export const SINK_PORT = 9081;

function configFor(splice: SpliceMode | 'kernel' | undefined): MeshConfig {
  const spliceLine = splice === 'kernel' ? `, mode: kernel, endpoints: [${ENDPOINT_IP}]` : splice ? `, splice: ${splice}` : '';
  return parseConfigText(`
sidecar: { uid: 1337, outboundPort: 15001, inboundPort: 15006 }
services:
  - { name: bench, addresses: [${SERVICE_IP}], ports: [${ECHO_PORT}, ${SINK_PORT}]${spliceLine} }
capture: { includeInboundPorts: [] }
`, '(bench)');
}

/** The bench's HAProxy sidecar: one thread, as uid 1337, its outbound listener forwarding every
 * connection to its original destination (the same-node topology adds the inbound listener). */
export const HAPROXY_CFG = `global
  nbthread 1
  maxconn 4000
  uid 1337
  gid 1337
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend outbound
  bind 127.0.0.1:15001
  default_backend original_dst
backend original_dst
  # 0.0.0.0 = forward to the connection's SO_ORIGINAL_DST (iptables NAT or sockmesh's getsockopt)
  server orig 0.0.0.0:0
`;

export interface Sample {
  result: Record<string, number>;
  /** CPU time of every process involved (both cgroups), in µs. */
  cpuUsec: number;
}

/** What the bench runs its modes and workloads on (the single-pod topology here, src/bench/samenode.ts). */
export interface BenchTopology {
  /** Switches capture for new connections; the processes stay. */
  setMode(mode: BenchMode): Promise<void>;
  /** Runs one workload from the client pod; returns smload's figures and the CPU used. */
  run(w: Workload, seconds: number): Promise<Sample>;
  close(): Promise<void>;
}

export function cgroupUsageUsec(cg: string): number {
  const m = /usage_usec (\d+)/.exec(readFileSync(join(cg, 'cpu.stat'), 'utf8'));
  return m ? Number(m[1]) : 0;
}

export class BenchEnv implements BenchTopology {
  private mode: BenchMode | undefined;
  readonly dir = mkdtempSync(join(tmpdir(), 'sockmesh-bench-'));
  private readonly smload = join(packageRoot(), 'dist', 'smload');

  private constructor(readonly topo: Topology, readonly instance: string) {}

  /**
   * The topology with the smload server (its HTTP responder too, on `httpPort`) and the HAProxy
   * sidecar; `more` starts what a variant of the bench adds (the governance sidecar).
   */
  static async create(name: string, opts: { httpPort?: number; more?: (env: BenchEnv) => Promise<void> } = {}): Promise<BenchEnv> {
    const env = new BenchEnv(await Topology.create(name, { remote: { addresses: [SERVICE_IP, ENDPOINT_IP] } }), name);
    try {
      if (!existsSync(env.smload)) throw new SockmeshError(Codes.USAGE, `${env.smload} is missing: run npm run build`);
      writeFileSync(join(env.dir, 'haproxy.cfg'), HAPROXY_CFG);
      const ports = [ECHO_PORT, SINK_PORT, ...(opts.httpPort ? [opts.httpPort] : [])].map(String);
      const server = env.topo.spawn(env.smload, ['server', '0.0.0.0', ...ports], { netns: 'remote', cgroup: 'outside', label: 'smload server' });
      await server.waitFor((l) => l.event === 'ready');
      const haproxy = env.topo.spawn('haproxy', ['-db', '-f', join(env.dir, 'haproxy.cfg')], { cgroup: 'mesh', label: 'haproxy sidecar' });
      await waitListening((cmd, args) => env.topo.exec(cmd, args), 15001, haproxy);
      await opts.more?.(env);
    } catch (err) {
      await env.close();
      throw err;
    }
    return env;
  }

  /** Switches capture for new connections; the processes stay. */
  async setMode(mode: BenchMode): Promise<void> {
    if (mode === this.mode) return;
    const base = { instance: this.instance, configSource: '(bench)' };
    if (mode === 'direct') await down(this.instance);
    else if (mode === 'iptables') await up({ ...base, mode: 'iptables', netns: this.topo.netns, config: configFor('never') });
    else {
      const splice = mode === 'ebpf-capture' ? 'never' : mode === 'ebpf-splice' ? 'always' : mode === 'ebpf-kernel' ? 'kernel' : undefined;
      await up({ ...base, mode: 'ebpf', cgroup: this.topo.cgroup, config: configFor(splice) });
    }
    this.mode = mode;
  }

  /** Runs one workload with the client in the mesh cgroup; returns smload's figures and the CPU used. */
  run(w: Workload, seconds: number): Promise<Sample> {
    return this.smloadRun(w.id, [w.test, SERVICE_IP, String(w.port === 'echo' ? ECHO_PORT : SINK_PORT), String(w.size), String(seconds)], seconds);
  }

  /** One smload client run in the mesh cgroup: its result line and the CPU of both cgroups. */
  async smloadRun(label: string, args: string[], seconds: number): Promise<Sample> {
    const cpu = () => cgroupUsageUsec(this.topo.cgroup) + cgroupUsageUsec(this.topo.outsideCgroup);
    const cpu0 = cpu();
    const p = this.topo.spawn(this.smload, args, { cgroup: 'mesh', label: `smload ${label}` });
    const line = await p.waitFor((l) => typeof l.test === 'string', (seconds + 30) * 1000);
    const code = await p.exited;
    if (code !== 0) throw new SockmeshError(Codes.TOPOLOGY, `smload ${label} exited ${code}: ${p.stderr}`);
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

/** Waits until something listens on `port` in a namespace (`ss` run through `exec`), or `proc` ends. */
export async function waitListening(exec: (cmd: string, args: string[]) => Promise<{ stdout: string }>, port: number, proc: Proc): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await exec('ss', ['-Hltn', `sport = :${port}`]);
    if (r.stdout.trim()) return;
    if (proc.child.exitCode !== null) break;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new SockmeshError(Codes.TOPOLOGY, `${proc.label} did not listen on ${port}: ${proc.stderr.slice(-400)}`);
}
