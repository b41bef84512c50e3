// Whether the Kubernetes source follows the cluster: which collections have been listed, which are
// failing, and a probe of the API server. The source is stale (the last good state stays applied)
// while anything fails after the first complete state, and fresh again once all answer.
import type { KubeConfig } from '@kubernetes/client-node';
import { describe } from '../../errors.js';
import type { Logger } from '../../util/log.js';
import { apiRequest, ApiError } from './client.js';

export type Kind = 'pods' | 'peers' | 'services' | 'endpointslices' | 'destinationrules' | 'virtualservices' | 'peerauthentications' | 'authorizationpolicies' | 'apiserver';
/** Every collection the state waits for (Istio's count once found absent). */
export const LISTED_KINDS = 8;

/** An informer as the health probe drives it. */
export interface Restartable {
  restart(why: Error): void;
  retryNow(): void;
}

export class SourceHealth {
  private readonly listed = new Set<Kind>();
  private readonly failing = new Map<Kind, string>();
  private stale = false;
  private probing = false;

  constructor(private readonly kc: KubeConfig, private readonly log: Logger,
    private readonly onStale: (message: string) => void, private readonly onFresh: () => void) {}

  /** Every collection has been listed once (or Istio's found absent): the state is complete. */
  get complete(): boolean {
    return this.listed.size >= LISTED_KINDS;
  }

  hasListed(kind: Kind): boolean {
    return this.listed.has(kind);
  }

  listedNow(kind: Kind): void {
    this.listed.add(kind);
  }

  failed(kind: Kind, err: unknown, ms: number): void {
    const message = `${kind}: ${describe(err)}`;
    const first = !this.failing.has(kind);
    this.failing.set(kind, message);
    this.log.warn({ resource: kind, error: describe(err), retryInMs: ms }, 'Kubernetes watch failed; the last good state stays applied');
    if (first && !this.stale && this.complete) {
      this.stale = true;
      this.onStale(`the API server cannot be reached (${message}); the last good state stays applied`);
    }
  }

  connected(kind: Kind): void {
    if (!this.failing.delete(kind)) return;
    this.log.info({ resource: kind }, 'Kubernetes watch resumed');
    if (this.stale && this.failing.size === 0) {
      this.stale = false;
      this.onFresh();
    }
  }

  /**
   * Asks the API server something small: a server that hangs with its connections open (stopped,
   * wedged) sends nothing and closes nothing, and TCP keepalives still get their answer from its
   * kernel, so a watch alone would wait for it forever, the source never stale and changes made
   * meanwhile never seen. No answer within timeoutMs: stale, and every list and watch is dropped and
   * started again (a relist, once the server answers). A refused connection the informers see
   * themselves; once the server answers again, those waiting out their backoff go at once.
   */
  async probe(informers: readonly Restartable[], timeoutMs: number): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      await apiRequest(this.kc, '/version', { timeoutMs });
      if (this.failing.has('apiserver')) for (const i of informers) i.retryNow();
      this.connected('apiserver');
    } catch (err) {
      this.failed('apiserver', err, 0);
      if (err instanceof ApiError && err.statusCode === 0) {
        const why = new Error(`the API server did not answer: ${describe(err)}`);
        for (const i of informers) i.restart(why);
      }
    } finally {
      this.probing = false;
    }
  }
}
