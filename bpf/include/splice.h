/* splice.h — whether a captured connection is spliced, and the auto-splice vote.
 *
 * Measured on kernel 6.18 (README, "Findings"): sk_msg splicing wins only where the stack's
 * per-packet cost dominates (tiny TCP_NODELAY writes, request/response), and loses where TCP
 * would have coalesced writes (Nagle/autocork small writes, ~1 KiB streams) or where copies
 * dominate (bulk). The choice is made at establishment from how the service's recent connections
 * behaved; include/redirect.h keeps the byte order whenever a spliced socket changes path.
 */
#ifndef SOCKMESH_SPLICE_H
#define SOCKMESH_SPLICE_H

#include "config.h"
#include "stats.h"

static __always_inline int sm_should_splice(__u32 slot, __u32 service_id)
{
	__u32 flags = sm_service_flags(slot, service_id);
	struct sm_config *cfg;
	struct sm_svc_auto *a;
	__u32 n;

	if (flags & SM_SVC_SPLICE)
		return 1;
	if (!(flags & SM_SVC_AUTO))
		return 0;
	cfg = bpf_map_lookup_elem(&sm_config, &slot);
	a = bpf_map_lookup_elem(&sm_svc_auto, &service_id);
	if (!cfg || !a)
		return 0;
	/* Read, then count: the fetching form of the atomic needs -mcpu=v3; an approximate n is fine. */
	n = a->connections;
	__sync_fetch_and_add(&a->connections, 1);
	/* Every SM_AUTO_PROBE_EVERY-th connection stays on the stack so the vote keeps learning. */
	return a->votes >= cfg->auto_votes && n % SM_AUTO_PROBE_EVERY != 0;
}

static __always_inline void sm_auto_vote(__u32 slot, __u32 pod_id, __u32 service_id, __u32 segs, __u64 bytes)
{
	struct sm_config *cfg = bpf_map_lookup_elem(&sm_config, &slot);
	struct sm_svc_auto *a = bpf_map_lookup_elem(&sm_svc_auto, &service_id);

	if (!cfg || !a || !(sm_service_flags(slot, service_id) & SM_SVC_AUTO) || segs < cfg->auto_min_segs)
		return;
	/* Races between CPUs may lose a vote; the next connection votes again. */
	if (bytes < (__u64)segs * cfg->auto_seg_bytes) {
		if (a->votes < SM_AUTO_VOTES_MAX)
			a->votes += 1;
		sm_count(pod_id, SM_STAT_AUTO_VOTE_FOR);
	} else {
		if (a->votes > 0)
			a->votes -= 1;
		sm_count(pod_id, SM_STAT_AUTO_VOTE_AGAINST);
	}
}

#endif
