// What one pod's sidecar needs of the mesh's security, computed by the agent for the pod that asks:
// its identity, its inbound mTLS mode per port, the AuthorizationPolicies that apply to it, and
// every meshed workload it may call (addresses, identity, and the ports where that workload takes
// plaintext only), so that outbound connections use mTLS exactly where the other side speaks it.
import { authorizationFor, dnsIdOf, effectiveMtls, mtlsOfPort, spiffeIdOf, type EffectiveMtls, type Workload } from './mesh-policy.js';
import type { AuthorizationPolicy, MeshConfig, MtlsMode } from './model.js';

/** A meshed pod of this node as the kernel holds it: its addresses as found. */
export interface LocalWorkload extends Workload {
  name: string;
  addresses: string[];
}

export interface PeerTarget {
  addresses: string[];
  spiffeId: string;
  /** The identity's DNS form, which HAProxy verifies (verifyhost). */
  dnsId: string;
  /** Its inbound mode, and the ports where it differs. */
  mode: MtlsMode;
  ports: Array<{ port: number; mode: MtlsMode }>;
}

export interface WorkloadPolicy {
  pod: string;
  namespace: string;
  spiffeId: string;
  mtls: EffectiveMtls;
  authorization: AuthorizationPolicy[];
  peers: PeerTarget[];
}

/** The meshed workloads a sidecar may call: this node's pods and the cluster's (config.peers), grouped by identity and mode. */
export function peerTargets(cfg: MeshConfig, local: LocalWorkload[]): PeerTarget[] {
  const byKey = new Map<string, PeerTarget>();
  for (const w of [...local, ...cfg.peers]) {
    if (!w.addresses.length) continue;
    const m = effectiveMtls(cfg, w);
    const spiffeId = spiffeIdOf(cfg.identity, w);
    const key = JSON.stringify([spiffeId, m.mode, m.ports]);
    const t = byKey.get(key);
    if (t) t.addresses.push(...w.addresses.filter((a) => !t.addresses.includes(a)));
    else byKey.set(key, { addresses: [...w.addresses], spiffeId, dnsId: dnsIdOf(cfg.identity, w), mode: m.mode, ports: m.ports });
  }
  return [...byKey.values()];
}

export function workloadPolicy(cfg: MeshConfig, local: LocalWorkload[], pod: LocalWorkload): WorkloadPolicy {
  return {
    pod: pod.name, namespace: pod.namespace, spiffeId: spiffeIdOf(cfg.identity, pod), mtls: effectiveMtls(cfg, pod),
    authorization: authorizationFor(cfg, pod), peers: peerTargets(cfg, local),
  };
}

/** Whether a connection to this peer's port is mTLS (auto mTLS: never to a port that takes plaintext only). */
export function speaksMtls(peer: Pick<PeerTarget, 'mode' | 'ports'>, port: number): boolean {
  return mtlsOfPort(peer, port) !== 'DISABLE';
}
