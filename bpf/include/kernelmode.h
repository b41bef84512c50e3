/* kernelmode.h — the kernel L4 path: a kernel-mode service's connection goes straight to one of
 * its endpoints, picked at connect time from the service's Maglev table (src/agent/maglev.ts
 * builds it): a random slot, or with affinity a slot hashed from the client pod, so a client
 * keeps its endpoint and removing an endpoint moves only the clients it had. No sidecar sees the
 * flow; getpeername4 shows the app the service address it asked for. */
#ifndef SOCKMESH_KERNELMODE_H
#define SOCKMESH_KERNELMODE_H

#include "addr.h"
#include "config.h"
#include "stats.h"

#define SM_ECONNREFUSED 111

/* A 64-bit mix (murmur3's finalizer): spreads netns cookies, which are small sequential numbers. */
static __always_inline __u64 sm_mix64(__u64 x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* Rewrites a kernel-mode service's connect to an endpoint; returns connect4's verdict. */
static __always_inline int sm_connect_kernel(struct bpf_sock_addr *ctx, __u32 slot, const struct sm_pod *pod,
					      struct sm_origdst *od)
{
	struct sm_backend_key key = { .service_id = od->service_id };
	struct sm_endpoint_key ek = {};
	struct sm_backend *be;
	__u64 cookie, one = 1, *n;

	if (sm_service_flags(slot, od->service_id) & SM_SVC_AFFINITY)
		key.slot = (__u32)(sm_mix64(bpf_get_netns_cookie(ctx)) % SM_MAGLEV_M);
	else
		key.slot = bpf_get_prandom_u32() % SM_MAGLEV_M;
	be = SM_SLOT_LOOKUP(slot, sm_backends, &key);
	if (!be) {
		/* No endpoint: refuse at once, as a closed port would (returning 0 alone says EPERM). */
		sm_count(pod->pod_id, SM_STAT_CONNECT_REFUSED);
		sm_count_svc(od->service_id, SM_SVC_STAT_REFUSED);
		bpf_set_retval(-SM_ECONNREFUSED);
		return 0;
	}
	cookie = bpf_get_socket_cookie(ctx);
	/* Without the record getpeername would show the endpoint: still connect, count the miss. */
	if (bpf_map_update_elem(&sm_cookie_svc, &cookie, od, BPF_ANY))
		sm_count(pod->pod_id, SM_STAT_ERROR);
	ctx->user_ip4 = be->ip4;
	if (be->port) /* else the port asked for (a multi-port service) */
		ctx->user_port = bpf_htons(be->port);
	ek.service_id = od->service_id;
	ek.ip4 = be->ip4;
	ek.port = be->port;
	n = bpf_map_lookup_elem(&sm_endpoint_stats, &ek);
	if (n)
		*n += 1; /* per-CPU value */
	else
		bpf_map_update_elem(&sm_endpoint_stats, &ek, &one, BPF_NOEXIST);
	sm_count(pod->pod_id, SM_STAT_CONNECT_KERNEL);
	sm_count_svc(od->service_id, SM_SVC_STAT_KERNEL);
	return 1;
}

#endif
