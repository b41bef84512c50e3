// The node agent: one per node, every pod of the node. Wiring only — the file source, the override
// store, the kernel data path, the control socket and the HTTP endpoints are objects with start and
// stop, composed here, stopped in reverse order. It holds the instance lock for its whole life, so
// no `sockmesh up`/`down` can change the instance under it.
//
// Data flow: source (file) -> validated config -> overrides -> pods found on the node -> desired
// state -> reconcile (atomic slot flip) -> kernel. A rejected or missing source never changes what
// is applied; the last good state stays.
import { existsSync } from 'node:fs';
import { pinLayout } from '../bpf/pins.js';
import { pinRoot, requireNodeBpffs } from '../bpf/bpffs.js';
import { InstanceMaps } from '../bpf/maps.js';
import type { MeshConfig } from '../config/model.js';
import { Codes, SockmeshError, UserError, describe } from '../errors.js';
import { newParseCaches } from '../config/load.js';
import { validateConfig } from '../config/validate/index.js';
import { FileSource, readSource, type SourceEvent } from '../sources/file.js';
import type { Source } from '../sources/source.js';
import type { Logger } from '../util/log.js';
import { MemoryReleaser } from '../util/memory.js';
import { nameTable } from '../util/names.js';
import { VERSION } from '../version.js';
import { ControlServer } from '../control/server.js';
import { socketPath, type ControlRequest } from '../control/protocol.js';
import { configEntry, entryCounts, type ResolvedPod, type ServiceIds } from '../plan/desired.js';
import { ServiceReconciler } from '../plan/incremental.js';
import { reconcileMaps } from '../plan/reconcile.js';
import { HttpServer, parseListen } from './http.js';
import { applyConfig, closeRemovedEndpoints, down, syncInbound, podSummary, requireRoot, status, upLocked } from './instance.js';
import { acquireInstanceLock, type InstanceLock } from '../instance/lock.js';
import { AgentMetrics } from './metrics.js';
import { applyOverrides, OverrideStore } from '../instance/overrides.js';
import { establishedIn, forbiddenNamespaces, netnsPath, podCgroup as podCgroupPath, resolvePods, type PodProblem } from '../instance/pods.js';
import { identifyCaller, podOfCaller, type Caller } from '../control/peer.js';
import { PathWatcher } from '../util/path-watcher.js';
import { netnsCookie } from '../../native/netns.js';
import { dirname } from 'node:path';
import { readRecord, recordPath, writeRecord, type InstanceRecord, type Mode } from '../instance/record.js';
import { PodRules } from '../instance/pod-rules.js';
import { missingFeature } from '../bpf/probe.js';

/** Where the agent's desired state comes from, besides the config file. */
export interface KubernetesOptions {
  node: string;
  /** kubeconfig path; undefined: KUBECONFIG, in-cluster, ~/.kube/config (client-node's order). */
  kubeconfig?: string;
  /** The host's /proc (pods' namespaces are found through their processes). */
  procRoot?: string;
  /** How long a restart waits for the first list before adopting the last applied state. */
  firstSyncMs?: number;
}

export interface AgentOptions {
  instance: string;
  /** The config file: services and pods; with `kubernetes`, node-wide settings only (optional). */
  configPath?: string;
  kubernetes?: KubernetesOptions;
  /** cgroup2 directory the programs attach to: the parent of every pod's cgroup. */
  cgroup: string;
  listen: string;
  cleanupOnExit: boolean;
  log: Logger;
  objectPath?: string;
  /** How long to wait for the instance lock at start (another agent or command). */
  lockTimeoutMs?: number;
  /** auto (default): eBPF mode when the kernel can run it (probed by loading), else iptables
   * mode for every pod; ebpf: eBPF or exit naming the missing feature; iptables: rules only. */
  mode?: 'auto' | Mode;
}

/** A governance sidecar as its last long poll described it: the agent version it runs, and the one it refused (if the newest). */
interface SidecarSeen { id: string; version: number; agentVersion: number; refused?: number; seenAt: string }

