// The agent's applier: the source's last good config, with the operator's overrides on top, made
// the kernel's state by the instance (eBPF or iptables: the same calls), one apply at a time in
// arrival order. A failed apply is logged and counted and the last good state stays; a rejected
// or missing source never changes what is applied.
import type { MeshConfig } from '../config/model.js';
import type { LocalWorkload } from '../config/workload.js';
import { formChange } from '../config/form-change.js';
import { Codes, SockmeshError, UserError, describe } from '../errors.js';
import type { ApplyReport, CaptureInstance } from '../instance/capture.js';
import { openLocked } from '../instance/lifecycle.js';
import { applyOverrides, type OverrideStore } from '../instance/overrides.js';
import { establishedIn, forbiddenNamespaces, type PodProblem } from '../instance/pods.js';
import { readRecord } from '../instance/record.js';
import type { SourceEvent } from '../sources/source.js';
import type { Logger } from '../util/log.js';
import { MemoryReleaser } from '../util/memory.js';
import { nameTable } from '../util/names.js';
import type { Cell } from './cell.js';
import type { PodIdentities } from './identities.js';
import type { AgentMetrics } from './metrics.js';
import { chooseMode } from './mode.js';
import type { AgentOptions } from './options.js';
import type { PodWatch } from './pod-watch.js';
import type { PolicyFeed } from './policy-feed.js';
import type { RecordWriter } from './record-writer.js';
import type { AgentSource } from './source-cell.js';

export interface ApplierParts {
  source: AgentSource;
  overrides: OverrideStore;
  policy: PolicyFeed;
  identities: PodIdentities;
  records: RecordWriter;
  pods: PodWatch;
  metrics: AgentMetrics;
}

export class Applier implements Cell {
  readonly name = 'applier';
  private capture: CaptureInstance | undefined;
  /** The last config the source produced that validated (before overrides). */
  private lastGood: MeshConfig | undefined;
  /** Meshed pods the source knows but could not find on the node yet (Kubernetes). */
  private sourceMissing: Array<{ pod: string; message: string }> = [];
  private queue: Promise<unknown> = Promise.resolve();
  private stopping = false;
  private catchUpTimer: NodeJS.Timeout | undefined;
  /** Pods whose problem was logged, with it (logged again only when it changes). */
  private reportedProblems = new Map<string, string>();
  ready = false;
  /** The source's notices last logged (Istio fields sockmesh does not enforce). */
  private notices = '[]';
  /** Whether this start made the data path (rather than adopting it). */
  createdNow = false;
  lastApply: { at: string; changes: Record<string, unknown>; ms: number } | undefined;
  /** Namespaces no pod may name: the agent's own and the host's. */
  private readonly forbidden: Map<bigint, string>;
  /** Gives the garbage of a start or an edit back to the kernel once it is over. */
  private readonly memory: MemoryReleaser;

  constructor(private readonly opts: AgentOptions, private readonly log: Logger, private readonly parts: ApplierParts) {
    this.forbidden = forbiddenNamespaces(opts.kubernetes?.procRoot ?? '/proc');
    this.memory = new MemoryReleaser(1500, (ms) => {
      const m = process.memoryUsage();
      const mib = (n: number) => Math.round(n / 104857.6) / 10;
      log.debug({ ms: Math.round(ms), rssMiB: mib(m.rss), heapMiB: mib(m.heapTotal), heapUsedMiB: mib(m.heapUsed), externalMiB: mib(m.external) }, 'released memory');
    });
  }

  /** The instance, for /metrics and `wait` (undefined before the start is over). */
  get instance(): CaptureInstance | undefined {
    return this.capture;
  }

  /** What is applied: the last good config with the overrides. */
  private effective(): MeshConfig {
    return applyOverrides(this.lastGood!, this.parts.overrides.all());
  }

