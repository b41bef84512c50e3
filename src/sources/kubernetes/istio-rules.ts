// Istio's DestinationRules and VirtualServices for the Kubernetes source: whether the cluster serves
// them (discovery, preferred of v1/v1beta1/v1alpha3), their informers while it does, and each
// object's last good policy. A cluster without the CRDs, an agent not allowed to read them, or a
// group that does not answer means no policy objects: never a failure, and looked for again (every
// istioRecheckMs; sooner, with backoff, after an error). Removing the CRDs removes their policies.
import type { KubeConfig } from '@kubernetes/client-node';
import { validateService } from '../../config/validate/index.js';
import { describe } from '../../errors.js';
import type { Logger } from '../../util/log.js';
import { apiRequest, ApiError, ResilientInformer, type InformerEvents, type InformerOptions } from './client.js';
import { problemsOf, type EventReporter } from './events.js';
import type { SourceHealth } from './health.js';
import {
  destinationRulePolicy, hostsOf, ISTIO_GROUP, ISTIO_VERSIONS, pickFor, trimIstio, virtualServicePolicy, type IstioObject, type PolicyFragment,
} from './istio.js';
import { objectName } from './objects.js';

type IstioKind = 'destinationrules' | 'virtualservices';
const ISTIO_KINDS: readonly IstioKind[] = ['destinationrules', 'virtualservices'];

/** A DestinationRule or VirtualService as last read, with the policy it gives (last good). */
interface RuleEntry { obj: IstioObject; hosts: string[]; policy: Record<string, unknown> }

export interface IstioRulesOptions {
  kc: KubeConfig;
  log: Logger;
  health: SourceHealth;
  events: EventReporter;
  /** The source's description (for validation messages). */
  description: string;
  /** Something changed: the state is built again soon. */
  changed(): void;
  /** These Services (name.namespace) may have another policy now. */
  retranslate(names: Iterable<string>): void;
  informer?: InformerOptions;
  recheckMs?: number;
}

export class IstioRules {
  informers: Array<ResilientInformer<IstioObject>> = [];
  private readonly rules: Record<IstioKind, Map<string, RuleEntry>> = { destinationrules: new Map(), virtualservices: new Map() };
  private timer: NodeJS.Timeout | undefined;
  /** The API version read (discovery's preferred one). */
  private version = 'v1';
  /** Why it has none (logged once per reason). */
  private absent = '';
  /** Discoveries in a row that failed (the next one waits longer). */
  private failures = 0;
  private stopped = false;

  constructor(private readonly o: IstioRulesOptions) {}

