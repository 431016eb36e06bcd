/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ICMP errors about tracked full-NAT flows (IPv4 destination unreachable incl. fragmentation
 * needed, time exceeded; ICMPv6 destination unreachable, packet too big, time exceeded),
 * translated for the other side of the flow: lb4_icmp_quote / lb6_icmp_quote read the quoted
 * datagram, lb4_icmp_xlate / lb6_icmp_xlate rewrite outer header and quote in place.
 *
 * Backend side: an error to the node N quoting N:np -> B:bp (a packet we full-NATed) leaves as
 * VIP V -> client C quoting C:cp -> V:vp, the packet as the client sent it. Client side: an error
 * to V quoting V:vp -> C:cp (a reply we translated) leaves as N -> B quoting B:bp -> N:np.
 * Every checksum is updated incrementally (RFC 1624): the outer IPv4 header, the quoted IPv4
 * header, the quoted TCP/UDP checksum when the quote holds its field (it is left as is otherwise),
 * and the ICMP/ICMPv6 checksum over every changed word (plus, for ICMPv6, the pseudo-header). The
 * frame keeps its size, so a reported MTU stays as it is.
 */
#ifndef KXLB_BPF_ICMP_XLATE_H
#define KXLB_BPF_ICMP_XLATE_H

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/fib.h"
#include "lib/flow_maps.h"
#include "lib/icmp.h"
#include "lib/maglev.h"
#include "lib/maps.h"
#include "lib/nat.h"
#include "lib/parse.h"
#include "lib/stats.h"

#define ICMP_TIME_EXCEEDED 11
#define ICMPV6_TIME_EXCEED 3

/* The quoted datagram starts right behind the ICMP header (the outer header has no options or
 * extension headers: lb_process only calls us for such frames). */
#define ICX4_QUOTE_OFF (LB4_L4_OFF + sizeof(struct icmp_hdr))
#define ICX6_QUOTE_OFF (LB6_L4_OFF + sizeof(struct icmp_hdr))
/* Quoted bytes every usable quote holds: the IP header and the first 8 bytes behind it (ports). */
#define ICX_QUOTE_L4_MIN 8

/* Where the quoted datagram's L4 header lies (its addresses and ports go straight into a flow key,
 * reversed: the stack of lb_process has little room to spare). */
struct icx_quote {
	__u8 proto; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 l4_off; /* quoted L4 header from the quoted IP header (IPv4: IHL x 4, options included) */
	__u16 len; /* quoted bytes, from the outer IP length (never Ethernet padding) */
};

/* What lbX_icmp_quote found. */
enum {
	ICX_QUOTE_OK,
	ICX_QUOTE_OTHER,     /* quotes neither TCP nor UDP: no flow of ours, the caller goes on */
	ICX_QUOTE_NO_PORTS,  /* a later IPv4 fragment: no ports to find a flow by */
	ICX_QUOTE_MALFORMED, /* too short for IP header + 8 bytes, or not an IP header */
};

static __always_inline int icx_is_error(__u8 family, __u8 type)
{
	if (family == KXLB_AF_INET)
		return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED;
	return type == ICMPV6_DEST_UNREACH || type == ICMPV6_PKT_TOOBIG ||
	       type == ICMPV6_TIME_EXCEED;
}

/* Reads the quote of an IPv4 ICMP error into *q and, reversed (quoted destination as source),
 * into *k's addresses and ports. */
static __always_inline int lb4_icmp_quote(struct xdp_md *ctx, const struct pkt *pkt,
                                          struct icx_quote *q, struct kxlb_flow_key *k)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *qip = data + ICX4_QUOTE_OFF;
	__be16 *ports;
	__u32 hl;

	if (pkt->l4_len < sizeof(struct icmp_hdr) + sizeof(struct iphdr) + ICX_QUOTE_L4_MIN)
		return ICX_QUOTE_MALFORMED;
	q->len = pkt->l4_len - sizeof(struct icmp_hdr);
	if ((void *)(qip + 1) > end || qip->version != 4 || qip->ihl < 5)
		return ICX_QUOTE_MALFORMED;
	hl = qip->ihl * 4; /* options are walked over, not read */
	if (q->len < hl + ICX_QUOTE_L4_MIN)
		return ICX_QUOTE_MALFORMED;
	if (qip->protocol != IPPROTO_TCP && qip->protocol != IPPROTO_UDP)
		return ICX_QUOTE_OTHER;
	if (qip->frag_off & bpf_htons(IPV4_FRAG_OFFSET_MASK))
		return ICX_QUOTE_NO_PORTS;
	ports = (void *)qip + hl;
	if ((void *)(ports + 2) > end)
		return ICX_QUOTE_MALFORMED;
	k->saddr[0] = qip->daddr;
	k->daddr[0] = qip->saddr;
	k->sport = ports[1];
	k->dport = ports[0];
	q->proto = qip->protocol;
	q->l4_off = (__u8)hl;
	return ICX_QUOTE_OK;
}