  /** Brings the data path up (or adopts it) on the first good config. */
  async start(): Promise<void> {
    const { instance } = this.opts;
    const { log } = this;
    const { source, overrides } = this.parts;
    const damaged = overrides.load().damaged;
    if (damaged) log.warn({ path: overrides.path, error: damaged }, 'override file is damaged; starting without overrides');
    const prev = readRecord(instance);
    const first = source.first!;
    if (first.kind === 'config') {
      this.lastGood = first.config;
      this.sourceMissing = first.unresolved ?? [];
    } else if (first.kind !== 'fresh' && prev) {
      // A restart with a broken source: the last good state is the one the kernel holds.
      this.lastGood = prev.config;
      source.noteStale(first);
    } else {
      throw new UserError(Codes.CONFIG_INVALID, first.kind === 'fresh' ? 'no state' : first.message);
    }
    const mode = await chooseMode(instance, this.opts.mode ?? 'auto', prev, log);
    const config = this.effective();
    // A file must list its pods; a cluster node may have none meshed yet.
    if (mode === 'iptables' && !config.pods.length && !this.opts.kubernetes) {
      throw new UserError(Codes.USAGE, 'iptables mode in the agent needs the config\'s pods (each with its netns): it writes each pod\'s rules in its own namespace');
    }
    const t0 = performance.now();
    const opened = await openLocked(instance, {
      instance, mode, cgroup: this.opts.cgroup, config, configSource: source.description, objectPath: this.opts.objectPath,
      unresolved: 'skip', forbidden: this.forbidden, perPod: true, agent: true,
    });
    this.capture = opened.capture;
    this.createdNow = opened.result.created;
    this.parts.records.written(opened.record);
    this.noted(opened.report);
    // The other slot gets the applied state too, off the path to ready; from then on an edit
    // writes only what it changes.
    const adopt = opened.capture.followIncrementally();
    void this.serialize(async () => {
      try {
        adopt();
      } catch (e) {
        log.warn({ error: describe(e) }, 'cannot bring the other slot up to date; the next apply rewrites it');
      }
    });
    this.ready = true;
    const ms = performance.now() - t0;
    this.parts.metrics.reconcileSeconds.observe(ms / 1000);
    this.parts.metrics.lastApplied.setToCurrentTime();
    const r = opened.result;
    log.info({ instance, mode, created: r.created, attached: r.attached, changes: opened.report.changes, upgraded: r.upgraded, pods: opened.report.meshed, ms: Math.round(ms * 10) / 10 },
      mode === 'iptables' ? 'iptables rules in every pod\'s namespace' : r.created ? 'data path loaded and attached' : 'adopted the pinned data path');
    if (r.created) await this.countPredating(config);
    // The first policy version for the governance sidecars is the state just applied.
    this.published(config);
    source.follow((e) => { void this.serialize(() => this.onSource(e)).catch(() => undefined); });
    this.memory.work(100); // the start's parse and apply are over
  }

  /** Capture started just now: connections the pods already had are counted (and left alone). */
  private async countPredating(config: MeshConfig): Promise<void> {
    const counts: Record<string, number> = nameTable();
    for (const p of config.pods) {
      if (!p.netns) continue;
      try {
        counts[p.name] = await establishedIn(p.netns);
        this.parts.metrics.predating.set({ pod: p.name }, counts[p.name]);
      } catch (e) {
        this.log.warn({ pod: p.name, error: describe(e) }, 'cannot count the pod\'s open connections');
      }
    }
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    if (total) this.log.warn({ connections: total, pods: counts }, 'connections that predate capture stay uncaptured and unspliced until they reconnect');
  }

  /** One apply at a time, in arrival order; none once stopping. */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    if (this.stopping) return Promise.reject(new UserError(Codes.INSTANCE_BUSY, `the agent of instance "${this.opts.instance}" is stopping`));
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async onSource(e: SourceEvent): Promise<void> {
    const { source } = this.parts;
    this.memory.work();
    if (e.kind === 'fresh') {
      source.noteCurrent();
      this.log.info({ source: e.source }, 'source reachable again; what is applied is current');
      return;
    }
    if (e.kind !== 'config') {
      source.noteStale(e);
      return;
    }
    const form = formChange(this.lastGood, e.config, this.opts.cgroup);
    if (form) {
      source.noteStale({ kind: 'rejected', source: e.source, issues: [form], message: `${e.source}: ${form.path}: ${form.message}` });
      return;
    }
    source.noteCurrent();
    this.lastGood = e.config;
    this.sourceMissing = e.unresolved ?? [];
    await this.apply(this.opts.kubernetes ? 'cluster state changed' : 'config file changed');
  }

  /** Applies the last good config with the overrides; a failure is logged and counted, the old state stays. */
  async apply(reason: string): Promise<Record<string, unknown>> {
    const capture = this.capture;
    if (!capture || !this.lastGood) throw new SockmeshError(Codes.INSTANCE_MISSING, 'the data path is not up');
    const { log } = this;
    const { metrics } = this.parts;
    const t0 = performance.now();
    const config = this.effective();
    let report: ApplyReport;
    try {
      report = await capture.apply(config);
    } catch (err) {
      this.notePodProblems(capture.problems());
      metrics.reconcileFailures.inc({ reason: err instanceof SockmeshError ? err.code : 'internal' });
      log.error({ reason, error: describe(err) }, 'apply failed; the programs keep reading the last good state');
      throw err;
    }
    this.noted(report);
    const ms = performance.now() - t0;
    const rec = this.parts.records.current!;
    this.parts.records.schedule({ ...rec, config, configSource: this.parts.source.description, ...capture.recordFields(), updatedAt: new Date().toISOString() });
    this.scheduleCatchUp();
    metrics.reconcileSeconds.observe(ms / 1000);
    metrics.lastApplied.setToCurrentTime();
    this.lastApply = { at: new Date().toISOString(), changes: report.changes, ms };
    log.info({ reason, changes: report.changes, slot: report.slot, ms: Math.round(ms * 100) / 100 }, 'reconciled');
    this.published(config);
    return report.changes;
  }

