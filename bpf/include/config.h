/* config.h — the active slot, node-wide settings and the pod a socket belongs to. */
#ifndef SOCKMESH_CONFIG_H
#define SOCKMESH_CONFIG_H

#include "maps.h"

/* The active slot (0 or 1): read once per decision, so one decision sees one config. */
static __always_inline __u32 sm_active_slot(void)
{
	__u32 zero = 0, *gen = bpf_map_lookup_elem(&sm_gen, &zero);

	return gen && *gen ? 1 : 0;
}

/* Node-wide settings of a slot, or 0 when capture is off in it. */
static __always_inline struct sm_config *sm_get_config(__u32 slot)
{
	struct sm_config *cfg = bpf_map_lookup_elem(&sm_config, &slot);

	if (!cfg || !(cfg->flags & SM_CFG_ENABLED))
		return 0;
	return cfg;
}

/* The queue a spliced socket's peer may hold (sm_config.splice_queue_bytes of the active slot). */
static __always_inline __u32 sm_splice_queue_bytes(void)
{
	__u32 slot = sm_active_slot();
	struct sm_config *cfg = bpf_map_lookup_elem(&sm_config, &slot);

	return cfg ? cfg->splice_queue_bytes : 0;
}

/* sm_config.hop_splice of the active slot. */
static __always_inline __u32 sm_hop_splice(__u32 slot)
{
	struct sm_config *cfg = bpf_map_lookup_elem(&sm_config, &slot);

	return cfg ? cfg->hop_splice : SM_HOPS_NEVER;
}

/* The meshed pod of a network namespace: its own entry, else the any-namespace entry (0). */
static __always_inline struct sm_pod *sm_find_pod(__u32 slot, __u64 netns)
{
	struct sm_pod *pod = SM_SLOT_LOOKUP(slot, sm_pods, &netns);
	__u64 any = 0;

	return pod ? pod : SM_SLOT_LOOKUP(slot, sm_pods, &any);
}

static __always_inline __u32 sm_service_flags(__u32 slot, __u32 service_id)
{
	struct sm_svc_state *st = SM_SLOT_LOOKUP(slot, sm_svc_state, &service_id);

	return st ? st->flags : 0;
}

#endif
