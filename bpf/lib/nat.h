/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Full-NAT header rewrites (lb4_rewrite / lb6_rewrite) with incremental checksum updates, and
 * collision-free SNAT port allocation toward a backend.
 */
#ifndef KXLB_BPF_NAT_H
#define KXLB_BPF_NAT_H

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/flow_maps.h"
#include "lib/maps.h"
#include "lib/parse.h"

#define NSEC_PER_SEC 1000000000ULL
#define SNAT_PORT_TRIES 16

/* Frames reaching the rewrites carry no VLAN tag, IPv4 options or IPv6 extension headers (those
 * are passed earlier), so every header sits at a constant offset: cheaper, and simple for the
 * verifier. */
#define LB4_L3_OFF sizeof(struct ethhdr)
#define LB4_L4_OFF (sizeof(struct ethhdr) + sizeof(struct iphdr))
#define LB6_L3_OFF sizeof(struct ethhdr)
#define LB6_L4_OFF (sizeof(struct ethhdr) + sizeof(struct ipv6hdr))

/* Offset of the L4 checksum field inside the TCP or UDP header. */
static __always_inline __u32 l4_csum_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) :
	                              offsetof(struct udphdr, check);
}

/* Sets saddr/daddr/sport/dport of an IPv4 TCP/UDP frame. Returns 0 or -1 (out of bounds; nothing
 * written). */
static __always_inline int lb4_rewrite(struct xdp_md *ctx, const struct pkt *pkt, __be32 saddr,
                                       __be32 daddr, __be16 sport, __be16 dport)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + LB4_L3_OFF;
	__be16 *ports = data + LB4_L4_OFF;
	__sum16 *l4sum;
	__u64 d_ip = 0, d_l4;

	if (data + LB4_L4_OFF + sizeof(struct udphdr) >
	    end) /* ports; the checksum is checked next */
		return -1;
	l4sum = (void *)ports + l4_csum_off(pkt->l4_proto);
	if ((void *)(l4sum + 1) > end)
		return -1;

	csum_delta32(&d_ip, ip->saddr, saddr);
	csum_delta32(&d_ip, ip->daddr, daddr);
	d_l4 = d_ip; /* the pseudo-header carries the same addresses */
	csum_delta16(&d_l4, ports[0], sport);
	csum_delta16(&d_l4, ports[1], dport);

	ip->check = csum_apply(ip->check, d_ip);
	ip->saddr = saddr;
	ip->daddr = daddr;
	if (pkt->l4_proto == IPPROTO_UDP && *l4sum == 0) {
		/* UDP over IPv4 without a checksum stays without one */
	} else {
		__sum16 c = csum_apply(*l4sum, d_l4);

		if (pkt->l4_proto == IPPROTO_UDP && c == 0)
			c = 0xffff; /* RFC 768: a computed 0 is sent as all ones */
		*l4sum = c;
	}
	ports[0] = sport;
	ports[1] = dport;
	return 0;
}

/* IPv6 twin of lb4_rewrite: no IP header checksum; the UDP checksum is mandatory. */
static __always_inline int lb6_rewrite(struct xdp_md *ctx, const struct pkt *pkt,
                                       const __be32 *saddr, const __be32 *daddr, __be16 sport,
                                       __be16 dport)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + LB6_L3_OFF;
	__be16 *ports = data + LB6_L4_OFF;
	__sum16 *l4sum;
	__u64 d = 0;
	__sum16 c;

	if (data + LB6_L4_OFF + sizeof(struct udphdr) > end)
		return -1;
	l4sum = (void *)ports + l4_csum_off(pkt->l4_proto);
	if ((void *)(l4sum + 1) > end)
		return -1;

	csum_delta128(&d, (__be32 *)&ip6->saddr, saddr);
	csum_delta128(&d, (__be32 *)&ip6->daddr, daddr);
	csum_delta16(&d, ports[0], sport);
	csum_delta16(&d, ports[1], dport);
	c = csum_apply(*l4sum, d);
	if (pkt->l4_proto == IPPROTO_UDP && c == 0)
		c = 0xffff;
	*l4sum = c;
	__builtin_memcpy(&ip6->saddr, saddr, 16);
	__builtin_memcpy(&ip6->daddr, daddr, 16);
	ports[0] = sport;
	ports[1] = dport;
	return 0;
}

/* Nanoseconds since then; 0 if another CPU stored a time later than our `now`. */
static __always_inline __u64 age_ns(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}

/* A NAT entry no longer reserves its port: closed and past TIME_WAIT, or an idle UDP flow. */
static __always_inline int nat_entry_expired(const struct kxlb_nat_value *v,
                                             const struct kxlb_config *cfg, __u8 proto, __u64 now)
{
	__u64 age = age_ns(now, v->last_seen_ns);

	if (v->flags & KXLB_CT_F_CLOSED)
		return age > (__u64)cfg->tcp_timewait_s * NSEC_PER_SEC;
	if (proto == IPPROTO_UDP)
		return age > (__u64)cfg->udp_timeout_s * NSEC_PER_SEC;
	return 0;
}

/* Reserves a node source port toward backend be and stores the reverse entry *nv under it.
 * Probes from a hash-derived start; a port is taken while its entry lives (incl. TIME_WAIT).
 * Returns 0 with *port set (network order), or KXLB_R_DROP_SNAT_EXHAUSTED. */
static __always_inline int snat_alloc(const struct kxlb_backend *be, const __be32 *snat_addr,
                                      const struct kxlb_config *cfg, __u8 proto, __u32 hash,
                                      __u64 now, const struct kxlb_nat_value *nv, __be16 *port)
{
	struct kxlb_flow_key nk = {};
	__u32 lo = cfg->snat_port_lo, hi = cfg->snat_port_hi, range, start;

	if (lo == 0 || hi < lo)
		return KXLB_R_DROP_SNAT_EXHAUSTED;
	range = hi - lo + 1;
	start = (hash ^ (hash >> 15)) % range;
	__builtin_memcpy(nk.saddr, be->addr, 16);
	__builtin_memcpy(nk.daddr, snat_addr, 16);
	nk.sport = be->port;
	nk.proto = proto;
	nk.family = be->family;

	for (int i = 0; i < SNAT_PORT_TRIES; i++) {
		struct kxlb_nat_value *old;

		nk.dport = bpf_htons((__u16)(lo + (start + i) % range));
		if (bpf_map_update_elem(&kxlb_nat, &nk, nv, BPF_NOEXIST) == 0)
			goto done;
		old = bpf_map_lookup_elem(&kxlb_nat, &nk);
		if (old && nat_entry_expired(old, cfg, proto, now)) {
			struct kxlb_flow_key prev = {};

			/* The port changes hands: the previous owner's forward entry must not keep
			 * sending late segments into the new owner's connection. */
			__builtin_memcpy(prev.saddr, old->client_addr, 16);
			__builtin_memcpy(prev.daddr, old->vip_addr, 16);
			prev.sport = old->client_port;
			prev.dport = old->vip_port;
			prev.proto = proto;
			prev.family = be->family;
			if (bpf_map_update_elem(&kxlb_nat, &nk, nv, BPF_EXIST) == 0) {
				struct kxlb_ct_value *pct = bpf_map_lookup_elem(&kxlb_ct, &prev);

				if (pct && pct->snat_port == nk.dport)
					bpf_map_delete_elem(&kxlb_ct, &prev);
				goto done;
			}
		}
	}
	return KXLB_R_DROP_SNAT_EXHAUSTED;
done:
	*port = nk.dport;
	return 0;
}

#endif /* KXLB_BPF_NAT_H */
