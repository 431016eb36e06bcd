/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* kxlb shared ABI: the one definition of every map key, map value, flag and counter id that BPF
 * programs and userspace both use. Plain C, fixed-width types, explicit padding, network-order fields
 * typed __be16/__be32. Userspace includes it through userspace/lib/abi.hpp, which adds static_asserts.
 */
#ifndef KXLB_ABI_H
#define KXLB_ABI_H

#include <linux/types.h>

/* Bumped whenever a map layout in this file changes incompatibly (pinned-map adoption checks it). */
#define KXLB_ABI_VERSION 3

/* ---- Parser observation counters -------------------------------------------------------------
 * What the datapath's packet parser saw, one per-CPU {packets, bytes} slot per id. A frame bumps
 * several ids (e.g. FRAMES, VLAN, IPV4, TCP). Parse errors name the layer boundary that failed.
 * X-macro so C++ gets the names from the same list: X(enum id, "metric/CLI name").
 */
/* clang-format off */
#define KXLB_PARSE_STAT_LIST(X)                                                  \
	X(KXLB_PS_FRAMES, "frames")                   /* every frame the program ran on */ \
	X(KXLB_PS_VLAN, "vlan")                       /* carried one or more 802.1Q/802.1ad tags */ \
	X(KXLB_PS_ARP, "arp")                                                      \
	X(KXLB_PS_IPV4, "ipv4")                                                    \
	X(KXLB_PS_IPV6, "ipv6")                                                    \
	X(KXLB_PS_L3_OTHER, "l3_other")               /* any other ethertype */      \
	X(KXLB_PS_IPV4_OPTIONS, "ipv4_options")       /* IHL > 5 */                  \
	X(KXLB_PS_IPV4_FRAGMENT, "ipv4_fragment")     /* MF set or offset != 0 */    \
	X(KXLB_PS_IPV6_EXTHDR, "ipv6_exthdr")         /* next header is an extension header */ \
	X(KXLB_PS_TCP, "tcp")                                                      \
	X(KXLB_PS_UDP, "udp")                                                      \
	X(KXLB_PS_ICMP, "icmp")                                                    \
	X(KXLB_PS_ICMPV6, "icmpv6")                                                \
	X(KXLB_PS_L4_OTHER, "l4_other")               /* other IP protocol, or a later fragment */ \
	X(KXLB_PS_ERR_TRUNC_ETH, "err_trunc_eth")     /* runt: shorter than an Ethernet header */ \
	X(KXLB_PS_ERR_TRUNC_VLAN, "err_trunc_vlan")                                \
	X(KXLB_PS_ERR_VLAN_DEPTH, "err_vlan_depth")   /* more tags than KXLB_MAX_VLAN_TAGS */ \
	X(KXLB_PS_ERR_TRUNC_IPV4, "err_trunc_ipv4")                                \
	X(KXLB_PS_ERR_IPV4_VERSION, "err_ipv4_version")                            \
	X(KXLB_PS_ERR_IPV4_IHL, "err_ipv4_ihl")       /* IHL < 5, or options past the end */ \
	X(KXLB_PS_ERR_IPV4_TOTLEN, "err_ipv4_totlen") /* total length < header or > frame */ \
	X(KXLB_PS_ERR_TRUNC_IPV6, "err_trunc_ipv6")                                \
	X(KXLB_PS_ERR_IPV6_VERSION, "err_ipv6_version")                            \
	X(KXLB_PS_ERR_IPV6_PAYLEN, "err_ipv6_paylen") /* payload length > frame */   \
	X(KXLB_PS_ERR_TRUNC_TCP, "err_trunc_tcp")     /* shorter than 20 bytes or than doff */ \
	X(KXLB_PS_ERR_TCP_DOFF, "err_tcp_doff")       /* data offset < 5 */          \
	X(KXLB_PS_ERR_TRUNC_UDP, "err_trunc_udp")                                  \
	X(KXLB_PS_ERR_UDP_LEN, "err_udp_len")         /* UDP length < 8 or > IP payload */ \
	X(KXLB_PS_ERR_TRUNC_ICMP, "err_trunc_icmp")

