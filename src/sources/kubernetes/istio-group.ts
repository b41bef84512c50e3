// One of Istio's API groups for the Kubernetes source (networking.istio.io for traffic policy,
// security.istio.io for mTLS and authorization): whether the cluster serves it (discovery, the
// preferred of the versions sockmesh reads), an informer per kind while it does. A cluster without
// the CRDs, an agent not allowed to read them, or a group that does not answer means no objects of
// the group: never a failure, and looked for again (every recheckMs; sooner, with backoff, after an
// error). Removing the CRDs removes their objects.
import type { KubeConfig } from '@kubernetes/client-node';
import { describe } from '../../errors.js';
import type { Logger } from '../../util/log.js';
import { apiRequest, ApiError, ResilientInformer, type InformerEvents, type InformerOptions } from './client.js';
import type { Kind, SourceHealth } from './health.js';
import { trimIstio, type IstioObject } from './istio.js';

export interface IstioGroupOptions {
  kc: KubeConfig;
  log: Logger;
  health: SourceHealth;
  informer?: InformerOptions;
  recheckMs?: number;
  /** Something changed: the state is built again soon. */
  changed(): void;
}

export interface IstioGroupSpec<K extends Kind> {
  group: string;
  /** The versions read (the fields used are the same in each), newest first. */
  versions: readonly string[];
  kinds: readonly K[];
  /** What the objects are, for the log ("Istio traffic policy objects"). */
  what: string;
  /**
   * Security objects: only a group the cluster does not serve (404) means none. An error, or not
   * being allowed to read them (403), keeps the objects last read and the source stale (never a
   * first state without them: a restarting agent keeps what it applied), so that a flaky API
   * server never turns STRICT into PERMISSIVE or drops a DENY.
   */
  keepOnError?: boolean;
  /** An object added, changed or deleted (apiVersion: the version read). */
  object(kind: K, obj: IstioObject, deleted: boolean, apiVersion: string): void;
  /** The group is gone (or never was): every object of it leaves. */
  none(): void;
}

export class IstioGroupWatch<K extends Kind> {
  informers: Array<ResilientInformer<IstioObject>> = [];
  private timer: NodeJS.Timeout | undefined;
  /** Why it has none (logged once per reason). */
  private absent = '';
  /** Discoveries in a row that failed (the next one waits longer). */
  private failures = 0;
  private stopped = false;
  /** keepOnError: the kinds reported failing since they last answered, and the last reason logged. */
  private readonly kept = new Set<K>();
  private keptWhy = '';

  constructor(private readonly o: IstioGroupOptions, private readonly spec: IstioGroupSpec<K>) {}

