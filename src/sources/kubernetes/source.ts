// The Kubernetes source: Pods of this node, Services and EndpointSlices, watched; each change
// produces a complete validated desired state, as the file source does. It never touches the
// kernel.
//
// Per object it keeps the last good translation: a Service or Pod whose annotation is malformed
// is reported (a Warning Event on it and a log line) and keeps its last good state; the rest of
// the node is unaffected. A watch that fails is restarted (see client.ts); while any is failing
// the source says it is stale and the agent keeps what it applied.
//
// Where the cluster has Istio, its DestinationRules and VirtualServices give Services their traffic
// policy (istio.ts). A cluster without the CRDs (or an agent not allowed to read them) has no
// policy objects: that is not a failure, and the source looks again now and then in case they are
// installed later; removing the CRDs removes the policies.
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { newParseCaches } from '../../config/load.js';
import type { MeshConfig, ServiceConfig } from '../../config/model.js';
import { validateConfig, validateService } from '../../config/validate/index.js';
import { ConfigError, describe } from '../../errors.js';
import type { Logger } from '../../util/log.js';
import type { Source, SourceEvent } from '../source.js';
import { apiRequest, ApiError, postEvent, ResilientInformer, type InformerEvents } from './client.js';
import {
  destinationRulePolicy, hostsOf, ISTIO_GROUP, ISTIO_VERSIONS, pickFor, trimIstio, virtualServicePolicy,
  type IstioObject, type PolicyFragment,
} from './istio.js';
import { candidatesUnder, locatePods, type Located } from './locate.js';
import { admissionOrder, admitServices } from './admit.js';
import { PathWatcher } from '../../util/path-watcher.js';
import { join } from 'node:path';
import {
  objectName, sliceAddresses, sliceService, translatePod, translateService, trimPod, trimService, trimSlice,
  type KEndpointSlice, type KPod, type KService, type PodWanted, type Problem,
} from './translate.js';

export interface KubernetesSourceOptions {
  kc: KubeConfig;
  node: string;
  /** The agent's --cgroup: the directory holding the kubelet's pod hierarchy. */
  cgroupRoot: string;
  /** The host's /proc (a DaemonSet mounts it, e.g. /host/proc). */
  procRoot?: string;
  /** Node-wide settings (sidecar, capture, exclude, spliceQueueBytes): the --config file's, or the defaults. */
  base: MeshConfig;
  log: Logger;
  onEvent: (e: SourceEvent) => void;
  /** Quiet time after a change before the state is built (a burst of watch events: one state). */
  debounceMs?: number;
  /** How often pods that are not found on the node yet are looked for again. */
  retryMs?: number;
  backoffMs?: { initial: number; max: number };
  /** How often a cluster without Istio's CRDs is asked again whether it has them. */
  istioRecheckMs?: number;
  /** How often the API server is asked whether it answers, and how long it may take. */
  probeMs?: number;
  probeTimeoutMs?: number;
}

type IstioKind = 'destinationrules' | 'virtualservices';
type Kind = 'pods' | 'services' | 'endpointslices' | IstioKind | 'apiserver';
const ISTIO_KINDS: readonly IstioKind[] = ['destinationrules', 'virtualservices'];
/** Every collection the state waits for (Istio's count once found absent). */
const ALL_KINDS = 5;

/** A DestinationRule or VirtualService as last read, with the policy it gives (last good). */
interface RuleEntry { obj: IstioObject; hosts: string[]; policy: Record<string, unknown> }

