// The instance record: what `up` applied, so `status`, `service` and `down` find it again.
// Kept in /run (tmpfs): it goes away with a reboot, like the pinned programs.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { MeshConfig } from '../config/model.js';
import type { ServiceIds } from './desired.js';

export type Mode = 'ebpf' | 'iptables';

export interface InstanceRecord {
  instance: string;
  mode: Mode;
  /** eBPF mode: the cgroup the programs are attached to. */
  cgroup?: string;
  /** iptables mode: the network namespace holding the rules (undefined = the agent's own).
   * eBPF mode: the pod's namespace, whose own addresses count as local (optional). */
  netns?: string;
  /** eBPF mode: the pod's own addresses found in netns. */
  localAddrs?: string[];
  pinRoot: string;
  configSource: string;
  config: MeshConfig;
  serviceIds: ServiceIds;
  updatedAt: string;
}

export const STATE_DIR = process.env.SOCKMESH_STATE_DIR ?? '/run/sockmesh';

export function recordPath(instance: string, dir = STATE_DIR): string {
  return `${dir}/${instance}.json`;
}

export function readRecord(instance: string, dir = STATE_DIR): InstanceRecord | undefined {
  try {
    return JSON.parse(readFileSync(recordPath(instance, dir), 'utf8')) as InstanceRecord;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/** Atomic write (temp file + rename), so a crash never leaves half a record. */
export function writeRecord(rec: InstanceRecord, dir = STATE_DIR): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = recordPath(rec.instance, dir);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

export function removeRecord(instance: string, dir = STATE_DIR): void {
  rmSync(recordPath(instance, dir), { force: true });
}
