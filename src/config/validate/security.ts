// The identity settings, the Istio documents of a config file, and what the two capture paths
// cannot do together: a kernel-mode service has no sidecar, so it cannot speak mTLS to a server
// whose PeerAuthentication is STRICT (the connection would be refused): validation refuses it.
import { IDENTITY_DEFAULTS, TRUST_DOMAIN_RE } from '../constants.js';
import { effectiveMtls, mtlsOfPort } from '../mesh-policy.js';
import type { AuthorizationPolicy, IdentityConfig, MeshConfig, PeerAuthentication, PodConfig, ServiceConfig } from '../model.js';
import { join, kind, type Checker } from './checker.js';
import { istioSecurity } from './istio.js';
import { trafficDocument, type TrafficDocument } from './traffic-docs.js';

export function identity(c: Checker, raw: unknown): IdentityConfig {
  if (raw === undefined) return { ...IDENTITY_DEFAULTS };
  const o = c.object('identity', raw, ['trustDomain', 'certTTL', 'caDir', 'rootNamespace']) ?? {};
  const trustDomain = o.trustDomain === undefined ? IDENTITY_DEFAULTS.trustDomain
    : c.match('identity.trustDomain', o.trustDomain, TRUST_DOMAIN_RE, 'a SPIFFE trust domain (lower-case letters, digits, ".", "-", "_")') ?? IDENTITY_DEFAULTS.trustDomain;
  let certTtlMs = IDENTITY_DEFAULTS.certTtlMs;
  if (o.certTTL !== undefined) {
    const ms = c.duration('identity.certTTL', o.certTTL, 90 * 24 * 3600_000);
    if (ms !== undefined && ms < 2000) c.fail('identity.certTTL', 'must be at least 2s (a certificate is renewed at half its life)');
    else if (ms !== undefined) certTtlMs = ms;
  }
  const caDir = o.caDir === undefined ? IDENTITY_DEFAULTS.caDir : c.nonEmptyString('identity.caDir', o.caDir) ?? IDENTITY_DEFAULTS.caDir;
  if (!caDir.startsWith('/')) c.fail('identity.caDir', `must be an absolute path, got ${kind(caDir)}`);
  const rootNamespace = o.rootNamespace === undefined ? IDENTITY_DEFAULTS.rootNamespace : c.name('identity.rootNamespace', o.rootNamespace) ?? IDENTITY_DEFAULTS.rootNamespace;
  return { trustDomain, certTtlMs, caDir, rootNamespace };
}

/** The Istio documents after the config (named `document N`, N counted in the file from 1: the config). */
export function documents(c: Checker, docs: unknown[]): { peerAuthentications: PeerAuthentication[]; authorizationPolicies: AuthorizationPolicy[]; traffic: TrafficDocument[]; notices: string[] } {
  const out = { peerAuthentications: [] as PeerAuthentication[], authorizationPolicies: [] as AuthorizationPolicy[], traffic: [] as TrafficDocument[], notices: [] as string[] };
  const seen = new Set<string>();
  docs.forEach((d, i) => {
    const path = `document ${i + 2}`; // the file's own numbering: the config is document 1
    if (d === null || d === undefined) return; // an empty document (a trailing ---)
    const before = c.issues.length;
    const traffic = trafficDocument(c, path, d);
    if (traffic !== 'not-traffic') {
      const key = traffic ? `${traffic.kind}/${traffic.obj.metadata.namespace}/${traffic.obj.metadata.name}` : '';
      if (traffic && seen.has(key)) c.fail(join(path, 'metadata.name'), `${traffic.kind === 'destinationrules' ? 'DestinationRule' : 'VirtualService'} ${traffic.obj.metadata.namespace}/${traffic.obj.metadata.name} is defined twice`);
      seen.add(key);
      if (traffic) out.traffic.push(traffic);
      return;
    }
    const sec = istioSecurity(c, path, d, 'default');
    if (!sec) {
      if (c.issues.length === before) {
        const k = typeof d === 'object' && d !== null ? (d as Record<string, unknown>).kind : undefined;
        c.fail(path, `is not a document sockmesh reads after its config (PeerAuthentication, AuthorizationPolicy of security.istio.io/v1; DestinationRule, VirtualService of networking.istio.io/v1), got ${kind(k)}`);
      }
      return;
    }
    const p = sec.peerAuthentication ?? sec.authorizationPolicy;
    const kindName = sec.peerAuthentication ? 'PeerAuthentication' : 'AuthorizationPolicy';
    const key = p ? `${kindName}/${p.namespace}/${p.name}` : '';
    if (p && seen.has(key)) c.fail(join(path, 'metadata.name'), `${kindName} ${p.namespace}/${p.name} is defined twice`);
    seen.add(key);
    if (sec.peerAuthentication) out.peerAuthentications.push(sec.peerAuthentication);
    if (sec.authorizationPolicy) out.authorizationPolicies.push(sec.authorizationPolicy);
    for (const f of sec.ignored) out.notices.push(`${f}: not enforced by sockmesh (an ALLOW rule with it is left out; a DENY rule denies without it)`);
  });
  return out;
}

/**
 * A kernel-mode service's endpoints that are meshed workloads with a STRICT port: the connection
 * would go straight from the client's socket, without TLS, and be refused.
 */
export function kernelModeUnderStrict(c: Checker, services: ServiceConfig[], pods: PodConfig[],
  security: Pick<MeshConfig, 'identity' | 'peerAuthentications' | 'peers'>): void {
  if (!security.peerAuthentications.length) return;
  const workloads = [...pods.map((p) => ({ name: `pod ${p.name}`, addresses: p.addresses ?? [], w: p })),
    ...security.peers.map((p) => ({ name: `workload ${p.namespace}/${p.serviceAccount}`, addresses: p.addresses, w: p }))];
  services.forEach((s, i) => {
    if (s.mode !== 'kernel') return;
    for (const e of s.endpoints ?? []) {
      const at = workloads.find((w) => w.addresses.includes(e.address));
      if (!at) continue;
      const m = effectiveMtls(security, at.w);
      const ports = e.port ? [e.port] : s.ports;
      const strict = ports.filter((p) => mtlsOfPort(m, p) === 'STRICT');
      if (strict.length) {
        c.fail(join(`services[${i}]`, 'mode'), `kernel-mode service "${s.name}" connects straight to ${at.name} (${e.address}), whose inbound mTLS is STRICT on port ${strict.join(', ')} (PeerAuthentication ${m.from.join(', ')}): it has no sidecar to speak mTLS and would be refused. Keep the service in sidecar mode, or make that port PERMISSIVE`);
        return;
      }
    }
  });
}
