/* inbound.h — inbound capture in eBPF mode: which connections to a meshed pod land on its
 * sidecar's inbound listener (istio-init's ISTIO_INBOUND chain, decided at socket lookup), and the
 * namespaces of the node's meshed pods by their addresses. Addresses are 16-byte (IPv4 mapped). */
#ifndef SOCKMESH_INBOUND_H
#define SOCKMESH_INBOUND_H

#include "policy.h"

/* The meshed pod an address belongs to, or 0. */
static __always_inline struct sm_local_pod *sm_local_pod_of(__u32 slot, const __u32 addr[4])
{
	struct sm_addr_key key;

	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	return SM_SLOT_LOOKUP(slot, sm_local_addrs, &key);
}

/* The namespace of a connection's other end, from its address: a meshed pod's address names that
 * pod's namespace (another pod on this node), anything else is in the socket's own namespace.
 * sk_msg asks for every message: a loopback peer (the app<->sidecar pair) costs no map lookup. */
static __always_inline __u64 sm_peer_netns(__u64 own, const __u32 remote[4])
{
	struct sm_local_pod *lp;

	if (sm_addr_loopback(remote))
		return own;
	lp = sm_local_pod_of(sm_active_slot(), remote);
	return lp ? lp->netns : own;
}

/* Whether a connection from `remote` to the pod's port is inbound traffic for its sidecar:
 * inbound capture on, the port captured (Istio's own ports are always among the excluded), and
 * the client not the pod itself (loopback or its own addresses: istio-init's PREROUTING never sees
 * those; its OUTPUT rules, connect4/6 here, decided them). */
static __always_inline int sm_inbound_captured(__u32 slot, const struct sm_pod *pod, __u16 port, const __u32 remote[4])
{
	if (!(pod->flags & SM_POD_INBOUND) || port == pod->inbound_port)
		return 0;
	if (sm_pod_port(slot, pod->pod_id, SM_RULE_IN_EXCLUDE, port))
		return 0;
	if (!(pod->flags & SM_POD_INBOUND_ALL) && !sm_pod_port(slot, pod->pod_id, SM_RULE_IN_INCLUDE, port))
		return 0;
	if (sm_addr_loopback(remote))
		return 0;
	return !sm_pod_cidr(slot, pod->pod_id, SM_RULE_LOCAL, remote);
}

#endif
