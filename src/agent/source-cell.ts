// The agent's control-plane source: the config file, or the Kubernetes API (with the file's
// node-wide settings). Its start gives the first state; from follow() on, every event goes to the
// applier. Kubernetes events that come while the agent starts are held, the latest config kept.
// It also keeps whether the source is stale (missing, rejected, unreachable): the last good state
// stays applied meanwhile, and /readyz says so.
import { requireNodeBpffs } from '../bpf/bpffs.js';
import type { ParseCaches } from '../config/load.js';
import { Codes, SockmeshError } from '../errors.js';
import { readRecord } from '../instance/record.js';
import { FileSource, readSource } from '../sources/file.js';
import { nodeSettings } from '../sources/node-settings.js';
import type { Source, SourceEvent } from '../sources/source.js';
import type { Logger } from '../util/log.js';
import type { Cell } from './cell.js';
import type { AgentOptions } from './options.js';
import type { AgentMetrics } from './metrics.js';

export type StaleEvent = Exclude<SourceEvent, { kind: 'config' | 'fresh' }>;

export class AgentSource implements Cell {
  readonly name = 'source';
  /** The first state, once start() is over. */
  first: SourceEvent | undefined;
  private source: Source | undefined;
  /** When the Kubernetes source started (ms since the epoch), for the log lines of the start. */
  startedAt = 0;
  private held: { holding: boolean; config?: SourceEvent } = { holding: false };
  private handler: ((e: SourceEvent) => void) | undefined;
  state: { stale: boolean; message?: string } = { stale: false };

  constructor(private readonly opts: AgentOptions, private readonly log: Logger, private readonly metrics: AgentMetrics, private readonly caches: ParseCaches) {}

  /** What the record and status name as the source. */
  get description(): string {
    return this.source?.description ?? this.opts.configPath ?? 'kubernetes';
  }

  async start(): Promise<void> {
    this.first = this.opts.kubernetes ? await this.startKubernetes() : readSource(this.opts.configPath!, this.caches);
    if (this.first.kind === 'fresh') throw new SockmeshError(Codes.INTERNAL, 'a source began with no state');
  }

  /** From now on, events go to the handler: the file is watched; held Kubernetes events are let go. */
  follow(handler: (e: SourceEvent) => void): void {
    this.handler = handler;
    if (!this.source) {
      const file = new FileSource(this.opts.configPath!, handler, {}, this.caches);
      this.source = file;
      file.start();
    }
    const held = this.held.config;
    this.held = { holding: false };
    if (held && held !== this.first) handler(held);
  }

  /** Looks for the source's missing pods now (the cluster's pods are found by the source). */
  lookAgain(): void {
    this.source?.lookAgain?.();
  }

  noteStale(e: StaleEvent): void {
    this.state = { stale: true, message: e.message };
    this.metrics.sourceStale.set(1);
    if (e.kind === 'rejected') {
      this.metrics.rejections.inc();
      this.log.error({ source: e.source, issues: e.issues }, 'config rejected; the last good state stays applied');
    } else {
      this.log.warn({ source: e.source }, e.message);
    }
  }

  noteCurrent(): void {
    this.state = { stale: false };
    this.metrics.sourceStale.set(0);
  }

  stop(): void {
    this.source?.stop();
  }

  /**
   * Starts the Kubernetes source and waits for its first complete state (all three collections
   * listed). A restart whose API server does not answer within firstSyncMs goes on with the state
   * the kernel holds (the record's) and applies the cluster's once it comes.
   */
  private async startKubernetes(): Promise<SourceEvent> {
    const k = this.opts.kubernetes!;
    const { log } = this;
    const [{ KubernetesSource }, { loadKubeConfig }] = await Promise.all([import('../sources/kubernetes/source.js'), import('../sources/kubernetes/client.js')]);
    const base = nodeSettings(this.opts.configPath, this.caches);
    requireNodeBpffs();
    const kc = loadKubeConfig(k.kubeconfig);
    let firstConfig: (e: SourceEvent) => void = () => undefined;
    const synced = new Promise<SourceEvent>((resolve) => { firstConfig = resolve; });
    this.held = { holding: true };
    const source = new KubernetesSource({
      kc, node: k.node, cgroupRoot: this.opts.cgroup, procRoot: k.procRoot, base, log,
      onEvent: (e) => {
        if (!this.held.holding) {
          this.handler?.(e);
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
    this.startedAt = t0;
    source.start();
    const waitMs = readRecord(this.opts.instance) ? k.firstSyncMs ?? 10_000 : Infinity;
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
}
