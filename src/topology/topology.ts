// A private test topology: one cgroup (sockmesh-<name>) under the cgroup2 mount and one network
// namespace (sm-<name>) with loopback up and extra addresses on lo. Processes start inside the
// cgroup (joined before `ip netns exec`, which remounts /sys) and/or the namespace. close()
// removes everything in reverse, also after a failure; it is safe to call twice.
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

export interface SpawnOptions {
  /** Join the topology's cgroup (a mesh workload). */
  inCgroup: boolean;
  label: string;
}

export class Topology {
  readonly procs: Proc[] = [];
  private closed = false;

  private constructor(readonly name: string, readonly cgroup: string, readonly netns: string) {}

  /** Creates the cgroup and the namespace; `addresses` are added to lo as /32 host addresses. */
  static async create(name: string, addresses: string[] = []): Promise<Topology> {
    const mount = cgroup2Mount();
    if (!mount) throw new SockmeshError(Codes.TOPOLOGY, 'no cgroup2 mount');
    const topo = new Topology(name, join(mount, `sockmesh-${name}`), `sm-${name}`);
    try {
      mkdirSync(topo.cgroup);
      await must('ip', ['netns', 'add', topo.netns]);
      await must('ip', ['-n', topo.netns, 'link', 'set', 'lo', 'up']);
      for (const a of addresses) await must('ip', ['-n', topo.netns, 'addr', 'add', `${a}/32`, 'dev', 'lo']);
    } catch (err) {
      await topo.close();
      throw err;
    }
    return topo;
  }

  /** Starts `cmd args` inside the namespace, in the cgroup when asked. */
  spawn(cmd: string, args: string[], opts: SpawnOptions): Proc {
    const inner = ['ip', 'netns', 'exec', this.netns, cmd, ...args];
    const proc = opts.inCgroup
      ? new Proc(opts.label, 'sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', this.cgroup, ...inner])
      : new Proc(opts.label, inner[0], inner.slice(1));
    this.procs.push(proc);
    return proc;
  }

  /** Runs one of sockmesh's own node entry points (dist/...) inside the topology. */
  spawnNode(script: string, args: string[], opts: SpawnOptions): Proc {
    return this.spawn(process.execPath, [join(packageRoot(), script), ...args], opts);
  }

  /** Runs a command in the namespace to completion. */
  exec(cmd: string, args: string[]) {
    return execTool('ip', ['netns', 'exec', this.netns, cmd, ...args]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.procs.map((p) => p.kill()));
    if (existsSync(this.cgroup)) {
      // Anything still inside was started by this topology's processes: kill it by pid, then remove.
      for (let i = 0; i < 50; i++) {
        const pids = readFileSync(join(this.cgroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
        for (const pid of pids) {
          try { process.kill(Number(pid), 'SIGKILL'); } catch { /* already gone */ }
        }
        try {
          rmdirSync(this.cgroup);
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
    await execTool('ip', ['netns', 'del', this.netns]);
  }
}
