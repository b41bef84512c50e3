// The policy the node's governance sidecars follow: a version per applied change of the services
// (or of the sidecar identity), handed out by long poll over the control socket. A sidecar asks
// with the version it runs (and the one it refused, if HAProxy would not take it); it is answered
// at once when there is a newer one, else when the next one comes, or after 30 s with none. A
// sidecar in a meshed pod also gets its workload's security policy (its identity, inbound mTLS
// modes, authorization, and the meshed workloads it may call with mTLS): computed for the pod the
// caller is in, so a version also changes when the mesh's security or its pods do.
import { randomUUID } from 'node:crypto';
import type { MeshConfig } from '../config/model.js';
import { workloadPolicy, type LocalWorkload, type WorkloadPolicy } from '../config/workload.js';
import type { ControlRequest } from '../control/protocol.js';
import type { Logger } from '../util/log.js';
import type { Cell } from './cell.js';

/** A governance sidecar as its last long poll described it: the agent version it runs, and the one it refused (if the newest). */
export interface SidecarSeen { id: string; version: number; agentVersion: number; refused?: number; seenAt: string }

const POLL_MS = 30_000;
/** A live sidecar asks at least every 30 s; one not heard from for two minutes is forgotten. */
const FORGET_MS = 120_000;

export class PolicyFeed implements Cell {
  readonly name = 'policy feed';
  private policy: { version: number; key: string; config?: MeshConfig; local: LocalWorkload[] } = { version: 0, key: '', local: [] };
  private waiters: Array<() => void> = [];
  private readonly sidecars = new Map<string, SidecarSeen>();
  private stopped = false;
  /** This agent's run: versions restart at 1 with the next agent, so a sidecar's version is (epoch, number). */
  readonly epoch = randomUUID();

  constructor(private readonly log: Logger) {}

  get version(): number {
    return this.policy.version;
  }

  /** A new version when the services, the sidecar identity, the mesh's security, its tracing or its meshed pods changed. */
  publish(config: MeshConfig, local: LocalWorkload[] = []): void {
    const key = JSON.stringify([config.sidecar, config.services, config.identity, config.peerAuthentications, config.authorizationPolicies, config.peers, config.tracing, local]);
    if (key === this.policy.key) return;
    this.policy = { version: this.policy.version + 1, key, config: { ...config, pods: [] }, local };
    this.log.info({ version: this.policy.version }, 'policy version for the governance sidecars');
    this.wakeAll();
  }

  /** A sidecar's long poll (`podOf`: the meshed pod it runs in, if any, looked up when answering: the pods may be meshed while it waits). */
  async poll(req: Extract<ControlRequest, { op: 'policy' }>, podOf: () => string | undefined = () => undefined): Promise<{ version: number; epoch: string; config?: MeshConfig; workload?: WorkloadPolicy }> {
    const { refused } = req.sidecar;
    this.sidecars.set(req.sidecar.id, { id: req.sidecar.id, version: req.sidecar.version, agentVersion: req.have, ...(refused !== undefined ? { refused } : {}), seenAt: new Date().toISOString() });
    // It has this version, or refused it (HAProxy would not take it): it waits for the next one. A
    // version of another agent's run (or none said) is not this one, whatever its number.
    const current = () => req.epoch === this.epoch && (this.policy.version === req.have || this.policy.version === refused);
    if (!this.stopped && (this.policy.version === 0 || current())) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== wake);
          resolve();
        }, POLL_MS);
        const wake = () => { clearTimeout(timer); resolve(); };
        this.waiters.push(wake);
      });
    }
    const { config, local, version } = this.policy;
    const epoch = this.epoch;
    if (current() || !config) return { version, epoch };
    const pod = podOf();
    const me = pod === undefined ? undefined : local.find((w) => w.name === pod);
    return { version, epoch, config, ...(me ? { workload: workloadPolicy(config, local, me) } : {}) };
  }

  /** The sidecars heard from lately. */
  live(): SidecarSeen[] {
    const since = Date.now() - FORGET_MS;
    for (const [id, s] of this.sidecars) if (Date.parse(s.seenAt) < since) this.sidecars.delete(id);
    return [...this.sidecars.values()];
  }

  /** The waiting polls are answered now (the sidecars keep their version and ask again). */
  stop(): void {
    this.stopped = true;
    this.wakeAll();
  }

  private wakeAll(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }
}
