// An instance's life: up (make it, update it in place, or switch its mode) and down, each under the
// instance's lock and each kept in its record. The capture itself is the mode's instance
// (ebpf.ts, iptables.ts); this file only orders it: a failure leaves the previous state in place,
// and `up --mode` on a live instance applies the new mode before it removes the old one, so there
// is no window without capture.
import { existsSync } from 'node:fs';
import { pinRoot } from '../bpf/bpffs.js';
import { checkAttachCgroup } from '../bpf/cgroup.js';
import { pinLayout } from '../bpf/pins.js';
import { defaultObjectPath } from '../bpf/programs.js';
import type { UpgradeResult } from '../bpf/upgrade.js';
import type { MeshConfig } from '../config/model.js';
import { checkMode } from '../config/validate/index.js';
import { isLive } from '../control/client.js';
import { socketPath } from '../control/protocol.js';
import { Codes, UserError } from '../errors.js';
import { drainNote, removeRules, type RemoveNotes } from '../iptables/apply.js';
import type { ReconcileReport } from '../plan/reconcile.js';
import { requireRoot } from '../util/root.js';
import type { ApplyReport, CaptureInstance } from './capture.js';
import { EbpfInstance } from './ebpf.js';
import { removeInstance } from './ebpf-pins.js';
import { IptablesInstance } from './iptables.js';
import { withInstanceLock } from './lock.js';
import { checkInstanceName } from './name.js';
import { OverrideStore } from './overrides.js';
import type { PodProblem } from './pods.js';
import { readRecord, RecordDamagedError, recordPath, removeRecord, writeRecord, type InstanceRecord, type Mode } from './record.js';
import { requireSameMounts } from './view.js';

export interface UpOptions {
  instance: string;
  mode?: Mode;
  /** eBPF mode: cgroup2 directory to attach to. */
  cgroup?: string;
  /** iptables mode: network namespace for the rules (default: the current one). */
  netns?: string;
  config: MeshConfig;
  configSource: string;
  objectPath?: string;
  /** Listed pods that cannot be found, or that conflict: `up` refuses (all or nothing); the node
   * agent meshes the others and looks for them again. */
  unresolved?: 'refuse' | 'skip';
  /** Namespaces no pod may name (default: this process's own and the host's). */
  forbidden?: Map<bigint, string>;
  /** iptables mode: each listed pod's rules in its own namespace (the node agent's form). */
  perPod?: boolean;
  /** Recorded as run by the node agent (switches made while it is stopped become its overrides). */
  agent?: boolean;
}

export interface UpResult {
  instance: string;
  mode: Mode;
  created: boolean;
  attached: string[];
  /** eBPF mode: entries put and deleted, by map. */
  changes: ReconcileReport['changes'];
  /** Set when this call switched a live instance from another mode. */
  switchedFrom?: Mode;
  /** Programs replaced in place by a newer object (empty when the running ones are current). */
  upgraded?: UpgradeResult['replaced'];
  /** terminateOnRemove: connections closed because their endpoint left a kernel-mode service. */
  terminated?: number;
  /** Things the user should know (a nat table kept for the connections it translated). */
  notes?: string[];
  /** With unresolved: 'skip', the listed pods not meshed and why. */
  problems?: PodProblem[];
}

/** An agent owns its instance for its whole life: say so at once instead of waiting for its lock. */
async function refuseWhileAgentRuns(instance: string, command: string): Promise<void> {
  if (await isLive(socketPath(instance))) {
    throw new UserError(Codes.INSTANCE_BUSY, `a sockmesh agent runs instance "${instance}": stop it (SIGTERM) before sockmesh ${command}, or change its config file`);
  }
}

function nonEmpty(value: string | undefined, flag: string): void {
  if (value !== undefined && value.trim() === '') throw new UserError(Codes.USAGE, `${flag} is empty: give a value or leave the option out`);
}

/**
 * Brings an instance up, updates it in place, or switches its mode. A second `up` with the same
 * config changes nothing; a failure leaves the previous state in place. One operation at a time
 * per instance (a lock); the config is checked against the mode before anything is touched.
 */
export async function up(opts: UpOptions): Promise<UpResult> {
  requireRoot();
  const instance = checkInstanceName(opts.instance);
  nonEmpty(opts.netns, '--netns');
  nonEmpty(opts.cgroup, '--cgroup');
  checkMode(opts.config, opts.mode ?? 'ebpf', opts.configSource);
  await refuseWhileAgentRuns(instance, 'up');
  // A failed first `up` leaves no lock file behind either.
  return withInstanceLock(instance, async () => {
    const opened = await openLocked(instance, opts);
    opened.capture.close();
    return opened.result;
  }, { removeAfter: () => !existsSync(recordPath(instance)) });
}

/**
 * `up` for a caller that already holds the instance lock (the node agent holds it for life): the
 * instance stays open for the caller's later applies.
 */
