// One sockmesh instance: up (eBPF: load, reconcile, attach; iptables: apply the rule set), down,
// status and the per-service switch. Each operation either completes or leaves things as they
// were. `up --mode` on a live instance switches its capture mode with no window without capture:
// the new mode is applied before the old one is removed.
import { existsSync } from 'node:fs';
import { ensureBpffs, pinRoot } from '../bpf/bpffs.js';
import { cgroup2Mount, checkAttachCgroup } from '../bpf/cgroup.js';
import { COUNTER_NAMES, STATS } from '../bpf/codecs.js';
import { attachAll, detach, findAttachedCgroups, isFullyPinned, loadAndPin, pinLayout, programStatus, unpin, type PinLayout, type ProgramStatus } from '../bpf/datapath.js';
import { InstanceMaps } from '../bpf/maps.js';
import { defaultObjectPath } from '../bpf/programs.js';
import type { MeshConfig } from '../config/model.js';
import { Codes, SockmeshError, UserError } from '../errors.js';
import { applyRules, redirectCounts, removeRules } from '../iptables/apply.js';
import { localAddresses } from '../util/netns.js';
import { assignServiceIds, compileDesired, type ServiceIds } from './desired.js';
import { reconcile, type ReconcileReport } from './reconcile.js';
import { readRecord, removeRecord, writeRecord, type InstanceRecord, type Mode } from './state.js';

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
}

export interface UpResult {
  instance: string;
  mode: Mode;
  created: boolean;
  attached: string[];
  changes: ReconcileReport['changes'];
  /** Set when this call switched a live instance from another mode. */
  switchedFrom?: Mode;
}

/** Writes the config into the maps; the record keeps service ids stable across updates. */
function applyConfig(maps: InstanceMaps, config: MeshConfig, previousIds: ServiceIds, localAddrs: string[]) {
  const ids = assignServiceIds(config.services.map((s) => s.name), previousIds, maps.svcState.info.maxEntries);
  // A service new to this id starts its auto-splice vote from scratch.
  for (const [name, id] of Object.entries(ids)) {
    if (previousIds[name] !== id) maps.svcAuto.set(id, { votes: 0, connections: 0 });
  }
  const report = reconcile(maps, compileDesired(config, ids, maps.svcState.info.maxEntries, localAddrs));
  return { ids, report };
}

/** Loads (or adopts) the pinned programs, writes the maps, attaches; undoes a fresh load on failure. */
async function ebpfUp(layout: PinLayout, cgroup: string, config: MeshConfig, prevIds: ServiceIds, localAddrs: string[], objectPath: string) {
  await ensureBpffs();
  const created = !isFullyPinned(layout);
  if (created) {
    if (existsSync(layout.root)) unpin(layout); // a partial pin dir from an interrupted run
    await loadAndPin(layout, objectPath);
  }
  let maps: InstanceMaps | undefined;
  try {
    maps = new InstanceMaps(layout);
    const { ids, report } = applyConfig(maps, config, prevIds, localAddrs);
    const attached = await attachAll(layout, cgroup);
    return { created, ids, report, attached: attached.map((p) => p.name) };
  } catch (err) {
    if (created) {
      maps?.close();
      maps = undefined;
      await detach(layout, cgroup);
      unpin(layout);
    }
    throw err;
  } finally {
    maps?.close();
  }
}

async function ebpfDown(layout: PinLayout, cgroup: string | undefined, instance: string): Promise<void> {
  if (!existsSync(layout.root)) return;
  // Without a record (lost /run), find where the pinned programs are attached.
  const mount = cgroup2Mount();
  const cgroups = cgroup ? [cgroup] : mount ? await findAttachedCgroups(layout, mount) : [];
  const errors: Error[] = [];
  for (const cg of cgroups.length ? cgroups : [undefined]) errors.push(...(await detach(layout, cg)));
  if (errors.length) {
    throw new SockmeshError(Codes.ATTACH, `could not detach every program of "${instance}"; the pins are kept so you can retry`, { cause: errors[0] });
  }
  unpin(layout);
}

/**
 * Brings an instance up, updates it in place, or switches its mode. A second `up` with the same
 * config changes nothing; a failure leaves the previous state in place.
 */
export async function up(opts: UpOptions): Promise<UpResult> {
  requireRoot();
  const instance = checkInstanceName(opts.instance);
  const mode = opts.mode ?? 'ebpf';
  const prev = readRecord(instance);
  const layout = pinLayout(prev?.pinRoot ?? pinRoot(instance));
  const base = { instance, pinRoot: layout.root, configSource: opts.configSource, config: opts.config, updatedAt: new Date().toISOString() };
  let result: UpResult;
  let record: InstanceRecord;
  if (mode === 'ebpf') {
    if (!opts.cgroup) throw new UserError(Codes.USAGE, 'eBPF mode needs --cgroup <cgroup2 dir>');
    const cgroup = checkAttachCgroup(opts.cgroup);
    if (prev?.mode === 'ebpf' && prev.cgroup !== cgroup) {
      throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${instance}" is attached to ${prev.cgroup}; run sockmesh down --instance ${instance} first or pick another --instance`);
    }
    const netns = opts.netns ?? prev?.netns;
    const localAddrs = netns ? await localAddresses(netns) : [];
    const r = await ebpfUp(layout, cgroup, opts.config, prev?.serviceIds ?? {}, localAddrs, opts.objectPath ?? defaultObjectPath());
    record = { ...base, mode, cgroup, netns, localAddrs, serviceIds: r.ids };
    result = { instance, mode, created: r.created, attached: r.attached, changes: r.report.changes };
  } else {
    if (prev?.mode === 'iptables' && prev.netns !== opts.netns) {
      throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${instance}" holds rules in ${prev.netns ? `namespace ${prev.netns}` : 'the current namespace'}; run sockmesh down --instance ${instance} first`);
    }
    await applyRules(opts.netns, opts.config);
    record = { ...base, mode, netns: opts.netns, cgroup: prev?.cgroup, serviceIds: prev?.serviceIds ?? {} };
    result = { instance, mode, created: prev === undefined, attached: [], changes: {} };
  }
  if (prev && prev.mode !== mode) {
    // The new mode captures already; now remove the old one.
    if (prev.mode === 'ebpf') await ebpfDown(layout, prev.cgroup, instance);
    else await removeRules(prev.netns);
    result.switchedFrom = prev.mode;
  }
  writeRecord(record);
  return result;
}

