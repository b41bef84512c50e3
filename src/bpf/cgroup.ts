// cgroup2 discovery and checks on the cgroup sockmesh is asked to attach to.
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { Codes, UserError } from '../errors.js';

/** Where cgroup2 is mounted: /sys/fs/cgroup on pure v2, /sys/fs/cgroup/unified on hybrid hosts. */
export function cgroup2Mount(): string | undefined {
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mnt, fstype] = line.split(' ');
    if (fstype === 'cgroup2' && mnt) return mnt;
  }
  return undefined;
}

/** Every cgroup2 mount point (a DaemonSet sees its own namespaced one and the host's, mounted in). */
export function cgroup2Mounts(): string[] {
  return readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')).filter((f) => f[2] === 'cgroup2' && f[1]).map((f) => f[1]);
}

/**
 * The root of the cgroup2 hierarchy `real` (a resolved path) lies in: the mount point holding it
 * that is the hierarchy's root. A mount of a cgroup below the root (a container's own
 * /sys/fs/cgroup) cannot tell a cgroup's depth, which the programs match pods by; the root has no
 * cgroup.events (the kernel gives it to every cgroup but the root).
 */
export function cgroup2RootOf(real: string): string | undefined {
  const mounts = cgroup2Mounts().map((m) => realpathSync(m)).filter((m) => real === m || real.startsWith(`${m}/`));
  return mounts.filter((m) => !existsSync(`${m}/cgroup.events`)).sort((a, b) => b.length - a.length)[0];
}

/**
 * Resolves and checks an attach target: an existing directory inside the cgroup2 mount and not
 * the mount's root (attaching there would capture the whole machine).
 */
export function checkAttachCgroup(path: string): string {
  const mount = cgroup2Mount();
  if (!mount) throw new UserError(Codes.CGROUP, 'no cgroup2 filesystem is mounted on this machine');
  let real: string;
  try {
    real = realpathSync(path);
    if (!statSync(real).isDirectory()) throw new Error('not a directory');
    statSync(`${real}/cgroup.procs`);
  } catch (cause) {
    throw new UserError(Codes.CGROUP, `--cgroup ${path} is not a cgroup2 directory (cgroup2 is mounted at ${mount})`, { cause });
  }
  const root = cgroup2RootOf(real) ?? realpathSync(mount);
  if (real === root) {
    throw new UserError(Codes.CGROUP, `refusing to attach to the cgroup2 root ${root}: create a cgroup for the workloads to mesh`);
  }
  if (!real.startsWith(`${root}/`)) {
    throw new UserError(Codes.CGROUP, `--cgroup ${path} is not inside the cgroup2 mount ${root}`);
  }
  return real;
}
