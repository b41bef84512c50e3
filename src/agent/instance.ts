// One sockmesh instance: up (eBPF: load, reconcile, attach; iptables: apply the rule set), down,
// status and the per-service switch. Each operation either completes or leaves things as they
// were. `up --mode` on a live instance switches its capture mode with no window without capture:
// the new mode is applied before the old one is removed.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import * as bpf from '../../native/libbpf.js';
import { ensureBpffs, pinRoot } from '../bpf/bpffs.js';
import { registerListeners, syncInboundLinks } from '../bpf/inbound.js';
import { cgroup2Mount, checkAttachCgroup } from '../bpf/cgroup.js';
import { AUTO_NAGLE_CLIENTS, COUNTER_NAMES, backendCodec, SVC_COUNTER_NAMES } from '../bpf/codecs.js';
import { attachAll, detach, detachAllFrom, findAttachedCgroups, programStatus, sockmeshAttachments, type ProgramStatus } from '../bpf/attach.js';
import { isFullyPinned, mapPath, missingPins, pinLayout, unpin, type PinLayout } from '../bpf/pins.js';
import { loadAndPin } from '../bpf/load.js';
import { recoverInterruptedUpgrade, upgradePrograms, type UpgradeResult } from '../bpf/upgrade.js';
import { InstanceMaps } from '../bpf/maps.js';
import { defaultObjectPath } from '../bpf/programs.js';
import type { MeshConfig } from '../config/model.js';
import { endpointName } from '../config/constants.js';
import { checkMode } from '../config/validate/index.js';
import { Codes, SockmeshError, UserError } from '../errors.js';
import { applyRules, drainNote, redirectCounts, removeRules, type RemoveNotes } from '../iptables/apply.js';
import { assignServiceIds, compileDesired, configEntry, type ResolvedPod, type ServiceIds } from '../plan/desired.js';
import type { ServiceReconciler } from '../plan/incremental.js';
import { isLive } from '../control/client.js';
import { socketPath } from '../control/protocol.js';
import { OverrideStore } from '../instance/overrides.js';
import { podConfig } from '../instance/pod-rules.js';
import { readSource } from '../sources/file.js';
import { withInstanceLock } from '../instance/lock.js';
import { netnsPath, resolvePods, type PodProblem } from '../instance/pods.js';
import { hasName, nameTable } from '../util/names.js';
import { endpointCounters, readAllCounters } from '../instance/counters.js';
import { namespacesOfCgroup, removedEndpoints, terminateConnections } from '../instance/terminate.js';
import { reconcile, reconcileMaps, type ReconcileReport } from '../plan/reconcile.js';
import { readRecord, RecordDamagedError, recordPath, removeRecord, writeRecord, type InstanceRecord, type Mode, type PodRecord } from '../instance/record.js';

export const INSTANCE_RE = /^[a-z0-9][a-z0-9_-]{0,39}$/;

export function checkInstanceName(name: string): string {
  if (!INSTANCE_RE.test(name)) {
    throw new UserError(Codes.USAGE, `invalid instance name "${name}": use a-z, 0-9, '-', '_' (at most 40)`);
  }
  return name;
}

export function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new UserError(Codes.NOT_ROOT, 'sockmesh needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) for this command');
  }
}

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
}

