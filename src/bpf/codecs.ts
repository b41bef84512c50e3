// TypeScript mirror of bpf/include/sockmesh.h: one codec per shared struct and the constants.
// test/bpf/codecs.test.ts checks every layout here against the BTF of bpf/sockmesh.bpf.o.
import { struct, scalar, type Codec } from './codec.js';

export const CFG_ENABLED = 1 << 0;
export const POD_OUTBOUND_ALL = 1 << 0;
export const POD_INCLUDE_ANY = 1 << 1;
export const POD_INBOUND = 1 << 2;
export const POD_INBOUND_ALL = 1 << 3;
export const RULE_EXCLUDE = 0;
export const RULE_INCLUDE = 1;
export const RULE_LOCAL = 2;
export const RULE_IN_EXCLUDE = 3;
export const RULE_IN_INCLUDE = 4;
export const SVC_REDIRECT = 1 << 0;
export const SVC_SPLICE = 1 << 1;
export const SVC_AUTO = 1 << 2;
export const SVC_KERNEL = 1 << 3;
export const SVC_AFFINITY = 1 << 4;
export const SVC_UDP = 1 << 5;
export const OD_SPLICED = 1 << 0;
/** sm_svc_auto.nagle_clients, by its value (SM_AUTO_*). */
export const AUTO_NAGLE_CLIENTS = ['unknown', 'turn-nodelay', 'stay-nagle'] as const;
/** The config-driven maps exist once per slot; sm_gen names the active one. */
export const SLOTS = 2;
/** sm_config.hop_splice, by spliceHops. */
export const HOPS = { auto: 0, never: 1, always: 2 } as const;
/** The sidecar's inbound passthrough source (Istio's 127.0.0.6): the programs never capture it. */
export const PASSTHROUGH_SRC = '127.0.0.6';
/** HBONE (Istio's ambient tunnel port): never captured inbound. */
export const HBONE_PORT = 15008;

/**
 * Each constant above by its name in sockmesh.h: test/bpf/codecs.test.ts compiles the header and
 * compares every value, so a constant changed on one side only fails there.
 */
export const HEADER_CONSTANTS: Readonly<Record<string, number>> = {
  SM_CFG_ENABLED: CFG_ENABLED,
  SM_POD_OUTBOUND_ALL: POD_OUTBOUND_ALL, SM_POD_INCLUDE_ANY: POD_INCLUDE_ANY, SM_POD_INBOUND: POD_INBOUND, SM_POD_INBOUND_ALL: POD_INBOUND_ALL,
  SM_RULE_EXCLUDE: RULE_EXCLUDE, SM_RULE_INCLUDE: RULE_INCLUDE, SM_RULE_LOCAL: RULE_LOCAL, SM_RULE_IN_EXCLUDE: RULE_IN_EXCLUDE, SM_RULE_IN_INCLUDE: RULE_IN_INCLUDE,
  SM_SVC_REDIRECT: SVC_REDIRECT, SM_SVC_SPLICE: SVC_SPLICE, SM_SVC_AUTO: SVC_AUTO, SM_SVC_KERNEL: SVC_KERNEL, SM_SVC_AFFINITY: SVC_AFFINITY, SM_SVC_UDP: SVC_UDP,
  SM_OD_SPLICED: OD_SPLICED,
  SM_AUTO_UNKNOWN: AUTO_NAGLE_CLIENTS.indexOf('unknown'), SM_AUTO_TURNS_NODELAY: AUTO_NAGLE_CLIENTS.indexOf('turn-nodelay'), SM_AUTO_STAYS_NAGLE: AUTO_NAGLE_CLIENTS.indexOf('stay-nagle'),
  SM_SLOTS: SLOTS,
  SM_HOPS_AUTO: HOPS.auto, SM_HOPS_NEVER: HOPS.never, SM_HOPS_ALWAYS: HOPS.always,
  SM_PASSTHROUGH_SRC: PASSTHROUGH_SRC.split('.').reduce((a, o) => a * 256 + Number(o), 0),
  SM_HBONE_PORT: HBONE_PORT,
};