export class NodeAgent {
  private lock: InstanceLock | undefined;
  private maps: InstanceMaps | undefined;
  private source: Source | undefined;
  /** When the Kubernetes source started (ms since the epoch), for the first sync's log line. */
  private sourceStartedAt = 0;
  /** Kubernetes: events that arrive before the start is over (the latest config is kept). */
  private held: { holding: boolean; config?: SourceEvent } = { holding: false };
  private control: ControlServer | undefined;
  private http: HttpServer | undefined;
  private readonly overrides: OverrideStore;
  readonly metrics: AgentMetrics;
  /** The last config the source produced that validated (before overrides). */
  private lastGood: MeshConfig | undefined;
  /** The policy the governance sidecars of the node get: a version per applied change of the
   * services (or sidecar identity), the config itself, and who waits for the next one. */
  private policy: { version: number; key: string; config?: MeshConfig } = { version: 0, key: '' };
  private policyWaiters: Array<() => void> = [];
  /** Governance sidecars that asked for the policy: the version each runs, when it last asked. */
  private readonly sidecars = new Map<string, SidecarSeen>();
  /** Pods whose sidecar inbound listener the agent has looked for (sockops registers later ones). */
  private readonly listenersSeen = new Set<bigint>();
  private sourceState: { stale: boolean; message?: string } = { stale: false };
  private serviceIds: ServiceIds = nameTable();
  private podIds: ServiceIds = nameTable();
  private pods: { key: string; pods: ResolvedPod[]; podIds: ServiceIds; problems: PodProblem[] } | undefined;
  private ready = false;
  private queue: Promise<unknown> = Promise.resolve();
  private lastApply: { at: string; changes: Record<string, unknown>; ms: number } | undefined;
  /** Writes only what changed, remembering what each slot holds (see incremental.ts). */
  private incremental: ServiceReconciler | undefined;
  /** iptables mode: the pods' rule sets. */
  private podRules: PodRules | undefined;
  /** The file source's parse caches, filled by the first read at start. */
  private readonly parseCaches = newParseCaches();
  /** The instance record as this agent last wrote it (it holds the lock: nobody else writes it). */
  private record: InstanceRecord | undefined;
  /** Gives the garbage of a start or an edit back to the kernel once it is over (after the record
   * write that follows an apply). */
  private readonly memory = new MemoryReleaser(1500, (ms) => {
    const m = process.memoryUsage();
    const mib = (n: number) => Math.round(n / 104857.6) / 10;
    this.opts.log.debug({ ms: Math.round(ms), rssMiB: mib(m.rss), heapMiB: mib(m.heapTotal), heapUsedMiB: mib(m.heapUsed), externalMiB: mib(m.external) }, 'released memory');
  });

  /** Entries of each config-driven map as last applied (for /metrics). */
  private entries: Record<string, number> | undefined;
  /** The pods the kernel holds: those of the last successful apply. */
  private applied: ResolvedPod[] = [];
  /** `sockmesh wait` callers, woken after each apply. */
  private applyWaiters: Array<() => void> = [];
  /** Pods whose problem was logged, with it (logged again only when it changes). */
  private reportedProblems = new Map<string, string>();
  /** Meshed pods the source knows but could not find on the node yet (Kubernetes). */
  private sourceMissing: Array<{ pod: string; message: string }> = [];
  /** iptables mode: the pods whose rules could not be applied. */
  private podProblemsIptables: PodProblem[] | undefined;
  private stopping = false;
  private readonly podWatcher = new PathWatcher(() => this.lookForPods('a missing pod\'s cgroup or namespace appeared'));
  /** Whether this start loaded the data path (rather than adopting it). */
  private createdNow = false;
  /** Namespaces no pod may name: the agent's own and the host's. */
  private readonly forbidden: Map<bigint, string>;

  constructor(readonly opts: AgentOptions) {
    this.overrides = OverrideStore.forInstance(opts.instance);
    this.forbidden = forbiddenNamespaces(opts.kubernetes?.procRoot ?? '/proc');
    this.metrics = new AgentMetrics(VERSION, {
      maps: () => this.maps,
      names: () => this.names(),
      entries: () => this.entries,
    });
  }

  get httpPort(): number {
    return this.http?.port ?? 0;
  }

