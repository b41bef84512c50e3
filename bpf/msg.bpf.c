// SPDX-License-Identifier: GPL-2.0
/* sk_msg — splice each message of a sockhash socket straight into its peer's ingress queue, when
 * that keeps the byte order and the peer's receive buffer (include/redirect.h); otherwise the
 * message takes the normal stack. */
#include "include/inbound.h"
#include "include/redirect.h"

SEC("sk_msg")
int sm_msg(struct sk_msg_md *msg)
{
	__u32 pod_id, local[4], remote[4];
	__u64 netns = bpf_get_netns_cookie(msg);
	struct sm_tuple peer;

	if (msg->family == SM_AF_INET) {
		sm_addr_from_ip4(local, SM_CTX_U32(msg->local_ip4));
		sm_addr_from_ip4(remote, SM_CTX_U32(msg->remote_ip4));
		SM_CTX_READ_DONE();
	} else if (msg->family == SM_AF_INET6) {
		SM_COPY_IP6(local, msg->local_ip6);
		SM_COPY_IP6(remote, msg->remote_ip6);
		SM_CTX_READ_DONE();
	} else {
		return SK_PASS;
	}
	/* The peer socket is keyed by its own view of the connection: ours reversed, in its namespace
	 * (another pod's, for a hop between pods). */
	sm_tuple_ip6(&peer, sm_peer_netns(netns, remote), remote, SM_REMOTE_PORT(msg), local, (__u16)msg->local_port);
	switch (sm_msg_path(msg, &peer, &pod_id)) {
	case SM_PATH_ORDER:
		sm_count(pod_id, SM_STAT_MSG_ORDER);
		return SK_PASS;
	case SM_PATH_NAGLE:
		sm_count(pod_id, SM_STAT_MSG_NAGLE);
		return SK_PASS;
	case SM_PATH_FULL:
		sm_count(pod_id, SM_STAT_MSG_FULL);
		return SK_PASS;
	case SM_PATH_NO_PEER:
		sm_count(pod_id, SM_STAT_MSG_PASS);
		return SK_PASS;
	default:
		break;
	}
	/* The peer may leave the sockhash between the check and the redirect; the helper then
	 * answers SK_DROP (the sender would see EACCES): hand such a message to the stack. */
	if (bpf_msg_redirect_hash(msg, &sm_sockhash, &peer, BPF_F_INGRESS) == SK_PASS)
		sm_count(pod_id, SM_STAT_MSG_REDIRECT);
	else
		sm_count(pod_id, SM_STAT_MSG_PASS);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
