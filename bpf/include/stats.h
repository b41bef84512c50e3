/* stats.h — per-CPU counters per pod and per service; the agent sums them over CPUs. */
#ifndef SOCKMESH_STATS_H
#define SOCKMESH_STATS_H

#include "maps.h"

static __always_inline void sm_count_at(void *map, __u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(map, &idx);

	if (v)
		*v += 1; /* per-CPU slot, programs do not migrate while running: no atomic needed */
}

/* Counts stat for pod_id (0 = no pod; out-of-range ids count there too). */
static __always_inline void sm_count(__u32 pod_id, enum sm_stat stat)
{
	if (pod_id > SM_MAX_PODS)
		pod_id = 0;
	sm_count_at(&sm_stats, pod_id * SM_STAT_MAX + stat);
}

static __always_inline void sm_count_svc(__u32 service_id, enum sm_svc_stat stat)
{
	if (service_id < SM_MAX_SERVICES)
		sm_count_at(&sm_svc_stats, service_id * SM_SVC_STAT_MAX + stat);
}

#endif
