// What sockmesh needs of the kernel, feature by feature: the upstream Linux version that added
// each, what it is used for, and whether `sockmesh probe` checks it by doing (the rest is found out
// where it is used, with an error naming it). The probe's checks carry these versions, and the
// README's requirements table is this table (test/docs/requirements.test.ts compares them).

export interface Requirement {
  /** The name a probe check or an error uses. */
  feature: string;
  /** The Linux release that added it upstream (distribution kernels may backport). */
  since: string;
  /** What sockmesh does with it. */
  use: string;
  /** Which mode needs it. */
  mode: 'eBPF' | 'agent' | 'iptables';
  /** `sockmesh probe` checks it by loading, creating or attaching. */
  probed: boolean;
}

export const REQUIREMENTS: readonly Requirement[] = [
  { feature: 'bpffs', since: '4.4', use: 'pins: the programs and maps outlive the agent', mode: 'eBPF', probed: true },
  { feature: 'cgroup2', since: '4.5', use: 'the programs attach to the cgroup holding the pods', mode: 'eBPF', probed: true },
  { feature: 'BPF_MAP_TYPE_HASH', since: '3.19', use: 'services, pods, per-connection records', mode: 'eBPF', probed: true },
  { feature: 'BPF_MAP_TYPE_ARRAY', since: '3.19', use: 'the active slot, service state', mode: 'eBPF', probed: true },
  { feature: 'BPF_MAP_TYPE_PERCPU_ARRAY', since: '4.6', use: 'per-pod and per-service counters', mode: 'eBPF', probed: true },
  { feature: 'BPF_MAP_TYPE_PERCPU_HASH', since: '4.6', use: 'per-endpoint counters (kernel mode)', mode: 'eBPF', probed: true },
  { feature: 'BPF_MAP_TYPE_LRU_HASH', since: '4.10', use: 'original destinations by socket cookie', mode: 'eBPF', probed: true },
  { feature: 'BPF_MAP_TYPE_LPM_TRIE', since: '4.11', use: 'included and excluded CIDRs', mode: 'eBPF', probed: true },
  { feature: 'BPF_MAP_TYPE_SOCKMAP', since: '4.14', use: 'the sidecars\' inbound listeners', mode: 'eBPF', probed: true },
  { feature: 'BPF_MAP_TYPE_SOCKHASH', since: '4.18', use: 'the spliced socket pairs', mode: 'eBPF', probed: true },
  { feature: 'cgroup/connect4 and connect6 programs', since: '4.17', use: 'capture at connect()', mode: 'eBPF', probed: true },
  { feature: 'sockops programs with bpf_sock_hash_update', since: '4.18', use: 'splicing, sidecar listeners', mode: 'eBPF', probed: true },
  { feature: 'sk_msg programs with bpf_msg_redirect_hash', since: '4.18', use: 'data between spliced sockets', mode: 'eBPF', probed: true },
  { feature: 'cgroup/sendmsg4 programs', since: '4.18', use: 'UDP services in kernel mode', mode: 'eBPF', probed: true },
  { feature: 'cgroup/recvmsg4 programs', since: '5.2', use: 'UDP replies from the service address', mode: 'eBPF', probed: true },
  { feature: 'cgroup/getsockopt programs', since: '5.3', use: 'SO_ORIGINAL_DST for the sidecar', mode: 'eBPF', probed: true },
  { feature: 'bpf_link for cgroups, updated in place', since: '5.7', use: 'attachments, in-place upgrades', mode: 'eBPF', probed: true },
  { feature: 'cgroup/getpeername4 and getpeername6 programs', since: '5.8', use: 'kernel mode: the service address as the peer', mode: 'eBPF', probed: true },
  { feature: 'sk_lookup programs with bpf_sk_assign', since: '5.9', use: 'inbound capture', mode: 'eBPF', probed: true },
  { feature: 'bpf_get_netns_cookie in sockops, sk_msg and getsockopt', since: '5.15', use: 'which pod a socket belongs to', mode: 'eBPF', probed: true },
  { feature: 'bpf_set_retval', since: '5.18', use: 'ECONNREFUSED for a kernel-mode service without endpoints', mode: 'eBPF', probed: true },
  { feature: 'BTF', since: '5.4', use: 'the programs read kernel structures with CO-RE (CONFIG_DEBUG_INFO_BTF)', mode: 'eBPF', probed: true },
  { feature: 'pidfd_getfd', since: '5.6', use: 'registering a sidecar listener opened before capture', mode: 'eBPF', probed: false },
  { feature: 'SOCK_DESTROY (CONFIG_INET_DIAG_DESTROY)', since: '4.5', use: 'terminateOnRemove: closing connections of removed endpoints', mode: 'eBPF', probed: false },
  { feature: 'SO_PEERPIDFD', since: '6.5', use: 'the control socket: the caller\'s pod without the host\'s PID namespace', mode: 'agent', probed: false },
  { feature: 'PIDFD_GET_INFO', since: '6.13', use: 'the same: the caller\'s cgroup through its pidfd', mode: 'agent', probed: false },
  { feature: 'iptables nat table and conntrack', since: '2.6', use: 'iptables mode (REDIRECT rules, SO_ORIGINAL_DST)', mode: 'iptables', probed: false },
];

/** The programs' own minimum: the newest feature eBPF mode's object needs to load at all. */
export const EBPF_MINIMUM = REQUIREMENTS.filter((r) => r.mode === 'eBPF' && r.probed)
  .map((r) => r.since).sort((a, b) => compareVersions(b, a))[0];

export function compareVersions(a: string, b: string): number {
  const [x, y] = [a.split('.').map(Number), b.split('.').map(Number)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
  return 0;
}

/** The requirements as the README's table (markdown rows, header first). */
export function requirementsTable(): string[] {
  return [
    '| feature | Linux | used for | mode | checked |',
    '|---|---|---|---|---|',
    ...REQUIREMENTS.map((r) => `| ${r.feature} | ${r.since} | ${r.use} | ${r.mode} | ${r.probed ? '`sockmesh probe`' : 'where it is used'} |`),
  ];
}

/** The Linux release a probe check's feature came with: the object as a whole needs the newest. */
export function sinceOf(feature: string): string | undefined {
  if (feature === 'load sockmesh.bpf.o' || feature === 'attach') return EBPF_MINIMUM;
  return REQUIREMENTS.find((r) => r.feature === feature)?.since;
}
