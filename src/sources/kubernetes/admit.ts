// Which of a cluster's objects go into a node's desired state, object by object: one tenant's
// object must never make the whole state invalid (every node would stop following the cluster
// until it is removed). Pure: translated objects in, the admitted ones and a refusal for each
// object left out (the source posts it as a Warning Event on the object) out.
//
// The order is stated and stable: Services with a cluster address first (the API server allocates
// those uniquely), then headless ones (their addresses are their endpoints'); within each, the
// oldest first (creationTimestamp), then by name. An address:port is kept by the first Service
// that claims it: a later headless Service loses only that address, any other later Service is
// left out whole. The kernel maps' capacity is given out in the same order; what no longer fits
// is left out, named.
import { CAPACITY } from '../../config/capacity.js';
import type { ServiceConfig } from '../../config/model.js';

/** At most this many TCP ports per Service (a Service with 65,535 of them used to fill sm_services alone). */
export const SERVICE_PORTS_MAX = 256;

export interface Candidate<O> {
  /** The Kubernetes object, for the Event. */
  obj: O;
  config: ServiceConfig;
  headless: boolean;
  /** metadata.creationTimestamp (ISO), '' when unknown. */
  created: string;
}

export interface Refusal<O> {
  obj: O;
  reason: 'SockmeshConflict' | 'SockmeshCapacity';
  field: string;
  message: string;
}

/** The stated order: cluster addresses first, headless last; oldest first; then by name. */
export function admissionOrder<T extends { headless?: boolean; created: string; name: string }>(a: T, b: T): number {
  return Number(a.headless ?? false) - Number(b.headless ?? false) || cmp(a.created || '\uffff', b.created || '\uffff') || cmp(a.name, b.name);
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Admits Services in the stated order (see the file's header): the services that go into the
 * state (a headless one may lose addresses another Service had first), and a refusal for each left out. */
export function admitServices<O>(list: Array<Candidate<O>>): { services: ServiceConfig[]; refused: Array<Refusal<O>> } {
  const sorted = [...list].sort((a, b) => admissionOrder({ ...a, name: a.config.name }, { ...b, name: b.config.name }));
  const claims = new Map<string, string>();
  const budget = { services: CAPACITY.services, keys: CAPACITY.serviceKeys, slots: CAPACITY.backendSlots };
  const services: ServiceConfig[] = [];
  const refused: Array<Refusal<O>> = [];
  for (const c of sorted) {
    const { config } = c;
    let addresses = config.addresses;
    const keysOf = (addrs: string[]) => (addrs.length ? addrs : ['*']).flatMap((a) => config.ports.map((p) => `${a}:${p}`));
    const taken = keysOf(addresses).filter((k) => claims.has(k) && claims.get(k) !== config.name);
    if (taken.length) {
      const by = [...new Set(taken.map((k) => claims.get(k)!))].join(', ');
      if (!c.headless || !addresses.length) {
        refused.push({ obj: c.obj, reason: 'SockmeshConflict', field: 'spec.clusterIPs', message: `${taken.slice(0, 3).join(', ')}${taken.length > 3 ? ' …' : ''} already belong${taken.length === 1 ? 's' : ''} to ${by}: this Service is left out` });
        continue;
      }
      addresses = addresses.filter((a) => config.ports.every((p) => !claims.has(`${a}:${p}`) || claims.get(`${a}:${p}`) === config.name));
      refused.push({ obj: c.obj, reason: 'SockmeshConflict', field: 'endpoints', message: `${taken.slice(0, 3).join(', ')}${taken.length > 3 ? ' …' : ''} already belong${taken.length === 1 ? 's' : ''} to ${by}: ${addresses.length ? 'the other addresses apply' : 'this Service has no address left'}` });
      if (!addresses.length) continue;
    }
    const keys = keysOf(addresses).length;
    const slots = config.mode === 'kernel' && config.endpoints?.length ? CAPACITY.maglevSlots : 0;
    const full = budget.services < 1 ? `sm_svc_state holds ${CAPACITY.services} services`
      : budget.keys < keys ? `sm_services holds ${CAPACITY.serviceKeys} service keys (addresses × ports) and this Service needs ${keys} of the ${budget.keys} left`
        : budget.slots < slots ? `sm_backends holds ${CAPACITY.backendSlots} Maglev slots (${CAPACITY.maglevSlots} per kernel-mode Service)` : undefined;
    if (full) {
      refused.push({ obj: c.obj, reason: 'SockmeshCapacity', field: 'spec', message: `left out: the node's kernel map ${full}; Services are admitted with cluster addresses first, oldest first` });
      continue;
    }
    budget.services -= 1;
    budget.keys -= keys;
    budget.slots -= slots;
    for (const k of keysOf(addresses)) claims.set(k, config.name);
    services.push(addresses === config.addresses ? config : { ...config, addresses });
  }
  return { services, refused };
}