/* IPv6 twin: a quote whose next header is not TCP/UDP (extension headers included) is OTHER. */
static __always_inline int lb6_icmp_quote(struct xdp_md *ctx, const struct pkt *pkt,
                                          struct icx_quote *q, struct kxlb_flow_key *k)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ipv6hdr *qip6 = data + ICX6_QUOTE_OFF;
	__be16 *ports = (void *)(qip6 + 1);

	if (pkt->l4_len < sizeof(struct icmp_hdr) + sizeof(struct ipv6hdr) + ICX_QUOTE_L4_MIN)
		return ICX_QUOTE_MALFORMED;
	q->len = pkt->l4_len - sizeof(struct icmp_hdr);
	if ((void *)(ports + 2) > end || qip6->version != 6)
		return ICX_QUOTE_MALFORMED;
	if (qip6->nexthdr != IPPROTO_TCP && qip6->nexthdr != IPPROTO_UDP)
		return ICX_QUOTE_OTHER;
	__builtin_memcpy(k->saddr, &qip6->daddr, 16);
	__builtin_memcpy(k->daddr, &qip6->saddr, 16);
	k->sport = ports[1];
	k->dport = ports[0];
	q->proto = qip6->nexthdr;
	q->l4_off = sizeof(struct ipv6hdr);
	return ICX_QUOTE_OK;
}

/* Updates the quoted TCP/UDP checksum by d_l4 (pseudo-header and ports) if the quote holds the
 * field, and adds its change to the ICMP checksum delta *d_ic. A quoted UDP checksum 0 ("none")
 * stays 0; a computed 0 is written as 0xffff. */
static __always_inline void icx_quote_l4sum(const struct icx_quote *q, void *l4, void *end,
                                            __u64 d_l4, __u64 *d_ic)
{
	__u32 off = l4_csum_off(q->proto);
	__sum16 *sum = l4 + off;
	__sum16 c;

	if ((__u32)q->len < (__u32)q->l4_off + off + sizeof(*sum) || (void *)(sum + 1) > end)
		return; /* not quoted: left alone (RFC 5927 receivers do not check it) */
	if (q->proto == IPPROTO_UDP && *sum == 0)
		return;
	c = csum_apply(*sum, d_l4);
	if (q->proto == IPPROTO_UDP && c == 0)
		c = 0xffff;
	csum_delta16(d_ic, *sum, c);
	*sum = c;
}

/* Rewrites an IPv4 ICMP error: outer osrc -> odst, quote isrc:isport -> idst:idport. Returns 0
 * or -1 (out of bounds; nothing written). */
static __always_inline int lb4_icmp_xlate(struct xdp_md *ctx, const struct icx_quote *q,
                                          __be32 osrc, __be32 odst, __be32 isrc, __be32 idst,
                                          __be16 isport, __be16 idport)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + LB4_L3_OFF;
	struct icmp_hdr *ic = data + LB4_L4_OFF;
	struct iphdr *qip = data + ICX4_QUOTE_OFF;
	__u32 hl = q->l4_off;
	__u64 d_ip = 0, d_qip = 0, d_ports = 0, d_ic;
	__be16 *ports;
	__sum16 c;

	if ((void *)(qip + 1) > end || hl < sizeof(struct iphdr) || hl > 60)
		return -1;
	ports = (void *)qip + hl;
	if ((void *)(ports + 2) > end)
		return -1;

	csum_delta32(&d_ip, ip->saddr, osrc);
	csum_delta32(&d_ip, ip->daddr, odst);
	ip->check = csum_apply(ip->check, d_ip);
	ip->saddr = osrc;
	ip->daddr = odst;

	csum_delta32(&d_qip, qip->saddr, isrc);
	csum_delta32(&d_qip, qip->daddr, idst);
	c = csum_apply(qip->check, d_qip);
	d_ic = d_qip;
	csum_delta16(&d_ic, qip->check, c);
	qip->check = c;
	qip->saddr = isrc;
	qip->daddr = idst;

	csum_delta16(&d_ports, ports[0], isport);
	csum_delta16(&d_ports, ports[1], idport);
	d_ic += d_ports;
	ports[0] = isport;
	ports[1] = idport;
	icx_quote_l4sum(q, ports, end, d_qip + d_ports, &d_ic);
	ic->checksum = csum_apply(ic->checksum, d_ic);
	return 0;
}

