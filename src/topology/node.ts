// A private "node" for multi-pod tests: one parent cgroup (sockmesh-<name>) with a cgroup per pod
// below it, and a network namespace per pod (sm-<name>-<pod>) with loopback up. A pod given an
// address gets an eth0 (veth) on a bridge in the node's own namespace (sm-<name>-node), as pods of
// one Kubernetes node share its bridge. Processes join their pod's cgroup before `ip netns exec`
// (which remounts /sys). close() removes everything, also after a failure, and is safe to call twice.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { cgroup2Mount } from '../bpf/cgroup.js';
import { Codes, SockmeshError } from '../errors.js';
import { execTool } from '../util/exec.js';
import { packageRoot } from '../util/paths.js';
import { Proc } from './proc.js';
import { teardown } from './topology.js';

export interface NodePod {
  name: string;
  cgroup: string;
  netns: string;
  /** Its eth0 address on the node's bridge (10.201.0.0/24), when it has one. */
  address?: string;
}


async function must(cmd: string, args: string[]): Promise<void> {
  const r = await execTool(cmd, args);
  if (r.code !== 0) throw new SockmeshError(Codes.TOPOLOGY, `${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
}

export class NodeTopology {
  readonly procs: Proc[] = [];
  readonly pods = new Map<string, NodePod>();
  private readonly made: string[] = [];
  private closed = false;

  private constructor(readonly name: string, readonly parent: string) {}

  /** Pods by name, or [name, address] for a pod on the node's bridge. */
  static async create(name: string, pods: Array<string | [string, string]>): Promise<NodeTopology> {
    const mount = cgroup2Mount();
    if (!mount) throw new SockmeshError(Codes.TOPOLOGY, 'no cgroup2 mount');
    const node = new NodeTopology(name, join(mount, `sockmesh-${name}`));
    try {
      mkdirSync(node.parent);
      node.made.push(node.parent);
      for (const p of pods) await (typeof p === 'string' ? node.addPod(p) : node.addPod(p[0], p[0], p[1]));
    } catch (err) {
      await node.close();
      throw err;
    }
    return node;
  }

  /**
   * Adds a pod (its cgroup below the parent and its namespace); returns it. `cgroup` lays the pod
   * out as a kubelet would (e.g. kubepods/besteffort/pod<uid>/<container>, every missing level
   * made): its processes run in that directory.
   */
  async addPod(pod: string, cgroupPath = pod, address?: string): Promise<NodePod> {
    const cgroup = join(this.parent, cgroupPath);
    let dir = this.parent;
    for (const part of cgroupPath.split('/')) {
      dir = join(dir, part);
      if (existsSync(dir)) continue;
      mkdirSync(dir);
      this.made.push(dir);
    }
    const netns = `sm-${this.name}-${pod}`;
    const r = await execTool('ip', ['netns', 'add', netns]);
    if (r.code !== 0) throw new SockmeshError(Codes.TOPOLOGY, `ip netns add ${netns}: ${r.stderr.trim()}`);
    this.made.push(`netns:${netns}`);
    await execTool('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
    // Short connections by the thousand (benchmarks, probes): let TIME_WAIT ports be reused.
    await execTool('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=1024 65000']);
    if (address) await this.wire(netns, pod, address);
    const p = { name: pod, cgroup, netns, ...(address ? { address } : {}) };
    this.pods.set(pod, p);
    return p;
  }

  /** The node's namespace with its bridge, made with the first pod that has an address. */
  private async bridge(): Promise<string> {
    const ns = `sm-${this.name}-node`;
    if (this.made.includes(`netns:${ns}`)) return ns;
    await must('ip', ['netns', 'add', ns]);
    this.made.push(`netns:${ns}`);
    await must('ip', ['-n', ns, 'link', 'add', 'br0', 'type', 'bridge']);
    await must('ip', ['-n', ns, 'link', 'set', 'br0', 'up']);
    return ns;
  }

  private async wire(netns: string, pod: string, address: string): Promise<void> {
    const node = await this.bridge();
    const port = `v-${pod}`.slice(0, 15);
    await must('ip', ['-n', node, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    await must('ip', ['-n', node, 'link', 'set', port, 'master', 'br0', 'up']);
    await must('ip', ['-n', netns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
    await must('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
  }

  pod(name: string): NodePod {
    const p = this.pods.get(name);
    if (!p) throw new SockmeshError(Codes.TOPOLOGY, `no pod ${name}`);
    return p;
  }

  /** Starts `cmd args` in a pod's cgroup and namespace. */
  spawn(pod: string, cmd: string, args: string[], label: string): Proc {
    const p = this.pod(pod);
    const proc = new Proc(label, 'sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', p.cgroup, 'ip', 'netns', 'exec', p.netns, cmd, ...args]);
    this.procs.push(proc);
    return proc;
  }

  /** Runs one of sockmesh's own node entry points (relative to the package) in a pod. */
  spawnNode(pod: string, script: string, args: string[], label: string): Proc {
    return this.spawn(pod, process.execPath, [join(packageRoot(), script), ...args], label);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await teardown(this.procs, this.made);
  }
}
