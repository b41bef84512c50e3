// The programs and maps in bpf/sockmesh.bpf.o and where each program attaches.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AttachType } from '../../native/libbpf.js';
import { packageRoot } from '../util/paths.js';

export interface ProgramSpec {
  /** Function name in the object = pin name under <root>/progs/. */
  name: string;
  /** bpftool's attach type word. */
  bpftoolType: string;
  attachType: number;
  /** 'cgroup': attached to the instance's cgroup; 'sockhash': to the sockhash map; 'netns': to
   * each pod's network namespace (src/bpf/inbound.ts). */
  target: 'cgroup' | 'sockhash' | 'netns';
  /** The kernel feature this program needs, as reported when it cannot be loaded or attached. */
  feature: string;
}

export const PROGRAMS: readonly ProgramSpec[] = [
  { name: 'sm_connect4', bpftoolType: 'connect4', attachType: AttachType.CGROUP_INET4_CONNECT, target: 'cgroup',
    feature: 'cgroup/connect4 programs (BPF_PROG_TYPE_CGROUP_SOCK_ADDR)' },
  { name: 'sm_connect6', bpftoolType: 'connect6', attachType: AttachType.CGROUP_INET6_CONNECT, target: 'cgroup',
    feature: 'cgroup/connect6 programs (BPF_PROG_TYPE_CGROUP_SOCK_ADDR)' },
  { name: 'sm_sockops', bpftoolType: 'sock_ops', attachType: AttachType.CGROUP_SOCK_OPS, target: 'cgroup',
    feature: 'sockops programs with bpf_sock_hash_update (BPF_PROG_TYPE_SOCK_OPS)' },
  { name: 'sm_getsockopt', bpftoolType: 'getsockopt', attachType: AttachType.CGROUP_GETSOCKOPT, target: 'cgroup',
    feature: 'cgroup/getsockopt programs (BPF_PROG_TYPE_CGROUP_SOCKOPT)' },
  { name: 'sm_getpeername4', bpftoolType: 'getpeername4', attachType: AttachType.CGROUP_INET4_GETPEERNAME, target: 'cgroup',
    feature: 'cgroup/getpeername4 programs (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, kernel 5.8)' },
  { name: 'sm_getpeername6', bpftoolType: 'getpeername6', attachType: AttachType.CGROUP_INET6_GETPEERNAME, target: 'cgroup',
    feature: 'cgroup/getpeername6 programs (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, kernel 5.8)' },
  { name: 'sm_sendmsg4', bpftoolType: 'sendmsg4', attachType: AttachType.CGROUP_UDP4_SENDMSG, target: 'cgroup',
    feature: 'cgroup/sendmsg4 programs (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, kernel 4.18)' },
  { name: 'sm_recvmsg4', bpftoolType: 'recvmsg4', attachType: AttachType.CGROUP_UDP4_RECVMSG, target: 'cgroup',
    feature: 'cgroup/recvmsg4 programs (BPF_PROG_TYPE_CGROUP_SOCK_ADDR, kernel 5.2)' },
  { name: 'sm_inbound', bpftoolType: 'sk_lookup', attachType: AttachType.SK_LOOKUP, target: 'netns',
    feature: 'sk_lookup programs with bpf_sk_assign (BPF_PROG_TYPE_SK_LOOKUP, kernel 5.9)' },
  { name: 'sm_msg', bpftoolType: 'msg_verdict', attachType: AttachType.SK_MSG_VERDICT, target: 'sockhash',
    feature: 'sk_msg programs with bpf_msg_redirect_hash (BPF_PROG_TYPE_SK_MSG)' },
];

const SLOTTED = ['sm_pods', 'sm_services', 'sm_svc_state', 'sm_ports', 'sm_cidrs', 'sm_backends', 'sm_local_addrs'] as const;

export const MAP_NAMES = [
  'sm_gen', 'sm_config',
  ...SLOTTED.flatMap((m) => [`${m}_a`, `${m}_b`] as const),
  'sm_svc_auto', 'sm_cookie_dst', 'sm_tuple_dst', 'sm_sockhash', 'sm_peer_sk', 'sm_stats', 'sm_svc_stats', 'sm_cookie_svc', 'sm_endpoint_stats', 'sm_udp_pick', 'sm_udp_rev',
  'sm_listeners',
] as const;

export type MapName = (typeof MAP_NAMES)[number];

/** The committed, prebuilt object. */
export function defaultObjectPath(): string {
  return join(packageRoot(), 'bpf', 'sockmesh.bpf.o');
}

/** The BPF object's content hash (tens of kilobytes: cheap next to loading it to compare). */
export function objectSha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}