export interface SmConfig {
  flags: number;
  /** HOPS_* */
  hopSplice: number;
  spliceQueueBytes: number;
}

export const configCodec = struct<SmConfig>('sm_config', [
  ['flags', 'u32', 'flags'],
  ['hop_splice', 'u32', 'hopSplice'],
  ['_pad2', 'pad32'],
  ['_pad3', 'pad32'],
  ['splice_queue_bytes', 'u32', 'spliceQueueBytes'],
]);

export interface SmPod {
  cgroupId: bigint;
  cgroupLevel: number;
  podId: number;
  sidecarUid: number;
  sidecarGid: number;
  outboundIp4: string;
  outboundPort: number;
  inboundPort: number;
  flags: number;
}

export const podCodec = struct<SmPod>('sm_pod', [
  ['cgroup_id', 'u64', 'cgroupId'],
  ['cgroup_level', 'u32', 'cgroupLevel'],
  ['pod_id', 'u32', 'podId'],
  ['sidecar_uid', 'u32', 'sidecarUid'],
  ['sidecar_gid', 'u32', 'sidecarGid'],
  ['outbound_ip4', 'ip4be', 'outboundIp4'],
  ['outbound_port', 'u16', 'outboundPort'],
  ['inbound_port', 'u16', 'inboundPort'],
  ['flags', 'u32', 'flags'],
  ['_pad', 'pad32'],
]);

export interface PortKey {
  podId: number;
  port: number;
  kind: number;
}

export const portKeyCodec = struct<PortKey>('sm_port_key', [
  ['pod_id', 'u32', 'podId'],
  ['port', 'u16', 'port'],
  ['kind', 'u8', 'kind'],
  ['_pad', 'pad8'],
]);

export interface SvcKey {
  /** null = any address on this port */
  addr: string | null;
  port: number;
}

export const svcKeyCodec = struct<SvcKey>('sm_svc_key', [
  ['addr', 'ip16', 'addr'],
  ['port', 'u16', 'port'],
  ['_pad', 'pad16'],
]);

export interface SvcVal {
  serviceId: number;
}

export const svcValCodec = struct<SvcVal>('sm_svc_val', [['service_id', 'u32', 'serviceId']]);

export interface SvcState {
  flags: number;
}

export const svcStateCodec = struct<SvcState>('sm_svc_state', [['flags', 'u32', 'flags']]);

export interface LpmKey {
  /** Bits that count: 64 (pod id and kind) + the address prefix over the 16-byte form. */
  prefixlen: number;
  podId: number;
  kind: number;
  addr: string | null;
}

export const lpmKeyCodec = struct<LpmKey>('sm_lpm_key', [
  ['prefixlen', 'u32', 'prefixlen'],
  ['pod_id', 'u32', 'podId'],
  ['kind', 'u32', 'kind'],
  ['addr', 'ip16', 'addr'],
]);

export interface Tuple {
  netns: bigint;
  saddr: string | null;
  daddr: string | null;
  sport: number;
  dport: number;
}

export const tupleCodec = struct<Tuple>('sm_tuple', [
  ['netns', 'u64', 'netns'],
  ['saddr', 'ip16', 'saddr'],
  ['daddr', 'ip16', 'daddr'],
  ['sport', 'u16', 'sport'],
  ['dport', 'u16', 'dport'],
  ['_pad', 'pad32'],
]);

export interface OrigDst {
  addr: string | null;
  port: number;
  flags: number;
  serviceId: number;
  podId: number;
}

export const origDstCodec = struct<OrigDst>('sm_origdst', [
  ['addr', 'ip16', 'addr'],
  ['port', 'u16', 'port'],
  ['flags', 'u16', 'flags'],
  ['service_id', 'u32', 'serviceId'],
  ['pod_id', 'u32', 'podId'],
]);

export interface Peer {
  addr: bigint;
  podId: number;
  flags: number;
}

export const peerCodec = struct<Peer>('sm_peer', [
  ['addr', 'u64', 'addr'],
  ['pod_id', 'u32', 'podId'],
  ['flags', 'u32', 'flags'],
]);

