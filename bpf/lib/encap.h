/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* DSR (direct server return) encapsulation: the client's frame is sent unchanged inside an outer
 * IPv4 (IPIP, protocol 4) or IPv6 (IP6IP6, next header 41) header toward the backend, whose decap
 * program (bpf/lib/decap.h) strips it again. Family-specific steps are lb4_* / lb6_* twins: the
 * outer source (a configured prefix spread by the flow hash, or the node address), the egress MTU
 * check, and the header itself. Nothing is written before the MTU check has passed, so a failing
 * check can still answer with an ICMP error built from the untouched frame.
 */
#ifndef KXLB_BPF_ENCAP_H
#define KXLB_BPF_ENCAP_H

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/nat.h"
#include "lib/parse.h"

#define ENCAP4_OVERHEAD ((__u32)sizeof(struct iphdr))
#define ENCAP6_OVERHEAD ((__u32)sizeof(struct ipv6hdr))
#define ENCAP_TTL 64
#define IPV4_FLAG_DF 0x4000
#define IPV6_FLOW_LABEL_MASK 0xfffff

/* IPv4 outer source: the configured prefix with its host bits from the flow hash (one flow, one
 * source; flows spread over the prefix), or the node address when no prefix is set. 0: none. */
static __always_inline __be32 lb4_encap_src(const struct kxlb_config *cfg, __u32 hash)
{
	__u32 len = cfg->encap_src_v4_len;
	__u32 host;

	if (len == 0)
		return cfg->snat_v4;
	host = len >= 32 ? 0 : 0xffffffffu >> len;
	return cfg->encap_src_v4 | bpf_htonl(hash & host);
}

/* IPv6 twin. Prefixes are /64 or longer, so host bits live in the last two words: the last takes
 * the hash, the one before a second mix of it (a /64 gets 64 varying bits, not 32). */
static __always_inline void lb6_encap_src(const struct kxlb_config *cfg, __u32 hash, __be32 *out)
{
	__u32 len = cfg->encap_src_v6_len;
	__u32 m2 = 0, m3;

	if (len == 0) {
		__builtin_memcpy(out, cfg->snat_v6, 16);
		return;
	}
	__builtin_memcpy(out, cfg->encap_src_v6, 16);
	if (len < 96) {
		m2 = len <= 64 ? 0xffffffffu : 0xffffffffu >> (len - 64);
		m3 = 0xffffffffu;
	} else {
		m3 = len >= 128 ? 0 : 0xffffffffu >> (len - 96);
	}
	out[2] |= bpf_htonl((hash * 0x9e3779b1u) & m2);
	out[3] |= bpf_htonl(hash & m3);
}

/* The outer source for the flow's family as a 16-byte ABI address (all zero: none). */
static __always_inline void lb_encap_src(const struct kxlb_config *cfg, __u8 family, __u32 hash,
                                         __be32 *out)
{
	if (family == KXLB_AF_INET) {
		out[0] = lb4_encap_src(cfg, hash);
		out[1] = 0;
		out[2] = 0;
		out[3] = 0;
	} else {
		lb6_encap_src(cfg, hash, out);
	}
}

/* The inner IP packet's length (no IPv4 options or IPv6 extension headers reach DSR). */
static __always_inline __u32 lb_encap_inner_len(const struct pkt *pkt, __u8 family)
{
	return pkt->l4_len +
	       (family == KXLB_AF_INET ? sizeof(struct iphdr) : sizeof(struct ipv6hdr));
}

/* 0 when the encapsulated packet fits the MTU of egress device ifindex; otherwise that MTU (> 0).
 * bpf_check_mtu takes an L3 length in *mtu when it is non-zero (like a FIB lookup's tot_len), so
 * Ethernet padding after the inner packet does not count. A failed check (no such device) counts as
 * fitting: the device vanished, and the transmit path decides. */
static __always_inline __u32 lb_encap_mtu_exceeded(struct xdp_md *ctx, __u32 ifindex,
                                                   __u32 inner_len, __u8 family)
{
	__u32 mtu = inner_len + (family == KXLB_AF_INET ? ENCAP4_OVERHEAD : ENCAP6_OVERHEAD);

	if (bpf_check_mtu(ctx, ifindex, &mtu, 0, 0) != BPF_MTU_CHK_RET_FRAG_NEEDED)
		return 0;
	return mtu ? mtu : 1;
}

/* Puts an outer IPv4 header (IPIP) between the Ethernet header and the inner IPv4 packet of
 * inner_len bytes. The Ethernet header is rewritten by the caller's transmit step except the
 * ethertype, which stays IPv4. Returns 0 or -1 (the head could not grow, or the frame is short). */
static __always_inline int lb4_encap(struct xdp_md *ctx, __be32 saddr, __be32 daddr,
                                     __u32 inner_len)
{
	void *data, *end;
	struct ethhdr *eth;
	struct iphdr *outer, *inner;

	if (bpf_xdp_adjust_head(ctx, -(int)ENCAP4_OVERHEAD))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	outer = data + sizeof(*eth);
	inner = (void *)(outer + 1);
	if ((void *)(inner + 1) > end)
		return -1;
	eth->h_proto = bpf_htons(ETH_P_IP);
	outer->version = 4;
	outer->ihl = 5;
	/* RFC 6040 normal mode: the outer header carries the inner DSCP and ECN field as is. */
	outer->tos = inner->tos;
	outer->tot_len = bpf_htons(inner_len + ENCAP4_OVERHEAD);
	outer->id = 0; /* DF set: never fragmented, so no id is needed (RFC 6864) */
	outer->frag_off = bpf_htons(IPV4_FLAG_DF);
	outer->ttl = ENCAP_TTL;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = saddr;
	outer->daddr = daddr;
	outer->check = (__sum16)~csum_fold64(csum_words(outer, sizeof(*outer) / 4));
	return 0;
}

/* IPv6 twin (IP6IP6): traffic class copied from the inner header, flow label from the flow hash so
 * ECMP and the backend NIC's RSS can tell flows apart, payload length = the inner packet. */
static __always_inline int lb6_encap(struct xdp_md *ctx, const __be32 *saddr, const __be32 *daddr,
                                     __u32 inner_len, __u32 hash)
{
	void *data, *end;
	struct ethhdr *eth;
	struct ipv6hdr *outer, *inner;
	__u32 tclass;

	if (bpf_xdp_adjust_head(ctx, -(int)ENCAP6_OVERHEAD))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	outer = data + sizeof(*eth);
	inner = (void *)(outer + 1);
	if ((void *)(inner + 1) > end)
		return -1;
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	tclass = (bpf_ntohl(*(__be32 *)inner) >> 20) & 0xff;
	*(__be32 *)outer = bpf_htonl(0x60000000u | tclass << 20 | (hash & IPV6_FLOW_LABEL_MASK));
	outer->payload_len = bpf_htons(inner_len);
	outer->nexthdr = IPPROTO_IPV6;
	outer->hop_limit = ENCAP_TTL;
	__builtin_memcpy(&outer->saddr, saddr, 16);
	__builtin_memcpy(&outer->daddr, daddr, 16);
	return 0;
}

/* The frame's family's encapsulation toward daddr. */
static __always_inline int lb_encap(struct xdp_md *ctx, __u8 family, const __be32 *saddr,
                                    const __be32 *daddr, __u32 inner_len, __u32 hash)
{
	if (family == KXLB_AF_INET)
		return lb4_encap(ctx, saddr[0], daddr[0], inner_len);
	return lb6_encap(ctx, saddr, daddr, inner_len, hash);
}

#endif /* KXLB_BPF_ENCAP_H */
