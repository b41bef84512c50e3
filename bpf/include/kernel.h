/* kernel.h — the few kernel socket fields sockmesh reads, declared CO-RE style.
 *
 * Only the members used are declared; preserve_access_index makes every access a CO-RE
 * relocation, so libbpf fixes the offsets against the running kernel's BTF at load time and one
 * prebuilt object works on any kernel with the same member names.
 */
#ifndef SOCKMESH_KERNEL_H
#define SOCKMESH_KERNEL_H

#include <linux/types.h>
#include <bpf/bpf_core_read.h>

#define SM_CORE __attribute__((preserve_access_index))

typedef struct {
	int counter;
} SM_CORE atomic_t;

struct sock {
	struct {
		atomic_t rmem_alloc; /* bytes charged to the receive side, psock ingress queue included */
	} SM_CORE sk_backlog;
	int sk_rcvbuf;
} SM_CORE;

struct inet_sock {
	struct sock sk;
} SM_CORE;

struct inet_connection_sock {
	struct inet_sock icsk_inet;
} SM_CORE;

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u32 copied_seq; /* receiver: head of data the application has not read yet */
	__u32 write_seq;  /* sender: tail of data the application has queued on the stack */
	__u8 nonagle : 4; /* TCP_NAGLE_OFF (TCP_NODELAY), TCP_NAGLE_CORK (TCP_CORK), TCP_NAGLE_PUSH */
} SM_CORE;

#define SM_TCP_NAGLE_OFF 1
#define SM_TCP_NAGLE_CORK 2

/* Whether a socket sends each write at once: TCP_NODELAY on and TCP_CORK off. */
static __always_inline int sm_tcp_nodelay(struct tcp_sock *tp)
{
	return (BPF_CORE_READ_BITFIELD(tp, nonagle) & (SM_TCP_NAGLE_OFF | SM_TCP_NAGLE_CORK)) == SM_TCP_NAGLE_OFF;
}

#endif
