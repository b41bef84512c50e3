// TypeScript mirror of bpf/include/sockmesh.h: one codec per shared struct and the constants.
// test/bpf/codecs.test.ts checks every layout here against the BTF of bpf/sockmesh.bpf.o.
import { struct, scalar, type Codec } from './codec.js';

export const CFG_ENABLED = 1 << 0;
export const CFG_OUTBOUND_ALL = 1 << 1;
export const CFG_INCLUDE_ANY = 1 << 2;
export const SVC_REDIRECT = 1 << 0;
export const SVC_SPLICE = 1 << 1;
export const SVC_AUTO = 1 << 2;
export const OD_SPLICED = 1 << 0;

export interface SmConfig {
  sidecarUid: number;
  sidecarGid: number;
  outboundIp4: string;
  outboundPort: number;
  inboundPort: number;
  flags: number;
  autoSegBytes: number;
  autoMinSegs: number;
  autoVotes: number;
}

export const configCodec = struct<SmConfig>('sm_config', [
  ['sidecar_uid', 'u32', 'sidecarUid'],
  ['sidecar_gid', 'u32', 'sidecarGid'],
  ['outbound_ip4', 'ip4be', 'outboundIp4'],
  ['outbound_port', 'u16', 'outboundPort'],
  ['inbound_port', 'u16', 'inboundPort'],
  ['flags', 'u32', 'flags'],
  ['auto_seg_bytes', 'u32', 'autoSegBytes'],
  ['auto_min_segs', 'u32', 'autoMinSegs'],
  ['auto_votes', 'u32', 'autoVotes'],
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
  prefixlen: number;
  addr: string | null;
}

export const lpmKeyCodec = struct<LpmKey>('sm_lpm_key', [
  ['prefixlen', 'u32', 'prefixlen'],
  ['addr', 'ip16', 'addr'],
]);

export interface Tuple {
  saddr: string | null;
  daddr: string | null;
  sport: number;
  dport: number;
}

export const tupleCodec = struct<Tuple>('sm_tuple', [
  ['saddr', 'ip16', 'saddr'],
  ['daddr', 'ip16', 'daddr'],
  ['sport', 'u16', 'sport'],
  ['dport', 'u16', 'dport'],
]);

export interface OrigDst {
  addr: string | null;
  port: number;
  flags: number;
  serviceId: number;
}

export const origDstCodec = struct<OrigDst>('sm_origdst', [
  ['addr', 'ip16', 'addr'],
  ['port', 'u16', 'port'],
  ['flags', 'u16', 'flags'],
  ['service_id', 'u32', 'serviceId'],
]);

export interface SvcAuto {
  votes: number;
  connections: number;
}

export const svcAutoCodec = struct<SvcAuto>('sm_svc_auto', [
  ['votes', 'u32', 'votes'],
  ['connections', 'u32', 'connections'],
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
  SM_STAT_AUTO_VOTE_FOR: 10,
  SM_STAT_AUTO_VOTE_AGAINST: 11,
  SM_STAT_CONNECT_INBOUND: 12,
  SM_STAT_MSG_FULL: 13,
  SM_STAT_MSG_ORDER: 14,
  SM_STAT_MAX: 15,
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
  SM_STAT_AUTO_VOTE_FOR: 'autoVotesFor',
  SM_STAT_AUTO_VOTE_AGAINST: 'autoVotesAgainst',
  SM_STAT_CONNECT_INBOUND: 'inboundRedirects',
  SM_STAT_MSG_FULL: 'msgReceiverFull',
  SM_STAT_MSG_ORDER: 'msgOrderHolds',
};

/** Every struct codec, by C name, for the BTF layout check. */
export const STRUCT_CODECS: Codec<unknown>[] = [
  configCodec, svcKeyCodec, svcValCodec, svcStateCodec, lpmKeyCodec, tupleCodec, origDstCodec, svcAutoCodec,
] as Codec<unknown>[];
