// Who asks over the control socket: the caller's uid, its cgroup (by id) and its network namespace
// (by cookie), read from the socket itself (SO_PEERCRED, and the peer's pidfd where the kernel has
// one: the same process for sure, whichever pid namespace it is in; else /proc/<pid>), and which
// meshed pod that makes it. Requests are allowed or refused on this, never on what they claim.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { netnsCookie, netnsCookieOfFd } from '../../native/netns.js';
import { closeFd, peerCred, peerPidfd, pidfdCgroupId, pidfdNetns } from '../../native/peer.js';
import { cgroup2Mount } from '../bpf/cgroup.js';
import type { ResolvedPod } from '../plan/desired.js';

export interface Caller {
  uid: number;
  gid: number;
  /** In the agent's pid namespace; 0 when the caller is not visible in it. */
  pid: number;
  /** Its cgroup2 id; undefined when it cannot be read. */
  cgroupId?: bigint;
  /** Its network namespace's cookie; undefined when it cannot be read. */
  netnsCookie?: bigint;
}

/** The caller on a connected unix socket (`procRoot`: where its /proc is, for old kernels). */
export function identifyCaller(fd: number, procRoot = '/proc'): Caller {
  const cred = peerCred(fd);
  const caller: Caller = { ...cred };
  const pidfd = peerPidfd(fd);
  if (pidfd !== undefined) {
    try {
      caller.cgroupId = pidfdCgroupId(pidfd);
      const ns = pidfdNetns(pidfd);
      if (ns !== undefined) {
        try {
          caller.netnsCookie = netnsCookieOfFd(ns, `the network namespace of pid ${cred.pid}`);
        } finally {
          closeFd(ns);
        }
      }
    } finally {
      closeFd(pidfd);
    }
  }
  // Kernels before 6.11/6.13: through /proc, for a caller this pid namespace sees.
  if (cred.pid > 0 && caller.cgroupId === undefined) caller.cgroupId = cgroupIdOf(procRoot, cred.pid);
  if (cred.pid > 0 && caller.netnsCookie === undefined) {
    try {
      caller.netnsCookie = netnsCookie(`${procRoot}/${cred.pid}/ns/net`);
    } catch { /* gone, or not ours to read */ }
  }
  return caller;
}

function cgroupIdOf(procRoot: string, pid: number): bigint | undefined {
  try {
    const line = readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
    const mount = cgroup2Mount();
    return line && mount ? statSync(join(mount, line.slice(3)), { bigint: true }).ino : undefined;
  } catch {
    return undefined;
  }
}

/** Whether cgroup `id` is `root` or a directory below it (pods' containers have cgroups of their own). */
export function cgroupWithin(root: string, rootId: bigint, id: bigint, depth = 4): boolean {
  if (id === rootId) return true;
  if (depth === 0) return false;
  let entries: string[];
  try {
    entries = readdirSync(root, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return false;
  }
  for (const name of entries) {
    const dir = join(root, name);
    let ino: bigint;
    try {
      ino = statSync(dir, { bigint: true }).ino;
    } catch {
      continue;
    }
    if (cgroupWithin(dir, ino, id, depth - 1)) return true;
  }
  return false;
}

/** The meshed pod the caller belongs to: its cgroup is the pod's or below it, in the pod's namespace. */
export function podOfCaller(caller: Caller, pods: readonly ResolvedPod[]): ResolvedPod | undefined {
  if (caller.cgroupId === undefined) return undefined;
  return pods.find((p) => (p.netnsCookie === 0n || p.netnsCookie === caller.netnsCookie)
    && (p.cgroupId === caller.cgroupId || (p.cgroupPath !== undefined && cgroupWithin(p.cgroupPath, p.cgroupId, caller.cgroupId!))));
}