export interface DownResult {
  instance: string;
  removed: boolean;
}

/** Removes everything of the instance in whichever mode it is. Succeeds when nothing is up. */
export async function down(instanceName: string): Promise<DownResult> {
  requireRoot();
  const instance = checkInstanceName(instanceName);
  const rec = readRecord(instance);
  const layout = pinLayout(rec?.pinRoot ?? pinRoot(instance));
  let removed = rec !== undefined || existsSync(layout.root);
  await ebpfDown(layout, rec?.cgroup, instance);
  if (rec?.mode === 'iptables') removed = (await removeRules(rec.netns)) || removed;
  removeRecord(instance);
  return { instance, removed };
}

export interface ServiceStatus {
  name: string;
  id: number;
  addresses: string[];
  ports: number[];
  redirect: boolean;
  splice: string;
  /** splice: auto in eBPF mode: the current vote and whether new connections are spliced. */
  auto?: { votes: number; connections: number; splicing: boolean };
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
  /** Sockets in the sockhash now (each spliced connection has two); 0 in iptables mode. */
  splicedSockets: number;
}

function requireRecord(instance: string): InstanceRecord {
  const rec = readRecord(checkInstanceName(instance));
  if (!rec) throw new UserError(Codes.INSTANCE_MISSING, `no sockmesh instance "${instance}" is up (sockmesh up --instance ${instance} …)`);
  return rec;
}

/** Counter sums over CPUs, by their status names. */
export function readCounters(maps: InstanceMaps): Record<string, number> {
  const sums = maps.stats.sums();
  const out: Record<string, number> = {};
  for (const [cName, name] of Object.entries(COUNTER_NAMES)) {
    out[name] = Number(sums[STATS[cName as keyof typeof COUNTER_NAMES]] ?? 0n);
  }
  return out;
}

export async function status(instanceName: string): Promise<InstanceStatus> {
  requireRoot();
  const rec = requireRecord(instanceName);
  const services: ServiceStatus[] = rec.config.services.map((s) => ({
    name: s.name, id: rec.serviceIds[s.name] ?? -1, addresses: s.addresses, ports: s.ports, redirect: s.redirect, splice: s.splice,
  }));
  const common = {
    instance: rec.instance, mode: rec.mode, cgroup: rec.cgroup ?? null, netns: rec.netns ?? null,
    pinRoot: rec.pinRoot, configSource: rec.configSource, services,
  };
  if (rec.mode === 'iptables') {
    const counts = await redirectCounts(rec.netns);
    return { ...common, programs: [], counters: { connectRewrites: counts.outbound, inboundRedirects: counts.inbound }, splicedSockets: 0 };
  }
  const layout = pinLayout(rec.pinRoot);
  if (!isFullyPinned(layout)) {
    throw new SockmeshError(Codes.INSTANCE_MISSING, `instance "${rec.instance}" is recorded but its pins under ${layout.root} are missing; run sockmesh down --instance ${rec.instance}`);
  }
  const maps = new InstanceMaps(layout);
  try {
    for (const s of common.services) {
      if (s.splice !== 'auto' || s.id < 0) continue;
      const a = maps.svcAuto.get(s.id) ?? { votes: 0, connections: 0 };
      s.auto = { ...a, splicing: s.redirect && a.votes >= rec.config.autoSplice.votes };
    }
    return {
      ...common,
      programs: programStatus(layout, rec.cgroup),
      counters: readCounters(maps),
      splicedSockets: maps.sockhash.rawEntries().length,
    };
  } finally {
    maps.close();
  }
}

/** Flips one service's redirect switch; new connections only, nothing else is touched. */
export async function setServiceRedirect(instanceName: string, service: string, redirect: boolean): Promise<{ changed: boolean }> {
  requireRoot();
  const rec = requireRecord(instanceName);
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
  if (rec.mode === 'iptables') {
    await applyRules(rec.netns, config);
  } else {
    const maps = new InstanceMaps(pinLayout(rec.pinRoot));
    try {
      const applied = applyConfig(maps, config, rec.serviceIds, rec.localAddrs ?? []);
      ids = applied.ids;
      changed = Object.keys(applied.report.changes).length > 0;
    } finally {
      maps.close();
    }
  }
  writeRecord({ ...rec, config, serviceIds: ids, updatedAt: new Date().toISOString() });
  return { changed };
}