/* Overwrites the 16-byte address at p with to, adding the change to *d. The empty asm makes the
 * sum real after every word: otherwise clang defers the additions, keeps all 32 old and new words
 * of the four addresses live and spills them, past what lb_process's stack has left. */
static __always_inline void icx_store128(__u64 *d, void *p, const __be32 *to)
{
	__be32 *w = p;
	__u64 acc = *d;

#pragma unroll
	for (int i = 0; i < 4; i++) {
		csum_delta32(&acc, w[i], to[i]);
		w[i] = to[i];
		asm volatile("" : "+r"(acc));
	}
	*d = acc;
}

/* IPv6 twin: no IP header checksums; the ICMPv6 checksum also covers the outer addresses. */
static __always_inline int lb6_icmp_xlate(struct xdp_md *ctx, const struct icx_quote *q,
                                          const __be32 *osrc, const __be32 *odst,
                                          const __be32 *isrc, const __be32 *idst, __be16 isport,
                                          __be16 idport)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + LB6_L3_OFF;
	struct icmp_hdr *ic = data + LB6_L4_OFF;
	struct ipv6hdr *qip6 = data + ICX6_QUOTE_OFF;
	__be16 *ports = (void *)(qip6 + 1);
	__u64 d_ic = 0, d_l4 = 0;

	if ((void *)(ports + 2) > end)
		return -1;

	icx_store128(&d_ic, &ip6->saddr, osrc); /* pseudo-header */
	icx_store128(&d_ic, &ip6->daddr, odst);
	icx_store128(&d_l4, &qip6->saddr, isrc);
	icx_store128(&d_l4, &qip6->daddr, idst);
	csum_delta16(&d_l4, ports[0], isport);
	csum_delta16(&d_l4, ports[1], idport);
	ports[0] = isport;
	ports[1] = idport;
	d_ic += d_l4; /* the quoted addresses and ports are ICMPv6 payload */
	icx_quote_l4sum(q, ports, end, d_l4, &d_ic);
	ic->checksum = csum_apply(ic->checksum, d_ic);
	return 0;
}

static __always_inline int lb_icmp_xlate(struct xdp_md *ctx, const struct icx_quote *q, __u8 family,
                                         const __be32 *osrc, const __be32 *odst, const __be32 *isrc,
                                         const __be32 *idst, __be16 isport, __be16 idport)
{
	if (family == KXLB_AF_INET)
		return lb4_icmp_xlate(ctx, q, osrc[0], odst[0], isrc[0], idst[0], isport, idport);
	return lb6_icmp_xlate(ctx, q, osrc, odst, isrc, idst, isport, idport);
}

static __always_inline int lb_icmp_quote(struct xdp_md *ctx, const struct pkt *pkt, __u8 family,
                                         struct icx_quote *q, struct kxlb_flow_key *k)
{
	if (family == KXLB_AF_INET)
		return lb4_icmp_quote(ctx, pkt, q, k);
	return lb6_icmp_quote(ctx, pkt, q, k);
}

/* Next hop src -> dst: the flow's cached one while usable, else a FIB lookup (not cached: errors
 * do not refresh flows). Returns 0 or the kxlb_reason to pass the untouched frame with. */
static __always_inline int icx_nexthop(struct xdp_md *ctx, const struct kxlb_nexthop *cached,
                                       __u8 family, const __be32 *src, const __be32 *dst,
                                       __u8 proto, struct kxlb_nexthop *nh)
{
	*nh = *cached;
	if (nexthop_usable(ctx, nh))
		return 0;
	return fib_nexthop(ctx, family, src, dst, proto, nh);
}

/* Handles an unfragmented ICMP/ICMPv6 frame. Returns 0 when the frame is no ICMP error about a
 * tracked flow (the caller goes on as for any other non-TCP/UDP frame); otherwise fills *v and
 * returns 1. Errors to the node's SNAT address or a frontend address: a quote that matches no
 * flow passes untouched (pass_icmp_no_flow); a quote too short to name a flow is dropped
 * (drop_icmp_malformed: the kernel would discard it too). */
