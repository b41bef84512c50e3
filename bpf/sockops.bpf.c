// SPDX-License-Identifier: GPL-2.0
/* sockops — established and closing connections (include/established.h), and the sidecars'
 * inbound listeners. */
#include "include/established.h"

SEC("sockops")
int sm_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op, family = skops->family, local[4], remote[4];
	struct sm_tuple self;

	if (op == BPF_SOCK_OPS_TCP_LISTEN_CB) {
		sm_on_listen(skops);
		return 1;
	}
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
	    !(op == BPF_SOCK_OPS_STATE_CB && skops->args[1] == BPF_TCP_CLOSE))
		return 1;
	if (family == SM_AF_INET) {
		sm_tuple_ip4(&self, bpf_get_netns_cookie(skops), skops->local_ip4, (__u16)skops->local_port,
			     skops->remote_ip4, SM_REMOTE_PORT(skops));
	} else if (family == SM_AF_INET6) {
		/* IPv6, or an IPv6 socket talking IPv4 (mapped addresses: the key its IPv4 peer uses). */
		SM_COPY_IP6(local, skops->local_ip6);
		SM_COPY_IP6(remote, skops->remote_ip6);
		sm_tuple_ip6(&self, bpf_get_netns_cookie(skops), local, (__u16)skops->local_port, remote, SM_REMOTE_PORT(skops));
	} else {
		return 1;
	}
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		sm_on_active(skops, &self);
	else if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		sm_on_passive(skops, &self);
	else
		sm_on_close(skops, &self);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