#define KXLB_ENUM_ENTRY_(id, name) id,
enum kxlb_parse_stat {
	KXLB_PARSE_STAT_LIST(KXLB_ENUM_ENTRY_)
	KXLB_PARSE_STAT_MAX
};
#undef KXLB_ENUM_ENTRY_
/* clang-format on */

/* Deepest VLAN stack the parser walks (QinQ). Deeper frames count KXLB_PS_ERR_VLAN_DEPTH. */
#define KXLB_MAX_VLAN_TAGS 2

/* Value of every per-CPU counter slot. */
struct kxlb_counter {
	__u64 packets;
	__u64 bytes;
};

/* kxlb_parse_stats: a single per-CPU entry holding every parser counter, so counting a frame
 * costs one map lookup however many ids it bumps. */
struct kxlb_parse_counters {
	struct kxlb_counter by_id[KXLB_PARSE_STAT_MAX];
};

/* ---- Load balancer ------------------------------------------------------------------------- */

/* Address family tags in ABI structs (the Linux AF_* values). */
#define KXLB_AF_INET 2
#define KXLB_AF_INET6 10

/* Capacity limits: map sizes (ids index per-CPU arrays and the Maglev outer map). */
#define KXLB_MAX_SERVICES 16384
#define KXLB_MAX_BACKENDS 131072
#define KXLB_MAX_VIP_ADDRS 16384
#define KXLB_DEFAULT_CT_ENTRIES 262144
#define KXLB_NH_CACHE_SLOTS 4096 /* per CPU; a power of two */
#define KXLB_FLOW_CACHE_BITS 11
#define KXLB_FLOW_CACHE_SLOTS (1u << KXLB_FLOW_CACHE_BITS) /* per CPU */
#define KXLB_MAX_SOURCE_RANGES 65536
#define KXLB_DEFAULT_AFFINITY_ENTRIES 65536
/* Largest Maglev table (slots) a service may have; tables are primes <= this. */
#define KXLB_MAX_MAGLEV_SIZE 65537

/* Addresses: network order; IPv4 uses addr[0] and leaves addr[1..3] zero. */

/* kxlb_services key: one frontend (VIP/LoadBalancer IP/externalIP/node address, port, protocol). */
struct kxlb_vip_key {
	__be32 addr[4];
	__be16 port;
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family; /* KXLB_AF_INET or KXLB_AF_INET6 */
};

enum kxlb_svc_flags {
	KXLB_SVC_F_SOCKET_LB = 1 << 0, /* node-local clients are balanced at connect() */
	KXLB_SVC_F_DSR = 1 << 1,       /* direct server return (IPIP) instead of full-NAT */
	/* only clients in the service's kxlb_source_ranges entries may open flows (set by the
	 * programmer whenever the service has ranges; not a user flag) */
	KXLB_SVC_F_SOURCE_RANGES = 1 << 2,
};

/* kxlb_frontend_filter: one entry, a bitmap with the bit kxlb_frontend_bit() of every frontend
 * set. The datapath passes a frame whose bit is clear without a hash-map lookup; a set bit may be a
 * collision, so the frontend is still looked up. Bits may be set for removed frontends, never
 * missing for live ones. */
#define KXLB_FRONTEND_FILTER_BITS 65536
struct kxlb_frontend_filter {
	__u64 words[KXLB_FRONTEND_FILTER_BITS / 64];
};

/* The filter bit of (address, port, protocol): one definition for BPF and C++. Address words and
 * port are taken as stored (network order), so both sides compute the same bit. */
static inline __u32 kxlb_frontend_bit(const __be32 *addr, __u8 family, __be16 port, __u8 proto)
{
	__u32 h = (__u32)addr[0];

	if (family != KXLB_AF_INET) /* words 1..3 of an IPv4 address are 0: the same bit, cheaper */
		h ^= ((__u32)addr[1] * 0x9e3779b1u) ^ ((__u32)addr[2] * 0x85ebca6bu) ^
		     ((__u32)addr[3] * 0xc2b2ae35u);
	h ^= ((__u32)port << 8) ^ proto;
	h *= 0x9e3779b1u;
	h ^= h >> 15;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	return h & (KXLB_FRONTEND_FILTER_BITS - 1);
}

