// SPDX-License-Identifier: GPL-2.0
/* connect4 — outbound capture: send a mesh workload's connection to the sidecar's outbound
 * listener and remember where it was going, by socket cookie. The decisions are istio-init's,
 * in its order (README, "Capture decisions"). */
#include "include/policy.h"

#define SOCK_STREAM 1

enum sm_verdict { SM_LEAVE, SM_OUTBOUND, SM_INBOUND };

/* Which listener, if any, this connect goes to; *service_id is set for listed services. */
static __always_inline enum sm_verdict sm_decide(struct bpf_sock_addr *ctx, struct sm_config *cfg,
						  const __u32 addr[4], __u16 port, __u32 *service_id)
{
	__u64 uid_gid = bpf_get_current_uid_gid();
	int sidecar = (__u32)uid_gid == cfg->sidecar_uid || (__u32)(uid_gid >> 32) == cfg->sidecar_gid;
	__u32 dst = bpf_ntohl(ctx->user_ip4);
	struct bpf_sock *sk = ctx->sk;
	int loopback = (dst >> 24) == 127 || sm_in_cidrs(&sm_local_addrs, addr);
	struct sm_svc_val *svc;

	if (bpf_map_lookup_elem(&sm_excl_ports, &port)) {
		sm_count(SM_STAT_CONNECT_EXCLUDED);
		return SM_LEAVE;
	}
	if (sk && bpf_ntohl(sk->src_ip4) == SM_PASSTHROUGH_SRC && loopback)
		return SM_LEAVE;
	if (sidecar) {
		/* The sidecar calling its own pod (not 127.0.0.1) is inbound traffic. */
		if (loopback && dst != 0x7f000001 && port != SM_HBONE_PORT)
			return SM_INBOUND;
		sm_count(SM_STAT_CONNECT_SIDECAR);
		return SM_LEAVE;
	}
	if (loopback)
		return SM_LEAVE;
	if (sm_in_cidrs(&sm_excl_cidrs, addr)) {
		sm_count(SM_STAT_CONNECT_EXCLUDED);
		return SM_LEAVE;
	}
	svc = sm_find_service(addr, port);
	if (svc) {
		*service_id = svc->service_id;
		if (!(sm_service_flags(svc->service_id) & SM_SVC_REDIRECT)) {
			sm_count(SM_STAT_CONNECT_DISABLED);
			return SM_LEAVE;
		}
	}
	if (bpf_map_lookup_elem(&sm_incl_ports, &port))
		return SM_OUTBOUND;
	if (cfg->flags & SM_CFG_OUTBOUND_ALL)
		return (cfg->flags & SM_CFG_INCLUDE_ANY) || sm_in_cidrs(&sm_incl_cidrs, addr) ? SM_OUTBOUND : SM_LEAVE;
	return svc ? SM_OUTBOUND : SM_LEAVE;
}

SEC("cgroup/connect4")
int sm_connect4(struct bpf_sock_addr *ctx)
{
	struct sm_origdst od = { .service_id = SM_NO_SERVICE };
	enum sm_verdict verdict;
	struct sm_config *cfg;
	__u64 cookie;

	if (ctx->type != SOCK_STREAM)
		return 1;
	cfg = sm_get_config();
	if (!cfg)
		return 1;
	od.port = bpf_ntohs((__u16)ctx->user_port);
	sm_addr_from_ip4(od.addr, ctx->user_ip4);
	verdict = sm_decide(ctx, cfg, od.addr, od.port, &od.service_id);
	if (verdict == SM_LEAVE)
		return 1;
	cookie = bpf_get_socket_cookie(ctx);
	/* Without a record the sidecar could not find the destination: leave the connection alone. */
	if (bpf_map_update_elem(&sm_cookie_dst, &cookie, &od, BPF_ANY)) {
		sm_count(SM_STAT_ERROR);
		return 1;
	}
	ctx->user_ip4 = cfg->outbound_ip4;
	if (verdict == SM_INBOUND) {
		ctx->user_port = bpf_htons(cfg->inbound_port);
		sm_count(SM_STAT_CONNECT_INBOUND);
	} else {
		ctx->user_port = bpf_htons(cfg->outbound_port);
		sm_count(SM_STAT_CONNECT_REWRITE);
	}
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
