/* policy.h — the outbound capture decision made at connect time. */
#ifndef SOCKMESH_POLICY_H
#define SOCKMESH_POLICY_H

#include "maps.h"
#include "addr.h"
#include "stats.h"

static __always_inline struct sm_config *sm_get_config(void)
{
	__u32 zero = 0;
	struct sm_config *cfg = bpf_map_lookup_elem(&sm_config, &zero);

	if (!cfg || !(cfg->flags & SM_CFG_ENABLED))
		return 0;
	return cfg;
}

static __always_inline __u32 sm_service_flags(__u32 service_id)
{
	struct sm_svc_state *st = bpf_map_lookup_elem(&sm_svc_state, &service_id);

	return st ? st->flags : 0;
}

/* Whether addr is in an LPM trie of CIDRs (sm_excl_cidrs, sm_incl_cidrs, sm_local_addrs). */
static __always_inline int sm_in_cidrs(void *trie, const __u32 addr[4])
{
	struct sm_lpm_key lpm = { .prefixlen = 128 };

	__builtin_memcpy(lpm.addr, addr, sizeof(lpm.addr));
	return bpf_map_lookup_elem(trie, &lpm) != 0;
}

/* Service of addr:port, trying the exact address first, then the any-address entry. */
static __always_inline struct sm_svc_val *sm_find_service(const __u32 addr[4], __u16 port)
{
	struct sm_svc_key key = { .port = port };
	struct sm_svc_val *val;

	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	val = bpf_map_lookup_elem(&sm_services, &key);
	if (val)
		return val;
	__builtin_memset(key.addr, 0, sizeof(key.addr));
	return bpf_map_lookup_elem(&sm_services, &key);
}

#endif