/* kxlb_services value. */
struct kxlb_service {
	__u32 id;    /* < KXLB_MAX_SERVICES: index of kxlb_maglev and kxlb_svc_stats */
	__u32 flags; /* KXLB_SVC_F_* */
	/* Session affinity (Kubernetes sessionAffinity: ClientIP): a client address keeps its backend
	 * for new flows until this many seconds pass without a new flow from it; 0: off. */
	__u32 affinity_timeout_s;
	__u32 pad;
};

/* kxlb_source_ranges key (LPM trie; Kubernetes loadBalancerSourceRanges): a client prefix
 * allowed into service svc_id. prefixlen counts from svc_id: 64 + the CIDR's length, so a lookup
 * with prefixlen 64 + 32 (IPv4) or 64 + 128 (IPv6) matches only the service's own ranges of the
 * client's family. Value: __u32, unused (1). */
struct kxlb_src_range_key {
	__u32 prefixlen;
	__be32 svc_id; /* network order: LPM matches bytes from the first */
	__u8 family;
	__u8 pad[3];
	__be32 addr[4];
};
#define KXLB_SRC_RANGE_KEY_BITS 64 /* bits of svc_id + family + pad before the address */

/* kxlb_affinity key: (service, client address) under session affinity. LRU: oldest evicted. */
struct kxlb_affinity_key {
	__be32 client[4];
	__u32 svc_id;
	__u8 family;
	__u8 pad[3];
};

struct kxlb_affinity_value {
	__u64 last_seen_ns; /* last new flow of the client to the service (bpf_ktime_get_coarse_ns) */
	__u32 backend_id;
	__u32 backend_gen;
};

/* Maglev tables: kxlb_maglev[service id] is an inner __u32 array of 2 + 2 x size entries, double
 * buffered. Element 0 holds the table size (a prime, fixed for the inner map's life), element 1
 * the index of the first slot of the active half (2 or 2 + size); each half holds size backend ids.
 * A table is replaced by writing the inactive half and then element 1 (one aligned 32-bit store,
 * so a reader sees the old or the new table, never a mix); a half is rewritten only long after
 * it stopped being active (see BpfLbMaps::swap_maglev). A new inner map (other size, or first
 * table) is published with one outer-map update instead. No inner map (or size 0): no backend. */
#define KXLB_MAGLEV_SIZE_SLOT 0
#define KXLB_MAGLEV_ACTIVE_SLOT 1
#define KXLB_MAGLEV_HEADER_SLOTS 2

/* kxlb_vip_addrs key: addresses that carry at least one frontend (for counting VIP traffic the
 * datapath cannot balance: fragments, IPv4 options, IPv6 extension headers, other protocols). */
struct kxlb_vip_addr_key {
	__be32 addr[4];
	__u8 family;
	__u8 pad[3];
};

enum kxlb_backend_flags {
	/* keeps its flows, gets no new ones (not in any Maglev table) */
	KXLB_BE_F_DRAINING = 1 << 0,
	/* lives on this node (a pod behind a veth, routed by the node's kernel): new flows to it are
	 * DNAT-only and handed to the kernel (XDP_PASS, fwd_local); their replies are reverse-translated
	 * by the tc egress program (bpf/tc_local_rev.bpf.c). See docs/datapath.md "Local backends". */
	KXLB_BE_F_LOCAL = 1 << 1,
};

/* kxlb_backends value, keyed by backend id (__u32 < KXLB_MAX_BACKENDS). */
struct kxlb_backend {
	__be32 addr[4];
	__be16 port;
	__u8 family;
	__u8 flags; /* KXLB_BE_F_* */
	__u32 gen; /* changes whenever the id is given to another backend: flows of an old gen re-balance */
	/* Owner and weight let a restarted agent adopt the maps (rebuild its id allocation and
	 * reproduce every Maglev table) without disturbing flows. The datapath reads the weight only
	 * for session affinity: 0 (like KXLB_BE_F_DRAINING) takes no new flows. */
	__u32 svc_id;
	__u32 weight;
};

