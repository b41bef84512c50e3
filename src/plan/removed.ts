// Which endpoints an apply takes away from services that close their connections when it does
// (terminateOnRemove): pure, from the config before and after.
import type { MeshConfig } from '../config/model.js';
import { endpointName } from '../config/constants.js';
import type { ServiceIds } from './desired.js';

export interface RemovedEndpoint {
  service: string;
  serviceId: number;
  address: string;
  /** 0: any port (an endpoint that keeps the connection's port). */
  port: number;
}

/** Endpoints that services with terminateOnRemove had before and no longer have. */
export function removedEndpoints(before: MeshConfig | undefined, after: MeshConfig, ids: ServiceIds): RemovedEndpoint[] {
  const watched = after.services.filter((s) => s.mode === 'kernel' && s.terminateOnRemove);
  if (!before || !watched.length) return [];
  const previous = new Map(before.services.map((b) => [b.name, b]));
  const out: RemovedEndpoint[] = [];
  for (const s of watched) {
    const was = previous.get(s.name);
    if (was?.mode !== 'kernel') continue;
    const now = new Set((s.endpoints ?? []).map(endpointName));
    for (const e of was.endpoints ?? []) if (!now.has(endpointName(e))) out.push({ service: s.name, serviceId: ids[s.name], address: e.address, port: e.port });
  }
  return out;
}

