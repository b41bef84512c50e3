// The node agent: one per node, every pod of the node. Wiring only: its parts (cell.ts) are started
// in order and stopped in reverse, and none knows the capture mode but the instance the applier
// drives. It holds the instance lock for its whole life, so no `sockmesh up`/`down` can change the
// instance under it.
//
// Data flow: source (file or cluster) -> validated config -> overrides -> instance (pods found on
// the node -> desired state -> kernel) -> record, policy version for the sidecars, metrics. What
// can fail without touching the kernel starts first: the lock, the control socket and the listen
// address are taken before any program is loaded or attached.
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { newParseCaches } from '../config/load.js';
import { identifyCaller } from '../control/peer.js';
import { socketPath } from '../control/protocol.js';
import { ControlServer } from '../control/server.js';
import { Codes, SockmeshError, UserError, describe } from '../errors.js';
import { down } from '../instance/lifecycle.js';
import { acquireInstanceLock, type InstanceLock } from '../instance/lock.js';
import { OverrideStore } from '../instance/overrides.js';
import { recordPath } from '../instance/record.js';
import { requireRoot } from '../util/root.js';
import { VERSION } from '../version.js';
import { Applier } from './applier.js';
import { caStoreFor } from './ca-store.js';
import { Cells, type Cell } from './cell.js';
import { controlHandler } from './control.js';
import { HttpServer } from './http.js';
import { PodIdentities } from './identities.js';
import { AgentMetrics } from './metrics.js';
import type { AgentOptions } from './options.js';
import { PodWatch } from './pod-watch.js';
import { PolicyFeed } from './policy-feed.js';
import { RecordWriter } from './record-writer.js';
import { AgentSource } from './source-cell.js';

export type { AgentOptions, KubernetesOptions } from './options.js';

/** The instance lock, held from the first step to the last. */
class LockCell implements Cell {
  readonly name = 'instance lock';
  private lock: InstanceLock | undefined;

  constructor(private readonly opts: AgentOptions) {}

  async start(): Promise<void> {
    const { instance } = this.opts;
    try {
      this.lock = await acquireInstanceLock(instance, { timeoutMs: this.opts.lockTimeoutMs ?? 2000 });
    } catch (e) {
      if (e instanceof SockmeshError && e.code === Codes.INSTANCE_BUSY) {
        throw new UserError(Codes.INSTANCE_BUSY, `instance "${instance}" is held by another sockmesh agent or command; one agent per instance`);
      }
      throw e;
    }
  }

  stop(): void {
    // An agent that stopped before making its instance (refused at start) leaves no lock file.
    this.lock?.release(!existsSync(recordPath(this.opts.instance)));
    this.lock = undefined;
  }
}

export class NodeAgent {
  readonly metrics: AgentMetrics;
  private readonly http: HttpServer;
  private readonly applier: Applier;
  private readonly source: AgentSource;
  private readonly cells: Cells;

  constructor(readonly opts: AgentOptions) {
    const { instance, log } = opts;
    const overrides = OverrideStore.forInstance(instance);
    const records = new RecordWriter();
    const policy = new PolicyFeed(log);
    this.metrics = new AgentMetrics(VERSION, {
      maps: () => this.applier.instance?.kernel.maps(),
      names: () => this.applier.instance?.kernel.names() ?? { pods: new Map(), services: new Map() },
      entries: () => this.applier.instance?.kernel.entries(),
    });
    const identities = new PodIdentities(log, this.metrics, opts.kubernetes?.node ?? hostname(), (identity) => caStoreFor(identity, log, opts.kubernetes));
    this.source = new AgentSource(opts, log, this.metrics, newParseCaches());
    const pods = new PodWatch(instance, opts.cgroup, opts.kubernetes !== undefined, {
      meshedPodOf: (caller) => this.applier.instance?.meshedPodOf(caller),
      problems: () => this.applier.unresolved(),
      lookForPods: (reason) => this.applier.lookForPods(reason),
    });
    this.applier = new Applier(opts, log, { source: this.source, overrides, policy, identities, records, pods, metrics: this.metrics });
    const control = new ControlServer(socketPath(instance),
      controlHandler({ instance, applier: this.applier, source: this.source, overrides, policy, identities, pods, records }),
      (fd) => identifyCaller(fd, opts.kubernetes?.procRoot));
    const ready = () => (!this.applier.ready ? { ready: false, why: 'no desired state applied yet' }
      : this.source.state.stale ? { ready: false, why: `the config source is stale (${this.source.state.message ?? 'unknown'}); the last good state stays applied` } : { ready: true });
    this.metrics.follow({ ready: () => ready().ready, sidecarsRefusing: () => policy.live().filter((s) => s.refused !== undefined).length });
    this.http = new HttpServer(opts.listen, {
      metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.text() }),
      ready,
    });
    this.cells = new Cells([
      new LockCell(opts),
      records,
      { name: 'control socket', start: () => control.start(), stop: () => control.stop() },
      this.http,
      policy,
      identities,
      pods,
      this.source,
      this.applier,
    ], (cell, error) => log.error({ cell, error: describe(error) }, 'a part of the agent did not stop cleanly'));
  }

  get httpPort(): number {
    return this.http.port;
  }

  /** Brings the data path up (or adopts it) on the first good config, then serves. */
  async start(): Promise<void> {
    requireRoot();
    try {
      await this.cells.start();
    } catch (err) {
      // A start that made the data path and then failed leaves nothing behind: the pods were
      // never served by this agent, and capture to sidecars nobody configured would be worse.
      if (this.applier.createdNow) await down(this.opts.instance).catch((e) => this.opts.log.error({ error: describe(e) }, 'cannot remove the data path this failed start made'));
      throw err;
    }
    this.opts.log.info({
      instance: this.opts.instance, source: this.source.description, socket: socketPath(this.opts.instance), listen: this.http.address,
      ...(this.source.startedAt ? { sinceSourceStartMs: Date.now() - this.source.startedAt } : {}),
    }, 'agent ready');
  }

  /** Stops serving, in reverse order. The data path stays (pins and attachments) unless --cleanup-on-exit. */
  async stop(): Promise<void> {
    const wasReady = this.applier.ready;
    await this.cells.stop();
    if (this.opts.cleanupOnExit && wasReady) {
      const r = await down(this.opts.instance);
      this.opts.log.info({ detached: r.detached, pinsRemoved: r.pinsRemoved }, 'removed the data path (--cleanup-on-exit)');
    }
  }
}
