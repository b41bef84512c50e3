// The bench's same-node topology: two meshed pods on one node's bridge, each with its own HAProxy
// sidecar (outbound 15001 and inbound 15006, as uid 1337). The smload client in the client pod
// calls the server pod's address; every mode carries it app -> client sidecar -> server sidecar ->
// app (direct: straight to the app). iptables mode is one istio-iptables rule set per pod; eBPF
// mode one instance meshing both pods, where every hop is local and can be spliced.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { down, up } from '../instance/lifecycle.js';
import { parseConfigText } from '../config/load.js';
import type { MeshConfig, SpliceMode } from '../config/model.js';
import { Codes, SockmeshError } from '../errors.js';
import { NodeTopology } from '../topology/node.js';
import { execTool } from '../util/exec.js';
import { packageRoot } from '../util/paths.js';
import { ECHO_PORT, HAPROXY_CFG, SINK_PORT, cgroupUsageUsec, waitListening, type BenchTopology, type Sample } from './env.js';
import type { BenchMode } from './modes.js';
import type { Workload } from './workloads.js';

export const CLIENT_POD_IP = '10.201.0.21';
export const SERVER_POD_IP = '10.201.0.22';

/** The sidecar: the single-pod bench's (outbound to the original destination), and inbound on to
 * the app from 127.0.0.6. */
const SIDECAR_CFG = `${HAPROXY_CFG}frontend inbound
  bind 0.0.0.0:15006
  default_backend inbound_app
backend inbound_app
  # Istio's passthrough source: neither capture mode sends it back to the sidecar
  server app 0.0.0.0:0 source 127.0.0.6
`;

function configFor(pods: string, splice: SpliceMode, hops: SpliceMode): MeshConfig {
  return parseConfigText(`
sidecar: { uid: 1337, outboundPort: 15001, inboundPort: 15006 }
services:
  - { name: bench, addresses: [${SERVER_POD_IP}], ports: [${ECHO_PORT}, ${SINK_PORT}], splice: ${splice} }
spliceHops: ${hops}
${pods}`, '(bench, same node)');
}

export class SameNodeEnv implements BenchTopology {
  private mode: BenchMode | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), 'sockmesh-bench-'));
  private readonly smload = join(packageRoot(), 'dist', 'smload');

  private constructor(readonly node: NodeTopology, readonly instance: string) {}

  static async create(name: string): Promise<SameNodeEnv> {
    const env = new SameNodeEnv(await NodeTopology.create(name, [['client', CLIENT_POD_IP], ['server', SERVER_POD_IP]]), name);
    try {
      writeFileSync(join(env.dir, 'haproxy.cfg'), SIDECAR_CFG);
      // The server app runs in its pod's cgroup, as a container does: its accepted sockets are the pod's.
      const server = env.node.spawn('server', env.smload, ['server', '0.0.0.0', String(ECHO_PORT), String(SINK_PORT)], 'smload server');
      await server.waitFor((l) => l.event === 'ready');
      for (const pod of ['client', 'server']) {
        const haproxy = env.node.spawn(pod, 'haproxy', ['-db', '-f', join(env.dir, 'haproxy.cfg')], `haproxy sidecar ${pod}`);
        await waitListening((cmd, args) => execTool('ip', ['netns', 'exec', env.node.pod(pod).netns, cmd, ...args]), 15006, haproxy);
      }
    } catch (err) {
      await env.close();
      throw err;
    }
    return env;
  }

  private podsYaml(): string {
    const p = (n: string) => `  - { name: ${n}, cgroup: ${n}, netns: ${this.node.pod(n).netns} }`;
    return `pods:\n${p('client')}\n${p('server')}\n`;
  }

  private iptablesInstance(pod: string): string {
    return `${this.instance}-${pod[0]}`;
  }

  async setMode(mode: BenchMode): Promise<void> {
    if (mode === this.mode) return;
    if (mode === 'ebpf-kernel') throw new SockmeshError(Codes.USAGE, 'the same-node topology has no kernel-mode row (a kernel-mode client still reaches the server pod\'s sidecar inbound)');
    const base = { configSource: '(bench, same node)' };
    await down(this.instance);
    for (const pod of ['client', 'server']) await down(this.iptablesInstance(pod));
    if (mode === 'iptables') {
      for (const pod of ['client', 'server']) {
        await up({ ...base, instance: this.iptablesInstance(pod), mode: 'iptables', netns: this.node.pod(pod).netns, config: configFor('', 'never', 'never') });
      }
    } else if (mode !== 'direct') {
      const splice: SpliceMode = mode === 'ebpf-capture' ? 'never' : mode === 'ebpf-splice' ? 'always' : 'auto';
      await up({ ...base, instance: this.instance, mode: 'ebpf', cgroup: this.node.parent, config: configFor(this.podsYaml(), splice, splice) });
    }
    this.mode = mode;
  }

  async run(w: Workload, seconds: number): Promise<Sample> {
    const port = w.port === 'echo' ? ECHO_PORT : SINK_PORT;
    const cpu = () => cgroupUsageUsec(this.node.parent);
    const cpu0 = cpu();
    const p = this.node.spawn('client', this.smload, [w.test, SERVER_POD_IP, String(port), String(w.size), String(seconds)], `smload ${w.id}`);
    const line = await p.waitFor((l) => typeof l.test === 'string', (seconds + 30) * 1000);
    const code = await p.exited;
    if (code !== 0) throw new SockmeshError(Codes.TOPOLOGY, `smload ${w.id} exited ${code}: ${p.stderr}`);
    return { result: line as Record<string, number>, cpuUsec: cpu() - cpu0 };
  }

  async close(): Promise<void> {
    try {
      await down(this.instance);
      for (const pod of ['client', 'server']) await down(this.iptablesInstance(pod));
    } finally {
      await this.node.close();
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
