// SPDX-License-Identifier: GPL-2.0
/* connect6 — outbound capture of IPv6 sockets (include/policy.h decides, as for connect4): an
 * IPv6 destination goes to the sidecar's listener on ::1, an IPv4-mapped one (a dual-stack socket
 * talking IPv4, Java's default) to the sidecar's IPv4 listener through its mapped address, with the
 * same record, so the sidecar reads the IPv4 original destination. Kernel-mode services (IPv4)
 * are reached through their mapped addresses too. TCP only. */
#include "include/kernelmode.h"
#include "include/policy.h"

SEC("cgroup/connect6")
int sm_connect6(struct bpf_sock_addr *ctx)
{
	struct sm_origdst od = { .service_id = SM_NO_SERVICE };
	__u32 slot = sm_active_slot();
	enum sm_verdict verdict;
	struct sm_pod *pod;
	__u16 port;
	int v4;

	if (ctx->type != SM_SOCK_STREAM || !sm_get_config(slot))
		return 1;
	SM_COPY_IP6(od.addr, ctx->user_ip6);
	od.port = bpf_ntohs((__u16)ctx->user_port);
	pod = sm_find_pod(slot, bpf_get_netns_cookie(ctx));
	if (!pod || !sm_in_pod_cgroup(pod))
		return 1;
	od.pod_id = pod->pod_id;
	v4 = sm_addr_is_v4(od.addr);
	verdict = sm_decide(slot, pod, sm_from_passthrough6(ctx->sk), od.addr, od.port, &od.service_id);
	if (verdict == SM_KERNEL)
		return v4 && sm_kernel_serves(sm_service_flags(slot, od.service_id), SM_SOCK_STREAM) ? sm_connect_kernel(ctx, slot, pod, &od, 1) : 1;
	if (verdict == SM_LEAVE)
		return 1;
	port = sm_capture(ctx, pod, &od, verdict);
	if (!port)
		return 1;
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	ctx->user_ip6[2] = v4 ? bpf_htonl(0x0000ffff) : 0;
	ctx->user_ip6[3] = v4 ? pod->outbound_ip4 : bpf_htonl(1);
	ctx->user_port = port;
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
