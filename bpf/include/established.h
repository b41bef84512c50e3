/* established.h — sockops handlers: on established connections, move the original destination of
 * a captured connection from its cookie to its tuple and put both ends of a spliced app<->sidecar
 * pair into the sockhash; at close, drop what the connection held (and let splice: auto learn).
 * Every key carries the socket's netns cookie: pods never see each other's entries. */
#ifndef SOCKMESH_ESTABLISHED_H
#define SOCKMESH_ESTABLISHED_H

#include "addr.h"
#include "inbound.h"
#include "splice.h"

static __always_inline void sm_sockhash_add(struct bpf_sock_ops *skops, struct bpf_sock *sk, struct sm_tuple *self,
					    const struct sm_origdst *od)
{
	struct sm_peer peer = { .pod_id = od->pod_id, .flags = (od->flags & SM_OD_AUTO) ? SM_PEER_AUTO : 0 };
	__u32 pod_id = od->pod_id;

	if (!sk) {
		sm_count(pod_id, SM_STAT_ERROR);
		return;
	}
	/* Where sk_msg on the peer reads this socket's receive state (include/redirect.h). The
	 * address is only ever probe-read; a socket without it is never redirected to. */
	peer.addr = (__u64)(unsigned long)sk;
	if (bpf_map_update_elem(&sm_peer_sk, self, &peer, BPF_ANY)) {
		sm_count(pod_id, SM_STAT_ERROR);
		return;
	}
	/* Hear about the close, to drop the address again. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	if (bpf_sock_hash_update(skops, &sm_sockhash, self, BPF_NOEXIST))
		sm_count(pod_id, SM_STAT_ERROR);
	else
		sm_count(pod_id, SM_STAT_SOCK_INSERT);
}

/* A connection no capture made, from a meshed pod to a meshed pod's address on this node (a
 * sidecar's upstream to another pod, whose sidecar sk_lookup hands it to; a sidecar to its own
 * app from 127.0.0.6): a hop both of whose ends are local sockets. Fills *od and says whether it
 * is spliced (sm_config.hop_splice; auto: this socket sends each write at once). */
static __always_inline int sm_hop(struct bpf_sock_ops *skops, struct bpf_sock *sk, const struct sm_tuple *self, struct sm_origdst *od)
{
	__u32 slot = sm_active_slot(), mode = sm_hop_splice(slot);
	struct tcp_sock *tp;
	struct sm_pod *pod;

	if (mode == SM_HOPS_NEVER || !sm_local_pod_of(slot, self->daddr))
		return 0;
	pod = sm_find_pod(slot, self->netns);
	if (!pod)
		return 0;
	if (mode == SM_HOPS_AUTO) {
		tp = sk ? bpf_skc_to_tcp_sock(sk) : 0;
		if (!tp || !sm_tcp_nodelay(tp))
			return 0;
	}
	__builtin_memcpy(od->addr, self->daddr, sizeof(od->addr));
	od->port = self->dport;
	od->flags = SM_OD_SPLICED | (mode == SM_HOPS_AUTO ? SM_OD_AUTO : 0);
	od->service_id = SM_NO_SERVICE;
	od->pod_id = pod->pod_id;
	sm_count(od->pod_id, SM_STAT_HOP_SPLICE);
	return 1;
}

/* The app's socket, connected to the sidecar by connect4; or a hop between local pods (sm_hop). */
static __always_inline void sm_on_active(struct bpf_sock_ops *skops, struct sm_tuple *self)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct sm_origdst *od = bpf_map_lookup_elem(&sm_cookie_dst, &cookie);
	/* Read once: the verifier refuses a second read through a pointer clang derived from ctx. */
	struct bpf_sock *sk = skops->sk;
	struct sm_origdst copy;

	if (!od) {
		/* A kernel-mode connection (include/kernelmode.h): hear its close, to drop its record. */
		if (bpf_map_lookup_elem(&sm_cookie_svc, &cookie)) {
			bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
			return;
		}
		if (!sm_hop(skops, sk, self, &copy))
			return;
	} else {
		copy = *od;
		bpf_map_delete_elem(&sm_cookie_dst, &cookie);
		copy.flags |= sm_splice_mode(sm_active_slot(), copy.service_id, sk, copy.pod_id);
	}
	if (copy.flags & SM_OD_SPLICED)
		sm_count_svc(copy.service_id, SM_SVC_STAT_SPLICED);
	if (bpf_map_update_elem(&sm_tuple_dst, self, &copy, BPF_ANY)) {
		sm_count(copy.pod_id, SM_STAT_ERROR);
		return;
	}
	/* Hear about the close: to drop the tuple entry (and, auto, to learn). */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	if (copy.flags & SM_OD_SPLICED)
		sm_sockhash_add(skops, sk, self, &copy);
}

/* The sidecar's accepted socket (or a hop's server end): its peer's tuple is ours reversed, in
 * the namespace of its address. */
static __always_inline void sm_on_passive(struct bpf_sock_ops *skops, struct sm_tuple *self)
{
	struct sm_tuple peer;
	struct sm_origdst *od;

	sm_tuple_ip6(&peer, sm_peer_netns(self->netns, self->daddr), self->daddr, self->dport, self->saddr, self->sport);
	od = bpf_map_lookup_elem(&sm_tuple_dst, &peer);
	if (od && (od->flags & SM_OD_SPLICED))
		sm_sockhash_add(skops, skops->sk, self, od);
}

/* A socket of a meshed pod starts listening: the pod's sidecar inbound listener (by its port) is
 * where sk_lookup hands the pod's inbound connections (inbound.bpf.c). IPv4 or dual-stack. */
static __always_inline void sm_on_listen(struct bpf_sock_ops *skops)
{
	struct sm_pod *pod = sm_find_pod(sm_active_slot(), bpf_get_netns_cookie(skops));
	__u32 pod_id;

	if (!pod || !pod->pod_id || skops->local_port != pod->inbound_port)
		return;
	pod_id = pod->pod_id;
	if (bpf_sock_map_update(skops, &sm_listeners, &pod_id, BPF_ANY))
		sm_count(pod_id, SM_STAT_ERROR);
}

/* A captured or spliced socket is closing. */
static __always_inline void sm_on_close(struct bpf_sock_ops *skops, struct sm_tuple *self)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct sm_origdst *od;

	bpf_map_delete_elem(&sm_cookie_svc, &cookie);
	bpf_map_delete_elem(&sm_peer_sk, self);
	od = bpf_map_lookup_elem(&sm_tuple_dst, self);
	if (!od)
		return;
	if (od->flags & SM_OD_AUTO)
		sm_auto_learn(od, skops);
	bpf_map_delete_elem(&sm_tuple_dst, self);
}

#endif
