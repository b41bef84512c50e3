/* sockmesh.h — the one definition of every struct shared by the BPF programs and user space.
 *
 * Plain C with fixed-width types and explicit padding; the TypeScript codecs in
 * src/bpf/codecs.ts mirror these layouts and test/bpf/codecs.test.ts checks them against the BTF
 * of the compiled object, so the two cannot drift silently.
 *
 * Addresses are always 16 bytes: IPv4 is stored IPv4-mapped (::ffff:a.b.c.d), so one key format
 * serves both families and an IPv4 CIDR a.b.c.d/n is the IPv6 prefix ::ffff:a.b.c.d/(96+n).
 * Ports are in host byte order everywhere in these structs.
 *
 * One instance serves every pod of a node. A pod is a network namespace (its netns cookie) and a
 * cgroup; everything that belongs to a connection is keyed with the netns cookie, because the
 * loopback tuples of app->sidecar connections repeat in every pod.
 */
#ifndef SOCKMESH_H
#define SOCKMESH_H

#include <linux/types.h>

/* Every struct is read by user space as little-endian bytes (src/bpf/codec.ts). */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "sockmesh's codecs assume a little-endian target");

#ifndef SM_MAX_PODS /* a build may change it (the upgrade test's object with another map layout) */
#define SM_MAX_PODS 1024         /* pod ids 1..SM_MAX_PODS; 0 counts what belongs to no pod */
#endif
#define SM_MAX_SERVICES 16384
#define SM_MAX_SERVICE_KEYS 65536
#define SM_MAX_PORT_RULES 16384  /* excluded and included ports of every pod */
#define SM_MAX_CIDR_RULES 16384  /* excluded, included and local CIDRs of every pod */
#define SM_MAX_CONNS 65536
#define SM_MAGLEV_M 1021              /* slots of each kernel-mode service's Maglev table (a prime) */
#define SM_MAX_BACKEND_SLOTS 1048576  /* table slots of all kernel-mode services (about 1,000 of them) */
#define SM_MAX_ENDPOINT_STATS 65536   /* endpoints counted (service, address, port) */
#define SM_MAX_LOCAL_ADDRS 4096       /* addresses of the node's meshed pods */

/* The config-driven maps exist twice (slots a and b). Programs read the active slot, named by
 * sm_gen, once per decision; user space writes the other slot and then flips sm_gen with one
 * 4-byte write, so a new connection decides on the old config or the new one, never a mix. */
#define SM_SLOTS 2

/* sm_config.flags (node-wide) */
#define SM_CFG_ENABLED (1u << 0) /* capture is on; a zeroed (unwritten) slot captures nothing */

/* sm_config.hop_splice */
#define SM_HOPS_AUTO 0   /* as splice: auto, without per-service memory: the connecting socket's TCP_NODELAY */
#define SM_HOPS_NEVER 1
#define SM_HOPS_ALWAYS 2

/* sm_pod.flags */
#define SM_POD_OUTBOUND_ALL (1u << 0) /* capture every outbound TCP (istio-init), not only services */
#define SM_POD_INCLUDE_ANY (1u << 1)  /* includeOutboundCIDRs is '*' */
#define SM_POD_INBOUND (1u << 2)      /* inbound capture: connections to its app ports land on the sidecar's inbound listener */
#define SM_POD_INBOUND_ALL (1u << 3)  /* includeInboundPorts is '*' (every port but the excluded ones) */

/* Kinds of per-pod port and CIDR rules. */
#define SM_RULE_EXCLUDE 0 /* excluded outbound port / CIDR */
#define SM_RULE_INCLUDE 1 /* included outbound port / CIDR */
#define SM_RULE_LOCAL 2   /* the pod's own addresses: traffic to them leaves through lo */
#define SM_RULE_IN_EXCLUDE 3 /* excluded inbound port (Istio's own ports are always among them) */
#define SM_RULE_IN_INCLUDE 4 /* included inbound port (without SM_POD_INBOUND_ALL) */

/* service_id of a connection captured by a rule rather than by a listed service. */
#define SM_NO_SERVICE 0xffffffffu

#define SM_PASSTHROUGH_SRC 0x7f000006 /* 127.0.0.6: the sidecar's inbound passthrough source */
#define SM_HBONE_PORT 15008

