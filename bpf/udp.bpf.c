// SPDX-License-Identifier: GPL-2.0
/* sendmsg4 / recvmsg4 — kernel-mode UDP services (include/kernelmode.h): each datagram of an
 * unconnected UDP socket to the service goes to the endpoint that socket was given for it (picked
 * at its first datagram), and the endpoint's replies are shown as coming from the service. */
#include "include/kernelmode.h"

SEC("cgroup/sendmsg4")
int sm_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct sm_origdst od = { .service_id = SM_NO_SERVICE };
	__u32 slot = sm_active_slot();
	struct sm_udp_key pick = {};
	struct sm_backend to, *be;
	struct sm_pod *pod;

	if (!sm_get_config(slot))
		return 1;
	od.port = bpf_ntohs((__u16)ctx->user_port);
	sm_addr_from_ip4(od.addr, ctx->user_ip4);
	if (!sm_udp_service(slot, od.addr, od.port))
		return 1;
	pod = sm_find_pod(slot, bpf_get_netns_cookie(ctx));
	if (!pod || !sm_in_pod_cgroup(pod))
		return 1;
	od.pod_id = pod->pod_id;
	if (sm_decide(slot, pod, sm_from_passthrough4(ctx->sk), od.addr, od.port, &od.service_id) != SM_KERNEL)
		return 1;
	pick.cookie = bpf_get_socket_cookie(ctx);
	pick.ip4 = ctx->user_ip4;
	pick.port = od.port;
	be = bpf_map_lookup_elem(&sm_udp_pick, &pick);
	if (be) {
		to = *be;
	} else {
		be = sm_pick_backend(ctx, slot, od.service_id);
		if (!be)
			return sm_refuse(pod->pod_id, od.service_id);
		to = *be;
		bpf_map_update_elem(&sm_udp_pick, &pick, &to, BPF_ANY);
		sm_udp_remember(pick.cookie, &to, &od);
		sm_count_endpoint(pod->pod_id, od.service_id, &to);
	}
	ctx->user_ip4 = to.ip4;
	if (to.port)
		ctx->user_port = bpf_htons(to.port);
	sm_count(pod->pod_id, SM_STAT_UDP_SEND);
	return 1;
}

SEC("cgroup/recvmsg4")
int sm_recvmsg4(struct bpf_sock_addr *ctx)
{
	struct sm_udp_key rev = { .cookie = bpf_get_socket_cookie(ctx), .ip4 = ctx->user_ip4, .port = bpf_ntohs((__u16)ctx->user_port) };
	struct sm_backend *svc = bpf_map_lookup_elem(&sm_udp_rev, &rev);
	struct sm_pod *pod;

	if (!svc)
		return 1;
	ctx->user_ip4 = svc->ip4;
	ctx->user_port = bpf_htons(svc->port);
	pod = sm_find_pod(sm_active_slot(), bpf_get_netns_cookie(ctx));
	sm_count(pod ? pod->pod_id : 0, SM_STAT_UDP_RECV);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
