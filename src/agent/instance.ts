// One sockmesh instance in eBPF mode: up (load, reconcile, attach), down, status and the
// per-service switch. Each operation either completes or leaves things as they were.
import { existsSync } from 'node:fs';
import { ensureBpffs, pinRoot } from '../bpf/bpffs.js';
import { checkAttachCgroup } from '../bpf/cgroup.js';
import { COUNTER_NAMES, STATS } from '../bpf/codecs.js';
import { attachAll, detach, isFullyPinned, loadAndPin, pinLayout, programStatus, unpin, type ProgramStatus } from '../bpf/datapath.js';
import { InstanceMaps } from '../bpf/maps.js';
import { defaultObjectPath } from '../bpf/programs.js';
import type { MeshConfig } from '../config/model.js';
import { Codes, SockmeshError, UserError } from '../errors.js';
import { assignServiceIds, compileDesired } from './desired.js';
import { reconcile, type ReconcileReport } from './reconcile.js';
import { readRecord, removeRecord, writeRecord, type InstanceRecord } from './state.js';

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
  cgroup: string;
  config: MeshConfig;
  configSource: string;
  objectPath?: string;
}

export interface UpResult {
  instance: string;
  created: boolean;
  attached: string[];
  changes: ReconcileReport['changes'];
}

/** Writes the config into the maps; the record keeps service ids stable across updates. */
function applyConfig(maps: InstanceMaps, config: MeshConfig, previousIds: Record<string, number>) {
  const ids = assignServiceIds(config.services.map((s) => s.name), previousIds, maps.svcState.info.maxEntries);
  const report = reconcile(maps, compileDesired(config, ids, maps.svcState.info.maxEntries));
  return { ids, report };
}

/**
 * Brings an instance up, or updates it in place. A second `up` with the same config changes
 * nothing; a failure on a fresh instance removes everything this call created.
 */
export async function up(opts: UpOptions): Promise<UpResult> {
  requireRoot();
  const instance = checkInstanceName(opts.instance);
  const cgroup = checkAttachCgroup(opts.cgroup);
  const prev = readRecord(instance);
  if (prev && prev.cgroup !== cgroup) {
    throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${instance}" is attached to ${prev.cgroup}; run sockmesh down --instance ${instance} first or pick another --instance`);
  }
  await ensureBpffs();
  const layout = pinLayout(pinRoot(instance));
  const created = !isFullyPinned(layout);
  if (created) {
    if (existsSync(layout.root)) unpin(layout); // a partial pin dir from an interrupted run
    await loadAndPin(layout, opts.objectPath ?? defaultObjectPath());
  }
  let maps: InstanceMaps | undefined;
  try {
    maps = new InstanceMaps(layout);
    const { ids, report } = applyConfig(maps, opts.config, prev?.serviceIds ?? {});
    const attached = await attachAll(layout, cgroup);
    writeRecord({
      instance, mode: 'ebpf', cgroup, pinRoot: layout.root, configSource: opts.configSource,
      config: opts.config, serviceIds: ids, updatedAt: new Date().toISOString(),
    });
    return { instance, created, attached: attached.map((p) => p.name), changes: report.changes };
  } catch (err) {
    if (created) {
      await detach(layout, cgroup);
      maps?.close();
      maps = undefined;
      unpin(layout);
    }
    throw err;
  } finally {
    maps?.close();
  }
}

export interface DownResult {
  instance: string;
  removed: boolean;
}

/** Detaches and unpins everything of the instance. Succeeds when there is nothing to remove. */
export async function down(instanceName: string): Promise<DownResult> {
  requireRoot();
  const instance = checkInstanceName(instanceName);
  const rec = readRecord(instance);
  const layout = pinLayout(rec?.pinRoot ?? pinRoot(instance));
  const existed = rec !== undefined || existsSync(layout.root);
  const errors = existsSync(layout.root) ? await detach(layout, rec?.cgroup) : [];
  if (errors.length) {
    throw new SockmeshError(Codes.ATTACH, `could not detach every program of "${instance}"; the pins are kept so you can retry`, { cause: errors[0] });
  }
  unpin(layout);
  removeRecord(instance);
  return { instance, removed: existed };
}

export interface ServiceStatus {
  name: string;
  id: number;
  addresses: string[];
  ports: number[];
  redirect: boolean;
  splice: string;
}

export interface InstanceStatus {
  instance: string;
  mode: 'ebpf';
  cgroup: string;
  pinRoot: string;
  configSource: string;
  programs: ProgramStatus[];
  services: ServiceStatus[];
  counters: Record<string, number>;
  /** Sockets in the sockhash now (each spliced connection has two). */
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

export function status(instanceName: string): InstanceStatus {
  requireRoot();
  const rec = requireRecord(instanceName);
  const layout = pinLayout(rec.pinRoot);
  if (!isFullyPinned(layout)) {
    throw new SockmeshError(Codes.INSTANCE_MISSING, `instance "${rec.instance}" is recorded but its pins under ${layout.root} are missing; run sockmesh down --instance ${rec.instance}`);
  }
  const maps = new InstanceMaps(layout);
  try {
    return {
      instance: rec.instance,
      mode: rec.mode,
      cgroup: rec.cgroup,
      pinRoot: rec.pinRoot,
      configSource: rec.configSource,
      programs: programStatus(layout, rec.cgroup),
      services: rec.config.services.map((s) => ({
        name: s.name, id: rec.serviceIds[s.name], addresses: s.addresses, ports: s.ports, redirect: s.redirect, splice: s.splice,
      })),
      counters: readCounters(maps),
      splicedSockets: maps.sockhash.rawEntries().length,
    };
  } finally {
    maps.close();
  }
}

/** Flips one service's redirect switch; new connections only, nothing else is touched. */
export function setServiceRedirect(instanceName: string, service: string, redirect: boolean): { changed: boolean } {
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
  const maps = new InstanceMaps(pinLayout(rec.pinRoot));
  try {
    const { ids, report } = applyConfig(maps, config, rec.serviceIds);
    writeRecord({ ...rec, config, serviceIds: ids, updatedAt: new Date().toISOString() });
    return { changed: Object.keys(report.changes).length > 0 };
  } finally {
    maps.close();
  }
}