export class KubernetesSource implements Source {
  readonly description: string;
  private readonly informers: Array<{ start(): void; stop(): void; restart(why: Error): void; retryNow(): void }> = [];
  /** Istio: the informers while its CRDs are served, the rules by kind, and the re-check timer. */
  private readonly istio = {
    informers: [] as Array<{ start(): void; stop(): void; restart(why: Error): void; retryNow(): void }>,
    rules: { destinationrules: new Map<string, RuleEntry>(), virtualservices: new Map<string, RuleEntry>() } as Record<IstioKind, Map<string, RuleEntry>>,
    timer: undefined as NodeJS.Timeout | undefined,
    /** The API version read (discovery's preferred one). */
    version: 'v1' as string,
    /** Why it has none (logged once per reason). */
    absent: '',
    /** Discoveries in a row that failed (the next one waits longer). */
    failures: 0,
  };
  private readonly listed = new Set<Kind>();
  private readonly failing = new Map<Kind, string>();
  /** Last good translation per object (by name.namespace); undefined = skipped on purpose. */
  private readonly services = new Map<string, { svc: KService; raw?: Readonly<Record<string, unknown>>; config?: ServiceConfig }>();
  private readonly pods = new Map<string, { pod: KPod; wanted?: PodWanted }>();
  /** EndpointSlices by their Service, then by slice name. */
  private readonly slices = new Map<string, Map<string, KEndpointSlice>>();
  private readonly located = new Map<string, Located>();
  private readonly reported = new Set<string>();
  private readonly caches = newParseCaches();
  private timer: NodeJS.Timeout | undefined;
  /** Meshed pods not found on the node yet, as of the last state built. */
  private pending: Array<{ pod: string; message: string }> = [];
  /** Watches where those pods' cgroups will appear; looks again as they do (and every retryMs). */
  private readonly podWatcher: PathWatcher;
  private probe: NodeJS.Timeout | undefined;
  private probing = false;
  private stopped = false;
  private stale = false;
  /** The last state emitted, to tell a retry that found nothing new from a change. */
  private lastKey = '';
  /** Numbers for validated services, by identity (they are shared while unchanged). */
  private readonly serviceNumbers = new WeakMap<object, number>();
  private nextNumber = 1;

  constructor(private readonly opts: KubernetesSourceOptions) {
    this.description = `kubernetes ${opts.kc.getCurrentCluster()?.server ?? ''} (node ${opts.node})`;
    this.podWatcher = new PathWatcher(() => this.emit(), { retryMs: opts.retryMs });
  }

  start(): void {
    const { kc, node } = this.opts;
    const add = <T extends KubernetesObject>(kind: Kind, path: string, query: Record<string, string>, trim: (o: T) => T, on: (o: T, deleted: boolean) => void) => {
      const events: InformerEvents<T> = {
        add: (o) => { on(o, false); this.changed(); },
        update: (o) => { on(o, false); this.changed(); },
        delete: (o) => { on(o, true); this.changed(); },
        listed: () => { this.listed.add(kind); this.changed(); },
        failed: (err, ms) => this.failed(kind, err, ms),
        connected: () => this.connected(kind),
      };
      this.informers.push(new ResilientInformer<T>(kc, path, query, trim, events, { backoffMs: this.opts.backoffMs }));
    };
    add<KPod>('pods', '/api/v1/pods', { fieldSelector: `spec.nodeName=${node}` }, trimPod, (p, deleted) => this.onPod(p, deleted));
    add<KService>('services', '/api/v1/services', {}, trimService, (s, deleted) => this.onService(s, deleted));
    add<KEndpointSlice>('endpointslices', '/apis/discovery.k8s.io/v1/endpointslices', {}, trimSlice, (s, deleted) => this.onSlice(s, deleted));
    for (const i of this.informers) i.start();
    void this.discoverIstio();
    this.probe = setInterval(() => void this.checkServer(), this.opts.probeMs ?? 10_000);
    this.probe.unref();
  }

