// SPDX-License-Identifier: GPL-2.0
/* getsockopt — answer SO_ORIGINAL_DST on the sidecar's accepted socket from the tuple map, as
 * iptables NAT would. The key carries the socket's netns cookie: a pod's sidecar only ever reads
 * its own pod's destinations. An inbound connection (handed to the inbound listener by sk_lookup,
 * include/inbound.h) kept the address its client asked for: its answer is its own local address,
 * as conntrack's would be. */
#include "include/inbound.h"

#define AF_INET 2
#define SOL_IP 0
#define SO_ORIGINAL_DST 80

struct sm_sockaddr_in {
	__u16 sin_family;
	__u16 sin_port;
	__u32 sin_addr;
	__u8 sin_zero[8];
};

SEC("cgroup/getsockopt")
int sm_getsockopt(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct sm_sockaddr_in *sa = ctx->optval;
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct sm_origdst *od;
	__u32 slot, addr, pod_id, local_ip4, remote_ip4;
	__u16 local_port;
	enum sm_stat stat;
	struct sm_tuple peer;
	struct sm_pod *pod;
	__u16 port;

	if (ctx->level != SOL_IP || ctx->optname != SO_ORIGINAL_DST)
		return 1;
	if (!sk || sk->family != AF_INET)
		return 1;
	/* Each field read once, as a scalar (the verifier refuses arithmetic on the socket pointer). */
	local_ip4 = sk->src_ip4;
	local_port = (__u16)sk->src_port;
	remote_ip4 = sk->dst_ip4;
	/* The app's tuple is the accepted socket's own one reversed. */
	sm_tuple_ip4(&peer, netns, remote_ip4, bpf_ntohs(sk->dst_port), local_ip4, local_port);
	od = bpf_map_lookup_elem(&sm_tuple_dst, &peer);
	if (!od) {
		slot = sm_active_slot();
		pod = sm_find_pod(slot, netns);
		if (!pod || !sm_inbound_captured(slot, pod, local_port, remote_ip4) || !sm_local_pod_of(slot, local_ip4)) {
			sm_count(pod ? pod->pod_id : 0, SM_STAT_ORIGDST_MISS);
			return 1; /* keep the kernel's own answer (conntrack under iptables, else ENOENT) */
		}
		addr = local_ip4;
		port = local_port;
		pod_id = pod->pod_id;
		stat = SM_STAT_ORIGDST_INBOUND;
	} else {
		addr = od->addr[3];
		port = od->port;
		pod_id = od->pod_id;
		stat = SM_STAT_ORIGDST_HIT;
	}
	if ((void *)(sa + 1) > ctx->optval_end)
		return 1; /* caller's buffer too small: keep the kernel's answer */
	sa->sin_family = AF_INET;
	sa->sin_port = bpf_htons(port);
	sa->sin_addr = addr;
	__builtin_memset(sa->sin_zero, 0, sizeof(sa->sin_zero));
	ctx->optlen = sizeof(*sa);
	/* clang -O2 may merge the adjacent optlen and retval stores into one 8-byte store, which the
	 * verifier rejects for this context: the barrier keeps them two 4-byte stores. */
	asm volatile("" ::: "memory");
	ctx->retval = 0;
	sm_count(pod_id, stat);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