export interface SvcAuto {
  /** Index into AUTO_NAGLE_CLIENTS. */
  nagleClients: number;
  /** 1: the service's last connection was a bulk stream. */
  bulk: number;
  observed: number;
}

export const svcAutoCodec = struct<SvcAuto>('sm_svc_auto', [
  ['nagle_clients', 'u16', 'nagleClients'],
  ['bulk', 'u16', 'bulk'],
  ['observed', 'u32', 'observed'],
]);

export interface BackendKey {
  serviceId: number;
  slot: number;
}

export const backendKeyCodec = struct<BackendKey>('sm_backend_key', [
  ['service_id', 'u32', 'serviceId'],
  ['slot', 'u32', 'slot'],
]);

export interface Backend {
  ip4: string;
  port: number;
}

export const backendCodec = struct<Backend>('sm_backend', [
  ['ip4', 'ip4be', 'ip4'],
  ['port', 'u16', 'port'],
  ['_pad', 'pad16'],
]);

export interface EndpointKey {
  serviceId: number;
  ip4: string;
  port: number;
}

export const endpointKeyCodec = struct<EndpointKey>('sm_endpoint_key', [
  ['service_id', 'u32', 'serviceId'],
  ['ip4', 'ip4be', 'ip4'],
  ['port', 'u16', 'port'],
  ['_pad', 'pad16'],
]);

export interface UdpKey {
  cookie: bigint;
  ip4: string;
  port: number;
}

export const udpKeyCodec = struct<UdpKey>('sm_udp_key', [
  ['cookie', 'u64', 'cookie'],
  ['ip4', 'ip4be', 'ip4'],
  ['port', 'u16', 'port'],
  ['_pad', 'pad16'],
]);

export interface AddrKey {
  addr: string | null;
}

export const addrKeyCodec = struct<AddrKey>('sm_addr_key', [['addr', 'ip16', 'addr']]);

export interface LocalPod {
  netns: bigint;
  podId: number;
}

export const localPodCodec = struct<LocalPod>('sm_local_pod', [
  ['netns', 'u64', 'netns'],
  ['pod_id', 'u32', 'podId'],
  ['_pad', 'pad32'],
]);

export const u8Codec = scalar('__u8', 'u8');
export const u16Codec = scalar('__u16', 'u16');
export const u32Codec = scalar('__u32', 'u32');
export const u64Codec = scalar('__u64', 'u64');

/** enum sm_stat: index of each per-CPU counter, by its name in sockmesh.h. */
export const STATS = {
  SM_STAT_CONNECT_REWRITE: 0,
  SM_STAT_CONNECT_SIDECAR: 1,
  SM_STAT_CONNECT_EXCLUDED: 2,
  SM_STAT_CONNECT_DISABLED: 3,
  SM_STAT_SOCK_INSERT: 4,
  SM_STAT_MSG_REDIRECT: 5,
  SM_STAT_MSG_PASS: 6,
  SM_STAT_ORIGDST_HIT: 7,
  SM_STAT_ORIGDST_MISS: 8,
  SM_STAT_ERROR: 9,
  SM_STAT_MSG_NAGLE: 10,
  SM_STAT_AUTO_STACK: 11,
  SM_STAT_CONNECT_INBOUND: 12,
  SM_STAT_MSG_FULL: 13,
  SM_STAT_MSG_ORDER: 14,
  SM_STAT_CONNECT_KERNEL: 15,
  SM_STAT_CONNECT_REFUSED: 16,
  SM_STAT_GETPEERNAME: 17,
  SM_STAT_UDP_SEND: 18,
  SM_STAT_UDP_RECV: 19,
  SM_STAT_INBOUND: 20,
  SM_STAT_INBOUND_NO_LISTENER: 21,
  SM_STAT_ORIGDST_INBOUND: 22,
  SM_STAT_HOP_SPLICE: 23,
  SM_STAT_MAX: 24,
} as const;

