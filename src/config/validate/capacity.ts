// Every count against the kernel maps' capacity (src/config/capacity.ts), so a config that cannot
// fit is refused whole, before anything is applied.
import { CAPACITY } from '../capacity.js';
import type { CaptureConfig, PodConfig, ServiceConfig } from '../model.js';
import type { Checker } from './checker.js';

/** Every count against the kernel maps' capacity, so a config that cannot fit is refused whole. */
export function checkCapacity(c: Checker, services: ServiceConfig[], capture: CaptureConfig, pods: PodConfig[]): void {
  const over = (path: string, n: number, what: string, max: number, map: string) => {
    if (n > max) c.fail(path, `${n} ${what}, the kernel map ${map} holds ${max}`);
  };
  over('services', services.length, 'services', CAPACITY.services, 'sm_svc_state');
  const keys = services.reduce((n, s) => n + Math.max(1, s.addresses.length) * s.ports.length, 0);
  over('services', keys, 'service keys (addresses × ports)', CAPACITY.serviceKeys, 'sm_services');
  over('pods', pods.length, 'pods', CAPACITY.pods, 'sm_pods');
  const kernelServices = services.filter((s) => s.mode === 'kernel' && s.endpoints?.length).length;
  over('services', kernelServices * CAPACITY.maglevSlots, `Maglev table slots (${CAPACITY.maglevSlots} per kernel-mode service with endpoints)`, CAPACITY.backendSlots, 'sm_backends');
  // Every pod (or the one implicit pod) writes its own port and CIDR rules.
  const caps = pods.length ? pods.map((p, i) => [`pods[${i}].capture`, p.capture] as const) : [['capture', capture] as const];
  const ports = caps.reduce((n, [, cp]) => n + cp.excludeOutboundPorts.length + cp.includeOutboundPorts.length
    + cp.excludeInboundPorts.length + (cp.includeInboundPorts === '*' ? 0 : cp.includeInboundPorts.length), 0);
  const cidrs = caps.reduce((n, [, cp]) => n + cp.excludeOutboundCIDRs.length + cp.includeOutboundCIDRs.filter((x) => x !== '*').length, 0)
    + pods.reduce((n, p) => n + (p.addresses?.length ?? 0), 0);
  const single = !pods.length;
  over(single ? 'capture.excludeOutboundPorts' : 'pods', ports, single ? 'excluded and included ports, outbound and inbound (exclude.outboundPorts included)' : 'port rules (excluded and included ports of every pod, outbound and inbound)', CAPACITY.portRules, 'sm_ports');
  over(single ? 'capture.excludeOutboundCIDRs' : 'pods', cidrs, single ? 'excluded and included CIDRs (exclude.outboundCIDRs included)' : 'CIDR rules (excluded, included and own addresses of every pod)', CAPACITY.cidrRules, 'sm_cidrs');
}

