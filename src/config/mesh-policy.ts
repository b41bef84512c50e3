// The security model's semantics, Istio's, as pure functions: a workload's SPIFFE identity, which
// PeerAuthentication decides its mTLS mode (workload > namespace > mesh, UNSET inherits, port
// level on top), which AuthorizationPolicies apply to it, and Istio's value patterns.
import type { AuthorizationPolicy, IdentityConfig, MeshConfig, MtlsMode, PeerAuthentication } from './model.js';

/** A workload as the policies see it. */
export interface Workload {
  namespace: string;
  serviceAccount: string;
  labels: Record<string, string>;
}

/** Istio's principal form (what AuthorizationPolicy matches): <trust domain>/ns/<ns>/sa/<sa>. */
export function principalOf(identity: IdentityConfig, w: Pick<Workload, 'namespace' | 'serviceAccount'>): string {
  return `${identity.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}`;
}

/** The SPIFFE ID a workload's certificate carries as its URI SAN. */
export function spiffeIdOf(identity: IdentityConfig, w: Pick<Workload, 'namespace' | 'serviceAccount'>): string {
  return `spiffe://${principalOf(identity, w)}`;
}

/**
 * The identity as a DNS name, also in the certificate: HAProxy 2.6 checks a server certificate's
 * DNS names during the handshake (verifyhost), not its URIs. `<sa>.sa.<ns>.ns.<trust domain>` is
 * one-to-one with the SPIFFE ID (a namespace has no dot; a service account's dots stay on the left
 * of `.sa.`), and only the mesh CA issues it.
 */
export function dnsIdOf(identity: IdentityConfig, w: Pick<Workload, 'namespace' | 'serviceAccount'>): string {
  return `${w.serviceAccount}.sa.${w.namespace}.ns.${identity.trustDomain}`;
}

/** Whether a selector (matchLabels) selects these labels; no selector selects every workload. */
export function selects(selector: Record<string, string> | undefined, labels: Record<string, string>): boolean {
  if (!selector) return true;
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

/** Istio's string patterns: exact, `prefix*`, `*suffix`, or `*` (anything, also empty). */
export function matchesPattern(pattern: string, value: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

export interface EffectiveMtls {
  mode: MtlsMode;
  /** Ports whose mode differs from `mode`. */
  ports: Array<{ port: number; mode: MtlsMode }>;
  /** The PeerAuthentications that decided, most specific first (for status and explain). */
  from: string[];
}

/**
 * A workload's inbound mTLS mode: the workload-specific PeerAuthentication (the first that selects
 * it), else its namespace's (no selector), else the mesh's (the root namespace, no selector), else
 * PERMISSIVE. UNSET takes the next level's; port-level modes (workload policies only) override.
 */
export function effectiveMtls(cfg: Pick<MeshConfig, 'peerAuthentications' | 'identity'>, w: Workload): EffectiveMtls {
  const pas = cfg.peerAuthentications;
  const workload = pas.find((p) => p.namespace === w.namespace && p.selector !== undefined && selects(p.selector, w.labels));
  const ns = pas.find((p) => p.namespace === w.namespace && p.selector === undefined);
  const mesh = pas.find((p) => p.namespace === cfg.identity.rootNamespace && p.selector === undefined);
  const chain = [workload, ns, mesh].filter((p): p is PeerAuthentication => p !== undefined);
  const decided = chain.find((p) => p.mode !== undefined);
  const mode = decided?.mode ?? 'PERMISSIVE';
  const ports = (workload?.portLevel ?? []).filter((p) => p.mode !== mode);
  return { mode, ports, from: [...new Set([...(workload?.portLevel.length ? [workload] : []), ...(decided ? [decided] : [])].map((p) => `${p.namespace}/${p.name}`))] };
}

/** The mode of one port of a workload. */
export function mtlsOfPort(m: Pick<EffectiveMtls, 'mode' | 'ports'>, port: number): MtlsMode {
  return m.ports.find((p) => p.port === port)?.mode ?? m.mode;
}

/** The AuthorizationPolicies that apply to a workload: its namespace's that select it, and the root namespace's. */
export function authorizationFor(cfg: Pick<MeshConfig, 'authorizationPolicies' | 'identity'>, w: Workload): AuthorizationPolicy[] {
  return cfg.authorizationPolicies.filter((p) => (p.namespace === w.namespace || p.namespace === cfg.identity.rootNamespace) && selects(p.selector, w.labels));
}
