// SPDX-License-Identifier: GPL-2.0
/* sk_lookup — inbound capture: a connection arriving in a meshed pod's namespace for one of its
 * captured app ports is handed to the pod's sidecar inbound listener (include/inbound.h decides).
 * Nothing is rewritten: the accepted socket keeps the address and port the client asked for, which
 * getsockopt then answers as SO_ORIGINAL_DST, and the client's source address is preserved.
 * Attached to each pod's network namespace (never the host's). */
#include "include/inbound.h"

#define AF_INET 2
#define IPPROTO_TCP 6

SEC("sk_lookup")
int sm_inbound(struct bpf_sk_lookup *ctx)
{
	__u32 slot = sm_active_slot();
	struct sm_local_pod *lp;
	struct bpf_sock *sk;
	struct sm_pod *pod;
	__u32 pod_id;
	long err;

	if (ctx->protocol != IPPROTO_TCP || ctx->family != AF_INET || !sm_get_config(slot))
		return SK_PASS;
	lp = sm_local_pod_of(slot, ctx->local_ip4);
	if (!lp)
		return SK_PASS;
	pod = SM_SLOT_LOOKUP(slot, sm_pods, &lp->netns);
	if (!pod || !sm_inbound_captured(slot, pod, (__u16)ctx->local_port, ctx->remote_ip4))
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
		sm_count(pod_id, SM_STAT_ERROR);
		return SK_DROP;
	}
	sm_count(pod_id, SM_STAT_INBOUND);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
