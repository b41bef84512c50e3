// Desired state: a validated MeshConfig compiled into the exact entries each kernel map should
// hold. Pure: no I/O, so it is tested directly.
import {
  CFG_ENABLED, CFG_INCLUDE_ANY, CFG_OUTBOUND_ALL, SVC_AUTO, SVC_REDIRECT, SVC_SPLICE,
  configCodec, lpmKeyCodec, svcKeyCodec, svcStateCodec, svcValCodec, u16Codec, u32Codec, u8Codec,
} from '../bpf/codecs.js';
import { Codes, UserError } from '../errors.js';
import { parseCidr } from '../net/addr.js';
import type { MeshConfig } from '../config/model.js';

export interface Entry {
  key: Buffer;
  value: Buffer;
}

/** Map contents by map name; `arrays` maps hold every index (unlisted ones zero). */
export interface DesiredMaps {
  sm_config: Entry[];
  sm_services: Entry[];
  sm_svc_state: Entry[];
  sm_excl_ports: Entry[];
  sm_excl_cidrs: Entry[];
  sm_incl_ports: Entry[];
  sm_incl_cidrs: Entry[];
  sm_local_addrs: Entry[];
}

function lpmEntries(cidrs: string[]): Entry[] {
  const one = u8Codec.encode(1);
  return cidrs.map((c) => {
    const { bytes, prefixlen } = parseCidr(c);
    const key = lpmKeyCodec.encode({ prefixlen, addr: null });
    bytes.copy(key, 4);
    return { key, value: one };
  });
}

export type ServiceIds = Record<string, number>;

/**
 * Stable ids: a service keeps the id it had; new services take the lowest free ids; ids of
 * removed services are freed.
 */
export function assignServiceIds(names: string[], previous: ServiceIds, max: number): ServiceIds {
  const out: ServiceIds = {};
  const used = new Set<number>();
  for (const n of names) {
    const id = previous[n];
    if (id !== undefined && id < max) {
      out[n] = id;
      used.add(id);
    }
  }
  let next = 0;
  for (const n of names) {
    if (out[n] !== undefined) continue;
    while (used.has(next)) next++;
    if (next >= max) throw new UserError(Codes.CONFIG_INVALID, `too many services: the kernel map holds ${max}`);
    out[n] = next;
    used.add(next);
  }
  return out;
}

/**
 * The entries of every config-driven map for this config. `localAddrs` are the pod's own
 * addresses (traffic to them leaves through lo, which istio-init never captures for the app).
 */
export function compileDesired(cfg: MeshConfig, ids: ServiceIds, svcStateSize: number, localAddrs: string[] = []): DesiredMaps {
  const services: Entry[] = [];
  const states = new Map<number, number>();
  for (const s of cfg.services) {
    const id = ids[s.name];
    const value = svcValCodec.encode({ serviceId: id });
    for (const addr of s.addresses.length ? s.addresses : [null]) {
      for (const port of s.ports) services.push({ key: svcKeyCodec.encode({ addr, port }), value });
    }
    const splice = s.splice === 'always' ? SVC_SPLICE : s.splice === 'auto' ? SVC_AUTO : 0;
    states.set(id, (s.redirect ? SVC_REDIRECT : 0) | splice);
  }
  const sm_svc_state: Entry[] = [];
  for (let id = 0; id < svcStateSize; id++) {
    sm_svc_state.push({ key: u32Codec.encode(id), value: svcStateCodec.encode({ flags: states.get(id) ?? 0 }) });
  }
  const one = u8Codec.encode(1);
  const { capture } = cfg;
  const includeAny = capture.includeOutboundCIDRs.includes('*');
  const flags = CFG_ENABLED | (capture.outbound === 'all' ? CFG_OUTBOUND_ALL : 0) | (includeAny ? CFG_INCLUDE_ANY : 0);
  return {
    sm_config: [{
      key: u32Codec.encode(0),
      value: configCodec.encode({
        sidecarUid: cfg.sidecar.uid,
        sidecarGid: cfg.sidecar.gid,
        outboundIp4: cfg.sidecar.address,
        outboundPort: cfg.sidecar.outboundPort,
        inboundPort: cfg.sidecar.inboundPort,
        flags,
        autoSegBytes: cfg.autoSplice.segmentBytes,
        autoMinSegs: cfg.autoSplice.minSegments,
        autoVotes: cfg.autoSplice.votes,
      }),
    }],
    sm_services: services,
    sm_svc_state,
    sm_excl_ports: capture.excludeOutboundPorts.map((p) => ({ key: u16Codec.encode(p), value: one })),
    sm_excl_cidrs: lpmEntries(capture.excludeOutboundCIDRs),
    sm_incl_ports: capture.includeOutboundPorts.map((p) => ({ key: u16Codec.encode(p), value: one })),
    sm_incl_cidrs: lpmEntries(includeAny ? [] : capture.includeOutboundCIDRs),
    sm_local_addrs: lpmEntries(localAddrs),
  };
}
