// Where the governance sidecar's policy versions come from: the agent's (a long poll on its
// control socket: it answers when its version differs from the one this sidecar has, or after a
// while), and the policy file while no agent serves one. Versions are applied one after another;
// a refused agent version is not asked for again.
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { loadConfig } from '../config/load.js';
import type { MeshConfig } from '../config/model.js';
import type { WorkloadPolicy } from '../config/workload.js';

export interface PolicyFollowOptions {
  configPath: string;
  agentSocket?: string;
  sidecarId?: string;
  pollMs?: number;
  emit: (event: Record<string, unknown>) => void;
}

export interface PolicyTarget {
  /** Applies a version (checked first); false when it was refused and the running one stays.
   * `workload`: the pod's security policy, from an agent that knows the sidecar's pod. */
  apply(cfg: MeshConfig, text: string, from: 'file' | 'agent', workload?: WorkloadPolicy): Promise<boolean>;
  /** The version running now, and the policy file's text it came from ('' after an agent's). */
  version(): number;
  lastGood(): string;
}

export class PolicyFollower {
  /** Policy versions are applied one after another. */
  private applying: Promise<unknown> = Promise.resolve();
  /** The agent's policy version last applied (0: none yet, the file's policy runs). */
  private agentVersion = 0;
  /** The agent's version this sidecar refused (0: none), so its long poll waits for a newer one. */
  private refusedAgent = 0;
  /** The agent run (epoch) those versions are of: a new agent numbers from 1 again. */
  private epoch: string | undefined;
  private stopped = false;

  constructor(private readonly opts: PolicyFollowOptions, private readonly target: PolicyTarget) {}

  start(): void {
    watchFile(this.opts.configPath, { interval: this.opts.pollMs ?? 200 }, () => {
      // While an agent serves the policy, its versions win over the file's.
      if (this.agentVersion) return;
      this.applying = this.applying.then(() => this.fromFile());
    });
    if (this.opts.agentSocket) void this.followAgent(this.opts.agentSocket);
  }

  stop(): void {
    this.stopped = true;
    unwatchFile(this.opts.configPath);
  }

  /** A new version of the policy file (read once it has stopped changing). */
  private async fromFile(): Promise<void> {
    let text: string;
    let cfg: MeshConfig;
    try {
      text = await settledText(this.opts.configPath);
      if (text === this.target.lastGood()) return;
      cfg = loadConfig(this.opts.configPath);
    } catch (err) {
      this.opts.emit({ event: 'policy-refused', version: this.target.version(), error: (err as Error).message });
      return;
    }
    await this.target.apply(cfg, text, 'file');
  }

  /**
   * The agent's policy versions, by long poll on its control socket (it answers when its version
   * differs from the one this sidecar has, or after a while): each new one is applied. While the
   * agent is away the last good version keeps serving; the sidecar tries again every second.
   */
  private async followAgent(socket: string): Promise<void> {
    const { request } = await import('../control/client.js');
    let away = false;
    while (!this.stopped) {
      try {
        const sidecar = { id: this.opts.sidecarId ?? String(process.pid), version: this.target.version(), ...(this.refusedAgent ? { refused: this.refusedAgent } : {}) };
        const r = await request(socket, { op: 'policy', have: this.agentVersion, sidecar, ...(this.epoch ? { epoch: this.epoch } : {}) }, 40_000) as
          { version: number; epoch?: string; config?: MeshConfig; workload?: WorkloadPolicy };
        if (away) this.opts.emit({ event: 'agent', reachable: true });
        away = false;
        if (r.epoch !== this.epoch) {
          // Another agent run: its versions are new whatever their numbers.
          this.epoch = r.epoch;
          this.agentVersion = 0;
          this.refusedAgent = 0;
        }
        if (r.config && r.version !== this.agentVersion && r.version !== this.refusedAgent) {
          const run = this.applying.then(() => this.target.apply(r.config!, `agent version ${r.version}`, 'agent', r.workload));
          this.applying = run;
          const ok = await run;
          // A refused version is not asked for again (the agent answers with the next one).
          if (ok) this.agentVersion = r.version;
          this.refusedAgent = ok ? 0 : r.version;
        }
      } catch (err) {
        if (this.stopped) return;
        if (!away) this.opts.emit({ event: 'agent', reachable: false, error: (err as Error).message });
        away = true;
        await new Promise((res) => setTimeout(res, 1000));
      }
    }
  }
}

/**
 * The file's text once a write has finished: a file written in place (truncated, then written, as
 * `cat >` or most scripts do) reads empty or cut short in between, which is not a version to refuse.
 * Two reads 100 ms apart must agree and not be empty; after 2 s the last read is what the file says.
 */
async function settledText(path: string): Promise<string> {
  let text = readFileSync(path, 'utf8');
  for (let i = 0; i < 20; i++) {
    await new Promise((res) => setTimeout(res, 100));
    const again = readFileSync(path, 'utf8');
    if (again === text && text.trim() !== '') return text;
    text = again;
  }
  return text;
}
