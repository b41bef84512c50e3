/* stats.h — per-CPU counters per pod and per service; the agent sums them over CPUs. */
#ifndef SOCKMESH_STATS_H
#define SOCKMESH_STATS_H

#include "maps.h"

/* Counts stat for pod_id (0 = no pod; out-of-range ids count there too). A per-CPU block: programs
 * do not migrate while running, so no atomic is needed. */
static __always_inline void sm_count(__u32 pod_id, enum sm_stat stat)
{
	struct sm_pod_counters *c;

	if (pod_id > SM_MAX_PODS)
		pod_id = 0;
	c = bpf_map_lookup_elem(&sm_stats, &pod_id);
	if (c && stat < SM_STAT_MAX)
		c->c[stat] += 1;
}

static __always_inline void sm_count_svc(__u32 service_id, enum sm_svc_stat stat)
{
	struct sm_svc_counters *c;

	if (service_id >= SM_MAX_SERVICES)
		return;
	c = bpf_map_lookup_elem(&sm_svc_stats, &service_id);
	if (c && stat < SM_SVC_STAT_MAX)
		c->c[stat] += 1;
}

#endif
