// Finding the pods of a config on this node: each pod's cgroup (id and depth, for the BPF
// cgroup check), its network namespace (the cookie the programs key everything by) and its own
// addresses. The only I/O between a validated config and the desired state.
import { existsSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { netnsCookie, ownNetnsCookie } from '../../native/netns.js';
import { cgroup2RootOf } from '../bpf/cgroup.js';
import { LIMITS } from '../bpf/codecs.js';
import type { MeshConfig, PodConfig } from '../config/model.js';
import { Codes, SockmeshError, UserError } from '../errors.js';
import { localAddresses } from '../util/netns.js';
import { execTool } from '../util/exec.js';
import { assignServiceIds, type ResolvedPod, type ServiceIds } from '../plan/desired.js';
import { hasName } from '../util/names.js';

/** A pod that could not be found, by its config path. */
export interface PodProblem {
  path: string;
  pod: string;
  message: string;
}

/** The name of the implicit pod of the single-pod form (`up --cgroup X [--netns N]`). */
export const SINGLE_POD = 'default';

/** A network namespace given by name (under /var/run/netns) or path, as a path. */
export function netnsPath(netns: string): string {
  return netns.startsWith('/') ? netns : `/var/run/netns/${netns}`;
}

/** cgroup2 id (the directory's inode) and depth below the cgroup2 root. */
export function cgroupIdentity(path: string): { id: bigint; level: number } {
  const real = realpathSync(path);
  const root = cgroup2RootOf(real);
  if (!root) throw new UserError(Codes.CGROUP, `${path} is not below the root of a mounted cgroup2 hierarchy (mount the host's cgroup2 root, e.g. /sys/fs/cgroup, into the agent)`);
  const rel = relative(root, real);
  return { id: statSync(path, { bigint: true }).ino, level: rel ? rel.split('/').length : 0 };
}

/** The cgroup directory of a pod: relative to `parent`, or absolute and below it. */
export function podCgroup(parent: string, cgroup: string): string {
  const full = isAbsolute(cgroup) ? cgroup : join(parent, cgroup);
  const rel = relative(parent, full);
  if (rel.startsWith('..') || isAbsolute(rel)) throw new UserError(Codes.CGROUP, `${cgroup} is not below ${parent}`);
  return full;
}

/** Namespaces a pod may never name: this process's own and the host's (pid 1's, under `procRoot`),
 * by cookie, with what each is. sk_lookup attached there would refuse every inbound connection of
 * the node's own services, also after the agent stops. */
export function forbiddenNamespaces(procRoot = '/proc'): Map<bigint, string> {
  const out = new Map<bigint, string>();
  out.set(ownNetnsCookie(), 'sockmesh\'s own network namespace');
  try {
    const host = netnsCookie(`${procRoot}/1/ns/net`);
    if (!out.has(host)) out.set(host, `the host's network namespace (that of pid 1 in ${procRoot})`);
  } catch { /* pid 1 not visible here: only our own namespace is known */ }
  return out;
}

async function resolveOne(p: PodConfig, parent: string, podId: number, forbidden: Map<bigint, string>): Promise<ResolvedPod> {
  const cg = podCgroup(parent, p.cgroup);
  if (!existsSync(`${cg}/cgroup.procs`)) throw new UserError(Codes.CGROUP, `cgroup ${cg} does not exist (or is not a cgroup2 directory)`);
  const { id, level } = cgroupIdentity(cg);
  let cookie = 0n;
  let localAddrs: string[] = [];
  if (p.netns !== undefined) {
    // openNetns (inside netnsCookie) never blocks, and refuses what is not a network namespace.
    cookie = netnsCookie(netnsPath(p.netns));
    const what = forbidden.get(cookie);
    if (what) throw new UserError(Codes.USAGE, `${p.netns} is ${what}: sockmesh never meshes it (inbound capture there would refuse every connection to the node's own services)`);
    localAddrs = p.addresses ? p.addresses.map(hostCidr) : await localAddresses(p.netns);
  } else if (p.addresses) {
    localAddrs = p.addresses.map(hostCidr);
  }
  return { name: p.name, netnsCookie: cookie, ...(p.netns !== undefined ? { netnsPath: netnsPath(p.netns) } : {}), cgroupId: id, cgroupLevel: level, cgroupPath: cg, podId, localAddrs, sidecar: p.sidecar, capture: p.capture };
}

/** An address as the host route the maps key it by (/32, /128). */
function hostCidr(a: string): string {
  return `${a}/${a.includes(':') ? 128 : 32}`;
}

/** The pods of a config: the listed ones, or the one implicit pod of the single-pod form. */
export function podsOf(cfg: MeshConfig, single: { cgroup: string; netns?: string }): PodConfig[] {
  if (cfg.pods.length || cfg.podsOnly) return cfg.pods;
  return [{ name: SINGLE_POD, cgroup: single.cgroup, netns: single.netns, sidecar: cfg.sidecar, capture: cfg.capture, namespace: 'default', serviceAccount: 'default', labels: {} }];
}

/**
 * Finds every pod on the node. Pods that cannot be found are returned as problems (the agent
 * skips them and applies the rest; `up` refuses); ids stay stable across calls through `previous`.
 *
 * Two pods that resolve to one cgroup, one network namespace or one address (a name and its path,
 * `a` and `./a/`, an address listed by one and found in the other) would share kernel entries, and
 * the later one would replace the earlier one's: the pod that was meshed before (it has an id in
 * `previous`) keeps it, then the first in list order; the other is a problem naming both.
 */
export async function resolvePods(cfg: MeshConfig, parent: string, single: { netns?: string }, previous: ServiceIds, forbidden = forbiddenNamespaces()):
  Promise<{ pods: ResolvedPod[]; podIds: ServiceIds; problems: PodProblem[] }> {
  const list = podsOf(cfg, { cgroup: parent, netns: single.netns });
  const podIds = assignServiceIds(list.map((p) => p.name), previous, LIMITS.SM_MAX_PODS + 1, 1);
  const found: Array<{ i: number; pod: ResolvedPod }> = [];
  const problems: PodProblem[] = [];
  const at = (i: number) => (cfg.pods.length ? `pods[${i}]` : '--cgroup/--netns');
  for (const [i, p] of list.entries()) {
    try {
      found.push({ i, pod: await resolveOne(p, parent, podIds[p.name], forbidden) });
    } catch (e) {
      if (!(e instanceof SockmeshError)) throw e;
      problems.push({ path: at(i), pod: p.name, message: e.message });
    }
  }
  // Pods meshed before claim first, then the others in list order.
  const order = [...found].sort((a, b) => Number(!hasName(previous, a.pod.name)) - Number(!hasName(previous, b.pod.name)) || a.i - b.i);
  const claims = { cgroup: new Map<bigint, number>(), netns: new Map<bigint, number>(), addr: new Map<string, number>() };
  const kept = new Set<number>();
  for (const { i, pod } of order) {
    const owner = (m: Map<bigint | string, number>, k: bigint | string) => m.get(k);
    const other = (j: number) => `${at(j)} (${list[j].name})`;
    let conflict: string | undefined;
    const c = owner(claims.cgroup, pod.cgroupId);
    if (c !== undefined) conflict = `${at(i)}.cgroup: ${list[i].cgroup} is the same cgroup as that of ${other(c)} (cgroup id ${pod.cgroupId})`;
    const n = pod.netnsCookie ? owner(claims.netns, pod.netnsCookie) : undefined;
    if (!conflict && n !== undefined) conflict = `${at(i)}.netns: ${list[i].netns} is the same network namespace as that of ${other(n)} (netns cookie ${pod.netnsCookie})`;
    if (!conflict && pod.netnsCookie) {
      for (const a of pod.localAddrs) {
        const o = owner(claims.addr, a);
        if (o !== undefined) {
          conflict = `${at(i)}.addresses: ${a.replace(/\/\d+$/, '')}${list[i].addresses ? '' : ' (found in its namespace)'} is already an address of ${other(o)}`;
          break;
        }
      }
    }
    if (conflict) {
      problems.push({ path: at(i), pod: pod.name, message: `${conflict}: not meshed, the other pod keeps its entries` });
      continue;
    }
    claims.cgroup.set(pod.cgroupId, i);
    if (pod.netnsCookie) {
      claims.netns.set(pod.netnsCookie, i);
      for (const a of pod.localAddrs) claims.addr.set(a, i);
    }
    kept.add(i);
  }
  const pods = found.filter((f) => kept.has(f.i)).map((f) => f.pod);
  problems.sort((a, b) => a.path.localeCompare(b.path, 'en', { numeric: true }));
  return { pods, podIds, problems };
}

/**
 * Established TCP connections in a pod's namespace (each end counted, as `ss` lists sockets). Taken
 * when capture first starts: these connections were set up without it, so they are neither captured
 * nor spliced for their whole life (sockops never saw them join: nothing is half-spliced).
 */
export async function establishedIn(netns: string): Promise<number> {
  const [cmd, args] = netns.startsWith('/') ? ['nsenter', [`--net=${netns}`, 'ss', '-Htn', 'state', 'established']] : ['ip', ['netns', 'exec', netns, 'ss', '-Htn', 'state', 'established']];
  const r = await execTool(cmd, args as string[]);
  if (r.code !== 0) throw new UserError(Codes.USAGE, `cannot list the connections in ${netns}: ${r.stderr.trim()}`);
  return r.stdout.split('\n').filter((l) => l.trim()).length;
}
