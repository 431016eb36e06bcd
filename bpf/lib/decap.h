/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* DSR backend side: strip the IPIP (IPv4 outer, protocol 4) or IP6IP6 (IPv6 outer, next header 41)
 * header a kxlb balancer put around a client packet, so the inner packet (destination: a VIP the
 * backend binds locally) reaches the backend's own stack, without the ipip/ip6_tunnel modules.
 * Only outer destinations listed in kxlb_decap_addrs are decapsulated; everything else passes
 * untouched. Every frame ends in one counted kxlb_decap_reason (docs/dsr-decap.md).
 */
#ifndef KXLB_BPF_DECAP_H
#define KXLB_BPF_DECAP_H

#include <kxlb/decap.h>

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/parse.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KXLB_MAX_DECAP_ADDRS);
	__type(key, struct kxlb_decap_addr_key);
	__type(value, struct kxlb_decap_addr_value);
} kxlb_decap_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KXLB_DECAP_REASON_MAX);
	__type(key, __u32);
	__type(value, struct kxlb_counter);
} kxlb_decap_reasons SEC(".maps");

/* ECN codepoints (the two low bits of the IPv4 TOS / IPv6 traffic class). */
#define DECAP_ECN_MASK 0x3
#define DECAP_ECN_NOT_ECT 0x0
#define DECAP_ECN_CE 0x3

/* Counts the frame's outcome and returns its verdict. */
static __always_inline int decap_verdict(__u32 reason, __u64 bytes, int verdict)
{
	struct kxlb_counter *c = bpf_map_lookup_elem(&kxlb_decap_reasons, &reason);

	if (c) { /* per-CPU entry: no atomics needed */
		c->packets++;
		c->bytes += bytes;
	}
	return verdict;
}

static __always_inline int decap_addr_listed(const __be32 *addr, __u8 family)
{
	struct kxlb_decap_addr_key key = {};

	if (family == KXLB_AF_INET)
		key.addr[0] = addr[0];
	else
		__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	key.family = family;
	return bpf_map_lookup_elem(&kxlb_decap_addrs, &key) != NULL;
}

/* RFC 6040 normal-mode decapsulation: outer CE marks the inner packet CE if it is ECN-capable; an
 * inner Not-ECT packet with outer CE must be dropped. Returns 1 to mark CE, 0 to leave the inner
 * header alone, -1 to drop. */
static __always_inline int decap_ecn(__u8 outer_ecn, __u8 inner_ecn)
{
	if (outer_ecn != DECAP_ECN_CE || inner_ecn == DECAP_ECN_CE)
		return 0;
	return inner_ecn == DECAP_ECN_NOT_ECT ? -1 : 1;
}

/* Removes outer_len bytes after the Ethernet header: the Ethernet header moves forward onto the
 * start of the inner packet and gets the inner ethertype. */
static __always_inline int decap_strip(struct xdp_md *ctx, int outer_len, __be16 inner_proto)
{
	struct ethhdr *eth = (void *)(long)ctx->data;
	struct ethhdr copy;

	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return -1;
	__builtin_memcpy(&copy, eth, sizeof(copy));
	if (bpf_xdp_adjust_head(ctx, outer_len))
		return -1;
	eth = (void *)(long)ctx->data;
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, copy.h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_source, copy.h_source, ETH_ALEN);
	eth->h_proto = inner_proto;
	return 0;
}

/* Maps an inner IP header parse error to its drop reason; 0: the inner IP header is sound (an
 * error further in, in the inner L4 header, is the backend stack's business). */
static __always_inline __u32 decap_inner_error(int err)
{
	switch (err) {
	case KXLB_PS_ERR_TRUNC_IPV4:
	case KXLB_PS_ERR_TRUNC_IPV6:
		return KXLB_DR_DROP_INNER_TRUNCATED;
	case KXLB_PS_ERR_IPV4_VERSION:
	case KXLB_PS_ERR_IPV6_VERSION:
		return KXLB_DR_DROP_INNER_VERSION;
	case KXLB_PS_ERR_IPV4_IHL:
		return KXLB_DR_DROP_INNER_IHL;
	case KXLB_PS_ERR_IPV4_TOTLEN:
	case KXLB_PS_ERR_IPV6_PAYLEN:
		return KXLB_DR_DROP_INNER_LENGTH;
	default:
		return 0;
	}
}

