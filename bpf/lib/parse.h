/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Bounded, cursor-based packet parser: Ethernet, up to KXLB_MAX_VLAN_TAGS 802.1Q/802.1ad tags,
 * IPv4 (options, fragments), IPv6 (extension headers detected, not walked), TCP, UDP, ICMP, ICMPv6.
 * Pure: it reads the frame and fills struct pkt; counting is the caller's job.
 */
#ifndef KXLB_BPF_PARSE_H
#define KXLB_BPF_PARSE_H

#include "lib/common.h"

/* Headers whose UAPI definitions would drag glibc in (linux/icmp.h) or are kernel-internal. */
struct vlan_tag {
	__be16 tci;
	__be16 encap_proto;
};

struct icmp_hdr { /* ICMP and ICMPv6 share the first 8 bytes' layout */
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 rest; /* id/sequence, MTU, or unused, depending on type */
};

#define IPV4_FLAG_MF 0x2000
#define IPV4_FRAG_OFFSET_MASK 0x1fff

/* struct pkt.flags */
enum {
	PKT_F_IPV4_OPTIONS = 1 << 0,
	PKT_F_FRAGMENT = 1 << 1,       /* IPv4 fragment (first or later) */
	PKT_F_LATER_FRAGMENT = 1 << 2, /* fragment offset != 0: no L4 header in this frame */
	PKT_F_IPV6_EXTHDR = 1 << 3,    /* L4 header not reached: an extension header comes first */
	PKT_F_L4 = 1 << 4,             /* the L4 header was parsed and is complete */
};

/* What the parser learnt about one frame. Offsets are from the start of the frame. */
struct pkt {
	__u16 l3_proto; /* ETH_P_* in host order; 0 until the ethertype is known */
	__u8 l4_proto;  /* IPPROTO_*; valid once l3 is IPv4/IPv6 */
	__u8 vlan_tags;
	__u16 l3_off;
	__u16 l4_off;
	__u16 l4_len;   /* bytes of IP payload (from the IP header's length field) */
	__u8 tcp_flags; /* byte 13 of the TCP header */
	__u8 icmp_type;
	__u8 l3_stat; /* kxlb_parse_stat of the ethertype (ipv4, ipv6, arp, l3_other); 0: not reached */
	__u8 l4_stat; /* kxlb_parse_stat of the L4 header (tcp, udp, icmp, icmpv6, l4_other); 0: none */
	__u32 flags; /* PKT_F_* */
	/* Addresses (IPv4 in word 0, the rest 0), ports, protocol and family: for a TCP/UDP frame, its
	 * conntrack key as is. */
	struct kxlb_flow_key fl;
};

/* start..end: the bytes the program may read directly. len: the packet's full length from start,
 * which IP/L4 length fields are checked against. An XDP frame is all direct (len = end - start); an
 * skb (tc) may keep its payload outside the linear area (GSO, paged data): only the headers need to
 * be direct there. */
struct cursor {
	void *start;
	void *pos;
	void *end;
	__u32 len;
};

static __always_inline void cursor_init_range(struct cursor *c, void *data, void *data_end,
                                              __u32 len)
{
	c->start = data;
	c->pos = data;
	c->end = data_end;
	c->len = len;
}

static __always_inline void cursor_init(struct cursor *c, struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;

	cursor_init_range(c, data, end, (__u32)(end - data));
}

/* For tc programs: the skb's linear data, with skb->len (from the MAC header) as the length. */
static __always_inline void cursor_init_skb(struct cursor *c, struct __sk_buff *skb)
{
	cursor_init_range(c, (void *)(long)skb->data, (void *)(long)skb->data_end, skb->len);
}

static __always_inline __u16 cursor_offset(const struct cursor *c)
{
	return (__u16)(c->pos - c->start);
}

