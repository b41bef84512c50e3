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
	__u64 cookie;

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
	cookie = bpf_get_socket_cookie(ctx);
	/* Without a record the sidecar could not find the destination: leave the connection alone. */
	if (bpf_map_update_elem(&sm_cookie_dst, &cookie, &od, BPF_ANY)) {
		sm_count(pod->pod_id, SM_STAT_ERROR);
		return 1;
	}
	ctx->user_ip4 = pod->outbound_ip4;
	if (verdict == SM_INBOUND) {
		ctx->user_port = bpf_htons(pod->inbound_port);
		sm_count(pod->pod_id, SM_STAT_CONNECT_INBOUND);
	} else {
		ctx->user_port = bpf_htons(pod->outbound_port);
		sm_count(pod->pod_id, SM_STAT_CONNECT_REWRITE);
		sm_count_svc(od.service_id, SM_SVC_STAT_CAPTURED);
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