/* Connection-tracking key (kxlb_ct: client -> VIP as received; kxlb_nat: backend -> node as received).
 * 8-byte aligned: the datapath compares and hashes it as five 64-bit words (flow_cache.h). */
struct kxlb_flow_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
} __attribute__((aligned(8)));

/* Next hop cached in a flow entry (refreshed about once a second by the datapath). */
struct kxlb_nexthop {
	__u32 ifindex;
	__u8 dmac[6];
	__u8 smac[6];
};

/* kxlb_nh_cache value (per-CPU array of KXLB_NH_CACHE_SLOTS, slot = backend id % slots): the next
 * hop toward a backend, so a new flow skips bpf_fib_lookup. Written and read by the datapath only;
 * valid while backend id, generation and ingress NIC match and it is younger than a second. */
struct kxlb_nh_cache_entry {
	__u64 stamp_ns; /* when it was looked up; 0: empty */
	__u32 backend_id;
	__u32 backend_gen;
	__u32 ingress_ifindex;
	struct kxlb_nexthop nh;
	__u32 pad;
};

/* kxlb_flow_cache value (per-CPU array of KXLB_FLOW_CACHE_SLOTS; slot: a hash of the key): the
 * translation of an established full-NAT flow's frames in one direction, so its next frames on
 * this CPU skip the conntrack (or reverse-NAT) hash lookup. Written by the datapath from the flow's
 * kxlb_ct / kxlb_nat entry; valid until that entry is due for its once-a-second refresh.
 * Userspace clears it after deleting flows or changing kxlb_config. */
struct kxlb_flow_cache_entry {
	struct kxlb_flow_key key; /* the frame's own 5-tuple */
	__u64 expires;            /* valid while the kernel's jiffies are <= this; 0: empty */
	__be32 saddr[4];          /* the frame leaves with these addresses and ports */
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u32 svc_id;
	__u32 backend_id;
	__u32 backend_gen; /* forward entries: the backend must still have it; 0: not checked */
	struct kxlb_nexthop nh;
};

/* Per-CPU counters of the flow cache (kxlb_fcache_stats, one entry); counted only while the
 * cache is on. A miss is a frame the cache could have carried (mid-connection TCP or UDP of an
 * established full-NAT flow, either direction) that took the conntrack path instead: the flow's
 * second frame, its first frame on this CPU, its once-a-second refresh, a slot shared with another
 * flow. hits / (hits + misses) is the share of such frames the cache carried. */
struct kxlb_flow_cache_counters {
	__u64 hits;   /* frames sent from the cache */
	__u64 misses; /* frames of cacheable flows that took the conntrack path */
	__u64 fills; /* entries written (a miss fills unless the flow's refresh is due within a tick) */
};

enum kxlb_ct_flags {
	KXLB_CT_F_FIN_CLIENT = 1 << 0,  /* FIN seen from the client */
	KXLB_CT_F_FIN_BACKEND = 1 << 1, /* FIN seen from the backend */
	KXLB_CT_F_CLOSED = 1 << 2,      /* RST, or FIN both ways: the flow is over */
	/* DSR flow: sent encapsulated to the backend, which answers the client directly. No kxlb_nat
	 * entry and no SNAT port (snat_port 0); replies never pass this node, so FIN_BACKEND is
	 * never set and an RST from the client alone closes it. */
	KXLB_CT_F_DSR = 1 << 3,
	/* Local-backend flow (KXLB_BE_F_LOCAL): destination NAT only, no SNAT port (snat_port 0), no
	 * next hop (the kernel routes it). Its kxlb_nat entry is keyed by the reply as the backend sends
	 * it: {backend addr:port -> client addr:port}, and carries this flag too. */
	KXLB_CT_F_LOCAL = 1 << 4,
};

