// Which view of the kernel's objects a command has. eBPF work needs the view of /sys the instance
// was made in (the cgroup and the pins); iptables work needs the network namespace its rules are
// in. A command run from another mount or network namespace is refused rather than let loose on
// the wrong objects.
import { readlinkSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import * as bpf from '../../native/libbpf.js';
import { cgroup2Mount } from '../bpf/cgroup.js';
import { mapPath, pinLayout } from '../bpf/pins.js';
import { Codes, UserError } from '../errors.js';
import type { InstanceRecord } from './record.js';

/** The identity of this process's mount namespace (mnt:[inode]). */
export function currentMntnsId(): string {
  return readlinkSync('/proc/self/ns/mnt');
}

/**
 * eBPF work needs the view of /sys the instance was made in: `ip netns exec` (which remounts /sys)
 * or any other private mount namespace hides the cgroups and pins, and a bpffs mounted there would
 * take new pins with it when the namespace ends. Refuse rather than work on the wrong view. Another
 * mount namespace that shows the same cgroup and the same pinned maps (a restarted DaemonSet
 * container: a new namespace, the same host paths mounted in) is the same view; one that shows
 * other objects at those paths, or neither, is not.
 */
export function requireSameMounts(rec: InstanceRecord | undefined, action: string): void {
  if (!cgroup2Mount()) {
    throw new UserError(Codes.USAGE, `cannot ${action}: no cgroup2 mount is visible here (\`ip netns exec\` remounts /sys and hides it); run sockmesh in the host's mount namespace, e.g. nsenter --net=/var/run/netns/NAME sockmesh …`);
  }
  const here = currentMntnsId();
  // Namespace ids are reused once a namespace is gone (a stopped container's, for one): with the
  // view recorded, the ids of what this namespace shows decide, not its name.
  if (!rec) return;
  if (rec.view ? !sameView(rec) : rec.mntns && rec.mntns !== here) {
    throw new UserError(Codes.USAGE, `cannot ${action}: instance "${rec.instance}" was made in mount namespace ${rec.mntns} and this command runs in ${here}, which may not see its cgroup and pins; run sockmesh there (nsenter --net=… keeps the mount namespace)`);
  }
}

/**
 * What identifies an instance's view, each part when this mount namespace shows it: its cgroup's
 * id, the id of its pinned sm_gen map, and the device of the bpffs its pin directory lies on.
 */
function viewParts(cgroup: string, root: string): { cgroupId?: string; genMapId?: number; bpffsDev?: string } {
  const out: { cgroupId?: string; genMapId?: number; bpffsDev?: string } = {};
  try {
    out.cgroupId = String(statSync(cgroup).ino);
  } catch { /* not visible here, or gone */ }
  try {
    out.bpffsDev = String(statSync(dirname(root)).dev);
  } catch { /* no such directory here */ }
  try {
    const fd = bpf.objGet(mapPath(pinLayout(root), 'sm_gen'));
    try {
      out.genMapId = bpf.mapInfo(fd, 'sm_gen').id;
    } finally {
      bpf.close(fd);
    }
  } catch { /* not visible here, or removed */ }
  return out;
}

export function viewOf(cgroup: string, root: string): InstanceRecord['view'] {
  const v = viewParts(cgroup, root);
  return v.cgroupId !== undefined && v.genMapId !== undefined && v.bpffsDev !== undefined
    ? { cgroupId: v.cgroupId, genMapId: v.genMapId, bpffsDev: v.bpffsDev } : undefined;
}

/**
 * Whether this mount namespace shows the record's own cgroup and pins: the same pinned map, or —
 * pins removed by hand — the same bpffs; and the same cgroup when it still exists. A bpffs hidden
 * under another filesystem, or another bpffs, is not the instance's view.
 */
function sameView(rec: InstanceRecord): boolean {
  if (!rec.view || !rec.cgroup) return false;
  const now = viewParts(rec.cgroup, rec.pinRoot);
  if (now.cgroupId !== undefined && now.cgroupId !== rec.view.cgroupId) return false;
  if (now.genMapId !== undefined) return now.genMapId === rec.view.genMapId;
  return now.bpffsDev !== undefined && now.bpffsDev === rec.view.bpffsDev;
}

/** The identity of this process's network namespace (net:[inode]). */
export function currentNetnsId(): string {
  return readlinkSync('/proc/self/ns/net');
}

/**
 * Where an iptables-mode instance keeps its rules: the named namespace, or this process's own,
 * which must be the one the record names (a command run from another namespace would touch the
 * wrong nat table).
 */
export function iptablesNamespace(rec: InstanceRecord): string | undefined {
  if (rec.netns !== undefined) return rec.netns;
  const here = currentNetnsId();
  if (rec.netnsId && rec.netnsId !== here) {
    throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${rec.instance}" has its rules in network namespace ${rec.netnsId}, but this command runs in ${here}: run it in that namespace`);
  }
  return undefined;
}