  /**
   * Asks the API server something small now and then: a server that hangs with its connections
   * open (stopped, wedged) sends nothing and closes nothing, and TCP keepalives still get their
   * answer from its kernel, so a watch alone would wait for it forever, the source never stale and
   * changes made meanwhile never seen. No answer in probeTimeoutMs: stale, and every list and
   * watch is dropped and started again (a relist, once the server answers).
   */
  private async checkServer(): Promise<void> {
    if (this.probing || this.stopped) return;
    this.probing = true;
    const informers = () => [...this.informers, ...this.istio.informers];
    try {
      await apiRequest(this.opts.kc, '/version', { timeoutMs: this.opts.probeTimeoutMs ?? 5000 });
      if (this.failing.has('apiserver')) for (const i of informers()) i.retryNow(); // back: no need to wait out the backoff
      this.connected('apiserver');
    } catch (err) {
      if (this.stopped) return;
      this.failed('apiserver', err, 0);
      // Silence (no answer in time) leaves watches open and waiting: they are dropped and started
      // again. A refused connection the informers see themselves.
      if (err instanceof ApiError && err.statusCode === 0) {
        const why = new Error(`the API server did not answer: ${describe(err)}`);
        for (const i of informers()) i.restart(why);
      }
    } finally {
      this.probing = false;
    }
  }

  /**
   * Whether the cluster serves Istio's networking API (and in which version): watched when it does;
   * otherwise looked for again every istioRecheckMs. Not finding it is not a failure.
   */
  private async discoverIstio(): Promise<void> {
    if (this.stopped) return;
    const recheck = (ms: number) => {
      clearTimeout(this.istio.timer);
      this.istio.timer = setTimeout(() => void this.discoverIstio(), ms);
      this.istio.timer.unref();
    };
    let version: string | undefined;
    try {
      const { status, body } = await apiRequest(this.opts.kc, `/apis/${ISTIO_GROUP}`);
      if (status !== 200 && status !== 404) throw new ApiError(status, `discovery of ${ISTIO_GROUP}: HTTP ${status}`);
      const group = body as { versions?: Array<{ version: string }>; preferredVersion?: { version: string } };
      const served = status === 200 ? (group.versions ?? []).map((v) => v.version) : [];
      const preferred = group.preferredVersion?.version;
      version = preferred && (ISTIO_VERSIONS as readonly string[]).includes(preferred) ? preferred : ISTIO_VERSIONS.find((v) => served.includes(v));
    } catch (err) {
      if (this.stopped) return;
      // Istio's objects are optional: a group that answers 500 (or not at all) must not keep the
      // node from its state. Until it answers, the state has no Istio policy, and it is asked again.
      this.istioAbsent(`the cluster's ${ISTIO_GROUP} API does not answer (${describe(err)}); looked for again`);
      this.istio.failures++;
      recheck(Math.min(this.opts.istioRecheckMs ?? 60_000, 1000 * 2 ** Math.min(this.istio.failures, 6)));
      return;
    }
    this.istio.failures = 0;
    if (this.stopped) return;
    for (const kind of ISTIO_KINDS) this.connected(kind);
    if (!version) {
      this.istioAbsent(`the cluster does not serve ${ISTIO_GROUP} (${ISTIO_VERSIONS.join(', ')})`);
      recheck(this.opts.istioRecheckMs ?? 60_000);
      return;
    }
    if (this.istio.informers.length) return;
    this.istio.version = version;
    this.opts.log.info({ group: `${ISTIO_GROUP}/${version}` }, 'reading Istio DestinationRules and VirtualServices');
    this.istio.absent = '';
    for (const kind of ISTIO_KINDS) {
      const events: InformerEvents<IstioObject> = {
        add: (o) => this.onRule(kind, o, false),
        update: (o) => this.onRule(kind, o, false),
        delete: (o) => this.onRule(kind, o, true),
        listed: () => { this.listed.add(kind); this.changed(); },
        failed: (err, ms) => {
          const code = (err as { statusCode?: number }).statusCode;
          // The CRDs were removed, or reading them is not allowed: no policy objects.
          if (code === 404 || code === 403) {
            this.istioAbsent(code === 404 ? `${ISTIO_GROUP} ${kind} are no longer served` : `not allowed to list ${ISTIO_GROUP} ${kind} (grant get/list/watch, see deploy/rbac.yaml)`);
            recheck(this.opts.istioRecheckMs ?? 60_000);
          } else if (!this.listed.has(kind)) {
            // Never listed yet: the state goes on without this kind's policies (it retries).
            this.opts.log.warn({ resource: kind, error: describe(err), retryInMs: ms }, 'cannot list Istio objects yet; the state applies without their policies until they are');
            this.listed.add(kind);
            this.changed();
          } else this.failed(kind, err, ms);
        },
        connected: () => this.connected(kind),
      };
      const informer = new ResilientInformer<IstioObject>(this.opts.kc, `/apis/${ISTIO_GROUP}/${version}/${kind}`, {}, trimIstio, events, { backoffMs: this.opts.backoffMs });
      this.istio.informers.push(informer);
      informer.start();
    }
  }

