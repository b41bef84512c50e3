// eBPF mode's per-pod inbound pieces, kept in step with the meshed pods on every apply.
import { registerListeners, syncInboundLinks } from '../bpf/inbound.js';
import type { InstanceMaps } from '../bpf/maps.js';
import { Codes, SockmeshError } from '../errors.js';
import type { ResolvedPod } from '../plan/desired.js';
import type { PodRecord } from './record.js';

export interface InboundSync { attached: string[]; detached: string[]; registered: string[]; failed: Array<{ pod: string; error: Error }> }

/**
 * Inbound capture's per-pod pieces: sk_lookup on each meshed pod's namespace (off the ones no
 * longer meshed), and the inbound listeners that listened before sockops could see them.
 */
export async function syncInbound(maps: InstanceMaps, pods: ResolvedPod[], before: PodRecord[] | undefined, seen?: Set<bigint>):
  Promise<InboundSync> {
  const links = syncInboundLinks(maps.layout, pods);
  const failed = [...links.failed];
  // A pod id that now names another pod, or none, must not keep the old pod's listener: sk_lookup
  // would hand the new pod's inbound connections to another pod's sidecar. A pod that never had
  // one registered has nothing to remove; one pod's failure stops no other pod's.
  const now = new Map(pods.map((p) => [p.podId, p.netnsCookie.toString()]));
  for (const b of before ?? []) {
    if (now.get(b.podId) === b.netnsCookie) continue;
    try {
      maps.listeners.delete(b.podId);
    } catch (error) {
      failed.push({ pod: b.name, error: new SockmeshError(Codes.MAP, `cannot remove the inbound listener of pod ${b.name} (id ${b.podId}) that left: ${(error as Error).message}`, { cause: error }) });
    }
  }
  const registered = await registerListeners(maps.listeners, pods, seen, (pod, error) => failed.push({ pod, error }));
  return { ...links, failed, registered };
}