/* kxlb_ct value: forward state of one client flow. */
struct kxlb_ct_value {
	__u64 last_seen_ns; /* bpf_ktime_get_ns(), refreshed at most once a second */
	__u32 backend_id;
	__u32 backend_gen;
	__u32 svc_id;
	__u32 flags;      /* KXLB_CT_F_*, set with atomic OR (both directions write it) */
	__be16 snat_port; /* node source port toward the backend */
	__u8 pad[2];
	struct kxlb_nexthop nh; /* toward the backend */
	__u32 pad2;
};

/* kxlb_nat value: reverse translation for replies (backend:port -> node:snat_port; for local flows,
 * KXLB_CT_F_LOCAL: backend:port -> client:port, used by the tc egress program). Also the
 * reservation of that SNAT port: a closed flow's entry stays until tcp_timewait_s has passed so
 * the port is not reused while the backend may still hold the old connection in TIME_WAIT. */
struct kxlb_nat_value {
	__u64 last_seen_ns; /* for closed flows: when it closed */
	__be32 client_addr[4];
	__be32 vip_addr[4];
	__be16 client_port;
	__be16 vip_port;
	__u32 svc_id;
	__u32 backend_id;
	__u32 flags;            /* KXLB_CT_F_* (mirrors the forward entry), set with atomic OR */
	struct kxlb_nexthop nh; /* toward the client */
};

/* kxlb_config: one entry, written by the agent. Host order unless typed __be. */
struct kxlb_config {
	__u64 hash_seed;    /* same on every node so all pick the same backend for a flow */
	__be32 snat_v4;     /* full-NAT source toward IPv4 backends; 0: IPv4 full-NAT disabled */
	__be32 snat_v6[4];  /* full-NAT source toward IPv6 backends; ::: IPv6 full-NAT disabled */
	__u16 snat_port_lo; /* SNAT source port range, inclusive */
	__u16 snat_port_hi;
	__u32 udp_timeout_s;  /* idle UDP flows older than this are new flows again */
	__u32 tcp_timewait_s; /* how long a closed flow's SNAT port stays reserved */
	/* DSR outer source addresses. A prefix (len != 0) gives every flow a source inside it, the
	 * host bits taken from the flow hash: backend NICs hash IPIP/IP6IP6 on the outer addresses
	 * only, so one fixed source would put all of a balancer's flows on one RX queue. Not set
	 * (len 0, address 0): the outer source is snat_v4 / snat_v6; neither: DSR frames of the family
	 * pass (pass_no_encap_src). Lengths: 8..32 (IPv4), 64..128 (IPv6); host bits zero. */
	__be32 encap_src_v4;
	__be32 encap_src_v6[4];
	__u8 encap_src_v4_len;
	__u8 encap_src_v6_len;
	__u8 pad[2];
};

/* Per-service and per-backend traffic counters (per-CPU; summed by readers). */
struct kxlb_lb_counter {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};

/* ---- Datapath outcomes ------------------------------------------------------------------------
 * Every frame ends in exactly one reason, counted per-CPU in kxlb_reasons ({packets, bytes}).
 */
