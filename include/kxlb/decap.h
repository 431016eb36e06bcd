/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* kxlb DSR backend-side ABI: the decapsulation program's (bpf/xdp_decap.bpf.c) address map and
 * outcome ids. Plain C, fixed-width types, explicit padding, network-order fields typed __be32.
 * Userspace checks the layouts in userspace/lib/decap_program.cpp.
 */
#ifndef KXLB_DECAP_H
#define KXLB_DECAP_H

#include <linux/types.h>

#include <kxlb/abi.h> /* KXLB_AF_INET / KXLB_AF_INET6, struct kxlb_counter */

/* Most outer destination addresses one node decapsulates for (its node addresses). */
#define KXLB_MAX_DECAP_ADDRS 64

/* kxlb_decap_addrs key: an outer destination address tunnelled packets may arrive on. Network
 * order; IPv4 uses addr[0] and leaves addr[1..3] zero. Only listed addresses are decapsulated:
 * an empty map decapsulates nothing. */
struct kxlb_decap_addr_key {
	__be32 addr[4];
	__u8 family; /* KXLB_AF_INET (IPIP) or KXLB_AF_INET6 (IP6IP6) */
	__u8 pad[3];
};

/* kxlb_decap_addrs value. */
struct kxlb_decap_addr_value {
	__u32 flags; /* reserved, 0 */
};

/* ---- Decapsulation outcomes --------------------------------------------------------------------
 * Every frame ends in exactly one reason, counted per-CPU in kxlb_decap_reasons ({packets, bytes},
 * bytes as received). "pass" leaves the frame untouched; "drop" is XDP_DROP; "decap" strips the
 * outer header and passes the inner packet.
 * X-macro so C++ gets the names from the same list: X(enum id, "metric/CLI name").
 */
/* clang-format off */
#define KXLB_DECAP_REASON_LIST(X)                                                                  \
	X(KXLB_DR_DECAP_IPIP, "decap_ipip")             /* IPv4-in-IPv4 stripped, inner passed */     \
	X(KXLB_DR_DECAP_IP6IP6, "decap_ip6ip6")         /* IPv6-in-IPv6 stripped, inner passed */     \
	X(KXLB_DR_PASS_NOT_IP, "pass_not_ip")           /* ARP, LLDP, ... */                          \
	X(KXLB_DR_PASS_VLAN, "pass_vlan")               /* VLAN-tagged: not decapsulated */           \
	X(KXLB_DR_PASS_MALFORMED, "pass_malformed")     /* outer header broken: the kernel drops it */ \
	X(KXLB_DR_PASS_NOT_TUNNEL, "pass_not_tunnel")   /* not IPv4 proto 4 / IPv6 next header 41 */  \
	X(KXLB_DR_PASS_NOT_DECAP_ADDR, "pass_not_decap_addr") /* outer destination not listed */      \
	X(KXLB_DR_PASS_OUTER_FRAGMENT, "pass_outer_fragment") /* kernel reassembles (if it can) */    \
	X(KXLB_DR_PASS_OUTER_IPV4_OPTIONS, "pass_outer_ipv4_options")                                 \
	X(KXLB_DR_PASS_OUTER_IPV6_EXTHDR, "pass_outer_ipv6_exthdr") /* to a decap address */          \
	X(KXLB_DR_PASS_OUTER_BAD_CSUM, "pass_outer_bad_csum") /* outer IPv4 header checksum wrong */   \
	X(KXLB_DR_DROP_INNER_TRUNCATED, "drop_inner_truncated") /* no complete inner IP header */     \
	X(KXLB_DR_DROP_INNER_VERSION, "drop_inner_version") /* inner version != outer family */       \
	X(KXLB_DR_DROP_INNER_IHL, "drop_inner_ihl")     /* inner IHL < 5 or options past the end */  \
	X(KXLB_DR_DROP_INNER_LENGTH, "drop_inner_length") /* inner length != outer payload length */ \
	X(KXLB_DR_DROP_ECN_CE_NOT_ECT, "drop_ecn_ce_not_ect") /* outer CE, inner Not-ECT (RFC 6040) */ \
	X(KXLB_DR_DROP_DECAP_FAILED, "drop_decap_failed") /* bpf_xdp_adjust_head failed (unexpected) */

#define KXLB_ENUM_ENTRY_(id, name) id,
enum kxlb_decap_reason {
	KXLB_DECAP_REASON_LIST(KXLB_ENUM_ENTRY_)
	KXLB_DECAP_REASON_MAX
};
#undef KXLB_ENUM_ENTRY_
/* clang-format on */

#endif /* KXLB_DECAP_H */