  /** The applied state for the sidecars: the policy version, the pods' identities. */
  private published(config: MeshConfig): void {
    const notices = JSON.stringify(config.notices ?? []);
    if (notices !== this.notices) {
      this.notices = notices;
      if (config.notices?.length) this.log.warn({ notices: config.notices }, 'fields of Istio documents that sockmesh does not enforce');
    }
    this.parts.identities.configure(config);
    this.parts.policy.publish(config, this.localWorkloads(config));
  }

  /** The listed pods meshed now, with their addresses and identity (what policies select). */
  localWorkloads(config: MeshConfig): LocalWorkload[] {
    const listed = new Map(config.pods.map((p) => [p.name, p]));
    return (this.capture?.meshedPods() ?? []).flatMap((m) => {
      const p = listed.get(m.name);
      return p ? [{ name: m.name, addresses: m.addresses, namespace: p.namespace, serviceAccount: p.serviceAccount, labels: p.labels }] : [];
    });
  }

  /** What an apply reports that the operator should see; the pod waiters look again. */
  private noted(report: ApplyReport): void {
    const { log } = this;
    for (const n of report.notes) log.info({}, n);
    if (report.terminated) log.info({ terminated: report.terminated }, 'closed the connections of removed endpoints (terminateOnRemove)');
    for (const f of report.failures) {
      if (f.what === 'terminateOnRemove') log.error({ error: describe(f.error) }, 'terminateOnRemove: closing connections of removed endpoints failed');
      else log.error({ pod: f.pod, error: describe(f.error) }, 'inbound capture of a pod failed; the next apply tries again');
    }
    const inbound = report.inbound;
    if (inbound && (inbound.attached.length || inbound.detached.length || inbound.registered.length)) {
      log.info({ attached: inbound.attached, detached: inbound.detached, registered: inbound.registered }, 'inbound capture: pod namespaces and listeners');
    }
    this.notePodProblems(report.problems);
    this.parts.pods.applied();
  }

  /** Logs and counts the listed pods not meshed, and watches where the missing ones will appear. */
  private notePodProblems(problems: PodProblem[]): void {
    for (const p of problems) {
      if (this.reportedProblems.get(p.pod) === p.message) continue;
      this.log.warn({ pod: p.pod, path: p.path, error: p.message }, 'pod not meshed (not found, or in conflict); looked for again as it appears');
    }
    this.reportedProblems = new Map(problems.map((p) => [p.pod, p.message]));
    this.parts.metrics.podProblems.set(problems.length + this.sourceMissing.length);
    this.parts.pods.watch(problems, this.lastGood);
  }

  /** The pods not meshed now: the listed ones the instance could not mesh, and the source's missing ones. */
  unresolved(): PodProblem[] {
    return [...(this.capture?.problems() ?? []), ...this.sourceMissing.map((m) => ({ path: '', pod: m.pod, message: m.message }))];
  }

  /**
   * Looks for the missing pods now (the source's too: the cluster's pods are found by it), and
   * applies when that changes which pods are found (a cgroup or namespace appeared).
   */
  lookForPods(reason: string): void {
    this.parts.source.lookAgain();
    void this.serialize(async () => {
      if (!this.lastGood || !this.ready || !this.capture) return;
      if (await this.capture.lookAgain(this.effective())) await this.apply(reason);
      else this.notePodProblems(this.capture.problems());
    }).catch(() => undefined);
  }

  /** The known service names (an override names one of them). */
  services(): string[] {
    return this.lastGood?.services.map((s) => s.name) ?? [];
  }

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
          if (this.capture?.catchUp()) this.log.debug({}, 'the other slot caught up');
        } catch (e) {
          this.log.warn({ error: describe(e) }, 'cannot bring the other slot up to date; the next apply rewrites it');
        }
      }).catch(() => undefined);
    }, 250);
  }

  async stop(): Promise<void> {
    clearTimeout(this.catchUpTimer);
    this.memory.stop();
    const queue = this.queue;
    this.stopping = true;
    await queue;
    this.capture?.close();
    this.capture = undefined;
    this.ready = false;
  }
}
