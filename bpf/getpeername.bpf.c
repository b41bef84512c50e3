// SPDX-License-Identifier: GPL-2.0
/* getpeername4/6 — a kernel-mode connection's app sees the service address it connected to, not
 * the endpoint connect4/6 chose (include/kernelmode.h). Kernel-mode services are IPv4: an IPv6
 * socket sees the service's mapped address. */
#include "include/addr.h"
#include "include/config.h"
#include "include/stats.h"

SEC("cgroup/getpeername4")
int sm_getpeername4(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct sm_origdst *od = bpf_map_lookup_elem(&sm_cookie_svc, &cookie);

	if (!od)
		return 1;
	ctx->user_ip4 = od->addr[3];
	ctx->user_port = bpf_htons(od->port);
	sm_count(od->pod_id, SM_STAT_GETPEERNAME);
	return 1;
}

SEC("cgroup/getpeername6")
int sm_getpeername6(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct sm_origdst *od = bpf_map_lookup_elem(&sm_cookie_svc, &cookie);

	if (!od)
		return 1;
	ctx->user_ip6[0] = od->addr[0];
	ctx->user_ip6[1] = od->addr[1];
	ctx->user_ip6[2] = od->addr[2];
	ctx->user_ip6[3] = od->addr[3];
	ctx->user_port = bpf_htons(od->port);
	sm_count(od->pod_id, SM_STAT_GETPEERNAME);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
