// SPDX-License-Identifier: GPL-2.0
/* connect4 — outbound capture: send a mesh workload's connection to a meshed service to the
 * sidecar's outbound listener and remember where it was going, by socket cookie. */
#include "include/policy.h"

#define SOCK_STREAM 1

SEC("cgroup/connect4")
int sm_connect4(struct bpf_sock_addr *ctx)
{
	struct sm_origdst od = {};
	struct sm_config *cfg;
	struct sm_svc_val *svc;
	__u64 uid_gid, cookie;
	__u16 port;

	if (ctx->type != SOCK_STREAM)
		return 1;
	cfg = sm_get_config();
	if (!cfg)
		return 1;
	uid_gid = bpf_get_current_uid_gid();
	if ((__u32)uid_gid == cfg->sidecar_uid || (__u32)(uid_gid >> 32) == cfg->sidecar_gid) {
		sm_count(SM_STAT_CONNECT_SIDECAR);
		return 1;
	}
	port = bpf_ntohs((__u16)ctx->user_port);
	sm_addr_from_ip4(od.addr, ctx->user_ip4);
	svc = sm_find_service(od.addr, port);
	if (!svc)
		return 1;
	if (sm_is_excluded(od.addr, port)) {
		sm_count(SM_STAT_CONNECT_EXCLUDED);
		return 1;
	}
	if (!(sm_service_flags(svc->service_id) & SM_SVC_REDIRECT)) {
		sm_count(SM_STAT_CONNECT_DISABLED);
		return 1;
	}
	od.port = port;
	od.service_id = svc->service_id;
	cookie = bpf_get_socket_cookie(ctx);
	/* Without a record the sidecar could not find the destination: leave the connection alone. */
	if (bpf_map_update_elem(&sm_cookie_dst, &cookie, &od, BPF_ANY)) {
		sm_count(SM_STAT_ERROR);
		return 1;
	}
	ctx->user_ip4 = cfg->outbound_ip4;
	ctx->user_port = bpf_htons(cfg->outbound_port);
	sm_count(SM_STAT_CONNECT_REWRITE);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
