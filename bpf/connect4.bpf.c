// SPDX-License-Identifier: GPL-2.0
/* connect4 — outbound capture: send a mesh workload's connection to its pod's sidecar and
 * remember where it was going, by socket cookie (include/policy.h decides); a kernel-mode
 * service's connection goes straight to an endpoint instead (include/kernelmode.h). */
#include "include/kernelmode.h"
#include "include/policy.h"

SEC("cgroup/connect4")
int sm_connect4(struct bpf_sock_addr *ctx)
{
	struct sm_origdst od = { .service_id = SM_NO_SERVICE };
	__u32 slot = sm_active_slot();
	enum sm_verdict verdict;
	struct sm_pod *pod;
	__u16 port;

	if ((ctx->type != SM_SOCK_STREAM && ctx->type != SM_SOCK_DGRAM) || !sm_get_config(slot))
		return 1;
	od.port = bpf_ntohs((__u16)ctx->user_port);
	sm_addr_from_ip4(od.addr, ctx->user_ip4);
	/* UDP is only ever a kernel-mode UDP service's: everything else leaves at one lookup. */
	if (ctx->type == SM_SOCK_DGRAM && !sm_udp_service(slot, od.addr, od.port))
		return 1;
	pod = sm_find_pod(slot, bpf_get_netns_cookie(ctx));
	if (!pod || !sm_in_pod_cgroup(pod))
		return 1;
	od.pod_id = pod->pod_id;
	verdict = sm_decide(slot, pod, sm_from_passthrough4(ctx->sk), od.addr, od.port, &od.service_id);
	if (verdict == SM_KERNEL)
		return sm_kernel_serves(sm_service_flags(slot, od.service_id), ctx->type) ? sm_connect_kernel(ctx, slot, pod, &od, 0) : 1;
	if (verdict == SM_LEAVE || ctx->type != SM_SOCK_STREAM)
		return 1;
	port = sm_capture(ctx, pod, &od, verdict);
	if (port) {
		ctx->user_ip4 = pod->outbound_ip4;
		ctx->user_port = port;
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
