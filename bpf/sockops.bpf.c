// SPDX-License-Identifier: GPL-2.0
/* sockops — on established connections: move the original destination of a captured connection
 * from its cookie to its tuple, and put both ends of a spliced app<->sidecar pair into the sockhash.
 * At close, a captured connection votes on auto-splicing for its service. */
#include "include/policy.h"
#include "include/splice.h"

#define AF_INET 2

static __always_inline void sm_sockhash_add(struct bpf_sock_ops *skops, struct sm_tuple *self)
{
	struct bpf_sock *sk = skops->sk;
	__u64 addr;

	if (!sk) {
		sm_count(SM_STAT_ERROR);
		return;
	}
	/* Where sk_msg on the peer reads this socket's receive state (include/redirect.h). The
	 * address is only ever probe-read; a socket without it is never redirected to. */
	addr = (__u64)(unsigned long)sk;
	if (bpf_map_update_elem(&sm_peer_sk, self, &addr, BPF_ANY)) {
		sm_count(SM_STAT_ERROR);
		return;
	}
	/* Hear about the close, to drop the address again. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
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
	if (sm_should_splice(copy.service_id))
		copy.flags |= SM_OD_SPLICED;
	if (bpf_map_update_elem(&sm_tuple_dst, self, &copy, BPF_ANY)) {
		sm_count(SM_STAT_ERROR);
		return;
	}
	/* Hear about the close: to vote (auto) and to drop the tuple entry. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	if (copy.flags & SM_OD_SPLICED)
		sm_sockhash_add(skops, self);
}

/* The sidecar's accepted socket: its peer's tuple is ours reversed. */
static __always_inline void sm_on_passive(struct bpf_sock_ops *skops, struct sm_tuple *self)
{
	struct sm_tuple peer;
	struct sm_origdst *od;

	sm_tuple_ip4(&peer, skops->remote_ip4, sm_remote_port(skops->remote_port), skops->local_ip4,
		     (__u16)skops->local_port);
	od = bpf_map_lookup_elem(&sm_tuple_dst, &peer);
	if (od && (od->flags & SM_OD_SPLICED))
		sm_sockhash_add(skops, self);
}

/* A captured or spliced socket is closing. */
static __always_inline void sm_on_close(struct bpf_sock_ops *skops, struct sm_tuple *self)
{
	struct sm_origdst *od;

	bpf_map_delete_elem(&sm_peer_sk, self);
	od = bpf_map_lookup_elem(&sm_tuple_dst, self);
	if (!od)
		return;
	/* A spliced connection's data never became segments: only unspliced ones can vote. */
	if (!(od->flags & SM_OD_SPLICED))
		sm_auto_vote(od->service_id, skops->data_segs_in + skops->data_segs_out,
			     skops->bytes_received + skops->bytes_acked);
	bpf_map_delete_elem(&sm_tuple_dst, self);
}

SEC("sockops")
int sm_sockops(struct bpf_sock_ops *skops)
{
	struct sm_tuple self;
	__u32 op = skops->op;

	if (skops->family != AF_INET)
		return 1;
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
	    !(op == BPF_SOCK_OPS_STATE_CB && skops->args[1] == BPF_TCP_CLOSE))
		return 1;
	sm_tuple_ip4(&self, skops->local_ip4, (__u16)skops->local_port, skops->remote_ip4,
		     sm_remote_port(skops->remote_port));
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		sm_on_active(skops, &self);
	else if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		sm_on_passive(skops, &self);
	else
		sm_on_close(skops, &self);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
