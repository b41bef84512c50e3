// Finding pods on this node: each pod's cgroup where the kubelet put it (either cgroup driver), and
// its network namespace through a process of the pod (any container's: all share the pod's
// namespace), found by scanning /proc/<pid>/cgroup for the pod's cgroup name. Not through
// cgroup.procs: a DaemonSet without hostPID reads 0 there for every process outside its own pid
// namespace, while the host's /proc mounted into it lists them all. Reads only.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { podCgroupCandidates } from './translate.js';

export interface Located {
  /** The pod's cgroup relative to the agent's --cgroup directory. */
  cgroup: string;
  /** <proc>/<pid>/ns/net of a process of the pod. */
  netns: string;
  pid: number;
}

export interface PodRef {
  uid: string;
  qos: string;
}

/**
 * The candidates relative to `root` (the agent's --cgroup): the kubelet's paths are relative to
 * the cgroup2 root, and `root` may be that or the kubepods directory itself.
 */
export function candidatesUnder(root: string, uid: string, qos: string): string[] {
  const top = basename(root);
  return podCgroupCandidates(uid, qos).map((c) => {
    const [first, ...rest] = c.split('/');
    return first === top ? rest.join('/') : c;
  });
}

/** The last path component of each driver's pod cgroup: what a process's cgroup path contains. */
function markers(uid: string): string[] {
  return [`/pod${uid}/`, `-pod${uid.replace(/-/g, '_')}.slice/`];
}

function cgroupOf(proc: string, pid: number): string | undefined {
  try {
    const line = readFileSync(`${proc}/${pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::'));
    return line === undefined ? undefined : `${line.slice(3)}/`;
  } catch {
    return undefined;
  }
}

/**
 * Finds pods: for each, where it is, or why it cannot be found yet (no cgroup, no process).
 * `previous` locations whose process still lives in the pod are kept (same namespace path).
 */
export function locatePods(root: string, proc: string, pods: PodRef[], previous: Map<string, Located>): Map<string, Located | { missing: string }> {
  const out = new Map<string, Located | { missing: string }>();
  const wanted = new Map<string, { rel: string; marks: string[] }>();
  for (const p of pods) {
    const tried = candidatesUnder(root, p.uid, p.qos);
    const rel = tried.find((r) => existsSync(join(root, r, 'cgroup.procs')));
    if (rel === undefined) {
      out.set(p.uid, { missing: `no cgroup at ${tried.map((t) => join(root, t)).join(' or ')}` });
      continue;
    }
    const prev = previous.get(p.uid);
    const marks = markers(p.uid);
    const cg = prev && prev.cgroup === rel ? cgroupOf(proc, prev.pid) : undefined;
    if (prev && cg && marks.some((m) => cg.includes(m))) out.set(p.uid, prev);
    else wanted.set(p.uid, { rel, marks });
  }
  if (wanted.size) {
    let pids: number[] = [];
    try {
      pids = readdirSync(proc).filter((e) => /^\d+$/.test(e)).map(Number).sort((a, b) => a - b);
    } catch { /* no /proc: every pod below is missing */ }
    for (const pid of pids) {
      const cg = cgroupOf(proc, pid);
      if (!cg) continue;
      for (const [uid, w] of wanted) {
        if (!w.marks.some((m) => cg.includes(m))) continue;
        out.set(uid, { cgroup: w.rel, netns: `${proc}/${pid}/ns/net`, pid });
        wanted.delete(uid);
        break;
      }
      if (!wanted.size) break;
    }
    for (const [uid, w] of wanted) out.set(uid, { missing: `no process of the pod in ${join(root, w.rel)} yet` });
  }
  return out;
}
