// SPDX-License-Identifier: GPL-2.0
/* sk_lookup — inbound capture: a connection arriving in a meshed pod's namespace for one of its
 * captured app ports is handed to the pod's sidecar inbound listener (include/inbound.h decides).
 * Nothing is rewritten: the accepted socket keeps the address and port the client asked for, which
 * getsockopt then answers as SO_ORIGINAL_DST, and the client's source address is preserved. IPv4
 * and IPv6 (an IPv6 connection needs an IPv6 or dual-stack listener). Attached to each pod's
 * network namespace (never the host's). */
#include "include/inbound.h"

#define IPPROTO_TCP 6

SEC("sk_lookup")
int sm_inbound(struct bpf_sk_lookup *ctx)
{
	__u32 slot = sm_active_slot(), local[4], remote[4];
	struct sm_local_pod *lp;
	struct bpf_sock *sk;
	struct sm_pod *pod;
	__u32 pod_id;
	long err;

	if (ctx->protocol != IPPROTO_TCP || !sm_get_config(slot))
		return SK_PASS;
	if (ctx->family == SM_AF_INET) {
		sm_addr_from_ip4(local, SM_CTX_U32(ctx->local_ip4));
		sm_addr_from_ip4(remote, SM_CTX_U32(ctx->remote_ip4));
		SM_CTX_READ_DONE();
	} else if (ctx->family == SM_AF_INET6) {
		SM_COPY_IP6(local, ctx->local_ip6);
		SM_COPY_IP6(remote, ctx->remote_ip6);
		SM_CTX_READ_DONE();
	} else {
		return SK_PASS;
	}
	lp = sm_local_pod_of(slot, local);
	if (!lp)
		return SK_PASS;
	pod = SM_SLOT_LOOKUP(slot, sm_pods, &lp->netns);
	if (!pod || !sm_inbound_captured(slot, pod, (__u16)ctx->local_port, remote))
		return SK_PASS;
	pod_id = pod->pod_id;
	sk = bpf_map_lookup_elem(&sm_listeners, &pod_id);
	if (!sk) {
		/* As under istio-init's REDIRECT to a port nobody listens on: refused, never the app
		 * without its sidecar. */
		sm_count(pod_id, SM_STAT_INBOUND_NO_LISTENER);
		return SK_DROP;
	}
	err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		/* An IPv4-only listener cannot take an IPv6 connection: refused, as above. */
		sm_count(pod_id, SM_STAT_INBOUND_NO_LISTENER);
		return SK_DROP;
	}
	sm_count(pod_id, SM_STAT_INBOUND);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
