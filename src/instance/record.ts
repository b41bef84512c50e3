// The instance record: what `up` applied, so `status`, `service` and `down` find it again.
// Kept in /run (tmpfs): it goes away with a reboot, like the pinned programs.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { MeshConfig } from '../config/model.js';
import { Codes, UserError } from '../errors.js';
import type { ResolvedPod, ServiceIds } from '../plan/desired.js';
import { nameTable } from '../util/names.js';

export type Mode = 'ebpf' | 'iptables';

/** A pod as the instance found it. */
export interface PodRecord {
  name: string;
  podId: number;
  /** netns cookie as a decimal string ("0": any namespace). */
  netnsCookie: string;
  cgroupId: string;
  localAddrs: string[];
}

/** What the record keeps of a resolved pod (for status, metrics and explain). */
export function podSummary(p: ResolvedPod): PodRecord {
  return { name: p.name, podId: p.podId, netnsCookie: p.netnsCookie.toString(), cgroupId: p.cgroupId.toString(), localAddrs: p.localAddrs };
}

export interface InstanceRecord {
  instance: string;
  mode: Mode;
  /** eBPF mode: the cgroup the programs are attached to. */
  cgroup?: string;
  /** iptables mode: the network namespace holding the rules (undefined = the agent's own).
   * eBPF mode: the pod's namespace, whose own addresses count as local (optional). */
  netns?: string;
  /** eBPF mode: the mount namespace (mnt:[inode]) whose /sys shows the cgroup and the pins. */
  mntns?: string;
  /** eBPF mode: the attach cgroup's id, the pinned sm_gen map's id and the device of the bpffs
   * holding the pins, which another mount namespace must show to be the same view (a restarted
   * container). */
  view?: { cgroupId: string; genMapId: number; bpffsDev: string };
  /** eBPF mode: sha256 of the BPF object the pinned programs came from (an upgrade is checked only
   * when the object changes). */
  objectSha256?: string;
  /** iptables mode without a named netns: the namespace's identity (net:[inode]) the rules are in. */
  netnsId?: string;
  pinRoot: string;
  configSource: string;
  config: MeshConfig;
  serviceIds: ServiceIds;
  /** eBPF mode: pod ids by name (stable across updates), and the pods as found. */
  podIds?: ServiceIds;
  pods?: PodRecord[];
  /** Run by the node agent (its source decides the config; switches are overrides, kept for it). */
  agent?: boolean;
  /** iptables mode run by the agent (its fallback): every pod's rule set, by namespace. */
  podNetns?: Array<{ name: string; netns: string }>;
  updatedAt: string;
}

export { STATE_DIR } from '../util/paths.js';
import { STATE_DIR } from '../util/paths.js';

export function recordPath(instance: string, dir = STATE_DIR): string {
  return `${dir}/${instance}.json`;
}

/** The record exists but cannot be used (truncated, not JSON, wrong shape). */
export class RecordDamagedError extends UserError {
  constructor(readonly path: string, why: string) {
    super(Codes.RECORD_DAMAGED, `the instance record ${path} is damaged (${why}); sockmesh down --instance <name> still removes what the kernel shows of the instance`);
    this.name = 'RecordDamagedError';
  }
}

/** Why a parsed record cannot be used, or undefined when its shape is right. */
function recordProblem(r: unknown, instance: string): string | undefined {
  if (typeof r !== 'object' || r === null || Array.isArray(r)) return 'not a JSON object';
  const o = r as Record<string, unknown>;
  if (o.instance !== instance) return `it names instance ${JSON.stringify(o.instance)?.slice(0, 60)}`;
  if (o.mode !== 'ebpf' && o.mode !== 'iptables') return 'no valid mode';
  if (typeof o.pinRoot !== 'string' || !o.pinRoot.startsWith('/sys/fs/bpf/')) return 'no valid pinRoot';
  if (o.mode === 'ebpf' && typeof o.cgroup !== 'string') return 'an eBPF record without its cgroup';
  const cfg = o.config as Record<string, unknown> | undefined;
  if (typeof cfg !== 'object' || cfg === null || !Array.isArray(cfg.services)) return 'no config';
  if (typeof o.serviceIds !== 'object' || o.serviceIds === null) return 'no serviceIds';
  if (o.podNetns !== undefined && (!Array.isArray(o.podNetns) || !o.podNetns.every((p: unknown) => typeof (p as { name?: unknown })?.name === 'string' && typeof (p as { netns?: unknown })?.netns === 'string'))) return 'podNetns is not a list of {name, netns}';
  return undefined;
}

export function readRecord(instance: string, dir = STATE_DIR): InstanceRecord | undefined {
  const path = recordPath(instance, dir);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new RecordDamagedError(path, text.trim() ? `not valid JSON: ${(e as Error).message.slice(0, 80)}` : 'empty');
  }
  const problem = recordProblem(parsed, instance);
  if (problem) throw new RecordDamagedError(path, problem);
  const rec = parsed as InstanceRecord;
  // Looked up by service and pod names: tables without a prototype (src/util/names.ts).
  rec.serviceIds = nameTable(rec.serviceIds);
  if (rec.podIds) rec.podIds = nameTable(rec.podIds);
  return rec;
}

/** Atomic write (temp file + rename), so a crash never leaves half a record. */
export function writeRecord(rec: InstanceRecord, dir = STATE_DIR): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = recordPath(rec.instance, dir);
  const tmp = `${path}.${process.pid}.tmp`;
  // Compact: with 10,000 services the record is megabytes, and the agent writes it after edits.
  writeFileSync(tmp, `${JSON.stringify(rec)}\n`, { mode: 0o600 });
  renameSync(tmp, path);
}

export function removeRecord(instance: string, dir = STATE_DIR): void {
  rmSync(recordPath(instance, dir), { force: true });
}