static __always_inline int lb_icmp_error(struct xdp_md *ctx, const struct pkt *pkt, __u8 family,
                                         __u64 len, struct lb_verdict *v)
{
	union {
		struct kxlb_vip_addr_key vip;
		struct kxlb_flow_key flow; /* reverse of the quote */
	} k = {};
	struct icx_quote q = {};
	const __be32 *snat, *osrc, *odst, *isrc, *idst;
	const struct kxlb_nexthop *cached;
	__be16 isport, idport;
	struct kxlb_nat_value *nat = NULL;
	struct kxlb_ct_value *ct;
	struct kxlb_backend *be;
	struct kxlb_config *cfg;
	struct kxlb_nexthop nh;
	__u32 zero = 0, svc_id, bid;
	int to_node, r;

	if (!(pkt->flags & PKT_F_L4) || pkt->vlan_tags || pkt->l3_off != sizeof(struct ethhdr) ||
	    pkt->l4_off != (family == KXLB_AF_INET ? LB4_L4_OFF : LB6_L4_OFF) ||
	    !icx_is_error(family, pkt->icmp_type))
		return 0;
	cfg = bpf_map_lookup_elem(&kxlb_config, &zero);
	if (!cfg)
		return 0;
	snat = family == KXLB_AF_INET ? &cfg->snat_v4 : cfg->snat_v6;
	to_node = (family == KXLB_AF_INET ? snat[0] : snat[0] | snat[1] | snat[2] | snat[3]) != 0 &&
	          addr_eq(pkt->fl.daddr, snat, family);
	if (!to_node) {
		__builtin_memcpy(k.vip.addr, pkt->fl.daddr, 16);
		k.vip.family = family;
		if (!bpf_map_lookup_elem(&kxlb_vip_addrs, &k.vip))
			return 0; /* neither the node's SNAT address nor a frontend's */
		__builtin_memset(&k, 0, sizeof(k));
	}

	r = lb_icmp_quote(ctx, pkt, family, &q, &k.flow);
	if (r == ICX_QUOTE_OTHER)
		return 0;
	if (r == ICX_QUOTE_MALFORMED) {
		v->action = XDP_DROP;
		v->reason = KXLB_R_DROP_ICMP_MALFORMED;
		return 1;
	}
	v->action = XDP_PASS;
	v->reason = KXLB_R_PASS_ICMP_NO_FLOW;
	/* An error about a packet we sent goes to that packet's source. */
	if (r != ICX_QUOTE_OK || !addr_eq(k.flow.daddr, pkt->fl.daddr, family))
		return 1;

	/* Both entries are keyed by the reverse of the quote: a reply B:bp -> N:np (kxlb_nat) for a
	 * quote N:np -> B:bp, a client packet C:cp -> V:vp (kxlb_ct) for a quote V:vp -> C:cp. */
	k.flow.proto = q.proto;
	k.flow.family = family;
	if (to_node && bpf_ntohs(k.flow.dport) >= cfg->snat_port_lo &&
	    bpf_ntohs(k.flow.dport) <= cfg->snat_port_hi)
		nat = bpf_map_lookup_elem(&kxlb_nat, &k.flow);
	if (nat) {
		/* backend side: tell the client, about the packet as it sent it */
		osrc = nat->vip_addr;
		odst = nat->client_addr;
		isrc = nat->client_addr;
		idst = nat->vip_addr;
		isport = nat->client_port;
		idport = nat->vip_port;
		svc_id = nat->svc_id;
		bid = nat->backend_id;
		cached = &nat->nh;
	} else {
		/* client side (a frontend may also live on the node address): tell the backend */
		ct = bpf_map_lookup_elem(&kxlb_ct, &k.flow);
		/* A DSR flow's replies do not pass here and its backend has no node-side 4-tuple to
		 * translate the error to: it goes to the kernel like an error about no flow. */
		if (!ct || (ct->flags & KXLB_CT_F_DSR))
			return 1;
		bid = ct->backend_id;
		be = backend_get(bid);
		if (!be || be->gen != ct->backend_gen || be->family != family)
			return 1; /* the flow's backend is gone */
		if (!to_node &&
		    !(family == KXLB_AF_INET ? snat[0] : snat[0] | snat[1] | snat[2] | snat[3])) {
			v->reason = KXLB_R_PASS_NO_SNAT_ADDR;
			return 1;
		}
		osrc = snat;
		odst = be->addr;
		isrc = be->addr;
		idst = snat;
		isport = be->port;
		idport = ct->snat_port;
		svc_id = ct->svc_id;
		cached = &ct->nh;
	}
	r = icx_nexthop(ctx, cached, family, osrc, odst, q.proto, &nh);
	if (r) {
		v->reason = r; /* nothing written yet: the kernel gets the frame as it came */
		return 1;
	}
	if (lb_icmp_xlate(ctx, &q, family, osrc, odst, isrc, idst, isport, idport)) {
		v->reason = KXLB_R_PASS_MALFORMED;
		return 1;
	}
	lb_counter_inc(&kxlb_svc_stats, svc_id, len, 0);
	lb_counter_inc(&kxlb_backend_stats, bid, len, 0);
	v->action = fib_xmit(ctx, &nh, &v->reason);
	return 1;
}

#endif /* KXLB_BPF_ICMP_XLATE_H */
