// SPDX-License-Identifier: GPL-2.0
/* getsockopt — answer SO_ORIGINAL_DST on the sidecar's accepted socket from the tuple map, as
 * iptables NAT would. The key carries the socket's netns cookie: a pod's sidecar only ever reads
 * its own pod's destinations. */
#include "include/addr.h"
#include "include/config.h"
#include "include/stats.h"

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
	struct sm_tuple peer;
	struct sm_pod *pod;

	if (ctx->level != SOL_IP || ctx->optname != SO_ORIGINAL_DST)
		return 1;
	if (!sk || sk->family != AF_INET)
		return 1;
	/* The app's tuple is the accepted socket's own one reversed. */
	sm_tuple_ip4(&peer, netns, sk->dst_ip4, bpf_ntohs(sk->dst_port), sk->src_ip4, (__u16)sk->src_port);
	od = bpf_map_lookup_elem(&sm_tuple_dst, &peer);
	if (!od) {
		pod = sm_find_pod(sm_active_slot(), netns);
		sm_count(pod ? pod->pod_id : 0, SM_STAT_ORIGDST_MISS);
		return 1; /* keep the kernel's own answer (conntrack under iptables, else ENOENT) */
	}
	if ((void *)(sa + 1) > ctx->optval_end)
		return 1; /* caller's buffer too small: keep the kernel's answer */
	sa->sin_family = AF_INET;
	sa->sin_port = bpf_htons(od->port);
	sa->sin_addr = od->addr[3];
	__builtin_memset(sa->sin_zero, 0, sizeof(sa->sin_zero));
	ctx->optlen = sizeof(*sa);
	/* clang -O2 may merge the adjacent optlen and retval stores into one 8-byte store, which the
	 * verifier rejects for this context: the barrier keeps them two 4-byte stores. */
	asm volatile("" ::: "memory");
	ctx->retval = 0;
	sm_count(od->pod_id, SM_STAT_ORIGDST_HIT);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
