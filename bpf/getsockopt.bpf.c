// SPDX-License-Identifier: GPL-2.0
/* getsockopt — answer SO_ORIGINAL_DST (IPv4) and IP6T_SO_ORIGINAL_DST (IPv6) on the sidecar's
 * accepted socket from the tuple map, as iptables / ip6tables NAT would. The key carries the
 * socket's netns cookie: a pod's sidecar only ever reads its own pod's destinations. An inbound
 * connection (handed to the inbound listener by sk_lookup, include/inbound.h) kept the address its
 * client asked for: its answer is its own local address, as conntrack's would be. An IPv6 socket
 * talking IPv4 (a dual-stack listener, mapped addresses) is answered at SOL_IP with the IPv4
 * address, as the kernel's IPv4 conntrack would. */
#include "include/inbound.h"

#define SOL_IP 0
#define SOL_IPV6 41
#define SO_ORIGINAL_DST 80 /* IP6T_SO_ORIGINAL_DST has the same number, at SOL_IPV6 */

struct sm_sockaddr_in {
	__u16 sin_family;
	__u16 sin_port;
	__u32 sin_addr;
	__u8 sin_zero[8];
};

struct sm_sockaddr_in6 {
	__u16 sin6_family;
	__u16 sin6_port;
	__u32 sin6_flowinfo;
	__u32 sin6_addr[4];
	__u32 sin6_scope_id;
};

SEC("cgroup/getsockopt")
int sm_getsockopt(struct bpf_sockopt *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	__u64 netns = bpf_get_netns_cookie(ctx);
	__u32 slot, pod_id, family, level, local[4], remote[4], addr[4];
	struct sm_origdst *od;
	enum sm_stat stat;
	struct sm_tuple peer;
	struct sm_pod *pod;
	__u16 local_port, port;

	level = ctx->level;
	if ((level != SOL_IP && level != SOL_IPV6) || ctx->optname != SO_ORIGINAL_DST || !sk)
		return 1;
	/* Each field read once, as a scalar (the verifier refuses arithmetic on the socket pointer). */
	family = sk->family;
	if (family == SM_AF_INET && level == SOL_IP) {
		sm_addr_from_ip4(local, SM_CTX_U32(sk->src_ip4));
		sm_addr_from_ip4(remote, SM_CTX_U32(sk->dst_ip4));
		SM_CTX_READ_DONE();
	} else if (family == SM_AF_INET6) {
		SM_COPY_IP6(local, sk->src_ip6);
		SM_COPY_IP6(remote, sk->dst_ip6);
		SM_CTX_READ_DONE();
		/* SOL_IP on an IPv6 socket only for IPv4 traffic, SOL_IPV6 only for IPv6 traffic. */
		if ((level == SOL_IP) != sm_addr_is_v4(remote))
			return 1;
	} else {
		return 1;
	}
	local_port = (__u16)sk->src_port;
	/* The app's tuple is the accepted socket's own one reversed. */
	sm_tuple_ip6(&peer, netns, remote, bpf_ntohs(sk->dst_port), local, local_port);
	od = bpf_map_lookup_elem(&sm_tuple_dst, &peer);
	if (!od) {
		slot = sm_active_slot();
		pod = sm_find_pod(slot, netns);
		if (!pod || !sm_inbound_captured(slot, pod, local_port, remote) || !sm_local_pod_of(slot, local)) {
			sm_count(pod ? pod->pod_id : 0, SM_STAT_ORIGDST_MISS);
			return 1; /* keep the kernel's own answer (conntrack under iptables, else ENOENT) */
		}
		__builtin_memcpy(addr, local, sizeof(addr));
		port = local_port;
		pod_id = pod->pod_id;
		stat = SM_STAT_ORIGDST_INBOUND;
	} else {
		__builtin_memcpy(addr, od->addr, sizeof(addr));
		port = od->port;
		pod_id = od->pod_id;
		stat = SM_STAT_ORIGDST_HIT;
	}
	if (level == SOL_IP) {
		struct sm_sockaddr_in *sa = ctx->optval;

		if ((void *)(sa + 1) > ctx->optval_end || !sm_addr_is_v4(addr))
			return 1; /* caller's buffer too small, or not IPv4: keep the kernel's answer */
		sa->sin_family = SM_AF_INET;
		sa->sin_port = bpf_htons(port);
		sa->sin_addr = addr[3];
		__builtin_memset(sa->sin_zero, 0, sizeof(sa->sin_zero));
		ctx->optlen = sizeof(*sa);
	} else {
		struct sm_sockaddr_in6 *sa6 = ctx->optval;

		if ((void *)(sa6 + 1) > ctx->optval_end)
			return 1;
		sa6->sin6_family = SM_AF_INET6;
		sa6->sin6_port = bpf_htons(port);
		sa6->sin6_flowinfo = 0;
		__builtin_memcpy(sa6->sin6_addr, addr, sizeof(sa6->sin6_addr));
		sa6->sin6_scope_id = 0;
		ctx->optlen = sizeof(*sa6);
	}
	/* clang -O2 may merge the adjacent optlen and retval stores into one 8-byte store, which the
	 * verifier rejects for this context: the barrier keeps them two 4-byte stores. */
	asm volatile("" ::: "memory");
	ctx->retval = 0;
	sm_count(pod_id, stat);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