/* sm_svc_state.flags */
#define SM_SVC_REDIRECT (1u << 0) /* capture new connections of this service to the sidecar */
#define SM_SVC_SPLICE (1u << 1)   /* splice the app<->sidecar socket pair through the sockhash */
#define SM_SVC_AUTO (1u << 2)     /* splice pairs whose app sends with TCP_NODELAY (include/splice.h) */
#define SM_SVC_KERNEL (1u << 3)   /* kernel L4 mode: connect straight to an endpoint, no sidecar */
#define SM_SVC_AFFINITY (1u << 4) /* kernel mode: the endpoint follows the client pod, not chance */
#define SM_SVC_UDP (1u << 5)      /* kernel mode: a UDP service (connect4 of UDP sockets, sendmsg4, recvmsg4), not TCP */

/* sm_origdst.flags */
#define SM_OD_SPLICED (1u << 0) /* the app's socket joined the sockhash: its peer joins too */
#define SM_OD_AUTO (1u << 1)    /* the service has splice: auto */
#define SM_OD_NAGLE_AT_CONNECT (1u << 2) /* auto: the app's socket had Nagle on when it connected */

/* sm_peer.flags */
#define SM_PEER_AUTO (1u << 0) /* splice: auto: a message is spliced only while its sender has TCP_NODELAY on */

/* sm_svc_auto.nagle_clients: what the service's last client socket that connected with Nagle on
 * had at its close (splice: auto, include/splice.h). */
#define SM_AUTO_UNKNOWN 0
#define SM_AUTO_TURNS_NODELAY 1 /* TCP_NODELAY on: set after connecting (Go does): splice such sockets */
#define SM_AUTO_STAYS_NAGLE 2   /* still Nagle (or corked): leave such sockets to TCP */

/* Node-wide runtime settings: one entry per slot in the sm_config array. */
struct sm_config {
	__u32 flags;
	/* SM_HOPS_*: whether hops between two local pods' sockets that no capture made (a sidecar's
	 * upstream to a pod on this node, a sidecar to its own app) are spliced. */
	__u32 hop_splice;
	/* Unused since splice: auto decides per message (they held its per-service vote's
	 * thresholds); kept so a running instance's maps keep their layout across an upgrade. */
	__u32 _pad2;
	__u32 _pad3;
	/* A spliced socket's peer takes redirected data while its receive memory is below the larger
	 * of its sk_rcvbuf and this (include/redirect.h): TCP would have grown the buffer of a reader
	 * that keeps up, which a psock reader never triggers. */
	__u32 splice_queue_bytes;
};

/* A meshed pod, by its netns cookie (0: any namespace, the single-pod form without --netns). */
struct sm_pod {
	__u64 cgroup_id;    /* the pod's cgroup: only its processes are captured */
	__u32 cgroup_level; /* that cgroup's depth below the cgroup2 root */
	__u32 pod_id;       /* 1..SM_MAX_PODS: rules and counters of this pod */
	__u32 sidecar_uid;
	__u32 sidecar_gid;
	__u32 outbound_ip4; /* network byte order, e.g. 127.0.0.1 */
	__u16 outbound_port;
	__u16 inbound_port;
	__u32 flags;
	__u32 _pad;
};

/* An address of a meshed pod (sm_local_addrs, node-wide): pod addresses are unique on a node, so
 * the address names the pod, whichever namespace sees it. */
struct sm_addr_key {
	__u32 addr[4];
};

struct sm_local_pod {
	__u64 netns; /* the pod's netns cookie */
	__u32 pod_id;
	__u32 _pad;
};

/* A meshed service address: addr all zero = any address on this port. Node-wide. */
struct sm_svc_key {
	__u32 addr[4];
	__u16 port;
	__u16 _pad;
};

struct sm_svc_val {
	__u32 service_id; /* index into sm_svc_state */
};

/* Per-service switches, indexed by service_id; one 4-byte write flips a service atomically. */
struct sm_svc_state {
	__u32 flags;
};

/* A per-pod port rule (sm_ports). */
struct sm_port_key {
	__u32 pod_id;
	__u16 port;
	__u8 kind; /* SM_RULE_* */
	__u8 _pad;
};