/* Returns a pointer to the next len bytes and advances past them, or NULL if fewer remain. */
static __always_inline void *cursor_pull(struct cursor *c, __u32 len)
{
	void *p = c->pos;

	if (p + len > c->end)
		return NULL;
	c->pos = p + len;
	return p;
}

static __always_inline int parse_tcp(struct cursor *c, struct pkt *pkt)
{
	struct tcphdr *th = cursor_pull(c, sizeof(*th));
	__u32 hdr_len;

	if (!th)
		return KXLB_PS_ERR_TRUNC_TCP;
	if (th->doff < 5)
		return KXLB_PS_ERR_TCP_DOFF;
	hdr_len = th->doff * 4;
	if (hdr_len > pkt->l4_len)
		return KXLB_PS_ERR_TRUNC_TCP;
	if (hdr_len > sizeof(*th) && !cursor_pull(c, hdr_len - sizeof(*th)))
		return KXLB_PS_ERR_TRUNC_TCP;
	pkt->fl.sport = th->source;
	pkt->fl.dport = th->dest;
	pkt->tcp_flags = ((__u8 *)th)[13];
	pkt->flags |= PKT_F_L4;
	pkt->l4_stat = KXLB_PS_TCP;
	return 0;
}

static __always_inline int parse_udp(struct cursor *c, struct pkt *pkt)
{
	struct udphdr *uh = cursor_pull(c, sizeof(*uh));
	__u16 len;

	if (!uh)
		return KXLB_PS_ERR_TRUNC_UDP;
	len = bpf_ntohs(uh->len);
	if (len < sizeof(*uh) || len > pkt->l4_len)
		return KXLB_PS_ERR_UDP_LEN;
	pkt->fl.sport = uh->source;
	pkt->fl.dport = uh->dest;
	pkt->flags |= PKT_F_L4;
	pkt->l4_stat = KXLB_PS_UDP;
	return 0;
}

static __always_inline int parse_icmp(struct cursor *c, struct pkt *pkt, __u8 stat)
{
	struct icmp_hdr *ih = cursor_pull(c, sizeof(*ih));

	if (!ih || pkt->l4_len < sizeof(*ih))
		return KXLB_PS_ERR_TRUNC_ICMP;
	pkt->icmp_type = ih->type;
	pkt->flags |= PKT_F_L4;
	pkt->l4_stat = stat;
	return 0;
}

static __always_inline int parse_l4(struct cursor *c, struct pkt *pkt)
{
	pkt->l4_off = cursor_offset(c);
	switch (pkt->l4_proto) {
	case IPPROTO_TCP:
		return parse_tcp(c, pkt);
	case IPPROTO_UDP:
		return parse_udp(c, pkt);
	case IPPROTO_ICMP:
		if (pkt->l3_proto == ETH_P_IP)
			return parse_icmp(c, pkt, KXLB_PS_ICMP);
		break;
	case IPPROTO_ICMPV6:
		if (pkt->l3_proto == ETH_P_IPV6)
			return parse_icmp(c, pkt, KXLB_PS_ICMPV6);
		break;
	}
	pkt->l4_stat =
		KXLB_PS_L4_OTHER; /* not parsed: another protocol, or ICMP of the other family */
	return 0;
}