/* clang-format off */
#define KXLB_REASON_LIST(X)                                                                       \
	X(KXLB_R_FWD_TX, "fwd_tx")                     /* translated, sent back out the ingress NIC */ \
	X(KXLB_R_FWD_REDIRECT, "fwd_redirect")         /* translated, redirected to another NIC */ \
	X(KXLB_R_TX_UNREACH_NO_BACKEND, "tx_unreach_no_backend") /* ICMP port unreachable sent */ \
	X(KXLB_R_PASS_NOT_IP, "pass_not_ip")                                                     \
	X(KXLB_R_PASS_NOT_VIP, "pass_not_vip")         /* not addressed to a frontend */          \
	X(KXLB_R_PASS_MALFORMED, "pass_malformed")     /* parse error: the kernel stack drops it */ \
	X(KXLB_R_PASS_VLAN, "pass_vlan")               /* VLAN-tagged: not ours */                 \
	X(KXLB_R_PASS_VIP_FRAGMENT, "pass_vip_fragment")                                          \
	X(KXLB_R_PASS_VIP_IPV4_OPTIONS, "pass_vip_ipv4_options")                                  \
	X(KXLB_R_PASS_VIP_IPV6_EXTHDR, "pass_vip_ipv6_exthdr")                                    \
	X(KXLB_R_PASS_VIP_OTHER_L4, "pass_vip_other_l4") /* ICMP or another protocol to a VIP */  \
	X(KXLB_R_PASS_NO_NEIGH, "pass_no_neigh")       /* next hop MAC unknown: kernel resolves */ \
	X(KXLB_R_PASS_FIB_FAILED, "pass_fib_failed")   /* no route, or forwarding off */  \
	X(KXLB_R_PASS_NO_TX_PORT, "pass_no_tx_port")   /* route leaves via a NIC kxlb does not own */ \
	X(KXLB_R_PASS_NO_SNAT_ADDR, "pass_no_snat_addr") /* no node address for the family */      \
	X(KXLB_R_DROP_TCP_NO_FLOW, "drop_tcp_no_flow") /* non-SYN TCP to a VIP, no tracked flow */ \
	X(KXLB_R_DROP_SNAT_EXHAUSTED, "drop_snat_exhausted") /* no free SNAT port toward backend */ \
	X(KXLB_R_DROP_BACKEND_MISSING, "drop_backend_missing") /* Maglev slot names no backend */ \
	X(KXLB_R_DROP_NO_BACKEND, "drop_no_backend")   /* no backend and no ICMP error possible */ \
	X(KXLB_R_DROP_CT_FULL, "drop_ct_full")         /* conntrack insert failed */ \
	X(KXLB_R_DROP_SOURCE_RANGE, "drop_source_range") /* client not in the service's source ranges */ \
	X(KXLB_R_PASS_ICMP_NO_FLOW, "pass_icmp_no_flow") /* ICMP error quoting no tracked flow */ \
	X(KXLB_R_DROP_ICMP_MALFORMED, "drop_icmp_malformed") /* ICMP error to a flow, quote unusable */ \
	X(KXLB_R_FWD_ENCAP_TX, "fwd_encap_tx")         /* DSR: encapsulated, sent back out the ingress NIC */ \
	X(KXLB_R_FWD_ENCAP_REDIRECT, "fwd_encap_redirect") /* DSR: encapsulated, redirected to another NIC */ \
	X(KXLB_R_TX_ICMP_TOO_BIG, "tx_icmp_too_big")   /* DSR: too big once encapsulated; ICMP sent back */ \
	X(KXLB_R_DROP_TOO_BIG, "drop_too_big")         /* DSR: too big once encapsulated, IPv4 without DF */ \
	X(KXLB_R_DROP_ENCAP_FAILED, "drop_encap_failed") /* DSR: no room for the outer header (adjust_head) */ \
	X(KXLB_R_PASS_NO_ENCAP_SRC, "pass_no_encap_src") /* DSR: no outer source address for the family */ \
	X(KXLB_R_FWD_LOCAL, "fwd_local")               /* local backend: DNAT only, passed to the kernel stack */ \
	X(KXLB_R_DROP_LOCAL_NODE_SRC, "drop_local_node_src") /* local backend: client claims the node's SNAT address */ \
	X(KXLB_R_DROP_LOCAL_TUPLE_BUSY, "drop_local_tuple_busy") /* local backend: it has a live flow from this client addr:port via another frontend */

#define KXLB_ENUM_ENTRY_(id, name) id,
enum kxlb_reason {
	KXLB_REASON_LIST(KXLB_ENUM_ENTRY_)
	KXLB_REASON_MAX
};
#undef KXLB_ENUM_ENTRY_
/* clang-format on */

/* ---- Local-backend reply translation (tc egress, bpf/tc_local_rev.bpf.c) ------------------------
 * Every packet leaving a node NIC through the program ends in exactly one reason, counted per-CPU in
 * kxlb_local_rev_reasons ({packets, bytes}, bytes as seen). "pass" leaves it untouched, "rev" rewrote
 * its source to the frontend; both return TC_ACT_UNSPEC (the hook's next filter, e.g. a CNI's, still
 * runs; then the packet is sent). "drop" is TC_ACT_SHOT.
 * X-macro so C++ gets the names from the same list: X(enum id, "metric/CLI name").
 */
