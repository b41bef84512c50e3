/* policy.h — the outbound capture decision made at connect time, in istio-init's order
 * (README, "Capture decisions"), with the rules of the connecting pod. */
#ifndef SOCKMESH_POLICY_H
#define SOCKMESH_POLICY_H

#include "addr.h"
#include "config.h"
#include "stats.h"

enum sm_verdict { SM_LEAVE, SM_OUTBOUND, SM_INBOUND, SM_KERNEL };

/* Whether the pod has a port rule of this kind. */
static __always_inline int sm_pod_port(__u32 slot, __u32 pod_id, __u8 kind, __u16 port)
{
	struct sm_port_key key = { .pod_id = pod_id, .port = port, .kind = kind };

	return SM_SLOT_LOOKUP(slot, sm_ports, &key) != 0;
}

/* Whether addr is in one of the pod's CIDRs of this kind. */
static __always_inline int sm_pod_cidr(__u32 slot, __u32 pod_id, __u32 kind, const __u32 addr[4])
{
	struct sm_lpm_key lpm = { .prefixlen = 64 + 128, .pod_id = pod_id, .kind = kind };

	__builtin_memcpy(lpm.addr, addr, sizeof(lpm.addr));
	return SM_SLOT_LOOKUP(slot, sm_cidrs, &lpm) != 0;
}

/* Service of addr:port, trying the exact address first, then the any-address entry. */
static __always_inline struct sm_svc_val *sm_find_service(__u32 slot, const __u32 addr[4], __u16 port)
{
	struct sm_svc_key key = { .port = port };
	struct sm_svc_val *val;

	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	val = SM_SLOT_LOOKUP(slot, sm_services, &key);
	if (val)
		return val;
	__builtin_memset(key.addr, 0, sizeof(key.addr));
	return SM_SLOT_LOOKUP(slot, sm_services, &key);
}

/* Which listener, if any, a connect from this pod to addr:port (16-byte form, IPv4 mapped) goes
 * to; *service_id is set for listed services. from_passthrough: the socket is bound to 127.0.0.6
 * (or ::6), the sidecar's source for inbound traffic to its app. */
static __always_inline enum sm_verdict sm_decide(__u32 slot, const struct sm_pod *pod, int from_passthrough,
						  const __u32 addr[4], __u16 port, __u32 *service_id)
{
	__u64 uid_gid = bpf_get_current_uid_gid();
	int sidecar = (__u32)uid_gid == pod->sidecar_uid || (__u32)(uid_gid >> 32) == pod->sidecar_gid;
	__u32 pod_id = pod->pod_id;
	int loopback = sm_addr_loopback(addr) || sm_pod_cidr(slot, pod_id, SM_RULE_LOCAL, addr);
	struct sm_svc_val *svc;

	if (sm_pod_port(slot, pod_id, SM_RULE_EXCLUDE, port)) {
		sm_count(pod_id, SM_STAT_CONNECT_EXCLUDED);
		return SM_LEAVE;
	}
	if (from_passthrough && loopback)
		return SM_LEAVE;
	if (sidecar) {
		/* The sidecar calling its own pod (not 127.0.0.1) is inbound traffic. */
		if (loopback && !sm_addr_localhost(addr) && port != SM_HBONE_PORT)
			return SM_INBOUND;
		sm_count(pod_id, SM_STAT_CONNECT_SIDECAR);
		return SM_LEAVE;
	}
	if (loopback)
		return SM_LEAVE;
	if (sm_pod_cidr(slot, pod_id, SM_RULE_EXCLUDE, addr)) {
		sm_count(pod_id, SM_STAT_CONNECT_EXCLUDED);
		return SM_LEAVE;
	}
	svc = sm_find_service(slot, addr, port);
	if (svc) {
		__u32 flags = sm_service_flags(slot, svc->service_id);

		*service_id = svc->service_id;
		if (!(flags & SM_SVC_REDIRECT)) {
			sm_count(pod_id, SM_STAT_CONNECT_DISABLED);
			sm_count_svc(svc->service_id, SM_SVC_STAT_DISABLED);
			return SM_LEAVE;
		}
		if (flags & SM_SVC_KERNEL)
			return SM_KERNEL;
	}
	if (sm_pod_port(slot, pod_id, SM_RULE_INCLUDE, port))
		return SM_OUTBOUND;
	if (pod->flags & SM_POD_OUTBOUND_ALL)
		return (pod->flags & SM_POD_INCLUDE_ANY) || sm_pod_cidr(slot, pod_id, SM_RULE_INCLUDE, addr)
			       ? SM_OUTBOUND
			       : SM_LEAVE;
	return svc ? SM_OUTBOUND : SM_LEAVE;
}

/* A connection captured to the sidecar (connect4/6): records where it was going, by socket
 * cookie, and returns the port of the listener it goes to (network byte order), counted; 0 when
 * the record could not be written: without it the sidecar could not find the destination, so the
 * connection is left alone. */
static __always_inline __u16 sm_capture(struct bpf_sock_addr *ctx, const struct sm_pod *pod, const struct sm_origdst *od,
					enum sm_verdict verdict)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);

	if (bpf_map_update_elem(&sm_cookie_dst, &cookie, od, BPF_ANY)) {
		sm_count(pod->pod_id, SM_STAT_ERROR);
		return 0;
	}
	if (verdict == SM_INBOUND) {
		sm_count(pod->pod_id, SM_STAT_CONNECT_INBOUND);
		return bpf_htons(pod->inbound_port);
	}
	sm_count(pod->pod_id, SM_STAT_CONNECT_REWRITE);
	sm_count_svc(od->service_id, SM_SVC_STAT_CAPTURED);
	return bpf_htons(pod->outbound_port);
}

/* Whether an IPv4 socket is bound to 127.0.0.6 (sm_decide). */
static __always_inline int sm_from_passthrough4(struct bpf_sock *sk)
{
	return sk && bpf_ntohl(sk->src_ip4) == SM_PASSTHROUGH_SRC;
}

/* Whether an IPv6 socket is bound to ::ffff:127.0.0.6 or ::6 (sm_decide). */
static __always_inline int sm_from_passthrough6(struct bpf_sock *sk)
{
	__u32 src[4];

	if (!sk)
		return 0;
	SM_COPY_IP6(src, sk->src_ip6);
	return sm_addr_passthrough(src);
}

/* Whether the connecting task belongs to the pod's cgroup (a cgroup below the attach point that
 * is not a listed pod is never captured). */
static __always_inline int sm_in_pod_cgroup(const struct sm_pod *pod)
{
	return bpf_get_current_ancestor_cgroup_id(pod->cgroup_level) == pod->cgroup_id;
}

#endif
