// eBPF mode's instance: the pinned programs and maps of one instance, attached to one cgroup.
//
// open(): the pins are loaded (a fresh instance) or adopted (a restart, an update), and a live
// instance whose programs differ from this object's is upgraded in place. apply(): the pods are
// found, the desired state is written into the maps (an atomic slot flip, src/plan/reconcile.ts),
// the caller records it, connections to removed endpoints are closed, the programs are attached
// (the first apply) and each pod's inbound pieces follow.
import { attachAll, detach } from '../bpf/attach.js';
import { InstanceMaps } from '../bpf/maps.js';
import { unpin, type PinLayout } from '../bpf/pins.js';
import { objectSha256 } from '../bpf/programs.js';
import type { UpgradeResult } from '../bpf/upgrade.js';
import type { MeshConfig } from '../config/model.js';
import { podOfCaller, type Caller } from '../control/peer.js';
import { Codes, SockmeshError, UserError } from '../errors.js';
import { assignServiceIds, compileDesired, configEntry, entryCounts, type ResolvedPod, type ServiceIds } from '../plan/desired.js';
import { ServiceReconciler } from '../plan/incremental.js';
import { reconcile, reconcileMaps } from '../plan/reconcile.js';
import { hasName, nameTable } from '../util/names.js';
import { emptyReport, type ApplyReport, type CaptureInstance, type KernelView } from './capture.js';
import { syncInbound } from './ebpf-inbound.js';
import { loadOrAdopt } from './ebpf-pins.js';
import { resolvePods, type PodProblem } from './pods.js';
import { podSummary, type InstanceRecord, type PodRecord } from './record.js';
import { closeRemovedEndpoints } from './terminate.js';
import { currentMntnsId, viewOf } from './view.js';

export interface EbpfOpenOptions {
  instance: string;
  layout: PinLayout;
  /** The cgroup2 directory the programs attach to (checked by the caller). */
  cgroup: string;
  /** The single-pod form's network namespace (its own addresses count as local). */
  netns?: string;
  objectPath: string;
  /** The instance's record before this open (undefined: none). */
  prev: InstanceRecord | undefined;
  /** Listed pods that cannot be found, or that conflict: refuse (all or nothing), or skip them
   * (the node agent meshes the others and looks for them again). */
  unresolved?: 'refuse' | 'skip';
  /** Namespaces no pod may name (default: this process's own and the host's). */
  forbidden?: Map<bigint, string>;
  /** Maps only: nothing is ever attached (the agent bench's measurement of an apply). */
  detached?: boolean;
}

interface Pods { key: string; pods: ResolvedPod[]; podIds: ServiceIds; problems: PodProblem[] }

/** What decides the pods' resolution: their part of the config. */
function podKey(cfg: MeshConfig): string {
  return JSON.stringify(cfg.pods);
}

/** The config's pods as found on the node; with unresolved: 'refuse', all of them or an error. */
async function findPods(o: EbpfOpenOptions, config: MeshConfig, podIds: ServiceIds): Promise<Pods> {
  const found = await resolvePods(config, o.cgroup, { netns: o.netns }, podIds, o.forbidden);
  if (o.unresolved !== 'skip' && found.problems.length) {
    throw new UserError(Codes.CGROUP, `cannot find every pod:\n${found.problems.map((p) => `  ${p.path} (${p.pod}): ${p.message}`).join('\n')}`);
  }
  return { key: podKey(config), ...found };
}

/** Whether the config names exactly the services that have ids (an edit that added or removed none). */
function sameNames(config: MeshConfig, ids: ServiceIds): boolean {
  let n = 0;
  for (const _ in ids) n++;
  return n === config.services.length && config.services.every((s) => hasName(ids, s.name));
}

export class EbpfInstance implements CaptureInstance {
  readonly mode = 'ebpf' as const;
  private serviceIds: ServiceIds;
  private podIds: ServiceIds;
  private pods: Pods | undefined;
  /** What the kernel holds: the config and pods of the last successful apply. */
  private config: MeshConfig | undefined;
  private applied: ResolvedPod[] = [];
  private appliedRecord: PodRecord[] | undefined;
  private entries: Record<string, number> | undefined;
  private attached = false;
  /** Set once the agent follows edits incrementally (writes only what changed, see incremental.ts). */
  private incremental: ServiceReconciler | undefined;
  /** Pods whose sidecar inbound listener was looked for (sockops registers later ones). */
  private readonly listenersSeen = new Set<bigint>();
  private view: InstanceRecord['view'];
  private namesCache: { ids: ServiceIds; pods: ResolvedPod[]; names: ReturnType<KernelView['names']> } | undefined;
  readonly kernel: KernelView;