  start(): void {
    void this.discover();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const i of this.informers) i.stop();
  }

  private recheck(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.discover(), ms);
    this.timer.unref();
  }

  /** Whether the cluster serves the group (and in which version): watched when it does. */
  private async discover(): Promise<void> {
    if (this.stopped) return;
    const { log, health } = this.o;
    const { group, versions, kinds } = this.spec;
    let version: string | undefined;
    try {
      const { status, body } = await apiRequest(this.o.kc, `/apis/${group}`);
      if (status !== 200 && status !== 404) throw new ApiError(status, `discovery of ${group}: HTTP ${status}`);
      const g = body as { versions?: Array<{ version: string }>; preferredVersion?: { version: string } };
      const served = status === 200 ? (g.versions ?? []).map((v) => v.version) : [];
      const preferred = g.preferredVersion?.version;
      version = preferred && versions.includes(preferred) ? preferred : versions.find((v) => served.includes(v));
    } catch (err) {
      if (this.stopped) return;
      this.failures++;
      if (this.spec.keepOnError) {
        this.keep(err);
        this.recheck(Math.min(this.o.recheckMs ?? 60_000, 1000 * 2 ** Math.min(this.failures, 6)));
        return;
      }
      // Istio's traffic objects are optional: a group that answers 500 (or not at all) must not keep
      // the node from its state. Until it answers, the state has none of them, and it is asked again.
      this.none(`the cluster's ${group} API does not answer (${describe(err)}); looked for again`);
      this.recheck(Math.min(this.o.recheckMs ?? 60_000, 1000 * 2 ** Math.min(this.failures, 6)));
      return;
    }
    this.failures = 0;
    if (this.stopped) return;
    for (const kind of kinds) health.connected(kind);
    this.kept.clear();
    this.keptWhy = '';
    if (!version) {
      this.none(`the cluster does not serve ${group} (${versions.join(', ')})`);
      this.recheck(this.o.recheckMs ?? 60_000);
      return;
    }
    if (this.informers.length) return;
    log.info({ group: `${group}/${version}` }, `reading ${this.spec.what}`);
    this.absent = '';
    const apiVersion = `${group}/${version}`;
    for (const kind of kinds) {
      const events: InformerEvents<IstioObject> = {
        add: (obj) => this.spec.object(kind, obj, false, apiVersion),
        update: (obj) => this.spec.object(kind, obj, false, apiVersion),
        delete: (obj) => this.spec.object(kind, obj, true, apiVersion),
        listed: () => { health.listedNow(kind); this.o.changed(); },
        failed: (err, ms) => this.onFailure(kind, err, ms),
        connected: () => { this.kept.delete(kind); health.connected(kind); },
      };
      const informer = new ResilientInformer<IstioObject>(this.o.kc, `/apis/${apiVersion}/${kind}`, {}, trimIstio, events, this.o.informer);
      this.informers.push(informer);
      informer.start();
    }
  }

  /** keepOnError: the objects last read stay; the source is stale (or, before the first list, not complete). */
  private keep(err: unknown, kinds: readonly K[] = this.spec.kinds, ms = 0): void {
    const why = describe(err);
    for (const kind of kinds) {
      // Said once per outage and kind (the informers retry on their own, discovery every recheck).
      if (this.o.health.hasListed(kind) && !this.kept.has(kind)) this.o.health.failed(kind, err, ms);
      this.kept.add(kind);
    }
    if (why !== this.keptWhy) this.o.log.warn({ group: this.spec.group, error: why }, `cannot read ${this.spec.what}: the last ones read stay (none yet: the state waits for them)`);
    this.keptWhy = why;
  }

  private onFailure(kind: K, err: unknown, ms: number): void {
    const code = (err as { statusCode?: number }).statusCode;
    if (this.spec.keepOnError && code !== 404) {
      this.keep(err, [kind], ms);
      return;
    }
    if (code === 404 || code === 403) {
      // The CRDs were removed, or reading them is not allowed: no objects of the group.
      this.none(code === 404 ? `${this.spec.group} ${kind} are no longer served` : `not allowed to list ${this.spec.group} ${kind} (grant get/list/watch, see deploy/rbac.yaml)`);
      this.recheck(this.o.recheckMs ?? 60_000);
    } else if (!this.o.health.hasListed(kind)) {
      // Never listed yet: the state goes on without this kind's objects (it retries).
      this.o.log.warn({ resource: kind, error: describe(err), retryInMs: ms }, `cannot list ${this.spec.what} yet; the state applies without them until they are`);
      this.o.health.listedNow(kind);
      this.o.changed();
    } else this.o.health.failed(kind, err, ms);
  }

  /** None of the group's objects (the CRDs are not there, or not readable): they leave, the state is complete without them. */
  private none(why: string): void {
    for (const i of this.informers) i.stop();
    this.informers = [];
    if (why !== this.absent) this.o.log.info({ why }, `no ${this.spec.what}`);
    this.absent = why;
    this.spec.none();
    for (const kind of this.spec.kinds) {
      this.o.health.listedNow(kind);
      this.o.health.connected(kind);
    }
    this.o.changed();
  }
}

/** What reads one of Istio's groups: its watch's informers (the health probe drives them), started and stopped with the source. */
export abstract class IstioGroupReader<K extends Kind> {
  protected abstract readonly watch: IstioGroupWatch<K>;

  get informers(): Array<ResilientInformer<IstioObject>> {
    return this.watch.informers;
  }

  start(): void {
    this.watch.start();
  }

  stop(): void {
    this.watch.stop();
  }
}
