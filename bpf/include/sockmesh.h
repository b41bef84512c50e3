/* sockmesh.h — the one definition of every struct shared by the BPF programs and user space.
 *
 * Plain C with fixed-width types and explicit padding; the TypeScript codecs in
 * src/bpf/codecs.ts mirror these layouts and test/bpf/codecs.test.ts checks them against the BTF
 * of the compiled object, so the two cannot drift silently.
 *
 * Addresses are always 16 bytes: IPv4 is stored IPv4-mapped (::ffff:a.b.c.d), so one key format
 * serves both families and an IPv4 CIDR a.b.c.d/n is the IPv6 prefix ::ffff:a.b.c.d/(96+n).
 * Ports are in host byte order everywhere in these structs.
 */
#ifndef SOCKMESH_H
#define SOCKMESH_H

#include <linux/types.h>

#define SM_MAX_SERVICES 1024
#define SM_MAX_PORT_EXCLUDES 1024
#define SM_MAX_CIDR_EXCLUDES 1024
#define SM_MAX_SERVICE_KEYS 16384
#define SM_MAX_CONNS 65536

/* sm_config.flags */
#define SM_CFG_ENABLED (1u << 0)      /* capture is on; a zeroed (unwritten) config captures nothing */
#define SM_CFG_OUTBOUND_ALL (1u << 1) /* capture every outbound TCP (istio-init), not only services */
#define SM_CFG_INCLUDE_ANY (1u << 2)  /* includeOutboundCIDRs is '*' */

/* service_id of a connection captured by a rule rather than by a listed service. */
#define SM_NO_SERVICE 0xffffffffu

#define SM_PASSTHROUGH_SRC 0x7f000006 /* 127.0.0.6: the sidecar's inbound passthrough source */
#define SM_HBONE_PORT 15008

/* sm_svc_state.flags */
#define SM_SVC_REDIRECT (1u << 0) /* capture new connections of this service to the sidecar */
#define SM_SVC_SPLICE (1u << 1)   /* splice the app<->sidecar socket pair through the sockhash */
#define SM_SVC_AUTO (1u << 2)     /* splice when the service's traffic votes for it (see sm_svc_auto) */

/* sm_origdst.flags */
#define SM_OD_SPLICED (1u << 0) /* the app's socket joined the sockhash: its peer joins too */

/* One auto-splice probe in this many connections stays unspliced so the vote keeps learning. */
#define SM_AUTO_PROBE_EVERY 8
#define SM_AUTO_VOTES_MAX 8

/* Runtime settings: one entry in the sm_config array, written by the agent. */
struct sm_config {
	__u32 sidecar_uid;
	__u32 sidecar_gid;
	__u32 outbound_ip4; /* network byte order, e.g. 127.0.0.1 */
	__u16 outbound_port;
	__u16 inbound_port;
	__u32 flags;
	/* splice: auto. A closed captured connection that carried at least auto_min_segs data
	 * segments votes for splicing its service when its average segment was smaller than
	 * auto_seg_bytes (per-packet stack cost dominates) and against it otherwise; new
	 * connections are spliced while the votes reach auto_votes. */
	__u32 auto_seg_bytes;
	__u32 auto_min_segs;
	__u32 auto_votes;
};

/* A meshed service address: addr all zero = any address on this port. */
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

/* Key of the LPM trie of excluded outbound CIDRs. */
struct sm_lpm_key {
	__u32 prefixlen;
	__u32 addr[4];
};

/* A connection as seen from one of its sockets: s = local end, d = remote end. */
struct sm_tuple {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;
	__u16 dport;
};

/* The destination a captured connection asked for, before connect4 rewrote it. */
struct sm_origdst {
	__u32 addr[4];
	__u16 port;
	__u16 flags;
	__u32 service_id;
};

/* Per-service auto-splice state, indexed by service_id. */
struct sm_svc_auto {
	__u32 votes;       /* 0..SM_AUTO_VOTES_MAX */
	__u32 connections; /* captured connections seen at establishment */
};

/* Index of each counter in the per-CPU sm_stats array. */
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
	SM_STAT_AUTO_VOTE_FOR = 10,   /* a closed connection voted to splice its service */
	SM_STAT_AUTO_VOTE_AGAINST = 11, /* ... voted against */
	SM_STAT_CONNECT_INBOUND = 12, /* connect4 sent the sidecar's call to its own pod IP inbound */
	SM_STAT_MSG_FULL = 13,        /* sk_msg: the peer's receive buffer was full, the stack carried it */
	SM_STAT_MSG_ORDER = 14,       /* sk_msg: the peer had stack data unread, the stack carried it */
	SM_STAT_MAX = 15,
};

_Static_assert(sizeof(struct sm_config) == 32, "sm_config layout");
_Static_assert(sizeof(struct sm_svc_auto) == 8, "sm_svc_auto layout");
_Static_assert(sizeof(struct sm_svc_key) == 20, "sm_svc_key layout");
_Static_assert(sizeof(struct sm_lpm_key) == 20, "sm_lpm_key layout");
_Static_assert(sizeof(struct sm_tuple) == 36, "sm_tuple layout");
_Static_assert(sizeof(struct sm_origdst) == 24, "sm_origdst layout");

#endif
