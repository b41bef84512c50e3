// The Kubernetes source: Pods of this node, Services and EndpointSlices, watched; each change
// produces a complete validated desired state, as the file source does. It never touches the
// kernel.
//
// Per object it keeps the last good translation: a Service or Pod whose annotation is malformed
// is reported (a Warning Event on it and a log line, events.ts) and keeps its last good state; the
// rest of the node is unaffected. A watch that fails is restarted (client.ts); while any is failing,
// or the API server does not answer, the source says it is stale (health.ts) and the agent keeps
// what it applied. Istio's DestinationRules and VirtualServices give Services their traffic policy
// where the cluster has them (istio-rules.ts). The state itself is assembled in state.ts.
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import { join } from 'node:path';
import type { MeshConfig, PeerWorkload, ServiceConfig } from '../../config/model.js';
import { validateService } from '../../config/validate/index.js';
import type { Logger } from '../../util/log.js';
import { PathWatcher } from '../../util/path-watcher.js';
import type { Source, SourceEvent } from '../source.js';
import { admissionOrder } from './admit.js';
import { SERVICE_ANNOTATIONS } from './annotations.js';
import { ResilientInformer, type InformerEvents } from './client.js';
import { EventReporter, problemsOf } from './events.js';
import { SourceHealth, type Kind } from './health.js';
import { IstioPolicies } from './istio-policies.js';
import { IstioRules } from './istio-rules.js';
import { candidatesUnder, locatePods, type Located } from './locate.js';
import { nodeState } from './state.js';
import {
  objectName, sliceAddresses, sliceService, translatePeer, translatePod, translateService, trimPeer, trimPod, trimService, trimSlice,
  type KEndpointSlice, type KPod, type KService, type PodWanted,
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

export class KubernetesSource implements Source {
  readonly description: string;
  private readonly informers: Array<ResilientInformer<KubernetesObject>> = [];
  private readonly health: SourceHealth;
  private readonly events: EventReporter;
  private readonly istio: IstioRules;
  private readonly security: IstioPolicies;
  /** Last good translation per object (by name.namespace); no config = skipped on purpose. */
  private readonly services = new Map<string, { svc: KService; raw?: Readonly<Record<string, unknown>>; config?: ServiceConfig }>();
  private readonly pods = new Map<string, { pod: KPod; wanted?: PodWanted }>();
  /** Meshed pods of the other nodes (their sidecars' identities, for auto mTLS), by name.namespace. */
  private readonly peers = new Map<string, PeerWorkload>();
  /** Every pod's labels, by name.namespace (what DestinationRule subsets select endpoints by). */
  private readonly podLabels = new Map<string, Record<string, string>>();
  /** EndpointSlices by their Service, then by slice name. */
  private readonly slices = new Map<string, Map<string, KEndpointSlice>>();
  private readonly located = new Map<string, Located>();
  private timer: NodeJS.Timeout | undefined;
  /** Watches where the pods not found yet will appear; looks again as they do (and every retryMs). */
  private readonly podWatcher: PathWatcher;
  private probe: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The last state emitted, to tell a retry that found nothing new from a change. */
  private lastKey = '';
  /** Numbers for services, by identity (they are shared while unchanged). */
  private readonly serviceNumbers = new WeakMap<object, number>();
  private nextNumber = 1;

  constructor(private readonly opts: KubernetesSourceOptions) {
    this.description = `kubernetes ${opts.kc.getCurrentCluster()?.server ?? ''} (node ${opts.node})`;
    this.podWatcher = new PathWatcher(() => this.emit(), { retryMs: opts.retryMs });
    // Nothing is said once stopped (a probe or a list may still answer late).
    this.health = new SourceHealth(opts.kc, opts.log,
      (message) => { if (!this.stopped) opts.onEvent({ kind: 'stale', source: this.description, message }); },
      () => { if (!this.stopped) opts.onEvent({ kind: 'fresh', source: this.description }); });
    this.events = new EventReporter(opts.kc, opts.node, opts.log);
    this.istio = new IstioRules({
      kc: opts.kc, log: opts.log, health: this.health, events: this.events, description: this.description, recheckMs: opts.istioRecheckMs,
      informer: { backoffMs: opts.backoffMs }, changed: () => this.changed(), retranslate: (names) => this.retranslate(names),
    });
    this.security = new IstioPolicies({
      kc: opts.kc, log: opts.log, health: this.health, events: this.events, description: this.description, recheckMs: opts.istioRecheckMs,
      informer: { backoffMs: opts.backoffMs }, changed: () => this.changed(),
    });
  }

  start(): void {
    const { kc, node } = this.opts;
    const add = <T extends KubernetesObject>(kind: Kind, path: string, query: Record<string, string>, trim: (o: T) => T, on: (o: T, deleted: boolean) => void) => {
      const events: InformerEvents<T> = {
        add: (o) => { on(o, false); this.changed(); },
        update: (o) => { on(o, false); this.changed(); },
        delete: (o) => { on(o, true); this.changed(); },
        listed: () => { this.health.listedNow(kind); this.changed(); },
        failed: (err, ms) => this.health.failed(kind, err, ms),
        connected: () => this.health.connected(kind),
      };
      this.informers.push(new ResilientInformer<T>(kc, path, query, trim, events, { backoffMs: this.opts.backoffMs }) as unknown as ResilientInformer<KubernetesObject>);
    };
    add<KPod>('pods', '/api/v1/pods', { fieldSelector: `spec.nodeName=${node}` }, trimPod, (p, deleted) => this.onPod(p, deleted));
    add<KPod>('peers', '/api/v1/pods', {}, trimPeer, (p, deleted) => this.onPeer(p, deleted));
    add<KService>('services', '/api/v1/services', {}, trimService, (s, deleted) => this.onService(s, deleted));
    add<KEndpointSlice>('endpointslices', '/apis/discovery.k8s.io/v1/endpointslices', {}, trimSlice, (s, deleted) => this.onSlice(s, deleted));
    for (const i of this.informers) i.start();
    this.istio.start();
    this.security.start();
    this.probe = setInterval(() => {
      if (!this.stopped) void this.health.probe([...this.informers, ...this.istio.informers, ...this.security.informers], this.opts.probeTimeoutMs ?? 5000);
    }, this.opts.probeMs ?? 10_000);
    this.probe.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.probe);
    this.podWatcher.stop();
    clearTimeout(this.timer);
    for (const i of this.informers) i.stop();
    this.istio.stop();
    this.security.stop();
  }

  /** Looks for the meshed pods not found on the node yet, now. */
  lookAgain(): void {
    this.emit();
  }

  /** The Services named (name.namespace) translated again, as their policy may have changed. */
  private retranslate(names: Iterable<string>): void {
    for (const name of new Set(names)) {
      const known = this.services.get(name);
      if (known) this.translateService(name, known.svc);
    }
  }

  private onService(s: KService, deleted: boolean): void {
    const name = objectName(s.metadata);
    if (deleted) this.services.delete(name);
    else this.translateService(name, s);
  }

  private translateService(name: string, s: KService): void {
    const prev = this.services.get(name);
    const slices = () => this.slices.get(name)?.values() ?? [];
    const ref = { kind: 'Service', apiVersion: 'v1', metadata: s.metadata };
    const t = translateService(s, () => sliceAddresses(slices(), 'all'), slices, () => this.istio.policyFor(name), (ns, pod) => this.podLabels.get(`${pod}.${ns}`));
    if (t.kind === 'invalid') {
      this.events.report(ref, t.problems);
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
    try {
      this.services.set(name, { svc: s, raw: t.value, config: validateService(t.value, `Service ${name}`, this.description) });
    } catch (e) {
      this.events.report(ref, problemsOf(e));
      this.services.set(name, { svc: s, raw: prev?.raw, config: prev?.config });
    }
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
    const governed = known?.raw !== undefined && (known.raw.policy !== undefined || known.raw.protocol !== undefined);
    if (known && (known.svc.spec.clusterIP === 'None' || known.svc.metadata.annotations?.[SERVICE_ANNOTATIONS.mode] === 'kernel' || governed)) this.translateService(svc, known.svc);
  }

  private onPeer(p: KPod, deleted: boolean): void {
    const name = objectName(p.metadata);
    const peer = deleted ? undefined : translatePeer(p, this.opts.node);
    if (peer) this.peers.set(name, peer);
    else this.peers.delete(name);
    const labels = deleted ? undefined : p.metadata.labels ?? {};
    if (JSON.stringify(labels) === JSON.stringify(this.podLabels.get(name))) return;
    if (labels) this.podLabels.set(name, labels);
    else this.podLabels.delete(name);
    // A pod whose labels changed may move between subsets: the Services with subsets that list it.
    for (const [svc, known] of this.services) {
      const subsets = (known.raw?.policy as Record<string, unknown> | undefined)?.subsets;
      if (subsets && [...(this.slices.get(svc)?.values() ?? [])].some((sl) => sl.endpoints.some((e) => e.targetRef?.name === p.metadata.name && (e.targetRef.namespace ?? sl.metadata.namespace) === p.metadata.namespace))) {
        this.translateService(svc, known.svc);
      }
    }
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
      this.events.report({ kind: 'Pod', apiVersion: 'v1', metadata: p.metadata }, t.problems);
      this.pods.set(name, { pod: p, wanted: prev?.wanted });
      return;
    }
    this.pods.set(name, { pod: p, wanted: t.kind === 'ok' ? t.value : undefined });
  }

  private changed(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.emit(), this.opts.debounceMs ?? 5);
  }

  /** Builds and emits the complete state, once every collection has been listed (or Istio's found absent). */
  private emit(): void {
    if (this.stopped || !this.health.complete) return;
    const event = this.build();
    if (event.kind === 'config') {
      const key = this.stateKey(event.config, event.unresolved ?? []);
      if (key === this.lastKey) return;
      this.lastKey = key;
    }
    this.opts.onEvent(event);
  }

  /** What identifies a state: services by identity, pods by value, and the pods still missing. */
  private stateKey(c: MeshConfig, missing: Array<{ pod: string }>): string {
    const number = (o: object) => {
      let v = this.serviceNumbers.get(o);
      if (v === undefined) this.serviceNumbers.set(o, v = this.nextNumber++);
      return v;
    };
    return `${c.services.map(number).join(',')}|${JSON.stringify(c.pods)}|${missing.map((p) => p.pod).join(',')}|${JSON.stringify([c.peerAuthentications, c.authorizationPolicies, c.peers])}`;
  }

  /** The desired state from the caches and the pods found on the node (the meshed pods oldest first). */
  build(): SourceEvent {
    const known = [...this.pods.values()].filter((p): p is { pod: KPod; wanted: PodWanted } => p.wanted !== undefined)
      .sort((a, b) => admissionOrder({ created: a.pod.metadata.created ?? '', name: a.wanted.name }, { created: b.pod.metadata.created ?? '', name: b.wanted.name }));
    const where = locatePods(this.opts.cgroupRoot, this.opts.procRoot ?? '/proc', known.map((p) => p.wanted), this.located);
    for (const [uid, l] of where) if (!('missing' in l)) this.located.set(uid, l);
    const candidates = [...this.services.values()].filter((s) => s.config)
      .map((s) => ({ obj: s.svc, config: s.config!, headless: s.svc.spec.clusterIP === 'None', created: s.svc.metadata.created ?? '' }));
    const state = nodeState(this.opts.base, candidates, known.map((p) => ({ obj: p.pod, wanted: p.wanted, where: where.get(p.wanted.uid) })), this.description, this.security.security(),
      [...this.peers].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, p]) => p));
    for (const r of state.refusals) this.events.report(r.ref, r.problems, r.reason, r.lead);
    // Where the missing pods' cgroups will appear, and (once they have) where their first process makes them populated.
    const missing = new Set(state.pending.map((p) => p.pod));
    this.podWatcher.watch(known.filter((p) => missing.has(p.wanted.name))
      .flatMap((p) => candidatesUnder(this.opts.cgroupRoot, p.wanted.uid, p.wanted.qos).map((c) => join(this.opts.cgroupRoot, c))));
    return state.event;
  }
}