  private constructor(private readonly o: EbpfOpenOptions, private maps: InstanceMaps | undefined,
    /** Whether open() loaded the programs (rather than adopting the pinned ones). */
    readonly created: boolean,
    /** Programs replaced in place by a newer object. */
    readonly upgraded: UpgradeResult['replaced'],
    /** The slot the programs read before this instance's first apply (a rollback flips back). */
    private readonly previousSlot: number,
    /** The object the programs came from (open: this one's; adopt: the record's). */
    private readonly objectSha: string | undefined) {
    const prev = o.prev;
    this.serviceIds = prev?.serviceIds ?? nameTable();
    this.podIds = prev?.podIds ?? nameTable();
    this.config = prev?.config;
    this.appliedRecord = prev?.mode === 'ebpf' ? prev.pods : undefined;
    this.kernel = { maps: () => this.maps, names: () => this.names(), entries: () => this.entries };
  }

  /**
   * Loads or adopts the instance's pinned programs and maps; attaches nothing yet. With the first
   * config, its pods are found (and, unless skipped, refused) before anything is loaded.
   */
  static async open(o: EbpfOpenOptions, config?: MeshConfig): Promise<EbpfInstance> {
    const { prev } = o;
    const pods = config && await findPods(o, config, prev?.podIds ?? nameTable());
    const pinned = await loadOrAdopt(o);
    const inst = new EbpfInstance(o, pinned.maps, pinned.created, pinned.upgraded, pinned.maps.activeSlot(), objectSha256(o.objectPath));
    if (pods) {
      inst.pods = pods;
      inst.podIds = pods.podIds;
    }
    return inst;
  }

  /**
   * The pinned instance as it is, for a service's switch: nothing loaded, upgraded or attached
   * (its first apply is a later one). Throws when the pins are missing.
   */
  static adopt(o: EbpfOpenOptions): EbpfInstance {
    const maps = new InstanceMaps(o.layout);
    const inst = new EbpfInstance(o, maps, false, [], maps.activeSlot(), o.prev?.objectSha256);
    inst.attached = true;
    return inst;
  }

  private get open(): InstanceMaps {
    if (!this.maps) throw new SockmeshError(Codes.INSTANCE_MISSING, 'the data path is not up');
    return this.maps;
  }

  /**
   * Writes the config for the pods found now into the maps (an atomic slot flip); service ids stay
   * stable across updates. Nothing is attached and no connection is touched: a service's switch,
   * or the bench's measurement, needs only this.
   */
  async write(config: MeshConfig): Promise<{ changes: Record<string, unknown>; slot: number; ids: ServiceIds; timings: ApplyReport['timings'] }> {
    const maps = this.open;
    let t = performance.now();
    if (this.pods?.key !== podKey(config)) {
      this.pods = await findPods(this.o, config, this.podIds);
      this.podIds = this.pods.podIds;
    }
    const resolvePodsMs = performance.now() - t;
    t = performance.now();
    const previousIds = this.serviceIds;
    const size = maps.slots[0].svcState.info.maxEntries;
    const ids = sameNames(config, previousIds) ? previousIds : assignServiceIds(config.services.map((s) => s.name), previousIds, size);
    // A service new to its id learns splice: auto from scratch (the id was free).
    if (ids !== previousIds) {
      for (const name in ids) if (!hasName(previousIds, name) || previousIds[name] !== ids[name]) maps.svcAuto.set(ids[name], { nagleClients: 0, bulk: 0, observed: 0 });
    }
    const slotConfig = (slot: number) => configEntry(config, slot);
    const pods = this.pods!.pods;
    const report = this.incremental
      ? this.incremental.apply(config, ids, pods, slotConfig)
      : reconcile(reconcileMaps(maps), compileDesired(config, ids, size, pods), slotConfig);
    this.serviceIds = ids;
    return { changes: report.changes, slot: report.slot, ids, timings: { resolvePodsMs, writeMs: performance.now() - t } };
  }

