// Istio's PeerAuthentications and AuthorizationPolicies for the Kubernetes source: their group
// (security.istio.io v1, v1beta1) watched as istio-group.ts does it (absent CRDs = none of them:
// every workload PERMISSIVE, no authorization, and never stale), each object translated as a
// document of a config file is (src/config/validate/istio.ts: the same semantics for both sources).
// A bad object gets a Warning Event SockmeshInvalidPolicy and keeps its last good translation;
// fields sockmesh does not enforce get a Warning Event SockmeshIgnoredFields.
import type { AuthorizationPolicy, PeerAuthentication } from '../../config/model.js';
import { validateIstioSecurity } from '../../config/validate/index.js';
import { SECURITY_GROUP } from '../../config/validate/istio.js';
import type { Logger } from '../../util/log.js';
import type { InformerOptions } from './client.js';
import { problemsOf, type EventReporter } from './events.js';
import type { SourceHealth } from './health.js';
import { IstioGroupReader, IstioGroupWatch } from './istio-group.js';
import type { IstioObject } from './istio.js';
import { objectName } from './objects.js';

type SecurityKind = 'peerauthentications' | 'authorizationpolicies';
const KINDS: readonly SecurityKind[] = ['peerauthentications', 'authorizationpolicies'];
const KIND_NAME: Record<SecurityKind, string> = { peerauthentications: 'PeerAuthentication', authorizationpolicies: 'AuthorizationPolicy' };

interface Entry<T> { created: string; value: T }

export interface IstioPoliciesOptions {
  kc: import('@kubernetes/client-node').KubeConfig;
  log: Logger;
  health: SourceHealth;
  events: EventReporter;
  description: string;
  changed(): void;
  informer?: InformerOptions;
  recheckMs?: number;
}

export class IstioPolicies extends IstioGroupReader<SecurityKind> {
  private readonly peer = new Map<string, Entry<PeerAuthentication>>();
  private readonly authz = new Map<string, Entry<AuthorizationPolicy>>();
  protected readonly watch: IstioGroupWatch<SecurityKind>;

  constructor(private readonly o: IstioPoliciesOptions) {
    super();
    this.watch = new IstioGroupWatch(o, {
      group: SECURITY_GROUP, versions: ['v1', 'v1beta1'], kinds: KINDS, what: 'Istio security objects', keepOnError: true,
      object: (kind, obj, deleted, apiVersion) => this.onObject(kind, obj, deleted, apiVersion),
      none: () => { this.peer.clear(); this.authz.clear(); },
    });
  }

  /** The mesh's security objects, oldest first (of two that select one workload, Istio takes the oldest). */
  security(): { peerAuthentications: PeerAuthentication[]; authorizationPolicies: AuthorizationPolicy[] } {
    const ordered = <T extends { namespace: string; name: string }>(m: Map<string, Entry<T>>) => [...m.values()]
      .sort((a, b) => (a.created < b.created ? -1 : a.created > b.created ? 1 : `${a.value.namespace}/${a.value.name}` < `${b.value.namespace}/${b.value.name}` ? -1 : 1))
      .map((e) => e.value);
    return { peerAuthentications: ordered(this.peer), authorizationPolicies: ordered(this.authz) };
  }

  private onObject(kind: SecurityKind, obj: IstioObject, deleted: boolean, apiVersion: string): void {
    const key = objectName(obj.metadata);
    const store = (kind === 'peerauthentications' ? this.peer : this.authz) as Map<string, Entry<unknown>>;
    if (deleted) store.delete(key);
    else {
      const ref = { kind: KIND_NAME[kind], apiVersion, metadata: obj.metadata };
      try {
        const sec = validateIstioSecurity({ apiVersion, kind: KIND_NAME[kind], metadata: { name: obj.metadata.name, namespace: obj.metadata.namespace ?? 'default' }, spec: obj.spec },
          `${this.o.description}: ${KIND_NAME[kind]} ${obj.metadata.namespace}/${obj.metadata.name}`);
        const value = sec.peerAuthentication ?? sec.authorizationPolicy;
        // An AUDIT or CUSTOM policy translates to none: left out, as the file source leaves it.
        if (value) store.set(key, { created: obj.created ?? '', value });
        else store.delete(key);
        if (sec.ignored.length) {
          this.o.events.report(ref, sec.ignored.map((field) => ({ field, message: 'not enforced by sockmesh (an ALLOW rule with it is left out; a DENY rule denies without it)' })),
            'SockmeshIgnoredFields', `sockmesh applies this ${ref.kind} but not`);
        }
      } catch (e) {
        // Its last good translation stays. A new ALLOW policy that cannot be read denies what it
        // selects (a policy ignored would let everything in where it was to be the only ALLOW).
        const placeholder = kind === 'authorizationpolicies' && !store.has(key) ? unreadableAllow(obj) : undefined;
        if (placeholder) store.set(key, { created: obj.created ?? '', value: placeholder });
        this.o.events.report(ref, problemsOf(e), 'SockmeshInvalidPolicy', placeholder ? 'sockmesh cannot read this AuthorizationPolicy and denies every request to the workloads it selects until it can' : undefined);
      }
    }
    this.o.changed();
  }
}

/** An ALLOW policy sockmesh cannot read, as one that allows nothing for the workloads it selects (its whole namespace when the selector cannot be read either). */
function unreadableAllow(obj: IstioObject): AuthorizationPolicy | undefined {
  const spec = obj.spec as { action?: unknown; selector?: { matchLabels?: unknown } };
  if (spec.action !== undefined && spec.action !== 'ALLOW') return undefined;
  const m = spec.selector?.matchLabels;
  const labels = typeof m === 'object' && m !== null && !Array.isArray(m) && Object.values(m).every((v) => typeof v === 'string') ? m as Record<string, string> : undefined;
  return { name: obj.metadata.name, namespace: obj.metadata.namespace ?? 'default', ...(labels && Object.keys(labels).length ? { selector: labels } : {}), action: 'ALLOW', rules: [] };
}
