// The pod's identity for the governance sidecar: its certificate chain, key and the mesh's trust
// bundle from the agent (`identity` over the control socket: answered for the caller's own pod
// only, at once when it lacks the current certificate, else when the agent renews it). Kept in
// the sidecar's run directory for HAProxy, 0600 and owned by the sidecar's uid; a renewed
// certificate goes into the running HAProxy through its runtime API (`set ssl cert` + `commit`:
// new handshakes use it, nothing reloads), a new trust bundle by a reload.
import { chownSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe } from '../errors.js';

export interface PodIdentity {
  spiffeId: string;
  serial: string;
  notAfter: string;
  certChain: string;
  key: string;
  roots: string;
}

export interface IdentityFollowOptions {
  agentSocket: string;
  runDir: string;
  /** Owner of the files (the uid HAProxy's workers run as), when the sidecar runs as root. */
  owner?: { uid: number; gid: number };
  emit: (event: Record<string, unknown>) => void;
}

type Answer = Omit<PodIdentity, 'certChain' | 'key' | 'roots'> & Partial<PodIdentity>;

export class IdentityFollower {
  current: PodIdentity | undefined;
  private stopped = false;
  private following = false;
  readonly certFile: string;
  readonly rootsFile: string;

  constructor(private readonly opts: IdentityFollowOptions) {
    this.certFile = join(opts.runDir, 'pod.pem');
    this.rootsFile = join(opts.runDir, 'roots.pem');
  }

  /** The identity now (asked once, at once); throws when the agent will not give one. */
  async first(): Promise<PodIdentity> {
    if (this.current) return this.current;
    const r = await this.ask('', 10_000);
    if (!r.certChain || !r.key || !r.roots) throw new Error('the agent answered without a certificate');
    this.store(r as PodIdentity);
    return this.current!;
  }

  /** Follows renewals; `renewed` installs each new one (and says whether the trust bundle changed). */
  follow(renewed: (id: PodIdentity, rootsChanged: boolean) => Promise<void>): void {
    if (this.following) return;
    this.following = true;
    void (async () => {
      let failures = 0;
      while (!this.stopped) {
        try {
          const r = await this.ask(this.current?.serial ?? '', 40_000);
          if (this.stopped || !r.certChain || !r.key || !r.roots || r.serial === this.current?.serial) continue;
          const rootsChanged = this.current?.roots !== r.roots;
          this.store(r as PodIdentity);
          await renewed(this.current!, rootsChanged);
          this.opts.emit({ event: 'identity', spiffeId: r.spiffeId, serial: r.serial, notAfter: r.notAfter, rootsChanged });
          failures = 0;
        } catch (err) {
          if (this.stopped) return;
          this.opts.emit({ event: 'identity-error', error: describe(err) });
          // 1 s, doubling to 30 s: a CA that cannot issue is not asked by every sidecar every second.
          await new Promise((res) => setTimeout(res, Math.min(30_000, 1000 * 2 ** Math.min(failures++, 5))));
        }
      }
    })();
  }

  stop(): void {
    this.stopped = true;
  }

  private async ask(have: string, timeoutMs: number): Promise<Answer> {
    const { request } = await import('../control/client.js');
    return await request(this.opts.agentSocket, { op: 'identity', have }, timeoutMs) as Answer;
  }

  /** Writes the files HAProxy reads at a (re)load: the key only ever to a 0600 file of the sidecar's. */
  private store(id: PodIdentity): void {
    this.current = id;
    this.write(this.certFile, `${id.certChain}${id.key}`);
    this.write(this.rootsFile, id.roots);
  }

  private write(path: string, text: string): void {
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, text, { mode: 0o600 });
    if (this.opts.owner) chownSync(tmp, this.opts.owner.uid, this.opts.owner.gid);
    renameSync(tmp, path);
  }
}