export interface UpResult {
  instance: string;
  mode: Mode;
  created: boolean;
  attached: string[];
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

/**
 * Writes the config for these pods into the maps (an atomic slot flip, see reconcile.ts); the
 * record keeps service ids stable across updates.
 */
export function applyConfig(maps: InstanceMaps, config: MeshConfig, previousIds: ServiceIds, pods: ResolvedPod[], incremental?: ServiceReconciler) {
  const size = maps.slots[0].svcState.info.maxEntries;
  const ids = sameNames(config, previousIds) ? previousIds : assignServiceIds(config.services.map((s) => s.name), previousIds, size);
  // A service new to its id learns splice: auto from scratch (the id was free).
  if (ids !== previousIds) {
    for (const name in ids) if (!hasName(previousIds, name) || previousIds[name] !== ids[name]) maps.svcAuto.set(ids[name], { nagleClients: 0, bulk: 0, observed: 0 });
  }
  const slotConfig = (slot: number) => configEntry(config, slot);
  const report = incremental
    ? incremental.apply(config, ids, pods, slotConfig)
    : reconcile(reconcileMaps(maps), compileDesired(config, ids, size, pods), slotConfig);
  return { ids, report };
}

/** Whether the config names exactly the services that have ids (an edit that added or removed none). */
function sameNames(config: MeshConfig, ids: ServiceIds): boolean {
  let n = 0;
  for (const _ in ids) n++;
  return n === config.services.length && config.services.every((s) => hasName(ids, s.name));
}

/** Refuses to attach a second set of programs to a cgroup that already has sockmesh's. */
async function refuseStacking(layout: PinLayout, cgroup: string, instance: string): Promise<void> {
  const ours = new Set(programStatus(layout, undefined).map((p) => p.id));
  const foreign = (await sockmeshAttachments(cgroup)).filter((a) => !ours.has(a.id));
  if (foreign.length) {
    throw new UserError(Codes.STACKED, `${cgroup} already has sockmesh programs attached that instance "${instance}" does not hold (${foreign.map((a) => `${a.name} id ${a.id}`).join(', ')}): another instance, or pins that were removed. Run sockmesh down for the instance that attached them (down finds them through the cgroup); sockmesh never stacks a second set`);
  }
}

/**
 * Loads (or adopts) the pinned programs, writes the maps, records, attaches. `record` is written
 * before anything is attached, so an attachment never exists without its record; on failure a
 * fresh load is removed again and an update puts the maps and the record back.
 */
async function ebpfUp(layout: PinLayout, cgroup: string, instance: string, config: MeshConfig, prev: InstanceRecord | undefined,
  pods: ResolvedPod[], objectPath: string, record: (ids: ServiceIds) => void, netns: string | undefined) {
  requireSameMounts(prev, 'attach BPF programs');
  await ensureBpffs();
  if (existsSync(layout.root)) recoverInterruptedUpgrade(layout);
  const created = !isFullyPinned(layout);
  // Pins of an older version that is still running (its programs attached): that version's object
  // lacks maps or programs this one needs, and an in-place upgrade cannot add them. Removing the
  // pins would detach everything and drop the spliced sockets' queued data: refused instead.
  if (created && prev?.mode === 'ebpf' && existsSync(layout.root) && programStatus(layout, cgroup).some((p) => p.attached)) {
    throw new SockmeshError(Codes.INSTANCE_CONFLICT, `instance "${instance}" runs an older sockmesh whose BPF object lacks ${missingPins(layout).join(', ')}: `
      + `an in-place upgrade cannot add them. Keep the running version, or run sockmesh down --instance ${instance} and up again (capture stops in between).`);
  }
  if (created) {
    if (existsSync(layout.root)) unpin(layout); // a partial pin dir from an interrupted run
    await loadAndPin(layout, objectPath);
  }
  let maps: InstanceMaps | undefined;
  let previousSlot: number | undefined;
  try {
    await refuseStacking(layout, cgroup, instance);
    // A live instance whose programs differ from this object's: replaced in place first. Only
    // checked (a full load of the object) when the object is not the one the record names.
    const current = existsSync(objectPath) && prev?.objectSha256 === objectSha256(objectPath);
    const upgraded = created || current ? [] : (await upgradePrograms(layout, cgroup, objectPath)).replaced;
    maps = new InstanceMaps(layout);
    // splice: auto's per-service memory is the replaced programs' format: the new ones learn afresh.
    if (upgraded.length) for (const id of Object.values(prev?.serviceIds ?? nameTable<number>())) maps.svcAuto.set(id, { nagleClients: 0, bulk: 0, observed: 0 });
    previousSlot = maps.activeSlot();
    const { ids, report } = applyConfig(maps, config, prev?.serviceIds ?? nameTable(), pods);
    record(ids);
    const terminated = await closeRemovedEndpoints(maps, prev?.config, config, ids, { cgroup, netns });
    const attached = await attachAll(layout, cgroup);
    const inbound = await syncInbound(maps, pods, prev?.mode === 'ebpf' ? prev.pods : undefined);
    // up is all or nothing: a pod whose namespace takes no sk_lookup fails it (and is put back).
    if (inbound.failed.length) throw inbound.failed[0].error;
    return { created, ids, report, attached: [...attached.map((p) => p.name), ...inbound.attached.map((p) => `sm_inbound (pod ${p})`)], upgraded, terminated };
  } catch (err) {
    if (created) {
      maps?.close();
      maps = undefined;
      await detach(layout, cgroup);
      unpin(layout);
      if (prev) writeRecord(prev);
      else removeRecord(instance);
    } else if (maps && previousSlot !== undefined) {
      // The programs go back to reading the state they read before.
      maps.gen.set(0, previousSlot);
      if (prev) writeRecord(prev);
    }
    throw err;
  } finally {
    maps?.close();
  }
}

/**
 * Inbound capture's per-pod pieces: sk_lookup on each meshed pod's namespace (off the ones no
 * longer meshed), and the inbound listeners that listened before sockops could see them.
 */
export async function syncInbound(maps: InstanceMaps, pods: ResolvedPod[], before: PodRecord[] | undefined, seen?: Set<bigint>):
  Promise<{ attached: string[]; detached: string[]; registered: string[]; failed: Array<{ pod: string; error: Error }> }> {
  const links = syncInboundLinks(maps.layout, pods);
  const failed = [...links.failed];
  // A pod id that now names another pod, or none, must not keep the old pod's listener: sk_lookup
  // would hand the new pod's inbound connections to another pod's sidecar. A pod that never had
  // one registered has nothing to remove; one pod's failure stops no other pod's.
  const now = new Map(pods.map((p) => [p.podId, p.netnsCookie.toString()]));
  for (const b of before ?? []) {
    if (now.get(b.podId) === b.netnsCookie) continue;
    try {
      maps.listeners.delete(b.podId);
    } catch (error) {
      failed.push({ pod: b.name, error: new SockmeshError(Codes.MAP, `cannot remove the inbound listener of pod ${b.name} (id ${b.podId}) that left: ${(error as Error).message}`, { cause: error }) });
    }
  }
  const registered = await registerListeners(maps.listeners, pods, seen, (pod, error) => failed.push({ pod, error }));
  return { ...links, failed, registered };
}

/**
 * Removes an eBPF instance from what the kernel shows: every sockmesh program on its cgroups is
 * detached (found by name, so this works without pins), the sk_msg program through the pins when
 * they exist, then the pins. Throws when something stays attached.
 */
async function ebpfDown(layout: PinLayout, cgroup: string | undefined, instance: string): Promise<{ detached: string[]; pinsRemoved: boolean }> {
  const pinned = existsSync(layout.root);
  const mount = cgroup2Mount();
  // Without a record, find where the pinned programs are attached.
  const cgroups = cgroup ? [cgroup] : pinned && mount ? await findAttachedCgroups(layout, mount) : [];
  const detached: string[] = [];
  for (const cg of cgroups) detached.push(...(await detachAllFrom(cg, instance)));
  if (pinned) {
    const errors = await detach(layout, undefined);
    if (errors.length) {
      throw new SockmeshError(Codes.ATTACH, `could not detach every program of "${instance}"; the pins are kept so you can retry`, { cause: errors[0] });
    }
    unpin(layout);
  }
  return { detached, pinsRemoved: pinned };
}

/** An agent owns its instance for its whole life: say so at once instead of waiting for its lock. */
async function refuseWhileAgentRuns(instance: string, command: string): Promise<void> {
  if (await isLive(socketPath(instance))) {
    throw new UserError(Codes.INSTANCE_BUSY, `a sockmesh agent runs instance "${instance}": stop it (SIGTERM) before sockmesh ${command}, or change its config file`);
  }
}

/** The identity of this process's mount namespace (mnt:[inode]). */
function currentMntnsId(): string {
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
function requireSameMounts(rec: InstanceRecord | undefined, action: string): void {
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

function viewOf(cgroup: string, root: string): InstanceRecord['view'] {
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
function currentNetnsId(): string {
  return readlinkSync('/proc/self/ns/net');
}

function nonEmpty(value: string | undefined, flag: string): void {
  if (value !== undefined && value.trim() === '') throw new UserError(Codes.USAGE, `${flag} is empty: give a value or leave the option out`);
}

/**
 * Where an iptables-mode instance keeps its rules: the named namespace, or this process's own,
 * which must be the one the record names (a command run from another namespace would touch the
 * wrong nat table).
 */
function iptablesNamespace(rec: InstanceRecord): string | undefined {
  if (rec.netns !== undefined) return rec.netns;
  const here = currentNetnsId();
  if (rec.netnsId && rec.netnsId !== here) {
    throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${rec.instance}" has its rules in network namespace ${rec.netnsId}, but this command runs in ${here}: run it in that namespace`);
  }
  return undefined;
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
  return withInstanceLock(instance, () => upLocked(instance, opts), { removeAfter: () => !existsSync(recordPath(instance)) });
}

/** `up` for a caller that already holds the instance lock (the node agent holds it for life). */
export async function upLocked(instance: string, opts: UpOptions): Promise<UpResult> {
  const mode = opts.mode ?? 'ebpf';
  const prev = readRecord(instance);
  if (prev?.mode === 'ebpf' && mode !== 'ebpf') requireSameMounts(prev, 'detach BPF programs');
  const layout = pinLayout(prev?.pinRoot ?? pinRoot(instance));
  const base = { instance, pinRoot: layout.root, configSource: opts.configSource, config: opts.config, updatedAt: new Date().toISOString() };
  // A live instance's namespace comes from its record.
  if (prev?.netns !== undefined && opts.netns !== undefined && opts.netns !== prev.netns) {
    throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${instance}" belongs to network namespace ${prev.netns} (its record); --netns ${opts.netns} conflicts: run sockmesh down --instance ${instance} first or pick another --instance`);
  }
  const netns = opts.netns ?? prev?.netns;
  let result: UpResult;
  let record: InstanceRecord;
  if (mode === 'ebpf') {
    if (!opts.cgroup && !prev?.cgroup) throw new UserError(Codes.USAGE, 'eBPF mode needs --cgroup <cgroup2 dir>');
    const cgroup = checkAttachCgroup(opts.cgroup ?? prev!.cgroup!);
    if (prev?.cgroup !== undefined && prev.cgroup !== cgroup) {
      throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${instance}" is attached to ${prev.cgroup}; run sockmesh down --instance ${instance} first or pick another --instance`);
    }
    const found = await resolvePods(opts.config, cgroup, { netns }, prev?.podIds ?? nameTable(), opts.forbidden);
    if (found.problems.length && opts.unresolved !== 'skip') {
      throw new UserError(Codes.CGROUP, `cannot find every pod:\n${found.problems.map((p) => `  ${p.path} (${p.pod}): ${p.message}`).join('\n')}`);
    }
    const fresh = (ids: ServiceIds): InstanceRecord => ({
      ...base, mode, cgroup, netns, serviceIds: ids, podIds: found.podIds, mntns: currentMntnsId(), objectSha256: objectSha256(opts.objectPath ?? defaultObjectPath()),
      pods: found.pods.map(podSummary),
    });
    // While switching from iptables the record keeps naming iptables until the rules are gone.
    const r = await ebpfUp(layout, cgroup, instance, opts.config, prev, found.pods, opts.objectPath ?? defaultObjectPath(),
      (ids) => writeRecord(prev?.mode === 'iptables' ? { ...prev, cgroup, pinRoot: layout.root } : fresh(ids)), netns);
    record = { ...fresh(r.ids), view: viewOf(cgroup, layout.root) };
    result = { instance, mode, created: r.created, attached: r.attached, changes: r.report.changes, ...(r.upgraded.length ? { upgraded: r.upgraded } : {}),
      ...(r.terminated ? { terminated: r.terminated } : {}), ...(found.problems.length ? { problems: found.problems } : {}) };
  } else {
    let netnsId: string | undefined;
    if (netns === undefined) {
      if (prev?.mode === 'ebpf') {
        throw new UserError(Codes.USAGE, `instance "${instance}" runs in eBPF mode without a recorded network namespace: name the pod's namespace with --netns to switch it to iptables mode`);
      }
      netnsId = prev ? iptablesNamespace(prev) ?? prev.netnsId ?? currentNetnsId() : currentNetnsId();
    }
    await applyRules(netns, opts.config, instance);
    record = { ...base, mode, netns, netnsId, cgroup: prev?.cgroup, serviceIds: prev?.serviceIds ?? nameTable() };
    result = { instance, mode, created: prev === undefined, attached: [], changes: {} };
  }
  if (prev && prev.mode !== mode) {
    // The new mode captures already; now remove the old one.
    if (prev.mode === 'ebpf') await ebpfDown(layout, prev.cgroup, instance);
    else {
      const kept: RemoveNotes = { draining: [] };
      const ns = iptablesNamespace(prev);
      await removeRules(ns, instance, kept);
      if (kept.draining.length) result.notes = [drainNote(ns ? `network namespace ${ns}` : 'this network namespace', kept.draining)];
    }
    result.switchedFrom = prev.mode;
  }
  writeRecord(record);
  return result;
}

/** The BPF object's content hash (tens of kilobytes: cheap next to loading it to compare). */
export function objectSha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** What the record keeps of a resolved pod (for status, metrics and explain). */
export function podSummary(p: ResolvedPod): PodRecord {
  return { name: p.name, podId: p.podId, netnsCookie: p.netnsCookie.toString(), cgroupId: p.cgroupId.toString(), localAddrs: p.localAddrs };
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
    const eb = await ebpfDown(layout, rec?.cgroup, instance);
    if (rec?.mode === 'ebpf' && rec.netns) {
      // Switched from iptables mode: the drain chain its rules left goes once its connections closed.
      const drain: RemoveNotes = { draining: [] };
      await removeRules(rec.netns, instance, drain).catch(() => 'absent');
      if (drain.draining.length) notes.push(drainNote(`network namespace ${rec.netns}`, drain.draining));
    }
    let rules: DownResult['rules'];
    if (rec?.mode === 'iptables' && rec.podNetns) {
      // The agent's iptables mode: a rule set in every pod's namespace.
      for (const p of rec.podNetns) {
        const kept: RemoveNotes = { draining: [] };
        const r = await removeRules(p.netns, instance, kept).catch((e: Error) => {
          notes.push(`pod ${p.name}: ${e.message}`);
          return 'absent' as const;
        });
        if (r === 'foreign') notes.push(`the iptables rules in ${p.netns} belong to another instance and were left alone`);
        if (kept.draining.length) notes.push(drainNote(`pod ${p.name} (${p.netns})`, kept.draining));
        if (r === 'removed' || rules === undefined) rules = r;
      }
    } else if (rec?.mode === 'iptables') {
      const kept: RemoveNotes = { draining: [] };
      const ns = iptablesNamespace(rec);
      rules = await removeRules(ns, instance, kept);
      if (kept.draining.length) notes.push(drainNote(ns ? `network namespace ${ns}` : 'this network namespace', kept.draining));
      if (rules === 'foreign') notes.push(`the iptables rules in ${rec.netns ?? 'this namespace'} belong to another instance and were left alone`);
    }
    const hadRecord = rec !== undefined || notes.length > 0;
    removeRecord(instance);
    OverrideStore.forInstance(instance).remove(); // the agent's overrides go with the instance
    return { instance, removed: hadRecord || eb.pinsRemoved || eb.detached.length > 0 || rules === 'removed', detached: eb.detached, pinsRemoved: eb.pinsRemoved, rules, notes };
  }, { removeAfter: () => true });
}

export interface ServiceStatus {
  name: string;
  id: number;
  addresses: string[];
  ports: number[];
  redirect: boolean;
  splice: string;
  /** sidecar: through the sidecar; kernel: straight to an endpoint (eBPF mode; iptables mode captures it to the sidecar). */
  mode: 'sidecar' | 'kernel';
  /** Kernel mode: its endpoints, and in eBPF mode the connections each was given since the instance started. */
  endpoints?: Array<{ address: string; port: number; weight: number; connections?: number }>;
  affinity?: 'client';
  protocol?: 'udp' | 'http';
  terminateOnRemove?: boolean;
  /** splice: auto in eBPF mode, learned at each close: what the service's clients that connect
   * with Nagle on do later, and whether its last connection was a bulk stream. */
  auto?: { nagleClients: (typeof AUTO_NAGLE_CLIENTS)[number]; bulk: boolean; observed: number };
  /** eBPF mode: this service's kernel counters. */
  counters?: Record<string, number>;
}

export interface PodStatus extends PodRecord {
  counters: Record<string, number>;
  /** eBPF mode: whether its sidecar's inbound listener is registered (inbound capture hands it
   * the pod's inbound connections; without one they are refused). */
  inboundListener?: boolean;
}

export interface InstanceStatus {
  instance: string;
  mode: Mode;
  cgroup: string | null;
  netns: string | null;
  pinRoot: string;
  configSource: string;
  programs: ProgramStatus[];
  services: ServiceStatus[];
  counters: Record<string, number>;
  /** eBPF mode: the meshed pods with their counters. */
  pods: PodStatus[];
  /** eBPF mode: the slot of the config-driven maps the programs read (flips on every apply). */
  slot?: number;
  /** Sockets in the sockhash now (each spliced connection has two); 0 in iptables mode. */
  splicedSockets: number;
}

function requireRecord(instance: string): InstanceRecord {
  const rec = readRecord(checkInstanceName(instance));
  if (!rec) throw new UserError(Codes.INSTANCE_MISSING, `no sockmesh instance "${instance}" is up (sockmesh up --instance ${instance} …)`);
  return rec;
}

/**
 * terminateOnRemove: closes the connections that endpoints removed by this apply still carry, in
 * every pod's namespace (the single-pod form: its --netns, else those of the processes in its
 * cgroup). Run after the flip.
 */
export async function closeRemovedEndpoints(maps: InstanceMaps, before: MeshConfig | undefined, after: MeshConfig, ids: ServiceIds,
  where: { cgroup: string; netns?: string }): Promise<number> {
  const removed = removedEndpoints(before, after, ids);
  if (!removed.length) return 0;
  // UDP has no connection to close: a socket's next datagram picks again.
  const udp = new Set(after.services.filter((s) => s.protocol === 'udp').map((s) => s.name));
  const gone = new Set(removed.filter((r) => udp.has(r.service)).map((r) => endpointName({ address: r.address, port: r.port })));
  for (const { key, value } of gone.size ? maps.udpPick.rawEntries() : []) {
    const to = backendCodec.decode(value);
    if (gone.has(endpointName({ address: to.ip4, port: to.port }))) maps.udpPick.deleteRaw(key);
  }
  const namespaces = after.pods.length ? after.pods.flatMap((p) => (p.netns ? [netnsPath(p.netns)] : []))
    : where.netns ? [netnsPath(where.netns)] : namespacesOfCgroup(where.cgroup);
  return terminateConnections(removed, [...new Set(namespaces)], (cookie) => maps.cookieSvc.get(cookie as unknown as number)?.serviceId);
}

/** What splice: auto has learned about a service's Nagle-at-connect clients. */
export function autoMemory(maps: InstanceMaps, id: number): NonNullable<ServiceStatus['auto']> {
  const a = maps.svcAuto.get(id) ?? { nagleClients: 0, bulk: 0, observed: 0 };
  return { nagleClients: AUTO_NAGLE_CLIENTS[a.nagleClients] ?? 'unknown', bulk: a.bulk !== 0, observed: a.observed };
}

/** Counter sums over CPUs and pods, by their status names. */
export function readCounters(maps: InstanceMaps): Record<string, number> {
  return readAllCounters(maps).total;
}

export async function status(instanceName: string): Promise<InstanceStatus> {
  requireRoot();
  const rec = requireRecord(instanceName);
  const services: ServiceStatus[] = rec.config.services.map((s) => ({
    name: s.name, id: hasName(rec.serviceIds, s.name) ? rec.serviceIds[s.name] : -1, addresses: s.addresses, ports: s.ports, redirect: s.redirect, splice: s.splice,
    mode: s.mode ?? 'sidecar', ...(s.mode === 'kernel' ? { endpoints: (s.endpoints ?? []).map((e) => ({ ...e })), ...(s.affinity ? { affinity: s.affinity } : {}),
      ...(s.protocol ? { protocol: s.protocol } : {}), ...(s.terminateOnRemove ? { terminateOnRemove: true } : {}) } : {}),
  }));
  const common = {
    instance: rec.instance, mode: rec.mode, cgroup: rec.cgroup ?? null, netns: rec.netns ?? null,
    pinRoot: rec.pinRoot, configSource: rec.configSource, services,
  };
  if (rec.mode === 'iptables') {
    // The agent's iptables mode has a rule set in every pod's namespace.
    const counts = { outbound: 0, inbound: 0 };
    for (const ns of rec.podNetns ? rec.podNetns.map((p) => p.netns) : [iptablesNamespace(rec)]) {
      const c = await redirectCounts(ns).catch(() => ({ outbound: 0, inbound: 0 })); // a pod gone with its namespace
      counts.outbound += c.outbound;
      counts.inbound += c.inbound;
    }
    return { ...common, programs: [], counters: { connectRewrites: counts.outbound, inboundRedirects: counts.inbound }, pods: [], splicedSockets: 0 };
  }
  const layout = pinLayout(rec.pinRoot);
  if (!isFullyPinned(layout)) {
    throw new SockmeshError(Codes.INSTANCE_MISSING, `instance "${rec.instance}" is recorded but its pins under ${layout.root} are missing; run sockmesh down --instance ${rec.instance}`);
  }
  const maps = new InstanceMaps(layout);
  try {
    const all = readAllCounters(maps);
    const zeros = (names: Record<string, string>) => Object.fromEntries(Object.values(names).map((n) => [n, 0]));
    const perEndpoint = new Map(endpointCounters(maps).map((e) => [`${e.serviceId}\u0000${endpointName(e)}`, e.connections]));
    for (const s of common.services) {
      if (s.id < 0) continue;
      s.counters = all.services.get(s.id) ?? zeros(SVC_COUNTER_NAMES);
      if (s.mode === 'kernel') for (const e of s.endpoints ?? []) e.connections = perEndpoint.get(`${s.id}\u0000${endpointName(e)}`) ?? 0;
      else if (s.splice === 'auto') s.auto = autoMemory(maps, s.id);
    }
    return {
      ...common,
      programs: programStatus(layout, rec.cgroup),
      counters: all.total,
      pods: (rec.pods ?? []).map((p) => ({ ...p, counters: all.pods.get(p.podId) ?? zeros(COUNTER_NAMES), inboundListener: maps.listeners.get(p.podId) !== undefined })),
      slot: maps.activeSlot(),
      splicedSockets: maps.sockhash.rawEntries().length,
    };
  } finally {
    maps.close();
  }
}

/**
 * Flips one service's redirect switch; new connections only, nothing else is touched. On an
 * instance a node agent runs (stopped now), the switch is also kept as the agent's override, so
 * the agent's next start keeps it instead of undoing it (`service reset` drops it).
 */
export async function setServiceRedirect(instanceName: string, service: string, redirect: boolean): Promise<{ changed: boolean; override: boolean }> {
  requireRoot();
  requireRecord(instanceName); // an unknown instance is an error before any lock file is made
  return withInstanceLock(checkInstanceName(instanceName), async () => {
    const rec = requireRecord(instanceName);
    const r = await applyServiceRedirect(rec, service, redirect);
    if (rec.agent) {
      const store = OverrideStore.forInstance(rec.instance);
      store.load();
      store.set(service, redirect);
    }
    return { changed: r.changed, override: rec.agent === true };
  });
}

/**
 * Drops the override of a service on an instance whose agent is stopped: the service takes the
 * value of the agent's config file again (read now), or, when the file cannot be read, the agent
 * applies it at its next start.
 */
export async function resetServiceOverride(instanceName: string, service: string): Promise<{ hadOverride: boolean; changed: boolean; note?: string }> {
  requireRoot();
  const rec0 = requireRecord(instanceName);
  if (!rec0.agent) throw new UserError(Codes.INSTANCE_MISSING, `instance "${rec0.instance}" is not run by sockmesh agent: it has no overrides (sockmesh service enable|disable sets the switch itself)`);
  return withInstanceLock(checkInstanceName(instanceName), async () => {
    const rec = requireRecord(instanceName);
    const store = OverrideStore.forInstance(rec.instance);
    store.load();
    if (!store.reset(service)) return { hadOverride: false, changed: false };
    const file = rec.configSource.startsWith('/') ? readSource(rec.configSource) : undefined;
    const fromFile = file?.kind === 'config' ? file.config.services.find((s) => s.name === service) : undefined;
    if (!fromFile) return { hadOverride: true, changed: false, note: `the agent applies the config file's switch of "${service}" when it starts` };
    return { hadOverride: true, changed: (await applyServiceRedirect(rec, service, fromFile.redirect)).changed };
  });
}

/** One service's switch written to the kernel (maps or rules) and the record. */
async function applyServiceRedirect(rec: InstanceRecord, service: string, redirect: boolean): Promise<{ changed: boolean }> {
  const svc = rec.config.services.find((s) => s.name === service);
  if (!svc) {
    const known = rec.config.services.map((s) => s.name).join(', ') || '(none)';
    throw new UserError(Codes.SERVICE_UNKNOWN, `no service "${service}" in instance "${rec.instance}" (services: ${known})`);
  }
  const config: MeshConfig = {
    ...rec.config,
    services: rec.config.services.map((s) => (s.name === service ? { ...s, redirect } : s)),
  };
  let changed = svc.redirect !== redirect;
  let ids = rec.serviceIds;
  if (rec.mode === 'iptables' && rec.podNetns) {
    // The agent's iptables mode: each pod's rule set in its own namespace.
    for (const p of rec.podNetns) {
      const pod = config.pods.find((x) => x.name === p.name);
      if (pod) await applyRules(p.netns, podConfig(config, pod), rec.instance);
    }
  } else if (rec.mode === 'iptables') {
    await applyRules(iptablesNamespace(rec), config, rec.instance);
  } else {
    const found = await resolvePods(rec.config, rec.cgroup!, { netns: rec.netns }, rec.podIds ?? nameTable());
    // The agent skips pods it cannot find; `up`'s instance is all or nothing.
    if (found.problems.length && !rec.agent) throw new UserError(Codes.CGROUP, `cannot find every pod: ${found.problems.map((p) => `${p.pod}: ${p.message}`).join('; ')}`);
    const maps = new InstanceMaps(pinLayout(rec.pinRoot));
    try {
      const applied = applyConfig(maps, config, rec.serviceIds, found.pods);
      ids = applied.ids;
      changed = Object.keys(applied.report.changes).length > 0;
    } finally {
      maps.close();
    }
  }
  writeRecord({ ...rec, config, serviceIds: ids, updatedAt: new Date().toISOString() });
  return { changed };
}
