/* stats.h — per-CPU counters; the agent sums them over CPUs. */
#ifndef SOCKMESH_STATS_H
#define SOCKMESH_STATS_H

#include "maps.h"

static __always_inline void sm_count(enum sm_stat stat)
{
	__u32 idx = stat;
	__u64 *v = bpf_map_lookup_elem(&sm_stats, &idx);

	if (v)
		*v += 1; /* per-CPU slot, programs do not migrate while running: no atomic needed */
}

#endif
