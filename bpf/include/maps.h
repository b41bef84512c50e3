/* maps.h — every map sockmesh uses, declared once, BTF-style.
 *
 * Each program object includes this header; the objects are linked into one (bpftool gen object),
 * where these weak definitions merge into a single instance of each map. The loader pins every
 * map by name under <pin root>/maps/.
 */
#ifndef SOCKMESH_MAPS_H
#define SOCKMESH_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "sockmesh.h"

#define SM_MAP __attribute__((weak)) SEC(".maps")

/* The active slot of the config-driven maps (0 = the _a maps, 1 = the _b maps). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sm_gen SM_MAP;

/* Node-wide settings, one entry per slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SM_SLOTS);
	__type(key, __u32);
	__type(value, struct sm_config);
} sm_config SM_MAP;

/* A config-driven map, declared once per slot. */
#define SM_SLOTTED(name, def)      \
	struct def name##_a SM_MAP; \
	struct def name##_b SM_MAP

/* Meshed pods by netns cookie. */
SM_SLOTTED(sm_pods, {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SM_MAX_PODS);
	__type(key, __u64);
	__type(value, struct sm_pod);
});

SM_SLOTTED(sm_services, {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SM_MAX_SERVICE_KEYS);
	__type(key, struct sm_svc_key);
	__type(value, struct sm_svc_val);
});

SM_SLOTTED(sm_svc_state, {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SM_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct sm_svc_state);
});

/* Excluded and included outbound ports of each pod. */
SM_SLOTTED(sm_ports, {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SM_MAX_PORT_RULES);
	__type(key, struct sm_port_key);
	__type(value, __u8);
});

/* Excluded, included and local CIDRs of each pod. */
SM_SLOTTED(sm_cidrs, {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SM_MAX_CIDR_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct sm_lpm_key);
	__type(value, __u8);
});

/* Kernel-mode services' Maglev tables: (service, slot) -> endpoint. */
SM_SLOTTED(sm_backends, {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SM_MAX_BACKEND_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* only kernel-mode services take room */
	__type(key, struct sm_backend_key);
	__type(value, struct sm_backend);
});

/* Addresses of the node's meshed pods: which pod (and namespace) an address belongs to. */
SM_SLOTTED(sm_local_addrs, {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SM_MAX_LOCAL_ADDRS);
	__type(key, struct sm_addr_key);
	__type(value, struct sm_local_pod);
});

/* Looks key up in the given slot of a slotted map: one call site per slot, so the verifier
 * sees a constant map at each. */
#define SM_SLOT_LOOKUP(slot, name, key) \
	((slot) ? bpf_map_lookup_elem(&name##_b, key) : bpf_map_lookup_elem(&name##_a, key))

/* splice: auto: what each service's client sockets that connect with Nagle on do later. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SM_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct sm_svc_auto);
} sm_svc_auto SM_MAP;

/* connect4 -> sockops: original destination by socket cookie (the source port is not known yet). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SM_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct sm_origdst);
} sm_cookie_dst SM_MAP;

/* connect4 -> getpeername4: the service address a kernel-mode connection asked for, by cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SM_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct sm_origdst);
} sm_cookie_svc SM_MAP;

/* UDP sockets of kernel-mode services: the endpoint each socket uses for a service address, and
 * the reverse, to show replies as the service's. Evicted when full (UDP sockets close unseen). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SM_MAX_CONNS);
	__type(key, struct sm_udp_key);
	__type(value, struct sm_backend);
} sm_udp_pick SM_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SM_MAX_CONNS);
	__type(key, struct sm_udp_key);
	__type(value, struct sm_backend);
} sm_udp_rev SM_MAP;

/* Connections per endpoint of kernel-mode services. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, SM_MAX_ENDPOINT_STATS);
	__type(key, struct sm_endpoint_key);
	__type(value, __u64);
} sm_endpoint_stats SM_MAP;

/* sockops -> getsockopt: original destination by the app socket's tuple. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SM_MAX_CONNS);
	__type(key, struct sm_tuple);
	__type(value, struct sm_origdst);
} sm_tuple_dst SM_MAP;

/* Spliced sockets by their own tuple (local, remote). A __u64 value lets user space read each
 * socket's cookie (the kernel answers lookups only for 8-byte values). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SM_MAX_CONNS);
	__type(key, struct sm_tuple);
	__type(value, __u64);
} sm_sockhash SM_MAP;

/* Kernel address of each spliced socket, by its own tuple: sk_msg reads its peer's receive state
 * through it (include/redirect.h); a sockhash lookup would take a reference that sk_msg programs
 * cannot release. Written and deleted by sockops, never dereferenced except by probe reads. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SM_MAX_CONNS);
	__type(key, struct sm_tuple);
	__type(value, struct sm_peer);
} sm_peer_sk SM_MAP;

/* Each pod's sidecar inbound listener, by pod id: sockops puts it here when it listens (the agent
 * does for one that listened before), and sk_lookup hands inbound connections to it. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, SM_MAX_PODS + 1);
	__type(key, __u32);
	__type(value, __u64);
} sm_listeners SM_MAP;

/* Per-pod counters, one block per pod id; pod 0 counts what belongs to no pod. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SM_MAX_PODS + 1);
	__type(key, __u32); /* array keys must be plain ints for BTF */
	__type(value, struct sm_pod_counters);
} sm_stats SM_MAP;

/* Per-service counters, one block per service id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SM_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct sm_svc_counters);
} sm_svc_stats SM_MAP;

#endif