/* The frame is IPv4 after an untagged Ethernet header; c points at the outer IPv4 header. */
static __always_inline int decap4(struct xdp_md *ctx, struct cursor *c, __u64 bytes)
{
	struct iphdr *ip = c->pos;
	struct iphdr *inner_ip;
	struct pkt outer = { .l3_proto = ETH_P_IP };
	struct pkt inner = { .l3_proto = ETH_P_IP };
	__u32 reason;
	int err, ecn;

	err = parse_ipv4(c, &outer);
	if (err || (void *)(ip + 1) > c->end)
		return decap_verdict(KXLB_DR_PASS_MALFORMED, bytes, XDP_PASS);
	if (outer.l4_proto != IPPROTO_IPIP)
		return decap_verdict(KXLB_DR_PASS_NOT_TUNNEL, bytes, XDP_PASS);
	if (!decap_addr_listed(&outer.fl.daddr[0], KXLB_AF_INET))
		return decap_verdict(KXLB_DR_PASS_NOT_DECAP_ADDR, bytes, XDP_PASS);
	if (outer.flags & PKT_F_FRAGMENT)
		return decap_verdict(KXLB_DR_PASS_OUTER_FRAGMENT, bytes, XDP_PASS);
	if (outer.flags & PKT_F_IPV4_OPTIONS)
		return decap_verdict(KXLB_DR_PASS_OUTER_IPV4_OPTIONS, bytes, XDP_PASS);
	if (csum_fold64(csum_words(ip, sizeof(*ip) / 4)) != 0xffff)
		return decap_verdict(KXLB_DR_PASS_OUTER_BAD_CSUM, bytes, XDP_PASS);

	/* The cursor now stands on the inner header (IPIP is not an L4 header parse_ipv4 pulls). */
	inner_ip = c->pos;
	reason = decap_inner_error(parse_ipv4(c, &inner));
	if (reason)
		return decap_verdict(reason, bytes, XDP_DROP);
	if ((void *)(inner_ip + 1) > c->end)
		return decap_verdict(KXLB_DR_DROP_INNER_TRUNCATED, bytes, XDP_DROP);
	if (bpf_ntohs(inner_ip->tot_len) != outer.l4_len)
		return decap_verdict(KXLB_DR_DROP_INNER_LENGTH, bytes, XDP_DROP);

	ecn = decap_ecn(ip->tos & DECAP_ECN_MASK, inner_ip->tos & DECAP_ECN_MASK);
	if (ecn < 0)
		return decap_verdict(KXLB_DR_DROP_ECN_CE_NOT_ECT, bytes, XDP_DROP);
	if (ecn > 0) {
		__u16 *word0 = (__u16 *)inner_ip; /* version/IHL and TOS, in memory order */
		__u16 old = *word0;
		__u64 d = 0;

		inner_ip->tos |= DECAP_ECN_CE;
		csum_delta16(&d, old, *word0);
		inner_ip->check = csum_apply(inner_ip->check, d);
	}

	if (decap_strip(ctx, sizeof(*ip), bpf_htons(ETH_P_IP)))
		return decap_verdict(KXLB_DR_DROP_DECAP_FAILED, bytes, XDP_DROP);
	return decap_verdict(KXLB_DR_DECAP_IPIP, bytes, XDP_PASS);
}

/* The ECN bits of an IPv6 header: the low two bits of the traffic class, which spans the low
 * nibble of byte 0 and the high nibble of byte 1. */
static __always_inline __u8 ipv6_ecn(const struct ipv6hdr *ip6)
{
	return (ip6->flow_lbl[0] >> 4) & DECAP_ECN_MASK;
}

/* The frame is IPv6 after an untagged Ethernet header; c points at the outer IPv6 header. */
static __always_inline int decap6(struct xdp_md *ctx, struct cursor *c, __u64 bytes)
{
	struct ipv6hdr *ip6 = c->pos;
	struct ipv6hdr *inner_ip6;
	struct pkt outer = { .l3_proto = ETH_P_IPV6 };
	struct pkt inner = { .l3_proto = ETH_P_IPV6 };
	__u32 reason;
	int err, ecn;

	err = parse_ipv6(c, &outer);
	if (err || (void *)(ip6 + 1) > c->end)
		return decap_verdict(KXLB_DR_PASS_MALFORMED, bytes, XDP_PASS);
	if (outer.l4_proto != IPPROTO_IPV6 && !(outer.flags & PKT_F_IPV6_EXTHDR))
		return decap_verdict(KXLB_DR_PASS_NOT_TUNNEL, bytes, XDP_PASS);
	if (!decap_addr_listed(outer.fl.daddr, KXLB_AF_INET6))
		return decap_verdict(KXLB_DR_PASS_NOT_DECAP_ADDR, bytes, XDP_PASS);
	/* Fragment or other extension headers before the tunnel header: not walked. */
	if (outer.flags & PKT_F_IPV6_EXTHDR)
		return decap_verdict(KXLB_DR_PASS_OUTER_IPV6_EXTHDR, bytes, XDP_PASS);

	inner_ip6 = c->pos;
	reason = decap_inner_error(parse_ipv6(c, &inner));
	if (reason)
		return decap_verdict(reason, bytes, XDP_DROP);
	if ((void *)(inner_ip6 + 1) > c->end)
		return decap_verdict(KXLB_DR_DROP_INNER_TRUNCATED, bytes, XDP_DROP);
	if (sizeof(*inner_ip6) + bpf_ntohs(inner_ip6->payload_len) != outer.l4_len)
		return decap_verdict(KXLB_DR_DROP_INNER_LENGTH, bytes, XDP_DROP);

	ecn = decap_ecn(ipv6_ecn(ip6), ipv6_ecn(inner_ip6));
	if (ecn < 0)
		return decap_verdict(KXLB_DR_DROP_ECN_CE_NOT_ECT, bytes, XDP_DROP);
	if (ecn > 0) /* no header checksum in IPv6 */
		inner_ip6->flow_lbl[0] |= DECAP_ECN_CE << 4;

	if (decap_strip(ctx, sizeof(*ip6), bpf_htons(ETH_P_IPV6)))
		return decap_verdict(KXLB_DR_DROP_DECAP_FAILED, bytes, XDP_DROP);
	return decap_verdict(KXLB_DR_DECAP_IP6IP6, bytes, XDP_PASS);
}

/* The whole program: one counted outcome per frame. */
static __always_inline int kxlb_decap_main(struct xdp_md *ctx)
{
	struct cursor c;
	struct ethhdr *eth;
	__u64 bytes = ctx->data_end - ctx->data;

	cursor_init(&c, ctx);
	eth = cursor_pull(&c, sizeof(*eth));
	if (!eth)
		return decap_verdict(KXLB_DR_PASS_MALFORMED, bytes, XDP_PASS);
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return decap4(ctx, &c, bytes);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return decap6(ctx, &c, bytes);
	if (eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD))
		return decap_verdict(KXLB_DR_PASS_VLAN, bytes, XDP_PASS);
	return decap_verdict(KXLB_DR_PASS_NOT_IP, bytes, XDP_PASS);
}

#endif /* KXLB_BPF_DECAP_H */