  async apply(config: MeshConfig, hooks: { written?: (ids: ServiceIds) => void } = {}): Promise<ApplyReport> {
    const maps = this.open;
    const first = !this.attached;
    const w = await this.write(config);
    const pods = this.pods!;
    hooks.written?.(w.ids);
    const report: ApplyReport = { ...emptyReport(), changes: w.changes, slot: w.slot, problems: pods.problems, meshed: pods.pods.length, timings: w.timings };
    const where = { cgroup: this.o.cgroup, netns: this.o.netns };
    try {
      report.terminated = await closeRemovedEndpoints(maps, this.config, config, w.ids, where);
    } catch (error) {
      if (first) throw error;
      report.failures.push({ pod: '*', what: 'terminateOnRemove', error: error as Error });
    }
    if (!this.o.detached) {
      if (first) report.attached = (await attachAll(this.o.layout, this.o.cgroup)).map((p) => p.name);
      const inbound = await syncInbound(maps, pods.pods, this.appliedRecord, first ? undefined : this.listenersSeen)
        .catch((error) => {
          if (first) throw error;
          return { attached: [], detached: [], registered: [], failed: [{ pod: '*', error: error as Error }] };
        });
      // The first apply is all or nothing: a pod whose namespace takes no sk_lookup fails it (and
      // is put back). Later, each failure is reported and the others keep what they got.
      if (first && inbound.failed.length) throw inbound.failed[0].error;
      for (const f of inbound.failed) report.failures.push({ pod: f.pod, what: 'inbound', error: f.error });
      report.inbound = { attached: inbound.attached, detached: inbound.detached, registered: inbound.registered };
      report.attached.push(...inbound.attached.map((p) => `sm_inbound (pod ${p})`));
    }
    this.attached = true;
    this.config = config;
    this.applied = pods.pods;
    this.appliedRecord = pods.pods.map(podSummary);
    this.entries = entryCounts(config, pods.pods);
    if (first) this.view = viewOf(this.o.cgroup, this.o.layout.root);
    return report;
  }

  async lookAgain(config: MeshConfig): Promise<boolean> {
    if (!this.pods?.problems.length) return false;
    const found = await resolvePods(config, this.o.cgroup, { netns: this.o.netns }, this.podIds, this.o.forbidden);
    const id = (ps: ResolvedPod[]) => ps.map((p) => `${p.name}/${p.podId}/${p.netnsCookie}/${p.cgroupId}/${p.localAddrs.join(',')}`).join(' ');
    if (id(found.pods) === id(this.pods.pods)) {
      this.pods = { ...this.pods, problems: found.problems };
      return false;
    }
    this.pods = { key: podKey(config), ...found };
    this.podIds = found.podIds;
    return true;
  }

  problems(): PodProblem[] {
    return this.pods?.problems ?? [];
  }

  meshedPodOf(caller: Caller): { name: string; podId: number } | undefined {
    return podOfCaller(caller, this.applied);
  }

  meshedPods(): Array<{ name: string; addresses: string[] }> {
    return this.applied.map((p) => ({ name: p.name, addresses: p.localAddrs.map((c) => c.replace(/\/(32|128)$/, '')) }));
  }

  /** The mode's part of the record: the pods as last written (the first apply records them
   * before it attaches). */
  recordFields() {
    return {
      mode: this.mode, cgroup: this.o.cgroup, netns: this.o.netns, serviceIds: this.serviceIds, podIds: this.podIds, mntns: currentMntnsId(),
      objectSha256: this.objectSha, pods: (this.pods?.pods ?? []).map(podSummary), view: this.view,
    };
  }

  /**
   * From now on an apply writes only what it changes. The programs read the applied state; the
   * step returned brings the other slot to it too (run it off the path to ready: ~125 ms with
   * 10,000 services).
   */
  followIncrementally(): () => void {
    const maps = this.open;
    const config = this.config!;
    const ids = this.serviceIds;
    const pods = this.applied;
    const incremental = new ServiceReconciler(reconcileMaps(maps), maps.slots[0].svcState.info.maxEntries);
    this.incremental = incremental;
    const slotConfig = (slot: number) => configEntry(config, slot);
    incremental.rememberActive(config, ids, pods, slotConfig);
    return () => incremental.adopt(config, ids, pods, slotConfig);
  }

  catchUp(): boolean {
    return this.incremental?.catchUp() ?? false;
  }

  async rollback(): Promise<void> {
    if (this.created) {
      this.close();
      await detach(this.o.layout, this.o.cgroup);
      unpin(this.o.layout);
    } else if (this.maps) {
      // The programs go back to reading the state they read before.
      this.maps.gen.set(0, this.previousSlot);
    }
  }

  close(): void {
    this.maps?.close();
    this.maps = undefined;
  }

  /** Names by id for /metrics, made again only when the ids or pods changed (10,000 services:
   * rebuilding the map on every scrape was a third of its cost). */
  private names(): ReturnType<KernelView['names']> {
    if (this.namesCache?.ids !== this.serviceIds || this.namesCache.pods !== this.applied) {
      const services = new Map<number, string>();
      for (const n in this.serviceIds) services.set(this.serviceIds[n], n);
      this.namesCache = { ids: this.serviceIds, pods: this.applied, names: { pods: new Map(this.applied.map((p) => [p.podId, p.name])), services } };
    }
    return this.namesCache.names;
  }
}