  /** Brings the data path up (or adopts it) on the first good config, then serves. */
  async start(): Promise<void> {
    const { instance, log } = this.opts;
    requireRoot();
    const listen = parseListen(this.opts.listen);
    try {
      this.lock = await acquireInstanceLock(instance, { timeoutMs: this.opts.lockTimeoutMs ?? 2000 });
    } catch (e) {
      if (e instanceof SockmeshError && e.code === Codes.INSTANCE_BUSY) {
        throw new UserError(Codes.INSTANCE_BUSY, `instance "${instance}" is held by another sockmesh agent or command; one agent per instance`);
      }
      throw e;
    }
    try {
      // What can fail without touching the kernel comes first: the listen address and the control
      // socket are bound before any program is loaded or attached (an address in use used to
      // leave a fresh instance attached, capturing to a sidecar that never came).
      this.control = new ControlServer(socketPath(instance), (req, caller) => this.dispatch(req, caller), (fd) => identifyCaller(fd, this.opts.kubernetes?.procRoot));
      await this.control.start();
      this.http = new HttpServer(listen, {
        metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.text() }),
        ready: () => (!this.ready ? { ready: false, why: 'no desired state applied yet' }
          : this.sourceState.stale ? { ready: false, why: `the config source is stale (${this.sourceState.message ?? 'unknown'}); the last good state stays applied` } : { ready: true }),
      });
      await this.http.start().catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'EADDRINUSE' || e.code === 'EADDRNOTAVAIL' || e.code === 'EACCES') {
          throw new UserError(Codes.USAGE, `--listen ${this.opts.listen}: ${e.code === 'EADDRINUSE' ? 'the address is in use (another agent or program listens there)' : e.code === 'EACCES' ? 'not allowed to listen there' : 'no such address on this host'}; pick another with --listen HOST:PORT (port 0: any free one)`, { cause: e });
        }
        throw e;
      });
      const damaged = this.overrides.load().damaged;
      if (damaged) log.warn({ path: this.overrides.path, error: damaged }, 'override file is damaged; starting without overrides');
      const prev = readRecord(instance);
      const first = this.opts.kubernetes ? await this.startKubernetes(prev) : readSource(this.opts.configPath!, this.parseCaches);
      if (first.kind === 'config') {
        this.lastGood = first.config;
        this.sourceMissing = first.unresolved ?? [];
      } else if (first.kind === 'fresh') {
        throw new SockmeshError(Codes.INTERNAL, 'a source began with no state');
      } else if (prev) {
        // A restart with a broken file: the last good state is the one the kernel holds.
        this.lastGood = prev.config;
        this.noteStale(first);
      } else {
        throw new UserError(Codes.CONFIG_INVALID, first.message);
      }
      if (await this.chooseMode(prev) === 'iptables') {
        await this.startIptables(prev);
      } else {
        await this.startEbpf(prev);
      }
      // The first policy version for the governance sidecars is the state just applied (a source
      // whose first state was this one has nothing newer to say until something changes).
      this.publishPolicy(applyOverrides(this.lastGood!, this.overrides.all()));

      if (!this.source) {
        const file = new FileSource(this.opts.configPath!, (e) => { void this.serialize(() => this.onSource(e)); }, {}, this.parseCaches);
        this.source = file;
        file.start();
      }
      const held = this.held.config;
      this.held = { holding: false };
      if (held && held !== first) void this.serialize(() => this.onSource(held));
      log.info({
        instance, source: this.source.description, socket: socketPath(instance), listen: `${listen.host}:${this.http.port}`,
        ...(this.sourceStartedAt ? { sinceSourceStartMs: Date.now() - this.sourceStartedAt } : {}),
      }, 'agent ready');
      this.memory.work(100); // the start's parse and apply are over
    } catch (err) {
      await this.stop();
      // A start that made the data path and then failed leaves nothing behind: the pods were
      // never served by this agent, and capture to sidecars nobody configured would be worse.
      if (this.createdNow) await down(instance).catch((e) => log.error({ error: describe(e) }, 'cannot remove the data path this failed start made'));
      throw err;
    }
  }

  /**
   * Starts the Kubernetes source and waits for its first complete state (all three collections
   * listed). A restart whose API server does not answer within firstSyncMs goes on with the state
   * the kernel holds (the record's) and applies the cluster's once it comes.
   */
  private async startKubernetes(prev: InstanceRecord | undefined): Promise<SourceEvent> {
    const k = this.opts.kubernetes!;
    const { log } = this.opts;
    const [{ KubernetesSource }, { loadKubeConfig }] = await Promise.all([import('../sources/kubernetes/source.js'), import('../sources/kubernetes/client.js')]);
    const base = nodeSettings(this.opts.configPath, this.parseCaches);
    requireNodeBpffs();
    const kc = loadKubeConfig(k.kubeconfig);
    let firstConfig: (e: SourceEvent) => void = () => undefined;
    const synced = new Promise<SourceEvent>((resolve) => { firstConfig = resolve; });
    this.held = { holding: true };
    const source = new KubernetesSource({
      kc, node: k.node, cgroupRoot: this.opts.cgroup, procRoot: k.procRoot, base, log,
      onEvent: (e) => {
        if (!this.held.holding) {
          void this.serialize(() => this.onSource(e));
          return;
        }
        if (e.kind === 'config') {
          this.held.config = e;
          firstConfig(e);
        } else if (e.kind === 'rejected') {
          this.noteStale(e);
        }
      },
    });
    this.source = source;
    const t0 = Date.now();
    this.sourceStartedAt = t0;
    source.start();
    const waitMs = prev ? k.firstSyncMs ?? 10_000 : Infinity;
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<undefined>((r) => { timer = setTimeout(() => r(undefined), Math.min(10_000, waitMs)); });
      const e = await Promise.race([synced, tick]);
      clearTimeout(timer);
      if (e) {
        log.info({ source: source.description, ms: Date.now() - t0, services: e.kind === 'config' ? e.config.services.length : 0, pods: e.kind === 'config' ? e.config.pods.length : 0 }, 'first list from the API server');
        return e;
      }
      if (Date.now() - t0 >= waitMs) {
        return { kind: 'stale', source: source.description, message: `no complete list from the API server within ${waitMs} ms; the last applied state stays until it comes` };
      }
      log.info({ source: source.description, waitingMs: Date.now() - t0 }, 'waiting for the first list from the API server');
    }
  }

  /** Which mode this agent runs its instance in (see AgentOptions.mode). */
  private async chooseMode(prev: InstanceRecord | undefined): Promise<Mode> {
    const { instance, log } = this.opts;
    const wanted = this.opts.mode ?? 'auto';
    if (prev) {
      if (prev.mode === 'iptables' && !prev.podNetns) {
        throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${instance}" was set up by sockmesh up in iptables mode; run sockmesh down --instance ${instance} first, or pick another --instance`);
      }
      if (wanted !== 'auto' && wanted !== prev.mode) {
        throw new UserError(Codes.INSTANCE_CONFLICT, `instance "${instance}" runs in ${prev.mode} mode; run sockmesh down --instance ${instance} first to start it in ${wanted} mode`);
      }
      return prev.mode; // a restart: the kernel has not changed under it
    }
    if (wanted === 'iptables') return 'iptables';
    const missing = await missingFeature();
    if (!missing) return 'ebpf';
    const why = `eBPF mode needs ${missing.feature}, which this kernel does not offer (${missing.detail})`;
    if (wanted === 'ebpf') throw new UserError(Codes.NOT_SUPPORTED, `${why}; without --mode ebpf the agent runs iptables mode for every pod instead`);
    log.warn({ feature: missing.feature, detail: missing.detail }, `${why}: running iptables mode for every pod`);
    return 'iptables';
  }

  private async startEbpf(prev: InstanceRecord | undefined): Promise<void> {
    const { instance, log } = this.opts;
    this.serviceIds = prev?.serviceIds ?? nameTable();
    this.podIds = prev?.podIds ?? nameTable();
    const t0 = process.hrtime.bigint();
    if (!this.lastGood) throw new SockmeshError(Codes.INTERNAL, 'no config');
    const up = await upLocked(instance, {
      instance, mode: 'ebpf', cgroup: this.opts.cgroup, config: applyOverrides(this.lastGood, this.overrides.all()),
      configSource: this.sourceName, objectPath: this.opts.objectPath, unresolved: 'skip', forbidden: this.forbidden,
    });
    this.createdNow = up.created;
    const rec: InstanceRecord = { ...readRecord(instance)!, agent: true };
    this.record = rec;
    writeRecord(rec); // says an agent runs this instance (service switches without it are kept as overrides)
    this.serviceIds = rec.serviceIds;
    this.podIds = rec.podIds ?? nameTable();
    this.maps = new InstanceMaps(pinLayout(rec.pinRoot ?? pinRoot(instance)));
    this.pods = { key: podKey(this.lastGood), ...(await resolvePods(this.lastGood, rec.cgroup!, { netns: rec.netns }, this.podIds, this.forbidden)) };
    this.applied = this.pods.pods;
    this.entries = entryCounts(rec.config, this.pods.pods);
    this.notePodProblems();
    // The programs read the applied state. The other slot gets it too, right after the start (off
    // the path to ready: ~125 ms with 10,000 services), and from then on an edit writes only what
    // it changes.
    const applied = rec.config;
    const incremental = new ServiceReconciler(reconcileMaps(this.maps), this.maps.slots[0].svcState.info.maxEntries);
    this.incremental = incremental;
    const slotConfig = (slot: number) => configEntry(applied, slot);
    incremental.rememberActive(applied, this.serviceIds, this.pods.pods, slotConfig);
    const ids = this.serviceIds;
    const pods = this.pods.pods;
    void this.serialize(async () => {
      try {
        incremental.adopt(applied, ids, pods, slotConfig);
      } catch (e) {
        log.warn({ error: describe(e) }, 'cannot bring the other slot up to date; the next apply rewrites it');
      }
    });
    this.ready = true;
    this.metrics.reconcileSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    this.metrics.lastApplied.setToCurrentTime();
    const ms = Math.round(Number(process.hrtime.bigint() - t0) / 1e5) / 10;
    log.info({ instance, created: up.created, attached: up.attached, changes: up.changes, upgraded: up.upgraded, pods: this.pods.pods.length, ms }, up.created ? 'data path loaded and attached' : 'adopted the pinned data path');
    if (up.created) await this.countPredating();
  }

  /** Capture started just now: connections the pods already had are counted (and left alone). */
  private async countPredating(): Promise<void> {
    const counts: Record<string, number> = nameTable();
    for (const p of this.lastGood?.pods ?? []) {
      if (!p.netns) continue;
      try {
        counts[p.name] = await establishedIn(p.netns);
        this.metrics.predating.set({ pod: p.name }, counts[p.name]);
      } catch (e) {
        this.opts.log.warn({ pod: p.name, error: describe(e) }, 'cannot count the pod\'s open connections');
      }
    }
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    if (total) {
      this.opts.log.warn({ connections: total, pods: counts }, 'connections that predate capture stay uncaptured and unspliced until they reconnect');
    }
  }

  /** iptables mode: every pod's rule set in its namespace (no eBPF anywhere). */
  private async startIptables(prev: InstanceRecord | undefined): Promise<void> {
    const { instance, log } = this.opts;
    const t0 = process.hrtime.bigint();
    const config = applyOverrides(this.lastGood!, this.overrides.all());
    // A file must list its pods; a cluster node may have none meshed yet.
    if (!config.pods.length && !this.opts.kubernetes) {
      throw new UserError(Codes.USAGE, 'iptables mode in the agent needs the config\'s pods (each with its netns): it writes each pod\'s rules in its own namespace');
    }
    this.podRules = new PodRules(instance, prev?.podNetns);
    this.createdNow = prev === undefined;
    const report = await this.podRules.apply(config);
    this.noteRuleProblems(report.problems, report.notes);
    this.record = {
      instance, mode: 'iptables', agent: true, pinRoot: pinRoot(instance), configSource: this.sourceName, config, serviceIds: nameTable(),
      podNetns: this.podRules.list(), updatedAt: new Date().toISOString(),
    };
    writeRecord(this.record);
    this.ready = true;
    this.metrics.reconcileSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    this.metrics.lastApplied.setToCurrentTime();
    log.info({ instance, mode: 'iptables', applied: report.applied, pods: this.podRules.list().length }, 'iptables rules in every pod\'s namespace');
  }

  private noteRuleProblems(problems: PodProblem[], notes: string[] = []): void {
    for (const n of notes) this.opts.log.info({}, n);
    this.podProblemsIptables = problems.length ? problems : undefined;
    this.pods = { key: '', pods: [], podIds: nameTable(), problems };
    this.notePodProblems();
    this.wakeWaiters();
  }

  /** One apply at a time, in arrival order. */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private noteStale(e: Exclude<SourceEvent, { kind: 'config' | 'fresh' }>): void {
    this.sourceState = { stale: true, message: e.message };
    this.metrics.sourceStale.set(1);
    if (e.kind === 'rejected') {
      this.metrics.rejections.inc();
      this.opts.log.error({ source: e.source, issues: e.issues }, 'config rejected; the last good state stays applied');
    } else {
      this.opts.log.warn({ source: e.source }, e.message);
    }
  }

  private async onSource(e: SourceEvent): Promise<void> {
    this.memory.work();
    if (e.kind === 'fresh') {
      this.sourceState = { stale: false };
      this.metrics.sourceStale.set(0);
      this.opts.log.info({ source: e.source }, 'source reachable again; what is applied is current');
      return;
    }
    if (e.kind !== 'config') {
      this.noteStale(e);
      return;
    }
    const form = formChange(this.lastGood, e.config, this.opts.cgroup);
    if (form) {
      this.noteStale({ kind: 'rejected', source: e.source, issues: [form], message: `${e.source}: ${form.path}: ${form.message}` });
      return;
    }
    this.sourceState = { stale: false };
    this.metrics.sourceStale.set(0);
    this.lastGood = e.config;
    this.sourceMissing = e.unresolved ?? [];
    await this.apply(this.opts.kubernetes ? 'cluster state changed' : 'config file changed');
  }

  /** What the record and status name as the source. */
  private get sourceName(): string {
    return this.source?.description ?? this.opts.configPath ?? 'kubernetes';
  }

  /** Applies last good config + overrides; a failure is logged and counted, the old state stays. */
  private async apply(reason: string): Promise<Record<string, unknown>> {
    const { log } = this.opts;
    if (this.podRules) return this.applyIptables(reason);
    if (!this.maps || !this.lastGood) throw new SockmeshError(Codes.INSTANCE_MISSING, 'the data path is not up');
    const t0 = process.hrtime.bigint();
    const config = applyOverrides(this.lastGood, this.overrides.all());
    try {
      const rec = this.record!;
      const key = podKey(config);
      if (!this.pods || this.pods.key !== key) {
        this.pods = { key, ...(await resolvePods(config, rec.cgroup!, { netns: rec.netns }, this.podIds, this.forbidden)) };
        this.podIds = this.pods.podIds;
      }
      this.notePodProblems();
      const { ids, report } = applyConfig(this.maps, config, this.serviceIds, this.pods.pods, this.incremental);
      this.serviceIds = ids;
      const terminated = await closeRemovedEndpoints(this.maps, rec.config, config, ids, { cgroup: rec.cgroup!, netns: rec.netns })
        .catch((err) => { log.error({ error: describe(err) }, 'terminateOnRemove: closing connections of removed endpoints failed'); return 0; });
      if (terminated) log.info({ terminated }, 'closed the connections of removed endpoints (terminateOnRemove)');
      // After the flip: a pod whose namespace cannot take sk_lookup (gone meanwhile) is logged, the
      // others keep what they got; the next apply tries it again.
      const inbound = await syncInbound(this.maps, this.pods.pods, rec.pods, this.listenersSeen)
        .catch((err) => ({ attached: [], detached: [], registered: [], failed: [{ pod: '*', error: err as Error }] }));
      // Each failure as it was (an attach, a listener's removal or registration); the others applied.
      for (const f of inbound.failed) log.error({ pod: f.pod, error: describe(f.error) }, 'inbound capture of a pod failed; the next apply tries again');
      if (inbound.attached.length || inbound.detached.length || inbound.registered.length) {
        log.info({ attached: inbound.attached, detached: inbound.detached, registered: inbound.registered }, 'inbound capture: pod namespaces and listeners');
      }
      // The kernel has the new state now (the slot flipped); the record follows.
      this.applied = this.pods.pods;
      this.entries = entryCounts(config, this.pods.pods);
      this.wakeWaiters();
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      this.record = {
        ...rec, config, configSource: this.sourceName, serviceIds: ids, podIds: this.podIds,
        pods: this.pods.pods.map(podSummary), updatedAt: new Date().toISOString(),
      };
      this.scheduleRecordWrite();
      this.scheduleCatchUp();
      this.metrics.reconcileSeconds.observe(ms / 1000);
      this.metrics.lastApplied.setToCurrentTime();
      this.lastApply = { at: new Date().toISOString(), changes: report.changes, ms };
      log.info({ reason, changes: report.changes, slot: report.slot, ms: Math.round(ms * 100) / 100 }, 'reconciled');
      this.publishPolicy(config);
      return report.changes;
    } catch (err) {
      const reasonLabel = err instanceof SockmeshError ? err.code : 'internal';
      this.metrics.reconcileFailures.inc({ reason: reasonLabel });
      log.error({ reason, error: describe(err) }, 'apply failed; the programs keep reading the last good state');
      throw err;
    }
  }

  private async applyIptables(reason: string): Promise<Record<string, unknown>> {
    const t0 = process.hrtime.bigint();
    const config = applyOverrides(this.lastGood!, this.overrides.all());
    const report = await this.podRules!.apply(config);
    this.noteRuleProblems(report.problems, report.notes);
    const changes = report.applied.length || report.removed.length ? { rules: { applied: report.applied.length, removed: report.removed.length } } : {};
    this.record = { ...this.record!, config, configSource: this.sourceName, podNetns: this.podRules!.list(), updatedAt: new Date().toISOString() };
    this.scheduleRecordWrite();
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    this.metrics.reconcileSeconds.observe(ms / 1000);
    this.metrics.lastApplied.setToCurrentTime();
    this.lastApply = { at: new Date().toISOString(), changes, ms };
    this.opts.log.info({ reason, changes, ms: Math.round(ms * 100) / 100 }, 'reconciled');
    this.publishPolicy(config);
    return changes;
  }

  /** Names by id for /metrics, made again only when the ids or pods changed (10,000 services:
   * rebuilding the map on every scrape was a third of its cost). */
  private namesCache: { ids: ServiceIds; pods: ResolvedPod[] | undefined; names: { pods: Map<number, string>; services: Map<number, string> } } | undefined;

  private names(): { pods: Map<number, string>; services: Map<number, string> } {
    const pods = this.pods?.pods;
    if (this.namesCache?.ids !== this.serviceIds || this.namesCache.pods !== pods) {
      const services = new Map<number, string>();
      for (const n in this.serviceIds) services.set(this.serviceIds[n], n);
      this.namesCache = { ids: this.serviceIds, pods, names: { pods: new Map((pods ?? []).map((p) => [p.podId, p.name])), services } };
    }
    return this.namesCache.names;
  }

  /** Logs and counts the listed pods not meshed, and watches where the missing ones will appear. */
  private notePodProblems(): void {
    const problems = this.pods?.problems ?? [];
    for (const p of problems) {
      if (this.reportedProblems.get(p.pod) === p.message) continue;
      this.opts.log.warn({ pod: p.pod, path: p.path, error: p.message }, 'pod not meshed (not found, or in conflict); looked for again as it appears');
    }
    this.reportedProblems = new Map(problems.map((p) => [p.pod, p.message]));
    this.metrics.podProblems.set(problems.length + this.sourceMissing.length);
    if (this.opts.kubernetes) {
      // The cluster's pods are looked for by the source; this retries what it found and lost.
      this.podWatcher.watch(problems.length ? [this.opts.cgroup] : []);
      return;
    }
    const missing = new Set(problems.map((p) => p.pod));
    const cfg = this.lastGood;
    const paths = (cfg?.pods ?? []).filter((p) => missing.has(p.name)).flatMap((p) => {
      const out: string[] = [];
      try {
        out.push(podCgroupPath(this.opts.cgroup, p.cgroup));
      } catch { /* outside --cgroup: never found */ }
      if (p.netns !== undefined) out.push(dirname(netnsPath(p.netns)));
      return out;
    });
    this.podWatcher.watch(paths);
  }

  /**
   * Resolves the pods that were missing again, and applies when that changes which pods are found
   * (a cgroup or namespace appeared): called by the pod watcher and by a pod that waits.
   */
  private async refreshPods(reason: string): Promise<void> {
    if (!this.lastGood || !this.ready) return;
    if (this.podRules) {
      if (this.podProblemsIptables) await this.apply(reason);
      return;
    }
    if (!this.maps || !this.pods?.problems.length) return;
    const config = applyOverrides(this.lastGood, this.overrides.all());
    const found = await resolvePods(config, this.record!.cgroup!, { netns: this.record!.netns }, this.podIds, this.forbidden);
    const id = (ps: ResolvedPod[]) => ps.map((p) => `${p.name}/${p.podId}/${p.netnsCookie}/${p.cgroupId}/${p.localAddrs.join(',')}`).join(' ');
    if (id(found.pods) === id(this.pods.pods)) {
      this.pods = { ...this.pods, problems: found.problems };
      this.notePodProblems();
      return;
    }
    this.pods = { key: podKey(config), ...found };
    this.podIds = found.podIds;
    await this.apply(reason);
  }

  /** Looks for the missing pods now (the source's too: the cluster's pods are found by it). */
  private lookForPods(reason: string): void {
    (this.source as { lookAgain?: () => void } | undefined)?.lookAgain?.();
    void this.serialize(() => this.refreshPods(reason)).catch(() => undefined);
  }

  /**
   * `sockmesh wait`: answered once the caller's pod is meshed (the kernel holds its state: the
   * last applied pods include it), or when the time is up, with why not. Asking makes the agent
   * look for missing pods at once: the caller's own presence says its cgroup and namespace exist.
   */
  private async onWait(req: Extract<ControlRequest, { op: 'wait' }>, caller: Caller): Promise<Record<string, unknown>> {
    const deadline = Date.now() + req.timeoutMs;
    let looked = false;
    for (;;) {
      const pod = this.meshedPodOf(caller);
      if (pod) return { meshed: true, pod: pod.name, podId: pod.podId };
      if (!looked) {
        looked = true;
        this.lookForPods('a pod asked to be meshed (sockmesh wait)');
      }
      const left = deadline - Date.now();
      if (left <= 0 || this.stopping) return { meshed: false, reason: this.whyNotMeshed(caller) };
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 250));
        function done() { clearTimeout(timer); resolve(); }
        this.applyWaiters.push(done);
      });
    }
  }

  /** The meshed pod of a caller, as last applied (iptables mode: by its network namespace). */
  private meshedPodOf(caller: Caller): { name: string; podId: number } | undefined {
    if (this.podRules) {
      const applied = new Set(this.podRules.list().map((p) => p.name));
      for (const p of this.lastGood?.pods ?? []) {
        if (!applied.has(p.name) || !p.netns || this.podProblemsIptables?.some((x) => x.pod === p.name)) continue;
        try {
          if (netnsCookie(netnsPath(p.netns)) === caller.netnsCookie) return { name: p.name, podId: 0 };
        } catch { /* gone */ }
      }
      return undefined;
    }
    return podOfCaller(caller, this.applied);
  }

  private whyNotMeshed(caller: Caller): string {
    const who = `cgroup id ${caller.cgroupId ?? 'unknown'}, network namespace cookie ${caller.netnsCookie ?? 'unknown'}`;
    const problems = this.pods?.problems ?? this.podProblemsIptables ?? [];
    const pending = problems.length ? `; listed pods not meshed: ${problems.map((p) => `${p.pod} (${p.message})`).join('; ')}` : '';
    return `no meshed pod of instance "${this.opts.instance}" has the caller's cgroup and network namespace (${who})${pending}`;
  }

  private wakeWaiters(): void {
    for (const wake of this.applyWaiters.splice(0)) wake();
  }

  /** The sidecars that asked within the last two minutes (a live one asks at least every 30 s);
   * the others are forgotten. */
  private liveSidecars(): SidecarSeen[] {
    const since = Date.now() - 120_000;
    for (const [id, s] of this.sidecars) if (Date.parse(s.seenAt) < since) this.sidecars.delete(id);
    return [...this.sidecars.values()];
  }

  /** A new policy version for the sidecars when the services (or the sidecar identity) changed. */
  private publishPolicy(config: MeshConfig): void {
    const key = JSON.stringify([config.sidecar, config.services]);
    if (key === this.policy.key) return;
    this.policy = { version: this.policy.version + 1, key, config: { ...config, pods: [] } };
    this.opts.log.info({ version: this.policy.version }, 'policy version for the governance sidecars');
    const waiting = this.policyWaiters;
    this.policyWaiters = [];
    for (const wake of waiting) wake();
  }

  /** A sidecar's long poll: answered at once when it lacks the current version, else when the next
   * one comes (or after 30 s, with no config). */
  private async onPolicy(req: Extract<ControlRequest, { op: 'policy' }>): Promise<{ version: number; config?: MeshConfig }> {
    const { refused } = req.sidecar;
    this.sidecars.set(req.sidecar.id, { id: req.sidecar.id, version: req.sidecar.version, agentVersion: req.have, ...(refused !== undefined ? { refused } : {}), seenAt: new Date().toISOString() });
    // It has this version, or refused it (HAProxy would not take it): it waits for the next one.
    const current = () => this.policy.version === req.have || this.policy.version === refused;
    if (this.policy.version === 0 || current()) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.policyWaiters = this.policyWaiters.filter((w) => w !== wake);
          resolve();
        }, 30_000);
        const wake = () => { clearTimeout(timer); resolve(); };
        this.policyWaiters.push(wake);
      });
    }
    return !current() && this.policy.config ? { version: this.policy.version, config: this.policy.config } : { version: this.policy.version };
  }

  private recordTimer: NodeJS.Timeout | undefined;
  private catchUpTimer: NodeJS.Timeout | undefined;

  /**
   * A moment after an apply (no program still reads the slot it left), the other slot is brought
   * up to the applied state: a deleted pod's or service's entries leave every map, not only the
   * slot the programs read.
   */
  private scheduleCatchUp(): void {
    clearTimeout(this.catchUpTimer);
    this.catchUpTimer = setTimeout(() => {
      void this.serialize(async () => {
        try {
          if (this.incremental?.catchUp()) this.opts.log.debug({}, 'the other slot caught up');
        } catch (e) {
          this.opts.log.warn({ error: describe(e) }, 'cannot bring the other slot up to date; the next apply rewrites it');
        }
      });
    }, 250);
  }

  /**
   * Writes the record a moment after the last apply: with 10,000 services it is megabytes of
   * JSON, and a burst of edits needs only the last. The kernel is never behind it: an agent that
   * dies before the write re-applies from its source on start. `status` and `stop` flush it.
   */
  private scheduleRecordWrite(): void {
    clearTimeout(this.recordTimer);
    this.recordTimer = setTimeout(() => this.flushRecord(), 1000);
  }

  private flushRecord(): void {
    clearTimeout(this.recordTimer);
    this.recordTimer = undefined;
    if (this.record) writeRecord(this.record);
  }

  /** A control request: a sidecar's long poll waits outside the one-at-a-time lane of the others,
   * which wait for the start to be over. */
  private dispatch(req: ControlRequest, caller: Caller): Promise<unknown> {
    if (req.op === 'policy') return this.onPolicy(req);
    if (req.op === 'wait') return this.onWait(req, caller);
    if (!this.ready) return Promise.reject(new UserError(Codes.INSTANCE_BUSY, `the agent of instance "${this.opts.instance}" is starting: ask again in a moment`));
    return this.serialize(() => this.onRequest(req));
  }

  private async onRequest(req: ControlRequest): Promise<unknown> {
    switch (req.op) {
      case 'status':
        this.flushRecord();
        return {
          ...(await status(this.opts.instance)),
          agent: {
            pid: process.pid, ready: this.ready, source: { path: this.sourceName, ...this.sourceState },
            overrides: this.overrides.all(), lastApply: this.lastApply,
            unresolvedPods: [...(this.pods?.problems ?? []), ...this.sourceMissing.map((m) => ({ path: '', pod: m.pod, message: m.message }))],
            policyVersion: this.policy.version, sidecars: this.liveSidecars(),
          },
        };
      case 'service': {
        const known = this.lastGood?.services.map((s) => s.name) ?? [];
        if (!known.includes(req.name)) {
          throw new UserError(Codes.SERVICE_UNKNOWN, `no service "${req.name}" in the config (services: ${known.join(', ') || '(none)'})`);
        }
        this.overrides.set(req.name, req.redirect);
        const changes = await this.apply(`service ${req.name} ${req.redirect ? 'enabled' : 'disabled'} by override`);
        return { service: req.name, redirect: req.redirect, override: true, changed: Object.keys(changes).length > 0 };
      }
      case 'reset': {
        const had = this.overrides.reset(req.name);
        const changes = had ? await this.apply(`override of service ${req.name} reset`) : {};
        return { service: req.name, override: false, hadOverride: had, changed: Object.keys(changes).length > 0 };
      }
    }
  }

  /** Stops serving in reverse order. The data path stays (pins and attachments) unless
   * --cleanup-on-exit. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.podWatcher.stop();
    this.wakeWaiters();
    this.source?.stop();
    clearTimeout(this.catchUpTimer);
    this.memory.stop();
    await this.http?.stop();
    // The sidecars' long polls are answered now (they keep their version and ask again, finding no
    // agent): the control socket closes without waiting for them.
    const closing = this.control?.stop();
    for (const wake of this.policyWaiters.splice(0)) wake();
    await closing;
    await this.queue;
    if (this.recordTimer) this.flushRecord();
    this.maps?.close();
    this.maps = undefined;
    // An agent that stopped before making its instance (refused at start) leaves no lock file.
    this.lock?.release(!existsSync(recordPath(this.opts.instance)));
    this.lock = undefined;
    if (this.opts.cleanupOnExit && this.ready) {
      const r = await down(this.opts.instance);
      this.opts.log.info({ detached: r.detached, pinsRemoved: r.pinsRemoved }, 'removed the data path (--cleanup-on-exit)');
    }
    this.ready = false;
  }
}

/**
 * Node-wide settings for the Kubernetes source: the file's sidecar, capture, exclude and queue
 * settings (its services and pods would compete with the cluster's: refused), or the defaults.
 */
