// The policy the node's governance sidecars follow: a version per applied change of the services
// (or of the sidecar identity), handed out by long poll over the control socket. A sidecar asks
// with the version it runs (and the one it refused, if HAProxy would not take it); it is answered
// at once when there is a newer one, else when the next one comes, or after 30 s with none.
import type { MeshConfig } from '../config/model.js';
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
  private policy: { version: number; key: string; config?: MeshConfig } = { version: 0, key: '' };
  private waiters: Array<() => void> = [];
  private readonly sidecars = new Map<string, SidecarSeen>();
  private stopped = false;

  constructor(private readonly log: Logger) {}

  get version(): number {
    return this.policy.version;
  }

  /** A new version when the services (or the sidecar identity) changed. */
  publish(config: MeshConfig): void {
    const key = JSON.stringify([config.sidecar, config.services]);
    if (key === this.policy.key) return;
    this.policy = { version: this.policy.version + 1, key, config: { ...config, pods: [] } };
    this.log.info({ version: this.policy.version }, 'policy version for the governance sidecars');
    this.wakeAll();
  }

  /** A sidecar's long poll. */
  async poll(req: Extract<ControlRequest, { op: 'policy' }>): Promise<{ version: number; config?: MeshConfig }> {
    const { refused } = req.sidecar;
    this.sidecars.set(req.sidecar.id, { id: req.sidecar.id, version: req.sidecar.version, agentVersion: req.have, ...(refused !== undefined ? { refused } : {}), seenAt: new Date().toISOString() });
    // It has this version, or refused it (HAProxy would not take it): it waits for the next one.
    const current = () => this.policy.version === req.have || this.policy.version === refused;
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
    return !current() && this.policy.config ? { version: this.policy.version, config: this.policy.config } : { version: this.policy.version };
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
