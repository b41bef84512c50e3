/* splice.h — whether a captured connection's socket pair joins the sockhash (is spliced).
 *
 * Measured on kernel 6.18 (README, "splice: auto"):
 *   - splicing wins where the app sends each write at once (TCP_NODELAY): request/response and
 *     small-message streams, 1.2-1.5x;
 *   - it loses badly where TCP would have coalesced the writes (Nagle or TCP_CORK small writes:
 *     0.2x spliced), and a socket in the sockhash pays for the sk_msg send path on every write
 *     even when the message takes the stack (0.6-0.75x on such writes);
 *   - a bulk stream outruns its reader: after one moment with a full queue its messages take the
 *     stack (include/redirect.h) and keep taking it while the reader lags, through that same send
 *     path: 0.85-0.9x of never joining on a 2-core machine.
 * And the kernel lets a socket join only at establishment (sockops ESTABLISHED callbacks), before
 * the app has written anything, and leaving would drop data queued for its reader.
 *
 * So splice: auto decides per connection, at establishment:
 *   - a service whose last connection was a bulk stream (most of its data on the stack in large
 *     segments): leave it to TCP; its next connection that is not bulk lifts that;
 *   - else the app's socket has TCP_NODELAY on (and no TCP_CORK): splice (clients that set it
 *     before connecting: curl, Netty, HAProxy's and Envoy's upstreams, sockperf, smload);
 *   - else (Nagle on): splice only when this service's last such socket had turned TCP_NODELAY on
 *     by its close (Go and Node set it right after connecting); else leave it to TCP. The first
 *     such connection of a service, with nothing learned yet, stays on the stack.
 * Joined sockets are still checked per message (include/redirect.h): one that turns Nagle on
 * later sends through the stack, and its close teaches the service to keep the next one out.
 */
#ifndef SOCKMESH_SPLICE_H
#define SOCKMESH_SPLICE_H

#include "config.h"
#include "kernel.h"
#include "stats.h"

/* The SM_OD_* splice flags of a new captured connection of this service, from its app socket. */
static __always_inline __u16 sm_splice_mode(__u32 slot, __u32 service_id, struct bpf_sock *sk, __u32 pod_id)
{
	__u32 flags = sm_service_flags(slot, service_id);
	struct sm_svc_auto *a;
	struct tcp_sock *tp;
	__u16 mode = SM_OD_AUTO;

	if (flags & SM_SVC_SPLICE)
		return SM_OD_SPLICED;
	if (!(flags & SM_SVC_AUTO))
		return 0;
	a = bpf_map_lookup_elem(&sm_svc_auto, &service_id);
	tp = sk ? bpf_skc_to_tcp_sock(sk) : 0;
	if (!a || !tp)
		return SM_OD_AUTO;
	if (!sm_tcp_nodelay(tp))
		mode |= SM_OD_NAGLE_AT_CONNECT;
	if (!a->bulk && (sm_tcp_nodelay(tp) || a->nagle_clients == SM_AUTO_TURNS_NODELAY))
		return mode | SM_OD_SPLICED;
	sm_count(pod_id, SM_STAT_AUTO_STACK);
	return mode;
}

/* A splice: auto connection is closing (its app's socket): remember what it showed. */
static __always_inline void sm_auto_learn(const struct sm_origdst *od, struct bpf_sock_ops *skops)
{
	struct sm_svc_auto *a = bpf_map_lookup_elem(&sm_svc_auto, &od->service_id);
	struct bpf_sock *sk = skops->sk;
	struct tcp_sock *tp = sk ? bpf_skc_to_tcp_sock(sk) : 0;
	__u64 bytes = skops->bytes_acked;
	__u32 segs = skops->data_segs_out;

	if (!a || !tp)
		return;
	/* Plain stores: racing closes of one service may interleave; the last one wins. */
	if (od->flags & SM_OD_NAGLE_AT_CONNECT)
		a->nagle_clients = sm_tcp_nodelay(tp) ? SM_AUTO_TURNS_NODELAY : SM_AUTO_STAYS_NAGLE;
	/* Stack bytes only: what a spliced socket redirected never became segments. */
	a->bulk = bytes >= SM_AUTO_BULK_BYTES && bytes >= (__u64)segs * SM_AUTO_BULK_SEG;
	a->observed += 1;
}

#endif
