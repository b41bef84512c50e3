// Finding the pods of a config on this node: each pod's cgroup (id and depth, for the BPF
// cgroup check), its network namespace (the cookie the programs key everything by) and its own
// addresses. The only I/O between a validated config and the desired state.
import { existsSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { netnsCookie } from '../../native/netns.js';
import { cgroup2RootOf } from '../bpf/cgroup.js';
import { LIMITS } from '../bpf/codecs.js';
import type { MeshConfig, PodConfig } from '../config/model.js';
import { Codes, SockmeshError, UserError } from '../errors.js';
import { localAddresses } from '../util/netns.js';
import { execTool } from '../util/exec.js';
import { assignServiceIds, type ResolvedPod, type ServiceIds } from './desired.js';

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

async function resolveOne(p: PodConfig, parent: string, podId: number): Promise<ResolvedPod> {
  const cg = podCgroup(parent, p.cgroup);
  if (!existsSync(`${cg}/cgroup.procs`)) throw new UserError(Codes.CGROUP, `cgroup ${cg} does not exist (or is not a cgroup2 directory)`);
  const { id, level } = cgroupIdentity(cg);
  let cookie = 0n;
  let localAddrs: string[] = [];
  if (p.netns !== undefined) {
    try {
      cookie = netnsCookie(netnsPath(p.netns));
    } catch (cause) {
      throw new UserError(Codes.USAGE, `network namespace ${p.netns} cannot be entered: ${(cause as Error).message}`, { cause });
    }
    localAddrs = p.addresses ? p.addresses.map((a) => `${a}/32`) : await localAddresses(p.netns);
  } else if (p.addresses) {
    localAddrs = p.addresses.map((a) => `${a}/32`);
  }
  return { name: p.name, netnsCookie: cookie, ...(p.netns !== undefined ? { netnsPath: netnsPath(p.netns) } : {}), cgroupId: id, cgroupLevel: level, podId, localAddrs, sidecar: p.sidecar, capture: p.capture };
}

/** The pods of a config: the listed ones, or the one implicit pod of the single-pod form. */
export function podsOf(cfg: MeshConfig, single: { cgroup: string; netns?: string }): PodConfig[] {
  if (cfg.pods.length || cfg.podsOnly) return cfg.pods;
  return [{ name: SINGLE_POD, cgroup: single.cgroup, netns: single.netns, sidecar: cfg.sidecar, capture: cfg.capture }];
}

/**
 * Finds every pod on the node. Pods that cannot be found are returned as problems (the agent
 * skips them and applies the rest; `up` refuses); ids stay stable across calls through `previous`.
 */
export async function resolvePods(cfg: MeshConfig, parent: string, single: { netns?: string }, previous: ServiceIds):
  Promise<{ pods: ResolvedPod[]; podIds: ServiceIds; problems: PodProblem[] }> {
  const list = podsOf(cfg, { cgroup: parent, netns: single.netns });
  const podIds = assignServiceIds(list.map((p) => p.name), previous, LIMITS.SM_MAX_PODS + 1, 1);
  const pods: ResolvedPod[] = [];
  const problems: PodProblem[] = [];
  for (const [i, p] of list.entries()) {
    try {
      pods.push(await resolveOne(p, parent, podIds[p.name]));
    } catch (e) {
      if (!(e instanceof SockmeshError)) throw e;
      problems.push({ path: cfg.pods.length ? `pods[${i}]` : '--cgroup/--netns', pod: p.name, message: e.message });
    }
  }
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
