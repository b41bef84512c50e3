/* kernelmode.h — the kernel L4 path: a kernel-mode service's connection goes straight to one of
 * its endpoints, picked at connect time from the service's Maglev table (src/agent/maglev.ts
 * builds it): a random slot, or with affinity a slot hashed from the client pod, so a client
 * keeps its endpoint and removing an endpoint moves only the clients it had. No sidecar sees the
 * flow; getpeername4 shows the app the service address it asked for. UDP services: connect4 of a
 * UDP socket and sendmsg4 of each datagram pick the same way (once per socket and service), and
 * recvmsg4 shows the endpoint's replies as coming from the service address. */
#ifndef SOCKMESH_KERNELMODE_H
#define SOCKMESH_KERNELMODE_H

#include "addr.h"
#include "config.h"
#include "policy.h"
#include "stats.h"

#define SM_ECONNREFUSED 111
#define SM_SOCK_STREAM 1
#define SM_SOCK_DGRAM 2

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

/* Whether a kernel-mode service serves this socket type (UDP services only UDP sockets). */
static __always_inline int sm_kernel_serves(__u32 flags, __u32 sock_type)
{
	return (flags & SM_SVC_KERNEL) && ((flags & SM_SVC_UDP) ? sock_type == SM_SOCK_DGRAM : sock_type == SM_SOCK_STREAM);
}

/* The endpoint of a new connection (or UDP socket) of a kernel-mode service; 0 when it has none. */
static __always_inline struct sm_backend *sm_pick_backend(struct bpf_sock_addr *ctx, __u32 slot, __u32 service_id)
{
	struct sm_backend_key key = { .service_id = service_id };

	if (sm_service_flags(slot, service_id) & SM_SVC_AFFINITY)
		key.slot = (__u32)(sm_mix64(bpf_get_netns_cookie(ctx)) % SM_MAGLEV_M);
	else
		key.slot = bpf_get_prandom_u32() % SM_MAGLEV_M;
	return SM_SLOT_LOOKUP(slot, sm_backends, &key);
}

/* Counts a new connection (or UDP socket) given to an endpoint. */
static __always_inline void sm_count_endpoint(__u32 pod_id, __u32 service_id, const struct sm_backend *be)
{
	struct sm_endpoint_key ek = { .service_id = service_id, .ip4 = be->ip4, .port = be->port };
	__u64 one = 1, *n;

	n = bpf_map_lookup_elem(&sm_endpoint_stats, &ek);
	if (n)
		*n += 1; /* per-CPU value */
	else
		bpf_map_update_elem(&sm_endpoint_stats, &ek, &one, BPF_NOEXIST);
	sm_count(pod_id, SM_STAT_CONNECT_KERNEL);
	sm_count_svc(service_id, SM_SVC_STAT_KERNEL);
}

/* No endpoint: refuse at once, as a closed port would (returning 0 alone says EPERM). */
static __always_inline int sm_refuse(__u32 pod_id, __u32 service_id)
{
	sm_count(pod_id, SM_STAT_CONNECT_REFUSED);
	sm_count_svc(service_id, SM_SVC_STAT_REFUSED);
	bpf_set_retval(-SM_ECONNREFUSED);
	return 0;
}

/* Remembers that replies from the endpoint to this socket show as the service's (UDP). */
static __always_inline void sm_udp_remember(__u64 cookie, const struct sm_backend *be, const struct sm_origdst *od)
{
	struct sm_udp_key rev = { .cookie = cookie, .ip4 = be->ip4, .port = be->port ? be->port : od->port };
	struct sm_backend svc = { .ip4 = od->addr[3], .port = od->port };

	bpf_map_update_elem(&sm_udp_rev, &rev, &svc, BPF_ANY);
}

/* Whether addr:port is a kernel-mode UDP service: the cheap test UDP traffic passes first. */
static __always_inline int sm_udp_service(__u32 slot, const __u32 addr[4], __u16 port)
{
	struct sm_svc_val *svc = sm_find_service(slot, addr, port);

	return svc && sm_kernel_serves(sm_service_flags(slot, svc->service_id), SM_SOCK_DGRAM);
}

/* Rewrites a kernel-mode service's connect to an endpoint; returns connect4's verdict. */
static __always_inline int sm_connect_kernel(struct bpf_sock_addr *ctx, __u32 slot, const struct sm_pod *pod,
					      struct sm_origdst *od, const int v6)
{
	struct sm_backend *be = sm_pick_backend(ctx, slot, od->service_id);
	__u64 cookie;

	if (!be)
		return sm_refuse(pod->pod_id, od->service_id);
	cookie = bpf_get_socket_cookie(ctx);
	/* Without the record getpeername would show the endpoint: still connect, count the miss. */
	if (bpf_map_update_elem(&sm_cookie_svc, &cookie, od, BPF_ANY))
		sm_count(pod->pod_id, SM_STAT_ERROR);
	/* v6 is a constant at each call site: connect6's code never touches user_ip4, which its
	 * verifier would refuse. An IPv6 socket reaches an IPv4 endpoint through its mapped address. */
	if (v6) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = be->ip4;
	} else {
		if (ctx->type == SM_SOCK_DGRAM)
			sm_udp_remember(cookie, be, od);
		ctx->user_ip4 = be->ip4;
	}
	if (be->port) /* else the port asked for (a multi-port service) */
		ctx->user_port = bpf_htons(be->port);
	sm_count_endpoint(pod->pod_id, od->service_id, be);
	return 1;
}

#endif