/* Key of the LPM trie of per-pod CIDR rules: prefixlen counts pod_id and kind (64 bits) plus
 * the address prefix. */
struct sm_lpm_key {
	__u32 prefixlen;
	__u32 pod_id;
	__u32 kind; /* SM_RULE_* */
	__u32 addr[4];
};

/* A connection as seen from one of its sockets in one network namespace: s = local end,
 * d = remote end. */
struct sm_tuple {
	__u64 netns; /* netns cookie */
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;
	__u16 dport;
	__u32 _pad;
};

/* The destination a captured connection asked for, before connect4 rewrote it. */
struct sm_origdst {
	__u32 addr[4];
	__u16 port;
	__u16 flags;
	__u32 service_id;
	__u32 pod_id;
};

/* splice: auto: a connection is bulk when at least this much of its app's data went through
 * the stack in segments averaging at least SM_AUTO_BULK_SEG bytes. */
#define SM_AUTO_BULK_BYTES (1u << 20)
#define SM_AUTO_BULK_SEG 16384

/* Per-service splice: auto memory, indexed by service_id. */
struct sm_svc_auto {
	__u16 nagle_clients; /* SM_AUTO_*: what its last Nagle-at-connect client socket did */
	__u16 bulk;          /* 1: its last connection was a bulk stream: new ones stay on the stack */
	__u32 observed;      /* closes that told it something (the last one wins) */
};

/* A slot of a kernel-mode service's Maglev table (slotted map sm_backends). */
struct sm_backend_key {
	__u32 service_id;
	__u32 slot; /* 0..SM_MAGLEV_M-1 */
};

/* The endpoint that owns a table slot. */
struct sm_backend {
	__u32 ip4; /* network byte order */
	__u16 port; /* 0: the port the connection asked for */
	__u16 _pad;
};

/* A UDP socket's endpoint for a service address (sm_udp_pick), and the service address an
 * endpoint's replies are shown to come from (sm_udp_rev). */
struct sm_udp_key {
	__u64 cookie; /* the socket */
	__u32 ip4;    /* network byte order: the service address (pick) or the endpoint (rev) */
	__u16 port;
	__u16 _pad;
};

/* Connections per endpoint of a kernel-mode service (per-CPU). */
struct sm_endpoint_key {
	__u32 service_id;
	__u32 ip4; /* network byte order */
	__u16 port;
	__u16 _pad;
};

/* A spliced socket's kernel address (sm_peer_sk), and the pod it belongs to. */
struct sm_peer {
	__u64 addr;
	__u32 pod_id;
	__u32 flags; /* SM_PEER_* */
};

/* Per-pod counters: the per-CPU sm_stats array holds one block (struct sm_pod_counters) per pod id,
 * indexed by stat. */
enum sm_stat {
	SM_STAT_CONNECT_REWRITE = 0,  /* connect4 sent a connection to the sidecar */
	SM_STAT_CONNECT_SIDECAR = 1,  /* connect4 skipped the sidecar's own connection */
	SM_STAT_CONNECT_EXCLUDED = 2, /* connect4 skipped an excluded port or CIDR */
	SM_STAT_CONNECT_DISABLED = 3, /* connect4 skipped a service whose redirect is off */
	SM_STAT_SOCK_INSERT = 4,      /* sockops put a socket into the sockhash */
	SM_STAT_MSG_REDIRECT = 5,     /* sk_msg spliced a message to its peer socket */
	SM_STAT_MSG_PASS = 6,         /* sk_msg found no peer and let the stack carry it */
	SM_STAT_ORIGDST_HIT = 7,      /* getsockopt answered SO_ORIGINAL_DST */
	SM_STAT_ORIGDST_MISS = 8,     /* getsockopt(SO_ORIGINAL_DST) for an unknown connection */
	SM_STAT_ERROR = 9,            /* a map update failed */
	SM_STAT_MSG_NAGLE = 10,       /* sk_msg (splice: auto): the sender has Nagle on or is corked, the stack carried it */
	SM_STAT_AUTO_STACK = 11,      /* splice: auto left a connection to TCP (Nagle at connect, or a bulk service) */
	SM_STAT_CONNECT_INBOUND = 12, /* connect4 sent the sidecar's call to its own pod IP inbound */
	SM_STAT_MSG_FULL = 13,        /* sk_msg: the peer's receive buffer was full, the stack carried it */
	SM_STAT_MSG_ORDER = 14,       /* sk_msg: the peer had stack data unread, the stack carried it */
	SM_STAT_CONNECT_KERNEL = 15,  /* connect4 sent a kernel-mode service's connection to an endpoint */
	SM_STAT_CONNECT_REFUSED = 16, /* connect4 refused a kernel-mode service without endpoints */
	SM_STAT_GETPEERNAME = 17,     /* getpeername4 answered a kernel-mode connection with its service */
	SM_STAT_UDP_SEND = 18,        /* sendmsg4 sent a datagram of a kernel-mode UDP service to an endpoint */
	SM_STAT_UDP_RECV = 19,        /* recvmsg4 showed an endpoint's reply as the service's */
	SM_STAT_INBOUND = 20,         /* sk_lookup handed a connection to the pod's sidecar inbound listener */
	SM_STAT_INBOUND_NO_LISTENER = 21, /* sk_lookup refused an inbound connection: the sidecar has no inbound listener */
	SM_STAT_ORIGDST_INBOUND = 22, /* getsockopt answered SO_ORIGINAL_DST of an inbound connection (its own local address) */
	SM_STAT_HOP_SPLICE = 23,      /* sockops spliced a hop between two local sockets that no capture made */
	SM_STAT_MAX = 24,
};