export async function openLocked(instance: string, opts: UpOptions): Promise<{ capture: CaptureInstance; result: UpResult; report: ApplyReport; record: InstanceRecord }> {
  const mode = opts.mode ?? 'ebpf';
  const prev = readRecord(instance);
  if (prev?.mode === 'ebpf' && mode !== 'ebpf') requireSameMounts(prev, 'detach BPF programs');
  const layout = pinLayout(prev?.pinRoot ?? pinRoot(instance));
  const base = {
    instance, pinRoot: layout.root, configSource: opts.configSource, config: opts.config, updatedAt: new Date().toISOString(),
    ...(opts.agent ? { agent: true } : {}),
  };
  // A live instance's namespace comes from its record.
  if (prev?.netns !== undefined && opts.netns !== undefined && opts.netns !== prev.netns) {
    throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${instance}" belongs to network namespace ${prev.netns} (its record); --netns ${opts.netns} conflicts: run sockmesh down --instance ${instance} first or pick another --instance`);
  }
  const netns = opts.netns ?? prev?.netns;
  let capture: CaptureInstance;
  let report: ApplyReport;
  let result: UpResult;
  if (mode === 'ebpf') {
    if (!opts.cgroup && !prev?.cgroup) throw new UserError(Codes.USAGE, 'eBPF mode needs --cgroup <cgroup2 dir>');
    const cgroup = checkAttachCgroup(opts.cgroup ?? prev!.cgroup!);
    if (prev?.cgroup !== undefined && prev.cgroup !== cgroup) {
      throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${instance}" is attached to ${prev.cgroup}; run sockmesh down --instance ${instance} first or pick another --instance`);
    }
    const inst = await EbpfInstance.open({
      instance, layout, cgroup, netns, objectPath: opts.objectPath ?? defaultObjectPath(), prev, unresolved: opts.unresolved, forbidden: opts.forbidden,
    }, opts.config);
    try {
      // The record is written before anything is attached, so an attachment never exists without
      // its record. While switching from iptables it keeps naming iptables until the rules are gone.
      report = await inst.apply(opts.config, {
        written: () => writeRecord(prev?.mode === 'iptables' ? { ...prev, cgroup, pinRoot: layout.root } : { ...base, ...inst.recordFields() }),
      });
    } catch (err) {
      await inst.rollback();
      inst.close();
      if (prev) writeRecord(prev);
      else if (inst.created) removeRecord(instance);
      throw err;
    }
    capture = inst;
    result = {
      instance, mode, created: inst.created, attached: report.attached, changes: report.changes as ReconcileReport['changes'], ...(inst.upgraded.length ? { upgraded: inst.upgraded } : {}),
      ...(report.terminated ? { terminated: report.terminated } : {}), ...(report.problems.length ? { problems: report.problems } : {}),
    };
  } else {
    const inst = IptablesInstance.open({ instance, netns, perPod: opts.perPod, prev });
    report = await inst.apply(opts.config);
    capture = inst;
    result = { instance, mode, created: prev === undefined, attached: [], changes: {}, ...(report.problems.length ? { problems: report.problems } : {}) };
  }
  if (prev && prev.mode !== mode) {
    // The new mode captures already; now remove the old one.
    if (prev.mode === 'ebpf') await removeInstance(layout, prev.cgroup, instance);
    else {
      const notes: string[] = [];
      await IptablesInstance.remove(prev, notes);
      if (notes.length) result.notes = notes;
    }
    result.switchedFrom = prev.mode;
  }
  const record: InstanceRecord = { ...base, ...capture.recordFields() };
  writeRecord(record);
  return { capture, result, report, record };
}

export interface DownResult {
  instance: string;
  removed: boolean;
  /** Programs detached from cgroups, as the kernel showed them. */
  detached: string[];
  pinsRemoved: boolean;
  /** iptables mode: what happened to the rules. */
  rules?: 'removed' | 'absent' | 'foreign';
  /** Things the user should know (a damaged record, rules left to another instance). */
  notes: string[];
}

/**
 * Removes everything of the instance in whichever mode it is, from what the kernel shows (the
 * record may be gone or damaged). Succeeds when nothing is up; fails loudly if something stays.
 */
export async function down(instanceName: string): Promise<DownResult> {
  requireRoot();
  const instance = checkInstanceName(instanceName);
  await refuseWhileAgentRuns(instance, 'down');
  return withInstanceLock(instance, async () => {
    const notes: string[] = [];
    let rec: InstanceRecord | undefined;
    try {
      rec = readRecord(instance);
    } catch (e) {
      if (!(e instanceof RecordDamagedError)) throw e;
      notes.push(`${e.path} was damaged; cleaned up from what the kernel shows (iptables rules of a damaged record cannot be located)`);
    }
    const layout = pinLayout(rec?.pinRoot ?? pinRoot(instance));
    if (rec?.mode !== 'iptables' || rec.cgroup) requireSameMounts(rec, 'remove an eBPF instance');
    const eb = await removeInstance(layout, rec?.cgroup, instance);
    if (rec?.mode === 'ebpf' && rec.netns) {
      // Switched from iptables mode: the drain chain its rules left goes once its connections closed.
      const drain: RemoveNotes = { draining: [] };
      await removeRules(rec.netns, instance, drain).catch(() => 'absent');
      if (drain.draining.length) notes.push(drainNote(`network namespace ${rec.netns}`, drain.draining));
    }
    const rules = rec?.mode === 'iptables' ? await IptablesInstance.remove(rec, notes) : undefined;
    const hadRecord = rec !== undefined || notes.length > 0;
    removeRecord(instance);
    OverrideStore.forInstance(instance).remove(); // the agent's overrides go with the instance
    return { instance, removed: hadRecord || eb.pinsRemoved || eb.detached.length > 0 || rules === 'removed', detached: eb.detached, pinsRemoved: eb.pinsRemoved, rules, notes };
  }, { removeAfter: () => true });
}
