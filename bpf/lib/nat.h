/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Full-NAT header rewrites (lb4_rewrite / lb6_rewrite) with incremental checksum updates, and
 * collision-free SNAT port allocation toward a backend.
 */
#ifndef KXLB_BPF_NAT_H
#define KXLB_BPF_NAT_H

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/ct.h"
#include "lib/flow_maps.h"
#include "lib/maps.h"
#include "lib/parse.h"

#define SNAT_PORT_TRIES 16

/* Frames reaching the rewrites carry no VLAN tag, IPv4 options or IPv6 extension headers (those
 * are passed earlier), so every header sits at a constant offset: cheaper, and simple for the
 * verifier. */
#define LB4_L3_OFF sizeof(struct ethhdr)
#define LB4_L4_OFF (sizeof(struct ethhdr) + sizeof(struct iphdr))
#define LB6_L3_OFF sizeof(struct ethhdr)
#define LB6_L4_OFF (sizeof(struct ethhdr) + sizeof(struct ipv6hdr))

/* Sets saddr/daddr/sport/dport of an IPv4 TCP/UDP frame that is still as parsed into *pkt (the old
 * values for the checksum deltas come from there: no second read of the frame). Returns 0 or -1 (out
 * of bounds; nothing written). */
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

	csum_delta32(&d_ip, pkt->fl.saddr[0], saddr);
	csum_delta32(&d_ip, pkt->fl.daddr[0], daddr);
	d_l4 = d_ip; /* the pseudo-header carries the same addresses */
	csum_delta16(&d_l4, pkt->fl.sport, sport);
	csum_delta16(&d_l4, pkt->fl.dport, dport);

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

/* IPv6 twin of lb4_rewrite (same contract): no IP header checksum; the UDP checksum is mandatory. */
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

	csum_delta128(&d, pkt->fl.saddr, saddr);
	csum_delta128(&d, pkt->fl.daddr, daddr);
	csum_delta16(&d, pkt->fl.sport, sport);
	csum_delta16(&d, pkt->fl.dport, dport);
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

/* Rewrites addresses and ports for the frame's family. */
static __always_inline int lb_rewrite(struct xdp_md *ctx, const struct pkt *pkt, __u8 family,
                                      const __be32 *saddr, const __be32 *daddr, __be16 sport,
                                      __be16 dport)
{
	if (family == KXLB_AF_INET)
		return lb4_rewrite(ctx, pkt, saddr[0], daddr[0], sport, dport);
	return lb6_rewrite(ctx, pkt, saddr, daddr, sport, dport);
}

/* The node's full-NAT source address for a family, as a 16-byte ABI address. */
static __always_inline void snat_addr(const struct kxlb_config *cfg, __u8 family, __be32 *out)
{
	if (family == KXLB_AF_INET) {
		out[0] = cfg->snat_v4;
		out[1] = 0;
		out[2] = 0;
		out[3] = 0;
	} else {
		__builtin_memcpy(out, cfg->snat_v6, 16);
	}
}

/* A NAT entry no longer reserves its port: closed and past TIME_WAIT (timewait_ns), or an idle
 * UDP flow (udp_idle_ns). */
static __always_inline int nat_entry_expired(const struct kxlb_nat_value *v, __u64 timewait_ns,
                                             __u64 udp_idle_ns, __u8 proto, __u64 now)
{
	__u64 age = age_ns(now, v->last_seen_ns);

	if (v->flags & KXLB_CT_F_CLOSED)
		return age > timewait_ns;
	if (proto == IPPROTO_UDP)
		return age > udp_idle_ns;
	return 0;
}
/* The reverse-NAT key of a reply from backend be to the node's snat_addr (port still unset), and
 * the SNAT range: *lo, *range and the flow's first port offset *start (from its hash). Returns 0,
 * or -1 if the configured range is empty. */
static __always_inline int snat_key_init(struct kxlb_flow_key *nk, const struct kxlb_backend *be,
                                         const __be32 *snat_addr, const struct kxlb_config *cfg,
                                         __u8 proto, __u32 hash, __u32 *lo, __u32 *range,
                                         __u32 *start)
{
	__u32 hi = cfg->snat_port_hi;

	*lo = cfg->snat_port_lo;
	if (*lo == 0 || hi < *lo)
		return -1;
	*range = hi - *lo + 1;
	*start = (hash ^ (hash >> 15)) % *range;
	__builtin_memcpy(nk->saddr, be->addr, 16);
	__builtin_memcpy(nk->daddr, snat_addr, 16);
	nk->sport = be->port;
	nk->proto = proto;
	nk->family = be->family;
	return 0;
}

/* A reverse entry belongs to the flow described by nv (same client, frontend and backend) and
 * still reserves its port for it. */
static __always_inline int nat_entry_owned(const struct kxlb_nat_value *old,
                                           const struct kxlb_nat_value *nv)
{
	return old->backend_id == nv->backend_id && old->client_port == nv->client_port &&
	       old->vip_port == nv->vip_port && !(old->flags & KXLB_CT_F_CLOSED) &&
	       addr_eq(old->client_addr, nv->client_addr, KXLB_AF_INET6) &&
	       addr_eq(old->vip_addr, nv->vip_addr, KXLB_AF_INET6);
}

/* Reserves a node source port toward backend be and stores the reverse entry *nv under it.
 * Probes from a hash-derived start; a port is taken while its entry lives (incl. TIME_WAIT).
 * Returns 0 with *port set (network order), or KXLB_R_DROP_SNAT_EXHAUSTED.
 *
 * recover: for a mid-connection TCP segment whose flow entry is gone (LRU eviction under a flood
 * of new flows, a flush), only the first probe, the port the flow most likely had: its reverse
 * entry is reused if it still belongs to this flow, or the port taken if free, so the backend sees
 * the same 4-tuple as before. Otherwise KXLB_R_DROP_TCP_NO_FLOW. */
static __always_inline int snat_alloc(const struct kxlb_backend *be, const __be32 *snat_addr,
                                      const struct kxlb_config *cfg, __u8 proto, __u32 hash,
                                      __u64 now, const struct kxlb_nat_value *nv, int recover,
                                      __be16 *port)
{
	/* Plain values, not cfg, inside the loop: clang 14 otherwise carries a register the verifier
	 * sees as uninitialised across the loop latch. */
	__u64 timewait_ns = (__u64)cfg->tcp_timewait_s * NSEC_PER_SEC;
	__u64 udp_idle_ns = (__u64)cfg->udp_timeout_s * NSEC_PER_SEC;
	struct kxlb_flow_key nk = {};
	__u32 lo, range, start;

	if (snat_key_init(&nk, be, snat_addr, cfg, proto, hash, &lo, &range, &start))
		return recover ? KXLB_R_DROP_TCP_NO_FLOW : KXLB_R_DROP_SNAT_EXHAUSTED;

	for (int i = 0; i < SNAT_PORT_TRIES; i++) {
		struct kxlb_nat_value *old;

		nk.dport = bpf_htons((__u16)(lo + (start + i) % range));
		if (bpf_map_update_elem(&kxlb_nat, &nk, nv, BPF_NOEXIST) == 0)
			goto done;
		old = bpf_map_lookup_elem(&kxlb_nat, &nk);
		if (recover) {
			if (old && nat_entry_owned(old, nv)) {
				old->last_seen_ns = now;
				goto done;
			}
			return KXLB_R_DROP_TCP_NO_FLOW;
		}
		if (old && nat_entry_expired(old, timewait_ns, udp_idle_ns, proto, now)) {
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