function nodeSettings(path: string | undefined, caches: ReturnType<typeof newParseCaches>): MeshConfig {
  if (path === undefined) return validateConfig({ services: [] }, '(defaults)');
  const e = readSource(path, caches);
  if (e.kind !== 'config') throw new UserError(Codes.CONFIG_INVALID, e.message);
  if (e.config.services.length || e.config.pods.length) {
    throw new UserError(Codes.USAGE, `${path}: with --kubernetes the cluster lists the services and pods; the file may set only sidecar, capture, exclude, spliceQueueBytes and spliceHops`);
  }
  return e.config;
}

/**
 * A version that would turn a running agent's listed pods into the single-pod form (the whole
 * --cgroup as one pod), as a config problem: a file cut short loses its `pods:` and would mesh a
 * cgroup that no pod lists. Starting an agent with such a file is how that form is asked for.
 */
export function formChange(running: MeshConfig | undefined, next: MeshConfig, cgroup: string): { path: string; message: string } | undefined {
  const listed = (c: MeshConfig) => c.pods.length > 0 || c.podsOnly === true;
  if (!running || !listed(running) || listed(next)) return undefined;
  return {
    path: 'pods',
    message: `this version lists no pods, the applied one lists ${running.pods.length}: applied, it would mesh all of ${cgroup} as one pod. `
      + 'List the pods (was the file cut short?); to mesh the whole --cgroup as one pod, restart the agent with such a file',
  };
}

/** What decides the pods' resolution: their part of the config. */
function podKey(cfg: MeshConfig): string {
  return JSON.stringify(cfg.pods);
}