static __always_inline int parse_ipv4(struct cursor *c, struct pkt *pkt)
{
	struct iphdr *ip = cursor_pull(c, sizeof(*ip));
	__u32 hdr_len, tot_len;
	__u16 frag;

	if (!ip)
		return KXLB_PS_ERR_TRUNC_IPV4;
	if (ip->version != 4)
		return KXLB_PS_ERR_IPV4_VERSION;
	if (ip->ihl < 5)
		return KXLB_PS_ERR_IPV4_IHL;
	hdr_len = ip->ihl * 4;
	if (hdr_len > sizeof(*ip)) {
		pkt->flags |= PKT_F_IPV4_OPTIONS;
		if (!cursor_pull(c, hdr_len - sizeof(*ip)))
			return KXLB_PS_ERR_IPV4_IHL;
	}
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < hdr_len || (__u32)((void *)ip - c->start) + tot_len > c->len)
		return KXLB_PS_ERR_IPV4_TOTLEN;

	pkt->l4_proto = ip->protocol;
	pkt->fl.proto = ip->protocol;
	pkt->fl.family = KXLB_AF_INET;
	pkt->l4_len = tot_len - hdr_len;
	pkt->fl.saddr[0] = ip->saddr;
	pkt->fl.daddr[0] = ip->daddr;
	frag = bpf_ntohs(ip->frag_off);
	if (frag & (IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK)) {
		pkt->flags |= PKT_F_FRAGMENT;
		if (frag & IPV4_FRAG_OFFSET_MASK) {
			pkt->flags |= PKT_F_LATER_FRAGMENT;
			return 0;
		}
	}
	return parse_l4(c, pkt);
}

static __always_inline int ipv6_is_exthdr(__u8 nexthdr)
{
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_FRAGMENT:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_MH:
	case 139: /* HIP */
	case 140: /* Shim6 */
		return 1;
	default:
		return 0;
	}
}

static __always_inline int parse_ipv6(struct cursor *c, struct pkt *pkt)
{
	struct ipv6hdr *ip6 = cursor_pull(c, sizeof(*ip6));
	__u32 payload_len;

	if (!ip6)
		return KXLB_PS_ERR_TRUNC_IPV6;
	if (ip6->version != 6)
		return KXLB_PS_ERR_IPV6_VERSION;
	payload_len = bpf_ntohs(ip6->payload_len);
	if ((__u32)(c->pos - c->start) + payload_len > c->len)
		return KXLB_PS_ERR_IPV6_PAYLEN;

	pkt->l4_proto = ip6->nexthdr;
	pkt->fl.proto = ip6->nexthdr;
	pkt->fl.family = KXLB_AF_INET6;
	pkt->l4_len = payload_len;
	__builtin_memcpy(pkt->fl.saddr, &ip6->saddr, sizeof(pkt->fl.saddr));
	__builtin_memcpy(pkt->fl.daddr, &ip6->daddr, sizeof(pkt->fl.daddr));
	if (ipv6_is_exthdr(ip6->nexthdr)) {
		pkt->flags |= PKT_F_IPV6_EXTHDR;
		return 0;
	}
	return parse_l4(c, pkt);
}

/* Parses one frame. Returns 0 with *pkt filled as far as the frame goes, or the kxlb_parse_stat
 * error id of the first layer that is truncated or malformed (*pkt then holds the layers before it).
 * *pkt must be zeroed by the caller.
 */
static __always_inline int parse_packet(struct cursor *c, struct pkt *pkt)
{
	struct ethhdr *eth;
	__be16 proto;

	eth = cursor_pull(c, sizeof(*eth));

	if (!eth)
		return KXLB_PS_ERR_TRUNC_ETH;
	proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < KXLB_MAX_VLAN_TAGS; i++) {
		struct vlan_tag *tag;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		tag = cursor_pull(c, sizeof(*tag));
		if (!tag)
			return KXLB_PS_ERR_TRUNC_VLAN;
		proto = tag->encap_proto;
		pkt->vlan_tags++;
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return KXLB_PS_ERR_VLAN_DEPTH;

	pkt->l3_proto = bpf_ntohs(proto);
	pkt->l3_off = cursor_offset(c);
	if (proto == bpf_htons(ETH_P_IP)) {
		pkt->l3_stat = KXLB_PS_IPV4;
		return parse_ipv4(c, pkt);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		pkt->l3_stat = KXLB_PS_IPV6;
		return parse_ipv6(c, pkt);
	}
	pkt->l3_stat = proto == bpf_htons(ETH_P_ARP) ? KXLB_PS_ARP : KXLB_PS_L3_OTHER;
	return 0;
}

#endif /* KXLB_BPF_PARSE_H */