  /** No Istio policy objects (the CRDs are not there, or not readable): their policies leave, the state is complete without them. */
  private istioAbsent(why: string): void {
    for (const i of this.istio.informers) i.stop();
    this.istio.informers = [];
    if (why !== this.istio.absent) this.opts.log.info({ why }, 'no Istio traffic policy objects');
    this.istio.absent = why;
    for (const kind of ISTIO_KINDS) {
      const rules = this.istio.rules[kind];
      const hosts = [...rules.values()].flatMap((r) => r.hosts);
      rules.clear();
      this.retranslate(hosts);
      this.listed.add(kind);
      this.connected(kind);
    }
    this.changed();
  }

  /** A DestinationRule or VirtualService: checked on its own (a bad one is reported on it and keeps its last good policy), then the Services it names (before and after) are translated again. */
  private onRule(kind: IstioKind, o: IstioObject, deleted: boolean): void {
    const key = objectName(o.metadata);
    const rules = this.istio.rules[kind];
    const prev = rules.get(key);
    const affected = prev?.hosts ?? [];
    if (deleted) rules.delete(key);
    else {
      const frag: PolicyFragment = kind === 'destinationrules' ? destinationRulePolicy(o) : virtualServicePolicy(o);
      const apiVersion = `${ISTIO_GROUP}/${this.istio.version}`;
      const ref = { kind: kind === 'destinationrules' ? 'DestinationRule' : 'VirtualService', apiVersion, metadata: o.metadata };
      try {
        // Checked as a service's policy block: problems are named policy.<field>, under Istio's names.
        validateService({ name: key, addresses: [], ports: [1], policy: frag.policy }, '', this.description);
        rules.set(key, { obj: o, hosts: hostsOf(kind, o), policy: frag.policy });
        if (frag.ignored.length) this.report(ref, frag.ignored.map((field) => ({ field, message: 'not enforced by sockmesh' })), 'SockmeshIgnoredFields', `sockmesh applies this ${ref.kind}'s policy but not`);
      } catch (e) {
        this.report(ref, problemsOf(e), 'SockmeshInvalidPolicy');
      }
    }
    this.retranslate([...affected, ...(rules.get(key)?.hosts ?? [])]);
    this.changed();
  }

  /** The Services named (name.namespace) translated again, as their policy may have changed. */
  private retranslate(names: Iterable<string>): void {
    for (const name of new Set(names)) {
      const known = this.services.get(name);
      if (known) this.translateService(name, known.svc);
    }
  }

