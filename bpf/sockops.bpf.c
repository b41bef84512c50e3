// SPDX-License-Identifier: GPL-2.0
/* sockops — on established connections: move the original destination of a captured connection
 * from its cookie to its tuple, and put both ends of a spliced app<->sidecar pair into the sockhash. */
#include "include/policy.h"

#define AF_INET 2

static __always_inline void sm_splice(struct bpf_sock_ops *skops, struct sm_tuple *self,
				      __u32 service_id)
{
	if (!(sm_service_flags(service_id) & SM_SVC_SPLICE))
		return;
	if (bpf_sock_hash_update(skops, &sm_sockhash, self, BPF_NOEXIST))
		sm_count(SM_STAT_ERROR);
	else
		sm_count(SM_STAT_SOCK_INSERT);
}

/* The app's socket, connected to the sidecar by connect4. */
static __always_inline void sm_on_active(struct bpf_sock_ops *skops, struct sm_tuple *self)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct sm_origdst *od = bpf_map_lookup_elem(&sm_cookie_dst, &cookie);
	struct sm_origdst copy;

	if (!od)
		return;
	copy = *od;
	bpf_map_delete_elem(&sm_cookie_dst, &cookie);
	if (bpf_map_update_elem(&sm_tuple_dst, self, &copy, BPF_ANY)) {
		sm_count(SM_STAT_ERROR);
		return;
	}
	sm_splice(skops, self, copy.service_id);
}

/* The sidecar's accepted socket: its peer's tuple is ours reversed. */
static __always_inline void sm_on_passive(struct bpf_sock_ops *skops, struct sm_tuple *self)
{
	struct sm_tuple peer;
	struct sm_origdst *od;

	sm_tuple_ip4(&peer, skops->remote_ip4, sm_remote_port(skops->remote_port), skops->local_ip4,
		     (__u16)skops->local_port);
	od = bpf_map_lookup_elem(&sm_tuple_dst, &peer);
	if (od)
		sm_splice(skops, self, od->service_id);
}

SEC("sockops")
int sm_sockops(struct bpf_sock_ops *skops)
{
	struct sm_tuple self;
	__u32 op = skops->op;

	if (skops->family != AF_INET)
		return 1;
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	sm_tuple_ip4(&self, skops->local_ip4, (__u16)skops->local_port, skops->remote_ip4,
		     sm_remote_port(skops->remote_port));
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		sm_on_active(skops, &self);
	else
		sm_on_passive(skops, &self);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