  start(): void {
    void this.discover();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const i of this.informers) i.stop();
  }

  /** The policy Istio's objects give a Service: its DestinationRule's, then its VirtualService's. */
  policyFor(name: string): Record<string, unknown> | undefined {
    const rule = (kind: IstioKind) => {
      const o = pickFor(name, [...this.rules[kind].values()].filter((r) => r.hosts.includes(name)).map((r) => r.obj));
      return o ? this.rules[kind].get(objectName(o.metadata))!.policy : {};
    };
    const p = { ...rule('destinationrules'), ...rule('virtualservices') };
    return Object.keys(p).length ? p : undefined;
  }

  private recheck(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.discover(), ms);
    this.timer.unref();
  }

  /** Whether the cluster serves Istio's networking API (and in which version): watched when it does. */
  private async discover(): Promise<void> {
    if (this.stopped) return;
    const { log, health } = this.o;
    let version: string | undefined;
    try {
      const { status, body } = await apiRequest(this.o.kc, `/apis/${ISTIO_GROUP}`);
      if (status !== 200 && status !== 404) throw new ApiError(status, `discovery of ${ISTIO_GROUP}: HTTP ${status}`);
      const group = body as { versions?: Array<{ version: string }>; preferredVersion?: { version: string } };
      const served = status === 200 ? (group.versions ?? []).map((v) => v.version) : [];
      const preferred = group.preferredVersion?.version;
      version = preferred && (ISTIO_VERSIONS as readonly string[]).includes(preferred) ? preferred : ISTIO_VERSIONS.find((v) => served.includes(v));
    } catch (err) {
      if (this.stopped) return;
      // Istio's objects are optional: a group that answers 500 (or not at all) must not keep the
      // node from its state. Until it answers, the state has no Istio policy, and it is asked again.
      this.none(`the cluster's ${ISTIO_GROUP} API does not answer (${describe(err)}); looked for again`);
      this.failures++;
      this.recheck(Math.min(this.o.recheckMs ?? 60_000, 1000 * 2 ** Math.min(this.failures, 6)));
      return;
    }
    this.failures = 0;
    if (this.stopped) return;
    for (const kind of ISTIO_KINDS) health.connected(kind);
    if (!version) {
      this.none(`the cluster does not serve ${ISTIO_GROUP} (${ISTIO_VERSIONS.join(', ')})`);
      this.recheck(this.o.recheckMs ?? 60_000);
      return;
    }
    if (this.informers.length) return;
    this.version = version;
    log.info({ group: `${ISTIO_GROUP}/${version}` }, 'reading Istio DestinationRules and VirtualServices');
    this.absent = '';
    for (const kind of ISTIO_KINDS) {
      const events: InformerEvents<IstioObject> = {
        add: (obj) => this.onRule(kind, obj, false),
        update: (obj) => this.onRule(kind, obj, false),
        delete: (obj) => this.onRule(kind, obj, true),
        listed: () => { health.listedNow(kind); this.o.changed(); },
        failed: (err, ms) => this.onFailure(kind, err, ms),
        connected: () => health.connected(kind),
      };
      const informer = new ResilientInformer<IstioObject>(this.o.kc, `/apis/${ISTIO_GROUP}/${version}/${kind}`, {}, trimIstio, events, this.o.informer);
      this.informers.push(informer);
      informer.start();
    }
  }

  private onFailure(kind: IstioKind, err: unknown, ms: number): void {
    const code = (err as { statusCode?: number }).statusCode;
    if (code === 404 || code === 403) {
      // The CRDs were removed, or reading them is not allowed: no policy objects.
      this.none(code === 404 ? `${ISTIO_GROUP} ${kind} are no longer served` : `not allowed to list ${ISTIO_GROUP} ${kind} (grant get/list/watch, see deploy/rbac.yaml)`);
      this.recheck(this.o.recheckMs ?? 60_000);
    } else if (!this.o.health.hasListed(kind)) {
      // Never listed yet: the state goes on without this kind's policies (it retries).
      this.o.log.warn({ resource: kind, error: describe(err), retryInMs: ms }, 'cannot list Istio objects yet; the state applies without their policies until they are');
      this.o.health.listedNow(kind);
      this.o.changed();
    } else this.o.health.failed(kind, err, ms);
  }

  /** No Istio policy objects (the CRDs are not there, or not readable): their policies leave, the state is complete without them. */
  private none(why: string): void {
    for (const i of this.informers) i.stop();
    this.informers = [];
    if (why !== this.absent) this.o.log.info({ why }, 'no Istio traffic policy objects');
    this.absent = why;
    for (const kind of ISTIO_KINDS) {
      const hosts = [...this.rules[kind].values()].flatMap((r) => r.hosts);
      this.rules[kind].clear();
      this.o.retranslate(hosts);
      this.o.health.listedNow(kind);
      this.o.health.connected(kind);
    }
    this.o.changed();
  }

  /** A DestinationRule or VirtualService: checked on its own (a bad one is reported on it and keeps
   * its last good policy), then the Services it names (before and after) are translated again. */
  private onRule(kind: IstioKind, obj: IstioObject, deleted: boolean): void {
    const key = objectName(obj.metadata);
    const rules = this.rules[kind];
    const affected = rules.get(key)?.hosts ?? [];
    if (deleted) rules.delete(key);
    else {
      const frag: PolicyFragment = kind === 'destinationrules' ? destinationRulePolicy(obj) : virtualServicePolicy(obj);
      const ref = { kind: kind === 'destinationrules' ? 'DestinationRule' : 'VirtualService', apiVersion: `${ISTIO_GROUP}/${this.version}`, metadata: obj.metadata };
      try {
        // Checked as a service's policy block: problems are named policy.<field>, under Istio's names.
        validateService({ name: key, addresses: [], ports: [1], policy: frag.policy }, '', this.o.description);
        rules.set(key, { obj, hosts: hostsOf(kind, obj), policy: frag.policy });
        if (frag.ignored.length) this.o.events.report(ref, frag.ignored.map((field) => ({ field, message: 'not enforced by sockmesh' })), 'SockmeshIgnoredFields', `sockmesh applies this ${ref.kind}'s policy but not`);
      } catch (e) {
        this.o.events.report(ref, problemsOf(e), 'SockmeshInvalidPolicy');
      }
    }
    this.o.retranslate([...affected, ...(rules.get(key)?.hosts ?? [])]);
    this.o.changed();
  }
}
