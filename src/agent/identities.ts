// Each meshed pod's workload identity: a short-lived certificate from the mesh CA (src/identity),
// issued when the pod's sidecar first asks for it over the control socket, renewed at half of its
// life, and handed to that sidecar only (the control handler checks who asks). The key lives in
// this process's memory and in the answer to the pod's own sidecar: never in logs, status,
// metrics or records. The CA is loaded on the first request, so a node without sidecars that
// speak mTLS never makes or reads one.
import type { IdentityConfig, MeshConfig } from '../config/model.js';
import { dnsIdOf, spiffeIdOf } from '../config/mesh-policy.js';
import { Codes, describe, UserError } from '../errors.js';
import { MeshCA, type CaStore, type PodCertificate } from '../identity/ca.js';
import type { Logger } from '../util/log.js';
import type { Cell } from './cell.js';
import type { AgentMetrics } from './metrics.js';

/** What the pod's sidecar gets: its certificate chain and key, and the trust bundle. */
export interface IdentityAnswer {
  spiffeId: string;
  serial: string;
  notAfter: string;
  /** Absent when the caller already holds this serial (the long poll ran out). */
  certChain?: string;
  key?: string;
  roots?: string;
}

/** A pod's certificate as status shows it (never the key). */
export interface IdentitySeen { pod: string; spiffeId: string; serial: string; notBefore: string; notAfter: string }

interface Held { spiffeId: string; dnsId: string; cert: PodCertificate; timer: NodeJS.Timeout }

const POLL_MS = 30_000;

export class PodIdentities implements Cell {
  readonly name = 'pod identities';
  private ca: MeshCA | undefined;
  private caKey = '';
  private identity: IdentityConfig | undefined;
  /** The listed pods' identities (namespace/service account), by pod name. */
  private workloads = new Map<string, { namespace: string; serviceAccount: string; sidecarUid: number }>();
  private readonly held = new Map<string, Held>();
  private waiters: Array<() => void> = [];
  private stopped = false;

  constructor(private readonly log: Logger, private readonly metrics: AgentMetrics, private readonly node: string,
    private readonly storeFor: (identity: IdentityConfig) => CaStore) {}

  /** After each apply: the pods' identities as configured; a pod gone, or whose identity changed, loses its certificate. */
  configure(cfg: MeshConfig): void {
    const key = JSON.stringify(cfg.identity);
    if (key !== this.caKey) {
      // Another trust domain or CA: everything is issued again, from the new CA.
      this.caKey = key;
      this.ca = undefined;
      this.dropAll();
    }
    this.identity = cfg.identity;
    this.workloads = new Map(cfg.pods.map((p) => [p.name, { namespace: p.namespace, serviceAccount: p.serviceAccount, sidecarUid: p.sidecar.uid }]));
    for (const [pod, h] of this.held) {
      const w = this.workloads.get(pod);
      if (!w || spiffeIdOf(cfg.identity, w) !== h.spiffeId) this.drop(pod);
    }
    this.wake();
  }

  /**
   * Who may hold a pod's key: its sidecar (the pod's sidecar uid) or root, in the pod (the caller's
   * cgroup and network namespace are the pod's: the control handler found the pod by them). Its
   * app, as any other uid, may not: it would then be able to pose as the pod elsewhere.
   */
  check(pod: string, uid: number): void {
    const w = this.workloads.get(pod);
    if (!w) throw new UserError(Codes.FORBIDDEN, `pod "${pod}" is not listed in the config: no identity to hand out`);
    if (uid !== 0 && uid !== w.sidecarUid) {
      throw new UserError(Codes.FORBIDDEN, `pod "${pod}"'s key goes to its sidecar only (uid ${w.sidecarUid} or root); it was asked by uid ${uid}`);
    }
  }