  /** The policy Istio's objects give a Service: its DestinationRule's, then its VirtualService's. */
  private policyFor(name: string): Record<string, unknown> | undefined {
    const pick = (kind: IstioKind) => pickFor(name, [...this.istio.rules[kind].values()].filter((r) => r.hosts.includes(name)).map((r) => r.obj));
    const rule = (kind: IstioKind) => {
      const o = pick(kind);
      return o ? this.istio.rules[kind].get(objectName(o.metadata))!.policy : {};
    };
    const p = { ...rule('destinationrules'), ...rule('virtualservices') };
    return Object.keys(p).length ? p : undefined;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.probe);
    this.podWatcher.stop();
    clearTimeout(this.timer);
    for (const i of this.informers) i.stop();
    for (const i of this.istio.informers) i.stop();
    clearTimeout(this.istio.timer);
  }

  private failed(kind: Kind, err: unknown, ms: number): void {
    const message = `${kind}: ${describe(err)}`;
    const first = !this.failing.has(kind);
    this.failing.set(kind, message);
    this.opts.log.warn({ resource: kind, error: describe(err), retryInMs: ms }, 'Kubernetes watch failed; the last good state stays applied');
    if (first && !this.stale && this.listed.size === ALL_KINDS) {
      this.stale = true;
      this.opts.onEvent({ kind: 'stale', source: this.description, message: `the API server cannot be reached (${message}); the last good state stays applied` });
    }
  }

  private connected(kind: Kind): void {
    if (!this.failing.delete(kind)) return;
    this.opts.log.info({ resource: kind }, 'Kubernetes watch resumed');
    if (this.stale && this.failing.size === 0) {
      this.stale = false;
      this.opts.onEvent({ kind: 'fresh', source: this.description });
    }
  }

  private onService(s: KService, deleted: boolean): void {
    const name = objectName(s.metadata);
    if (deleted) {
      this.services.delete(name);
      return;
    }
    this.translateService(name, s);
  }

  private translateService(name: string, s: KService): void {
    const prev = this.services.get(name);
    const slices = () => this.slices.get(name)?.values() ?? [];
    const t = translateService(s, () => sliceAddresses(slices(), 'all'), slices, () => this.policyFor(name));
    if (t.kind === 'invalid') {
      this.report({ kind: 'Service', apiVersion: 'v1', metadata: s.metadata }, t.problems);
      this.services.set(name, { svc: s, raw: prev?.raw, config: prev?.config });
      return;
    }
    if (t.kind === 'skip') {
      this.services.set(name, { svc: s });
      return;
    }
    // Translated again with nothing new (a rule that changed elsewhere): the same objects, no new state.
    if (prev?.raw && prev.config && JSON.stringify(prev.raw) === JSON.stringify(t.value)) {
      this.services.set(name, { svc: s, raw: prev.raw, config: prev.config });
      return;
    }
    const raw = Object.freeze(t.value);
    let config: ServiceConfig;
    try {
      config = validateService(raw, `Service ${name}`, this.description);
    } catch (e) {
      this.report({ kind: 'Service', apiVersion: 'v1', metadata: s.metadata }, problemsOf(e));
      this.services.set(name, { svc: s, raw: prev?.raw, config: prev?.config });
      return;
    }
    this.caches.services.set(raw, config);
    this.services.set(name, { svc: s, raw, config });
  }

  private onSlice(s: KEndpointSlice, deleted: boolean): void {
    const svc = sliceService(s);
    if (!svc) return;
    let bySvc = this.slices.get(svc);
    if (deleted) {
      bySvc?.delete(s.metadata.name);
      if (bySvc?.size === 0) this.slices.delete(svc);
    } else {
      if (!bySvc) this.slices.set(svc, bySvc = new Map());
      bySvc.set(s.metadata.name, s);
    }
    // A headless Service takes its addresses from its endpoints; kernel-mode and governed ones
    // (policy or HTTP: the sidecar balances) their endpoints.
    const known = this.services.get(svc);
    const governed = known?.raw !== undefined && (known.raw.policy !== undefined || known.raw.protocol === 'http');
    if (known && (known.svc.spec.clusterIP === 'None' || known.svc.metadata.annotations?.['sockmesh.io/mode'] === 'kernel' || governed)) this.translateService(svc, known.svc);
  }

  private onPod(p: KPod, deleted: boolean): void {
    const name = objectName(p.metadata);
    if (deleted) {
      this.pods.delete(name);
      if (p.metadata.uid) this.located.delete(p.metadata.uid);
      return;
    }
    const prev = this.pods.get(name);
    const t = translatePod(p, this.opts.node);
    if (t.kind === 'invalid') {
      this.report({ kind: 'Pod', apiVersion: 'v1', metadata: p.metadata }, t.problems);
      this.pods.set(name, { pod: p, wanted: prev?.wanted });
      return;
    }
    this.pods.set(name, { pod: p, wanted: t.kind === 'ok' ? t.value : undefined });
  }

  /** A malformed object (or one with fields sockmesh does not enforce): logged, and a Warning Event on it (once per version of the object). */
  private report(obj: { kind: string; apiVersion: string; metadata: KService['metadata'] }, problems: Problem[], reason = 'SockmeshInvalidAnnotation', lead = `sockmesh keeps this ${obj.kind}'s last good state`): void {
    const name = objectName(obj.metadata);
    const message = `${lead}: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`;
    const key = `${obj.kind}/${name}/${obj.metadata.resourceVersion}/${message}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    if (this.reported.size > 10_000) this.reported.clear();
    this.opts.log.warn({ kind: obj.kind, object: name, problems }, reason === 'SockmeshIgnoredFields' ? 'fields sockmesh does not enforce' : 'malformed annotation or policy; that object keeps its last good state');
    void postEvent(this.opts.kc, obj, this.opts.node, reason, message).then((err) => {
      if (err) this.opts.log.warn({ kind: obj.kind, object: name, error: err }, 'cannot post the Event');
    });
  }

  private changed(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.emit(), this.opts.debounceMs ?? 5);
  }

  /** Builds and emits the complete state, once every collection has been listed (or Istio's found absent). */
  private emit(): void {
    if (this.stopped || this.listed.size < ALL_KINDS) return;
    const event = this.build();
    if (event.kind === 'config') {
      const key = this.stateKey(event.config);
      if (key === this.lastKey) return;
      this.lastKey = key;
    }
    this.opts.onEvent(event);
  }

  /** Looks for the meshed pods not found on the node yet, now. */
  lookAgain(): void {
    this.emit();
  }

  /** What identifies a state: services by identity, pods by value (and the pods still missing). */
  private stateKey(c: MeshConfig): string {
    const number = (o: object) => {
      let v = this.serviceNumbers.get(o);
      if (v === undefined) this.serviceNumbers.set(o, v = this.nextNumber++);
      return v;
    };
    return `${c.services.map(number).join(',')}|${JSON.stringify(c.pods)}|${this.pending.map((p) => p.pod).join(',')}`;
  }

  /** The desired state from the caches (and pods found on the node). */
  build(): SourceEvent {
    const { base } = this.opts;
    // Pods oldest first (then by name): the order in which a node's capacity and a conflict between
    // two pods are decided.
    const known = [...this.pods.values()].filter((p) => p.wanted !== undefined)
      .sort((a, b) => admissionOrder({ created: a.pod.metadata.created ?? '', name: a.wanted!.name }, { created: b.pod.metadata.created ?? '', name: b.wanted!.name }));
    const wanted = known.map((p) => p.wanted!);
    const where = locatePods(this.opts.cgroupRoot, this.opts.procRoot ?? '/proc', wanted, this.located);
    const pods: unknown[] = [];
    const podObjects: KPod[] = [];
    const pending: Array<{ pod: string; message: string }> = [];
    const watch: string[] = [];
    for (const w of wanted) {
      const l = where.get(w.uid);
      if (!l || 'missing' in l) {
        pending.push({ pod: w.name, message: l?.missing ?? 'not on the node yet' });
        // Where its cgroup will appear, and (once it has) where its first process makes it populated.
        watch.push(...candidatesUnder(this.opts.cgroupRoot, w.uid, w.qos).map((c) => join(this.opts.cgroupRoot, c)));
        this.opts.log.debug({ pod: w.name, why: l?.missing }, 'meshed pod not on the node yet');
        continue;
      }
      this.located.set(w.uid, l);
      const pod: Record<string, unknown> = { name: w.name, cgroup: l.cgroup, netns: l.netns, addresses: w.addresses.length ? w.addresses : undefined };
      if (w.sidecarUid !== undefined && w.sidecarUid !== base.sidecar.uid) pod.sidecar = { uid: w.sidecarUid };
      if (Object.keys(w.capture).length) pod.capture = w.capture;
      pods.push(pod);
      podObjects.push(this.pods.get(w.name)!.pod);
    }
    this.pending = pending;
    this.podWatcher.watch(watch);
    // Object by object: a conflict or a full map leaves out the object that causes it (named in a
    // Warning Event on it), never the node's whole state (admit.ts states the order).
    const admitted = admitServices([...this.services.values()].filter((s) => s.raw && s.config)
      .map((s) => ({ obj: s.svc, raw: s.raw!, config: s.config!, headless: s.svc.spec.clusterIP === 'None', created: s.svc.metadata.created ?? '' })));
    for (const r of admitted.refused) this.report({ kind: 'Service', apiVersion: 'v1', metadata: r.obj.metadata }, [{ field: r.field, message: r.message }], r.reason, 'sockmesh does not apply all of this Service');
    const services = admitted.raws;
    const capture = { ...base.capture, includeInboundPorts: base.capture.includeInboundPorts === '*' ? ['*'] : base.capture.includeInboundPorts };
    // Whatever validation still refuses as a whole is traced to the objects its problems name,
    // which are left out (Events), and the rest is validated again.
    for (let round = 0; ; round++) {
      try {
        // A node with no meshed pod meshes nothing (never the single-pod form of a file config,
        // which would take the whole kubepods cgroup for one pod).
        const config = validateConfig({ sidecar: base.sidecar, capture, spliceQueueBytes: base.spliceQueueBytes, spliceHops: base.spliceHops, services, pods }, this.description, this.caches.services);
        return { kind: 'config', config: { ...config, podsOnly: true }, source: this.description, ...(pending.length ? { unresolved: pending } : {}) };
      } catch (e) {
        const issues = e instanceof ConfigError ? e.issues : [{ path: '', message: describe(e) }];
        const left = round < 20 ? this.leaveOut(issues, services, pods, podObjects) : false;
        if (!left) return { kind: 'rejected', source: this.description, issues, message: e instanceof Error ? e.message : String(e) };
      }
    }
  }

  /**
   * Removes from the state the objects that validation problems name (services[i], pods[i]; the
   * newest one for a capacity problem of the whole list), each reported on its object. false when
   * no problem names an object (the state stays rejected).
   */
  private leaveOut(issues: Array<{ path: string; message: string }>, services: Array<Readonly<Record<string, unknown>>>, pods: unknown[], podObjects: KPod[]): boolean {
    const drop = { services: new Map<number, string[]>(), pods: new Map<number, string[]>() };
    for (const i of issues) {
      const m = /^(services|pods)(?:\[(\d+)\])?/.exec(i.path);
      if (!m) continue;
      const list = m[1] as 'services' | 'pods';
      const n = list === 'services' ? services.length : pods.length;
      const at = m[2] !== undefined ? Number(m[2]) : n - 1; // the whole list: the newest goes
      if (at < 0 || at >= n) continue;
      drop[list].set(at, [...(drop[list].get(at) ?? []), `${i.path}: ${i.message}`]);
    }
    if (!drop.services.size && !drop.pods.size) return false;
    for (const [i, why] of [...drop.services].sort((a, b) => b[0] - a[0])) {
      const name = String(services[i].name);
      const known = this.services.get(name);
      if (known) this.report({ kind: 'Service', apiVersion: 'v1', metadata: known.svc.metadata }, why.map((w) => ({ field: 'spec', message: w })), 'SockmeshNotApplied', 'sockmesh leaves this Service out of the node\'s state');
      services.splice(i, 1);
    }
    for (const [i, why] of [...drop.pods].sort((a, b) => b[0] - a[0])) {
      const obj = podObjects[i];
      if (obj) this.report({ kind: 'Pod', apiVersion: 'v1', metadata: obj.metadata }, why.map((w) => ({ field: 'spec', message: w })), 'SockmeshNotApplied', 'sockmesh does not mesh this Pod');
      pods.splice(i, 1);
      podObjects.splice(i, 1);
    }
    return true;
  }

}

/** A validation failure as the problems a Warning Event lists. */
function problemsOf(e: unknown): Problem[] {
  return e instanceof ConfigError ? e.issues.map((i) => ({ field: i.path, message: i.message })) : [{ field: '', message: describe(e) }];
}
