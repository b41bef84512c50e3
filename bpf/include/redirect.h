/* redirect.h — when a message of a spliced socket may skip the stack.
 *
 * bpf_msg_redirect_hash(BPF_F_INGRESS) queues a message on the peer's psock and charges the
 * peer's sk_rmem_alloc, but never checks it against sk_rcvbuf (kernel 6.18): a fast writer and a
 * slow reader would pin host TCP memory until the global limit answers ENOMEM. And data that
 * already went through the stack waits in the peer's TCP receive queue, which the reader only
 * sees after its psock queue: redirecting then would reorder the stream. So a message is
 * redirected only when
 *   - the peer has read every byte this socket ever sent through the stack
 *     (peer->copied_seq == self->write_seq: both count the stack bytes of this direction only),
 *     which makes reordering impossible whenever a socket switches path, and
 *   - the peer's receive memory is below its receive buffer (or the configured queue size, when
 *     larger: TCP would have grown the buffer of a reader that keeps up, and a psock reader never
 *     triggers that), as TCP's window would demand.
 * Otherwise the message takes the stack, where TCP's window and the sender's sndbuf bound it and
 * block the writer like any TCP flow. Once the reader drains, redirecting resumes.
 */
#ifndef SOCKMESH_REDIRECT_H
#define SOCKMESH_REDIRECT_H

#include <bpf/bpf_core_read.h>
#include "config.h"
#include "kernel.h"
#include "maps.h"
#include "stats.h"

enum sm_path { SM_PATH_REDIRECT, SM_PATH_NO_PEER, SM_PATH_ORDER, SM_PATH_FULL, SM_PATH_NAGLE };

/* The peer's receive state, read through its recorded address (a probe read: a socket that is
 * going away reads as an error, never as a fault). */
struct sm_peer_rx {
	__u32 flags; /* SM_PEER_*: the pair's splice mode */
	__u32 copied_seq;
	int rmem_alloc;
	int rcvbuf;
};

static __always_inline int sm_read_peer(const struct sm_tuple *peer_key, struct sm_peer_rx *rx, __u32 *pod_id)
{
	struct sm_peer *peer = bpf_map_lookup_elem(&sm_peer_sk, peer_key);
	struct tcp_sock *tp;

	if (!peer)
		return -1;
	*pod_id = peer->pod_id;
	rx->flags = peer->flags;
	tp = (struct tcp_sock *)(unsigned long)peer->addr;
	if (bpf_core_read(&rx->copied_seq, sizeof(rx->copied_seq), &tp->copied_seq) ||
	    bpf_core_read(&rx->rmem_alloc, sizeof(rx->rmem_alloc),
			  &tp->inet_conn.icsk_inet.sk.sk_backlog.rmem_alloc.counter) ||
	    bpf_core_read(&rx->rcvbuf, sizeof(rx->rcvbuf), &tp->inet_conn.icsk_inet.sk.sk_rcvbuf))
		return -1;
	return 0;
}

/* Which path a message takes; *pod_id is the pod of the pair (0 when the peer is unknown). */
static __always_inline enum sm_path sm_msg_path(struct sk_msg_md *msg, const struct sm_tuple *peer_key, __u32 *pod_id)
{
	struct bpf_sock *self_sk = msg->sk;
	struct sm_peer_rx rx;
	struct tcp_sock *self;

	*pod_id = 0;
	if (!self_sk || sm_read_peer(peer_key, &rx, pod_id))
		return SM_PATH_NO_PEER;
	self = bpf_skc_to_tcp_sock(self_sk);
	if (!self)
		return SM_PATH_NO_PEER;
	/* splice: auto. A sender that turned Nagle on (or corks) after its pair joined asks TCP to
	 * coalesce its writes: splicing would deliver each write on its own (0.2x on 64-byte
	 * writes, measured); the stack, even through the sockhash's send path, does far better. */
	if ((rx.flags & SM_PEER_AUTO) && !sm_tcp_nodelay(self))
		return SM_PATH_NAGLE;
	if (rx.copied_seq != self->write_seq)
		return SM_PATH_ORDER;
	if (rx.rmem_alloc >= rx.rcvbuf && rx.rmem_alloc >= (int)sm_splice_queue_bytes())
		return SM_PATH_FULL;
	return SM_PATH_REDIRECT;
}

#endif
