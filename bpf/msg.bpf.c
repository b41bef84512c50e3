// SPDX-License-Identifier: GPL-2.0
/* sk_msg — splice each message of a sockhash socket straight into its peer's ingress queue. */
#include "include/addr.h"
#include "include/stats.h"

#define AF_INET 2

SEC("sk_msg")
int sm_msg(struct sk_msg_md *msg)
{
	struct sm_tuple peer;

	if (msg->family != AF_INET)
		return SK_PASS;
	/* The peer socket is keyed by its own view of the connection: ours reversed. */
	sm_tuple_ip4(&peer, msg->remote_ip4, sm_remote_port(msg->remote_port), msg->local_ip4,
		     (__u16)msg->local_port);
	/* A peer missing from the sockhash makes the helper answer SK_DROP (the sender would see
	 * EACCES): hand such a message to the normal stack instead. */
	if (bpf_msg_redirect_hash(msg, &sm_sockhash, &peer, BPF_F_INGRESS) == SK_PASS) {
		sm_count(SM_STAT_MSG_REDIRECT);
	} else {
		sm_count(SM_STAT_MSG_PASS);
	}
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
