// The sidecar block and the capture block (istio-init's options), at the node's level or a pod's
// (a pod's unset fields come from the node's).
import { ISTIO_INBOUND_EXCLUDED, SIDECAR_DEFAULTS, UID_MAX } from '../constants.js';
import type { CaptureConfig, SidecarConfig } from '../model.js';
import type { Checker } from './checker.js';

/** The sidecar block at `path`; unset fields come from `base` (the node's, for a pod override). */
export function sidecar(c: Checker, raw: unknown, path = 'sidecar', base?: SidecarConfig): SidecarConfig {
  const o = c.object(path, raw ?? {}, ['uid', 'gid', 'address', 'outboundPort', 'inboundPort']) ?? {};
  const d = base ?? SIDECAR_DEFAULTS;
  const uid = o.uid === undefined ? d.uid : c.int(`${path}.uid`, o.uid, 0, UID_MAX) ?? d.uid;
  // gid follows a uid given here; otherwise it is the base's.
  const gidDefault = o.uid !== undefined ? uid : d.gid;
  const out: SidecarConfig = {
    uid,
    gid: o.gid === undefined ? gidDefault : c.int(`${path}.gid`, o.gid, 0, UID_MAX) ?? gidDefault,
    address: o.address === undefined ? d.address : c.ipv4(`${path}.address`, o.address) ?? d.address,
    outboundPort: o.outboundPort === undefined ? d.outboundPort : c.port(`${path}.outboundPort`, o.outboundPort) ?? d.outboundPort,
    inboundPort: o.inboundPort === undefined ? d.inboundPort : c.port(`${path}.inboundPort`, o.inboundPort) ?? d.inboundPort,
  };
  if (out.outboundPort === out.inboundPort) c.fail(`${path}.inboundPort`, 'must differ from sidecar.outboundPort');
  return out;
}

function union<T>(a: T[], b: T[]): T[] {
  return [...new Set([...a, ...b])];
}

/** The capture block at `path`; with `base` (a pod override) unset fields come from it. */
export function captureBlock(c: Checker, raw: unknown, exclPorts: number[], exclCidrs: string[], path = 'capture', base?: CaptureConfig): CaptureConfig {
  const o = c.object(path, raw ?? {}, [
    'outbound', 'includeOutboundCIDRs', 'excludeOutboundCIDRs', 'includeOutboundPorts', 'excludeOutboundPorts',
    'includeInboundPorts', 'excludeInboundPorts',
  ]) ?? {};
  const at = (k: string) => `${path}.${k}`;
  const outbound: CaptureConfig['outbound'] = o.outbound === undefined ? base?.outbound ?? 'services'
    : c.oneOf(at('outbound'), o.outbound, ['services', 'all'] as const, 'services or all') ?? base?.outbound ?? 'services';
  const wildcard = (v: unknown) => Array.isArray(v) && v.length === 1 && v[0] === '*';
  const includeOutboundCIDRs = o.includeOutboundCIDRs === undefined ? base?.includeOutboundCIDRs ?? ['*']
    : wildcard(o.includeOutboundCIDRs) ? ['*'] : c.cidrs(at('includeOutboundCIDRs'), o.includeOutboundCIDRs);
  const includeInboundPorts = o.includeInboundPorts === undefined ? base?.includeInboundPorts ?? '*'
    : wildcard(o.includeInboundPorts) ? '*' as const : c.ports(at('includeInboundPorts'), o.includeInboundPorts);
  return {
    outbound,
    includeOutboundCIDRs,
    excludeOutboundCIDRs: o.excludeOutboundCIDRs === undefined && base ? base.excludeOutboundCIDRs
      : union(c.cidrs(at('excludeOutboundCIDRs'), o.excludeOutboundCIDRs), exclCidrs),
    includeOutboundPorts: o.includeOutboundPorts === undefined ? base?.includeOutboundPorts ?? [] : c.ports(at('includeOutboundPorts'), o.includeOutboundPorts),
    excludeOutboundPorts: o.excludeOutboundPorts === undefined && base ? base.excludeOutboundPorts
      : union(o.excludeOutboundPorts === undefined ? [] : c.ports(at('excludeOutboundPorts'), o.excludeOutboundPorts), exclPorts),
    includeInboundPorts,
    excludeInboundPorts: o.excludeInboundPorts === undefined && base ? base.excludeInboundPorts
      : union(ISTIO_INBOUND_EXCLUDED, o.excludeInboundPorts === undefined ? [] : c.ports(at('excludeInboundPorts'), o.excludeInboundPorts)),
  };
}
