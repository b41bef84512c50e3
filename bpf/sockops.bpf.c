// SPDX-License-Identifier: GPL-2.0
/* sockops — established and closing connections (include/established.h), and the sidecars'
 * inbound listeners. */
#include "include/established.h"

#define AF_INET 2

SEC("sockops")
int sm_sockops(struct bpf_sock_ops *skops)
{
	struct sm_tuple self;
	__u32 op = skops->op;

	if (op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
		sm_on_listen(skops);
		return 1;
	}
	if (skops->family != AF_INET)
		return 1;
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
	    !(op == BPF_SOCK_OPS_STATE_CB && skops->args[1] == BPF_TCP_CLOSE))
		return 1;
	sm_tuple_ip4(&self, bpf_get_netns_cookie(skops), skops->local_ip4, (__u16)skops->local_port,
		     skops->remote_ip4, SM_REMOTE_PORT(skops));
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		sm_on_active(skops, &self);
	else if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		sm_on_passive(skops, &self);
	else
		sm_on_close(skops, &self);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