/* Per-service counters: the per-CPU sm_svc_stats array holds one block (struct sm_svc_counters)
 * per service id, indexed by stat. */
enum sm_svc_stat {
	SM_SVC_STAT_CAPTURED = 0, /* connections sent to the sidecar */
	SM_SVC_STAT_DISABLED = 1, /* connections left alone because the switch is off */
	SM_SVC_STAT_SPLICED = 2,  /* captured connections whose socket pair joined the sockhash */
	SM_SVC_STAT_KERNEL = 3,   /* connections sent straight to an endpoint (kernel mode) */
	SM_SVC_STAT_REFUSED = 4,  /* connections refused: no endpoint (kernel mode) */
	SM_SVC_STAT_MAX = 5,
};

/* One pod's counters (one sm_stats element) and one service's (one sm_svc_stats element): a block
 * per id, so user space reads a node's counters in a few thousand elements, not ~100,000 (each
 * element of a batch lookup costs the kernel ~0.3 us: a /metrics scrape cost ~30 ms of it). */
struct sm_pod_counters {
	__u64 c[SM_STAT_MAX];
};

struct sm_svc_counters {
	__u64 c[SM_SVC_STAT_MAX];
};

_Static_assert(sizeof(struct sm_config) == 20, "sm_config layout");
_Static_assert(sizeof(struct sm_pod) == 40, "sm_pod layout");
_Static_assert(sizeof(struct sm_svc_auto) == 8, "sm_svc_auto layout");
_Static_assert(sizeof(struct sm_svc_key) == 20, "sm_svc_key layout");
_Static_assert(sizeof(struct sm_port_key) == 8, "sm_port_key layout");
_Static_assert(sizeof(struct sm_lpm_key) == 28, "sm_lpm_key layout");
_Static_assert(sizeof(struct sm_tuple) == 48, "sm_tuple layout");
_Static_assert(sizeof(struct sm_origdst) == 28, "sm_origdst layout");
_Static_assert(sizeof(struct sm_peer) == 16, "sm_peer layout");
_Static_assert(sizeof(struct sm_backend_key) == 8, "sm_backend_key layout");
_Static_assert(sizeof(struct sm_backend) == 8, "sm_backend layout");
_Static_assert(sizeof(struct sm_endpoint_key) == 12, "sm_endpoint_key layout");
_Static_assert(sizeof(struct sm_udp_key) == 16, "sm_udp_key layout");
_Static_assert(sizeof(struct sm_addr_key) == 16, "sm_addr_key layout");
_Static_assert(sizeof(struct sm_local_pod) == 16, "sm_local_pod layout");
_Static_assert(sizeof(struct sm_pod_counters) == 8 * SM_STAT_MAX, "sm_pod_counters layout");
_Static_assert(sizeof(struct sm_svc_counters) == 8 * SM_SVC_STAT_MAX, "sm_svc_counters layout");

#endif
