/* addr.h — address and tuple helpers (IPv4 stored IPv4-mapped, ports in host byte order). */
#ifndef SOCKMESH_ADDR_H
#define SOCKMESH_ADDR_H

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include "sockmesh.h"

static __always_inline void sm_addr_from_ip4(__u32 addr[4], __u32 ip4_be)
{
	addr[0] = 0;
	addr[1] = 0;
	addr[2] = bpf_htonl(0x0000ffff);
	addr[3] = ip4_be;
}

/* sock_ops and sk_msg hand out remote_port as a __u32 whose upper 16 bits hold the port in
 * network byte order (local_port is in host byte order). Read the whole field through a volatile
 * pointer, as Cilium does: newer clang otherwise narrows the load plus shift into a 2-byte load
 * at offset +2, which older verifiers reject for these context fields. */
#define SM_REMOTE_PORT(ctx) sm_remote_port(*(volatile __u32 *)&(ctx)->remote_port)

static __always_inline __u16 sm_remote_port(__u32 remote_port)
{
	return bpf_ntohs((__u16)(remote_port >> 16));
}

static __always_inline void sm_tuple_ip4(struct sm_tuple *t, __u64 netns, __u32 sip4, __u16 sport,
					 __u32 dip4, __u16 dport)
{
	t->netns = netns;
	sm_addr_from_ip4(t->saddr, sip4);
	sm_addr_from_ip4(t->daddr, dip4);
	t->sport = sport;
	t->dport = dport;
	t->_pad = 0;
}

#endif
