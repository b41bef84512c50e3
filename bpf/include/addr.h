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

#define SM_AF_INET 2
#define SM_AF_INET6 10

/* Whether a 16-byte address is IPv4 (stored IPv4-mapped). */
static __always_inline int sm_addr_is_v4(const __u32 a[4])
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0x0000ffff);
}

/* 127.0.0.0/8 or ::1. */
static __always_inline int sm_addr_loopback(const __u32 a[4])
{
	if (sm_addr_is_v4(a))
		return (bpf_ntohl(a[3]) >> 24) == 127;
	return a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1);
}

/* 127.0.0.1 or ::1: the sidecar's own listeners' address. */
static __always_inline int sm_addr_localhost(const __u32 a[4])
{
	return (sm_addr_is_v4(a) || (a[0] == 0 && a[1] == 0 && a[2] == 0)) && a[3] == bpf_htonl(sm_addr_is_v4(a) ? 0x7f000001 : 1);
}

/* 127.0.0.6 or ::6: the source Istio's sidecar uses to pass inbound traffic to its app. */
static __always_inline int sm_addr_passthrough(const __u32 a[4])
{
	return (sm_addr_is_v4(a) || (a[0] == 0 && a[1] == 0 && a[2] == 0)) && a[3] == bpf_htonl(sm_addr_is_v4(a) ? SM_PASSTHROUGH_SRC : 6);
}

/* One 4-byte load of a context field, never merged with another: clang would otherwise sink the
 * loads of an IPv4 and an IPv6 branch into one load through a pointer chosen per branch, and the
 * verifier refuses a load through a modified context pointer. */
#define SM_CTX_U32(field) (*(volatile __u32 *)&(field))

/* Ends a branch that read context fields: no load is moved past it (see SM_CTX_U32). */
#define SM_CTX_READ_DONE() asm volatile("" ::: "memory")

/* Copies a context's 4-word IPv6 address field, one 4-byte load per word (the only loads the
 * verifier allows on these fields). */
#define SM_COPY_IP6(dst, src)                    \
	do {                                     \
		(dst)[0] = SM_CTX_U32((src)[0]); \
		(dst)[1] = SM_CTX_U32((src)[1]); \
		(dst)[2] = SM_CTX_U32((src)[2]); \
		(dst)[3] = SM_CTX_U32((src)[3]); \
	} while (0)

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

/* A tuple from 16-byte addresses (an IPv6 socket's, IPv4-mapped ones included: the same key as
 * the IPv4 socket at the other end of the connection). */
static __always_inline void sm_tuple_ip6(struct sm_tuple *t, __u64 netns, const __u32 s[4], __u16 sport,
					 const __u32 d[4], __u16 dport)
{
	t->netns = netns;
	__builtin_memcpy(t->saddr, s, sizeof(t->saddr));
	__builtin_memcpy(t->daddr, d, sizeof(t->daddr));
	t->sport = sport;
	t->dport = dport;
	t->_pad = 0;
}

#endif
