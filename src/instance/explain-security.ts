// explain's view of the mesh's security for a connection the pod's sidecar sends on: whether it
// will be mTLS (auto mTLS: the destination is a meshed workload that takes it on that port), whose
// identity the sidecar will verify, the server's mode and the PeerAuthentication that decided it,
// and which AuthorizationPolicy allows or denies it at the server. Istio's evaluation (as the
// sidecar's Lua does it): DENY first, then ALLOW policies must match one, else allowed.
import { authorizationFor, effectiveMtls, matchesPattern, mtlsOfPort, principalOf, spiffeIdOf } from '../config/mesh-policy.js';
import type { AuthorizationPolicy, AuthorizationRule, MeshConfig, ServiceConfig } from '../config/model.js';
import { peerTargets, speaksMtls, type LocalWorkload } from '../config/workload.js';

export interface ExplainedSecurity {
  /** Each upstream the sidecar may pick (the service's endpoints, or the destination itself). */
  upstreams: Array<{
    address: string;
    mtls: boolean;
    /** The server's identity the sidecar verifies (mTLS), or why there is no TLS. */
    detail: string;
    /** At the server: allow / deny, by which policy; "per request" for HTTP services with HTTP conditions. */
    authorization?: string;
  }>;
}

interface Ctx { peer?: string; ns?: string; port: number }

function field(pos: string[] | undefined, neg: string[] | undefined, v: string | undefined): boolean {
  const any = (l: string[]) => v !== undefined && l.some((p) => matchesPattern(p, v) && (p !== '*' || v !== ''));
  return (!pos || any(pos)) && !(neg && any(neg));
}

const HTTP_FIELDS = ['methods', 'notMethods', 'paths', 'notPaths'] as const;

/** A rule on a connection (TCP context): an ALLOW rule with HTTP fields never matches, a DENY rule matches on the rest. */
function ruleMatches(action: string, r: AuthorizationRule, c: Ctx): boolean {
  if (action === 'ALLOW' && r.to.some((o) => HTTP_FIELDS.some((f) => o[f] !== undefined))) return false;
  const from = !r.from.length || r.from.some((s) => field(s.principals, s.notPrincipals, c.peer) && field(s.namespaces, s.notNamespaces, c.ns));
  const to = !r.to.length || r.to.some((o) => field(o.ports?.map(String), o.notPorts?.map(String), String(c.port)));
  return from && to;
}

export function decideConnection(policies: AuthorizationPolicy[], c: Ctx): string {
  const name = (p: AuthorizationPolicy) => `${p.namespace}/${p.name}`;
  const deny = policies.find((p) => p.action === 'DENY' && p.rules.some((r) => ruleMatches('DENY', r, c)));
  if (deny) return `deny (${name(deny)})`;
  const allows = policies.filter((p) => p.action === 'ALLOW');
  if (!allows.length) return 'allow (no policy selects the server)';
  const allow = allows.find((p) => p.rules.some((r) => ruleMatches('ALLOW', r, c)));
  return allow ? `allow (${name(allow)})` : `deny (ALLOW policies ${allows.map(name).join(', ')} select the server and none matches)`;
}

/** What the pod's sidecar does with a connection to addr:port (service: the one it matched). */
export function explainSecurity(cfg: MeshConfig, local: LocalWorkload[], podName: string, service: ServiceConfig | undefined, addr: string, port: number): ExplainedSecurity | undefined {
  const me = local.find((w) => w.name === podName);
  if (!me) return undefined;
  const peers = peerTargets(cfg, local);
  const upstreams = service?.endpoints?.length ? service.endpoints.map((e) => ({ address: e.address, port: e.port || port })) : [{ address: addr, port }];
  const http = service?.protocol === 'http';
  return {
    upstreams: upstreams.map((u) => {
      const peer = peers.find((p) => p.addresses.includes(u.address));
      const server = [...local, ...cfg.peers].find((w) => w.addresses.includes(u.address));
      if (!peer || !server) return { address: `${u.address}:${u.port}`, mtls: false, detail: 'not a meshed workload: no TLS (it passes as the app sent it)' };
      const m = effectiveMtls(cfg, server);
      const mode = mtlsOfPort(m, u.port);
      const mtls = speaksMtls(peer, u.port);
      const policies = authorizationFor(cfg, server);
      const ctx: Ctx = mtls ? { peer: principalOf(cfg.identity, me), ns: me.namespace, port: u.port } : { port: u.port };
      const perRequest = http && policies.some((p) => p.rules.some((r) => r.to.some((o) => HTTP_FIELDS.some((f) => o[f] !== undefined))));
      return {
        address: `${u.address}:${u.port}`, mtls,
        detail: mtls
          ? `mTLS as ${spiffeIdOf(cfg.identity, me)}, verifying ${spiffeIdOf(cfg.identity, server)} (${peer.dnsId}); the server's mode on port ${u.port}: ${mode}${m.from.length ? ` (${m.from.join(', ')})` : ' (default)'}`
          : `plaintext: the server's mode on port ${u.port} is DISABLE${m.from.length ? ` (${m.from.join(', ')})` : ''}`,
        authorization: perRequest ? `per request (HTTP conditions in ${policies.map((p) => `${p.namespace}/${p.name}`).join(', ')})` : decideConnection(policies, ctx),
      };
    }),
  };
}
