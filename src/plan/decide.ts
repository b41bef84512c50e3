// sm_decide (bpf/include/policy.h) step by step, over lookup tables: the kernel maps of a slot
// (`sockmesh explain` on an eBPF instance), or the same tables compiled from a config in memory
// (an iptables instance, whose rules come from that config; and the unit tests). Pure: no kernel.
// The parity matrix (test/e2e/parity.test.ts) checks its verdicts against real connections.
import { HBONE_PORT, PASSTHROUGH_SRC, POD_INCLUDE_ANY, POD_OUTBOUND_ALL, RULE_EXCLUDE, RULE_INCLUDE, RULE_LOCAL, SVC_KERNEL, SVC_REDIRECT, lpmKeyCodec, podCodec, portKeyCodec, svcKeyCodec, svcStateCodec, svcValCodec, u64Codec, type SmPod } from '../bpf/codecs.js';
import { ipToBytes } from '../net/addr.js';
import type { compileDesired, Entry } from './desired.js';

/** Where a connection goes: a sidecar listener, an endpoint straight (kernel mode), or its own destination. */
export type Verdict = 'sidecar-outbound' | 'sidecar-inbound' | 'kernel' | 'direct';

/** Lookups the decision needs: the kernel maps of a slot, or the same tables compiled in memory. */
export interface Tables {
  pod(cookie: bigint): SmPod | undefined;
  port(podId: number, kind: number, port: number): boolean;
  cidr(podId: number, kind: number, addr: string): boolean;
  service(addr: string, port: number): number | undefined;
  flags(serviceId: number): number;
}

export function desiredTables(entries: ReturnType<typeof compileDesired>): Tables {
  const hex = (b: Buffer) => b.toString('hex');
  const index = (list: Entry[]) => new Map(list.map((e) => [hex(e.key), e.value]));
  const pods = index(entries.sm_pods);
  const ports = index(entries.sm_ports);
  const services = index(entries.sm_services);
  const states = new Map(entries.sm_svc_state.map((e) => [e.key.readUInt32LE(0), svcStateCodec.decode(e.value).flags]));
  const cidrs = entries.sm_cidrs.map((e) => lpmKeyCodec.decode(e.key));
  const inPrefix = (addr: string, c: { prefixlen: number; addr: string | null }) => {
    const a = ipToBytes(addr);
    const b = c.addr === null ? Buffer.alloc(16) : ipToBytes(c.addr);
    const bits = c.prefixlen - 64;
    for (let i = 0; i < bits; i++) if (((a[i >> 3] ^ b[i >> 3]) >> (7 - (i & 7))) & 1) return false;
    return true;
  };
  return {
    pod: (cookie) => {
      const v = pods.get(hex(u64Codec.encode(cookie as unknown as number))) ?? pods.get(hex(u64Codec.encode(0)));
      return v ? podCodec.decode(v) : undefined;
    },
    port: (podId, kind, port) => ports.has(hex(portKeyCodec.encode({ podId, port, kind }))),
    cidr: (podId, kind, addr) => cidrs.some((c) => c.podId === podId && c.kind === kind && inPrefix(addr, c)),
    service: (addr, port) => {
      const v = services.get(hex(svcKeyCodec.encode({ addr, port }))) ?? services.get(hex(svcKeyCodec.encode({ addr: null, port })));
      return v ? svcValCodec.decode(v).serviceId : undefined;
    },
    flags: (id) => states.get(id) ?? 0,
  };
}

export interface Decision {
  verdict: Verdict;
  rule: string;
  checks: string[];
  serviceId?: number;
}

/** sm_decide, step by step (bpf/include/policy.h). */
export function decide(t: Tables, pod: SmPod, uid: number, gid: number, addr: string, port: number, kernelMode: boolean, src?: string): Decision {
  const checks: string[] = [];
  const done = (verdict: Verdict, rule: string, serviceId?: number): Decision => ({ verdict, rule, checks, serviceId });
  const sidecar = uid === pod.sidecarUid || gid === pod.sidecarGid;
  const loopback = addr.startsWith('127.') || addr === '::1' || t.cidr(pod.podId, RULE_LOCAL, addr);
  checks.push(`caller: uid ${uid}${sidecar ? ` = the sidecar (uid ${pod.sidecarUid}, gid ${pod.sidecarGid})` : ` (the sidecar is uid ${pod.sidecarUid})`}`);
  checks.push(`destination ${addr} is ${loopback ? 'local to the pod (loopback or its own address)' : 'not local to the pod'}`);
  if (t.port(pod.podId, RULE_EXCLUDE, port)) return done('direct', `port ${port} is excluded (excludeOutboundPorts)`);
  checks.push(`port ${port} is not excluded`);
  if ((src === PASSTHROUGH_SRC || src === '::6') && loopback) return done('direct', `inbound passthrough from ${src} to the pod itself`);
  if (sidecar) {
    if (loopback && addr !== '127.0.0.1' && addr !== '::1' && port !== HBONE_PORT) return done('sidecar-inbound', 'the sidecar calling its own pod: inbound traffic');
    return done('direct', 'the sidecar\'s own connections are never captured');
  }
  if (loopback) return done('direct', 'traffic inside the pod is never captured');
  if (t.cidr(pod.podId, RULE_EXCLUDE, addr)) return done('direct', `${addr} is in an excluded CIDR (excludeOutboundCIDRs)`);
  checks.push(`${addr} is not in an excluded CIDR`);
  const svc = t.service(addr, port);
  if (svc !== undefined) {
    const flags = t.flags(svc);
    checks.push(`${addr}:${port} belongs to service id ${svc}, switch ${flags & SVC_REDIRECT ? 'on' : 'off'}`);
    if (!(flags & SVC_REDIRECT)) return done('direct', 'its service is switched off (redirect: false)', svc);
    if (flags & SVC_KERNEL && kernelMode) return done('kernel', 'a kernel-mode service (mode: kernel): connect4 connects to an endpoint', svc);
  } else {
    checks.push(`${addr}:${port} is no listed service`);
  }
  if (t.port(pod.podId, RULE_INCLUDE, port)) return done('sidecar-outbound', `port ${port} is included (includeOutboundPorts)`, svc);
  if (pod.flags & POD_OUTBOUND_ALL) {
    if (pod.flags & POD_INCLUDE_ANY) return done('sidecar-outbound', 'capture.outbound: all, includeOutboundCIDRs: *', svc);
    return t.cidr(pod.podId, RULE_INCLUDE, addr)
      ? done('sidecar-outbound', `capture.outbound: all, ${addr} in includeOutboundCIDRs`, svc)
      : done('direct', `capture.outbound: all, but ${addr} is in no includeOutboundCIDRs`, svc);
  }
  return svc !== undefined ? done('sidecar-outbound', 'a listed service with its switch on', svc) : done('direct', 'not a listed service (capture.outbound: services)');
}

