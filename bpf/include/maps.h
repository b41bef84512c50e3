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

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sm_config);
} sm_config SM_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SM_MAX_SERVICE_KEYS);
	__type(key, struct sm_svc_key);
	__type(value, struct sm_svc_val);
} sm_services SM_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SM_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct sm_svc_state);
} sm_svc_state SM_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SM_MAX_PORT_EXCLUDES);
	__type(key, __u16);
	__type(value, __u8);
} sm_excl_ports SM_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SM_MAX_CIDR_EXCLUDES);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct sm_lpm_key);
	__type(value, __u8);
} sm_excl_cidrs SM_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SM_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct sm_svc_auto);
} sm_svc_auto SM_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SM_MAX_PORT_EXCLUDES);
	__type(key, __u16);
	__type(value, __u8);
} sm_incl_ports SM_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SM_MAX_CIDR_EXCLUDES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sm_lpm_key);
	__type(value, __u8);
} sm_incl_cidrs SM_MAP;

/* The pod's own addresses (traffic to them leaves through lo), as the agent found them. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct sm_lpm_key);
	__type(value, __u8);
} sm_local_addrs SM_MAP;

/* connect4 -> sockops: original destination by socket cookie (the source port is not known yet). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SM_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct sm_origdst);
} sm_cookie_dst SM_MAP;

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
	__type(value, __u64);
} sm_peer_sk SM_MAP;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SM_STAT_MAX);
	__type(key, __u32); /* an enum sm_stat; array keys must be plain ints for BTF */
	__type(value, __u64);
} sm_stats SM_MAP;

#endif
