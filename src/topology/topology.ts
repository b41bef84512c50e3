// A private test topology. The "pod" is a network namespace (sm-<name>) with loopback up and a
// cgroup (sockmesh-<name>) for mesh workloads; a second cgroup (sockmesh-<name>-srv) holds
// processes outside the mesh. With `remote`, a second namespace (sm-<name>-r) is joined to the pod
// by a veth pair (pod 10.200.0.1, remote 10.200.0.2, the pod's default route) and carries the
// remote addresses, so service traffic leaves the pod over eth0 like it does in Kubernetes.
// Processes join their cgroup before `ip netns exec` (which remounts /sys). close() removes
// everything in reverse, also after a failure, and is safe to call twice.
import { existsSync, mkdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { cgroup2Mount } from '../bpf/cgroup.js';
import { Codes, SockmeshError } from '../errors.js';
import { execTool } from '../util/exec.js';
import { packageRoot } from '../util/paths.js';
import { Proc } from './proc.js';

async function must(cmd: string, args: string[]): Promise<string> {
  const r = await execTool(cmd, args);
  if (r.code !== 0) throw new SockmeshError(Codes.TOPOLOGY, `${cmd} ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

export const POD_IP = '10.200.0.1';
export const REMOTE_IP = '10.200.0.2';
/** With `ipv6`: the same link's IPv6 addresses. */
export const POD_IP6 = 'fd00:200::1';
export const REMOTE_IP6 = 'fd00:200::2';

/** An address as a host route: /32 or /128. */
function host(a: string): string {
  return `${a}/${a.includes(':') ? 128 : 32}`;
}

export interface TopologyOptions {
  /** Extra /32 addresses on the pod's lo. */
  podAddresses?: string[];
  /** Create the remote namespace with these addresses (IPv4 or IPv6) on its lo. */
  remote?: { addresses: string[] };
  /** Dual stack: the pod-remote link also carries IPv6 (POD_IP6, REMOTE_IP6, default route). */
  ipv6?: boolean;
}

export interface SpawnOptions {
  /** Which cgroup the process joins: the mesh cgroup, the outside one, or none. */
  cgroup?: 'mesh' | 'outside';
  /** Which namespace it runs in (default pod). */
  netns?: 'pod' | 'remote';
  label: string;
}

export class Topology {
  readonly procs: Proc[] = [];
  readonly outsideCgroup: string;
  readonly remoteNetns: string | undefined;
  private closed = false;
  private readonly made: string[] = [];

  private constructor(readonly name: string, readonly cgroup: string, readonly netns: string, remote: boolean) {
    this.outsideCgroup = `${cgroup}-srv`;
    this.remoteNetns = remote ? `${netns}-r` : undefined;
  }

  static async create(name: string, opts: TopologyOptions = {}): Promise<Topology> {
    const mount = cgroup2Mount();
    if (!mount) throw new SockmeshError(Codes.TOPOLOGY, 'no cgroup2 mount');
    const topo = new Topology(name, join(mount, `sockmesh-${name}`), `sm-${name}`, opts.remote !== undefined);
    try {
      for (const cg of [topo.cgroup, topo.outsideCgroup]) {
        mkdirSync(cg);
        topo.made.push(cg);
      }
      await topo.addNetns(topo.netns);
      for (const a of opts.podAddresses ?? []) await must('ip', ['-n', topo.netns, 'addr', 'add', host(a), 'dev', 'lo', ...(a.includes(':') ? ['nodad'] : [])]);
      if (topo.remoteNetns) {
        const r = topo.remoteNetns;
        await topo.addNetns(r);
        await must('ip', ['-n', topo.netns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', r]);
        await must('ip', ['-n', topo.netns, 'addr', 'add', `${POD_IP}/24`, 'dev', 'eth0']);
        await must('ip', ['-n', r, 'addr', 'add', `${REMOTE_IP}/24`, 'dev', 'eth0']);
        await must('ip', ['-n', topo.netns, 'link', 'set', 'eth0', 'up']);
        await must('ip', ['-n', r, 'link', 'set', 'eth0', 'up']);
        await must('ip', ['-n', topo.netns, 'route', 'add', 'default', 'via', REMOTE_IP]);
        if (opts.ipv6) {
          // nodad: usable at once (no duplicate address detection on a private link).
          await must('ip', ['-n', topo.netns, 'addr', 'add', `${POD_IP6}/64`, 'dev', 'eth0', 'nodad']);
          await must('ip', ['-n', r, 'addr', 'add', `${REMOTE_IP6}/64`, 'dev', 'eth0', 'nodad']);
          await must('ip', ['-n', topo.netns, '-6', 'route', 'add', 'default', 'via', REMOTE_IP6]);
        }
        for (const a of opts.remote!.addresses) await must('ip', ['-n', r, 'addr', 'add', host(a), 'dev', 'lo', ...(a.includes(':') ? ['nodad'] : [])]);
      }
    } catch (err) {
      await topo.close();
      throw err;
    }
    return topo;
  }

  private async addNetns(ns: string): Promise<void> {
    await must('ip', ['netns', 'add', ns]);
    this.made.push(`netns:${ns}`);
    await must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    // Benchmarks open many short connections: let TIME_WAIT ports be reused (this namespace only).
    await must('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=1024 65000']);
  }

  /** Starts `cmd args` in a namespace and cgroup of this topology. */
  spawn(cmd: string, args: string[], opts: SpawnOptions): Proc {
    const ns = opts.netns === 'remote' ? this.remoteNetns : this.netns;
    if (!ns) throw new SockmeshError(Codes.TOPOLOGY, 'this topology has no remote namespace');
    const inner = ['ip', 'netns', 'exec', ns, cmd, ...args];
    const cg = opts.cgroup === 'mesh' ? this.cgroup : opts.cgroup === 'outside' ? this.outsideCgroup : undefined;
    const proc = cg
      ? new Proc(opts.label, 'sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', cg, ...inner])
      : new Proc(opts.label, inner[0], inner.slice(1));
    this.procs.push(proc);
    return proc;
  }

  /** Runs one of sockmesh's own node entry points (relative to the package) in the topology. */
  spawnNode(script: string, args: string[], opts: SpawnOptions): Proc {
    return this.spawn(process.execPath, [join(packageRoot(), script), ...args], opts);
  }

  /** Runs a command in the pod namespace to completion. */
  exec(cmd: string, args: string[]) {
    return execTool('ip', ['netns', 'exec', this.netns, cmd, ...args]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await teardown(this.procs, this.made);
  }
}

/**
 * Stops the processes a test bed started (by pid), then removes what it made in reverse order:
 * `netns:NAME` entries are namespaces, the others cgroups.
 */
export async function teardown(procs: Proc[], made: string[]): Promise<void> {
  await Promise.all(procs.map((p) => p.kill()));
  for (const item of [...made].reverse()) {
    if (item.startsWith('netns:')) await execTool('ip', ['netns', 'del', item.slice(6)]);
    else await removeCgroup(item);
  }
}

/** Kills what is left in a cgroup this topology made (its own processes' children), then removes it. */
export async function removeCgroup(cg: string): Promise<void> {
  if (!existsSync(cg)) return;
  for (let i = 0; i < 100; i++) {
    const pids = readFileSync(join(cg, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
    for (const pid of pids) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
    }
    try {
      rmdirSync(cg);
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  throw new SockmeshError(Codes.TOPOLOGY, `cannot remove cgroup ${cg}: processes keep running in it`);
}