/** enum sm_svc_stat: per-service counters. */
export const SVC_STATS = {
  SM_SVC_STAT_CAPTURED: 0,
  SM_SVC_STAT_DISABLED: 1,
  SM_SVC_STAT_SPLICED: 2,
  SM_SVC_STAT_KERNEL: 3,
  SM_SVC_STAT_REFUSED: 4,
  SM_SVC_STAT_MAX: 5,
} as const;

export const SVC_COUNTER_NAMES: Record<Exclude<keyof typeof SVC_STATS, 'SM_SVC_STAT_MAX'>, string> = {
  SM_SVC_STAT_CAPTURED: 'captured',
  SM_SVC_STAT_DISABLED: 'disabledSkips',
  SM_SVC_STAT_SPLICED: 'spliced',
  SM_SVC_STAT_KERNEL: 'kernelConnects',
  SM_SVC_STAT_REFUSED: 'refused',
};

/** Capacities and limits of bpf/include/sockmesh.h (checked by compiling the header). */
export const LIMITS = {
  SM_MAX_PODS: 1024,
  SM_MAX_SERVICES: 16384,
  SM_MAX_SERVICE_KEYS: 65536,
  SM_MAX_PORT_RULES: 16384,
  SM_MAX_CIDR_RULES: 16384,
  SM_MAX_CONNS: 65536,
  SM_MAGLEV_M: 1021,
  SM_MAX_BACKEND_SLOTS: 1048576,
  SM_MAX_ENDPOINT_STATS: 65536,
  SM_MAX_LOCAL_ADDRS: 4096,
  SM_SLOTS: SLOTS,
} as const;

/** Counter names as status/metrics report them. */
export const COUNTER_NAMES: Record<Exclude<keyof typeof STATS, 'SM_STAT_MAX'>, string> = {
  SM_STAT_CONNECT_REWRITE: 'connectRewrites',
  SM_STAT_CONNECT_SIDECAR: 'connectSidecarSkips',
  SM_STAT_CONNECT_EXCLUDED: 'connectExcludedSkips',
  SM_STAT_CONNECT_DISABLED: 'connectDisabledSkips',
  SM_STAT_SOCK_INSERT: 'sockmapInserts',
  SM_STAT_MSG_REDIRECT: 'sockmapRedirects',
  SM_STAT_MSG_PASS: 'passThroughs',
  SM_STAT_ORIGDST_HIT: 'origDstHits',
  SM_STAT_ORIGDST_MISS: 'origDstMisses',
  SM_STAT_ERROR: 'errors',
  SM_STAT_MSG_NAGLE: 'msgNagleSender',
  SM_STAT_AUTO_STACK: 'autoStackConnects',
  SM_STAT_CONNECT_INBOUND: 'inboundRedirects',
  SM_STAT_MSG_FULL: 'msgReceiverFull',
  SM_STAT_MSG_ORDER: 'msgOrderHolds',
  SM_STAT_CONNECT_KERNEL: 'kernelConnects',
  SM_STAT_CONNECT_REFUSED: 'kernelRefused',
  SM_STAT_GETPEERNAME: 'getpeernameAnswers',
  SM_STAT_UDP_SEND: 'udpSends',
  SM_STAT_UDP_RECV: 'udpRepliesShownAsService',
  SM_STAT_INBOUND: 'inboundToSidecar',
  SM_STAT_INBOUND_NO_LISTENER: 'inboundRefusedNoListener',
  SM_STAT_ORIGDST_INBOUND: 'origDstInbound',
  SM_STAT_HOP_SPLICE: 'hopSplices',
};

/** Every struct codec, by C name, for the BTF layout check. */
export const STRUCT_CODECS: Codec<unknown>[] = [
  configCodec, podCodec, svcKeyCodec, svcValCodec, svcStateCodec, portKeyCodec, lpmKeyCodec, tupleCodec, origDstCodec,
  peerCodec, svcAutoCodec, backendKeyCodec, backendCodec, endpointKeyCodec, udpKeyCodec,
  addrKeyCodec, localPodCodec,
] as Codec<unknown>[];