/* clang-format off */
#define KXLB_LOCAL_REV_REASON_LIST(X)                                                              \
	X(KXLB_LR_REV_LOCAL, "rev_local")               /* reply of a local flow: source -> frontend */ \
	X(KXLB_LR_PASS_NOT_IP, "pass_not_ip")           /* ARP, LLDP, ... */                           \
	X(KXLB_LR_PASS_VLAN, "pass_vlan")               /* VLAN tag in the packet data: not ours */    \
	X(KXLB_LR_PASS_MALFORMED, "pass_malformed")     /* parse error */                              \
	X(KXLB_LR_PASS_OTHER_L4, "pass_other_l4")       /* not TCP/UDP, fragment, IPv4 options, IPv6 ext. headers */ \
	X(KXLB_LR_PASS_NOT_LOCAL_REPLY, "pass_not_local_reply") /* no kxlb_nat entry of a local flow */ \
	X(KXLB_LR_DROP_XLATE_FAILED, "drop_xlate_failed") /* a checksum/store helper failed mid-rewrite */

#define KXLB_ENUM_ENTRY_(id, name) id,
enum kxlb_local_rev_reason {
	KXLB_LOCAL_REV_REASON_LIST(KXLB_ENUM_ENTRY_)
	KXLB_LOCAL_REV_REASON_MAX
};
#undef KXLB_ENUM_ENTRY_
/* clang-format on */

/* ---- Socket-level load balancing (cgroup sock_addr hooks) -------------------------------------
 * connect/sendmsg rewrite a frontend address to a backend; recvmsg/getpeername rewrite it back.
 * kxlb_sock_rev remembers, per socket, which frontend a backend address stands for.
 */
struct kxlb_sock_rev_key {
	__u64 cookie;   /* bpf_get_socket_cookie() */
	__be32 addr[4]; /* backend address (IPv4 in addr[0], also for IPv4-mapped addresses) */
	__be16 port;
	__u8 family; /* of the backend: KXLB_AF_INET or KXLB_AF_INET6 */
	__u8 pad[5];
};

struct kxlb_sock_rev_value {
	__be32 addr[4]; /* the frontend address the application used */
	__be16 port;
	__u8 pad[2];
	__u32 svc_id;
};

/* kxlb_sock_peer (socket local storage, freed with the socket): the frontend a connected socket
 * dialled and the backend it was sent to. Unconnected UDP uses kxlb_sock_rev instead. */
struct kxlb_sock_peer {
	__be32 backend[4];
	__be32 frontend[4];
	__be16 backend_port;
	__be16 frontend_port;
	__u32 svc_id;
};

/* clang-format off */
#define KXLB_SOCK_REASON_LIST(X)                                                         \
	X(KXLB_SR_CONNECT, "connect_balanced")         /* connect() sent to a backend */    \
	X(KXLB_SR_SENDMSG, "sendmsg_balanced")         /* unconnected UDP datagram */        \
	X(KXLB_SR_RECVMSG, "recvmsg_reversed")         /* reply source shown as frontend */  \
	X(KXLB_SR_GETPEERNAME, "getpeername_reversed") /* peer shown as frontend */          \
	X(KXLB_SR_FAIL_NO_BACKEND, "fail_no_backend")  /* refused: no usable backend */      \
	X(KXLB_SR_FAIL_BACKEND_MISSING, "fail_backend_missing") /* table names no backend */ \
	X(KXLB_SR_FAIL_REV_UPDATE, "fail_rev_update")  /* balanced, but getpeername/recvmsg  \
	                                                  cannot show the frontend */

#define KXLB_ENUM_ENTRY_(id, name) id,
enum kxlb_sock_reason {
	KXLB_SOCK_REASON_LIST(KXLB_ENUM_ENTRY_)
	KXLB_SOCK_REASON_MAX
};
#undef KXLB_ENUM_ENTRY_
/* clang-format on */

#endif /* KXLB_ABI_H */