  /** A pod's sidecar asks (long poll): its certificate at once when it lacks the current one, else once it is renewed. */
  async get(pod: string, have: string): Promise<IdentityAnswer> {
    let h = this.held.get(pod) ?? await this.issueFor(pod);
    if (h.cert.serial === have && !this.stopped) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((w) => w !== done);
          resolve();
        };
        const timer = setTimeout(done, POLL_MS);
        this.waiters.push(done);
      });
      h = this.held.get(pod) ?? await this.issueFor(pod);
    }
    const base = { spiffeId: h.spiffeId, serial: h.cert.serial, notAfter: h.cert.notAfter.toISOString() };
    return h.cert.serial === have ? base : { ...base, certChain: h.cert.certChain, key: h.cert.key, roots: this.ca!.trustBundle() };
  }

  /** The pods' certificates (status). */
  seen(): IdentitySeen[] {
    return [...this.held].map(([pod, h]) => ({ pod, spiffeId: h.spiffeId, serial: h.cert.serial, notBefore: h.cert.notBefore.toISOString(), notAfter: h.cert.notAfter.toISOString() }));
  }

  /** The mesh CA as this agent uses it (status), once loaded. */
  caInfo(): { store: string; rootsExpire: string[]; signerExpires?: string } | undefined {
    if (!this.ca) return undefined;
    const signer = this.ca.signerExpiry();
    return { store: this.ca.description, rootsExpire: this.ca.rootExpiry().map((d) => d.toISOString()), ...(signer ? { signerExpires: signer.toISOString() } : {}) };
  }

  async start(): Promise<void> { /* the CA loads on the first request */ }

  stop(): void {
    this.stopped = true;
    this.dropAll();
    this.wake();
  }

  private async loadedCa(identity: IdentityConfig): Promise<MeshCA> {
    if (this.ca && !this.ca.needsRefresh()) return this.ca;
    const ca = this.ca ?? new MeshCA(this.storeFor(identity), identity.trustDomain, this.node);
    await ca.refresh(identity.certTtlMs);
    if (!this.ca) this.log.info({ ca: ca.description, signerExpires: ca.signerExpiry()?.toISOString() }, 'mesh CA loaded');
    this.ca = ca;
    this.metrics.caRootExpiry.reset();
    ca.rootExpiry().forEach((d, i) => this.metrics.caRootExpiry.set({ root: String(i) }, d.getTime() / 1000));
    return ca;
  }

  private async issueFor(pod: string): Promise<Held> {
    const identity = this.identity;
    const w = this.workloads.get(pod);
    if (!identity || !w) throw new UserError(Codes.FORBIDDEN, `pod "${pod}" has no workload identity in the config`);
    let ca: MeshCA;
    try {
      ca = await this.loadedCa(identity);
    } catch (err) {
      this.log.error({ error: describe(err) }, 'cannot load the mesh CA: no pod certificate can be issued');
      throw err;
    }
    // Asked twice at once: the first issue stands.
    const already = this.held.get(pod);
    if (already) return already;
    return this.issueWith(ca, identity, pod, w);
  }

  private issueWith(ca: MeshCA, identity: IdentityConfig, pod: string, w: { namespace: string; serviceAccount: string }): Held {
    const spiffeId = spiffeIdOf(identity, w);
    const dnsId = dnsIdOf(identity, w);
    const cert = ca.issue(spiffeId, dnsId, identity.certTtlMs);
    // Half of its life from now (its notBefore is a minute back, for clocks a little apart).
    const renewIn = Math.max(1000, (cert.notAfter.getTime() - Date.now()) / 2);
    const timer = setTimeout(() => void this.renew(pod), Math.min(renewIn, 2 ** 31 - 1));
    timer.unref();
    const before = this.held.get(pod);
    if (before) clearTimeout(before.timer);
    const h = { spiffeId, dnsId, cert, timer };
    this.held.set(pod, h);
    this.metrics.certificatesIssued.inc();
    this.metrics.podCertificateExpiry.set({ pod }, cert.notAfter.getTime() / 1000);
    this.log.info({ pod, spiffeId, serial: cert.serial, notAfter: cert.notAfter.toISOString() }, 'pod certificate issued');
    return h;
  }

  /** Half of a certificate's life is over: the pod gets a new one (its sidecar is waiting for it). */
  private async renew(pod: string): Promise<void> {
    const identity = this.identity;
    const w = this.workloads.get(pod);
    if (this.stopped || !identity || !w || !this.held.has(pod)) return;
    try {
      const ca = await this.loadedCa(identity);
      this.issueWith(ca, identity, pod, w);
    } catch (err) {
      this.log.error({ pod, error: describe(err) }, 'cannot renew a pod certificate; trying again in 10 s');
      const h = this.held.get(pod);
      if (h) h.timer = setTimeout(() => void this.renew(pod), 10_000).unref();
    }
    this.wake();
  }

  private drop(pod: string): void {
    const h = this.held.get(pod);
    if (!h) return;
    clearTimeout(h.timer);
    this.held.delete(pod);
    this.metrics.podCertificateExpiry.remove({ pod });
  }

  private dropAll(): void {
    for (const pod of [...this.held.keys()]) this.drop(pod);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
