/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Local backends, the reply half (tc egress on the node NICs kxlb owns): a packet leaving with
 * {src backend:port -> dst client:port} that has a kxlb_nat entry of a local flow (KXLB_CT_F_LOCAL,
 * written by the XDP datapath, local.h) gets the frontend back as its source address and port.
 * Replies of local flows are forwarded by the node's kernel from the pod's veth, so XDP (ingress
 * only) never sees them; tc egress sees every packet the kernel sends out the NIC, GSO or not.
 * Checksums go through bpf_l3/l4_csum_replace, which also handle CHECKSUM_PARTIAL skbs (the pod's
 * TCP with offload): there only the pseudo-header part is updated and the NIC (or software GSO)
 * completes the sum over the rewritten header. Everything else leaves untouched, counted.
 */
#ifndef KXLB_BPF_LOCAL_REV_H
#define KXLB_BPF_LOCAL_REV_H

#include <linux/pkt_cls.h>

#include "lib/common.h"
#include "lib/csum.h"
#include "lib/ct.h"
#include "lib/ct_maps.h"
#include "lib/parse.h"

/* Outcomes, indexed by enum kxlb_local_rev_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KXLB_LOCAL_REV_REASON_MAX);
	__type(key, __u32);
	__type(value, struct kxlb_counter);
} kxlb_local_rev_reasons SEC(".maps");

/* Most header bytes the parser reads: Ethernet, two VLAN tags, IPv4 with options, TCP with options. */
#define LREV_HDR_MAX (14 + 2 * 4 + 60 + 60)

static __always_inline void local_rev_count(__u32 reason, __u64 bytes)
{
	struct kxlb_counter *c = bpf_map_lookup_elem(&kxlb_local_rev_reasons, &reason);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

/* Source address (IPv4) and port -> frontend's. Returns 0, or -1 if a helper failed (the packet may
 * be half rewritten: the caller drops it). */
static __always_inline int local4_rev_rewrite(struct __sk_buff *skb, const struct pkt *pkt,
                                              __be32 saddr, __be16 sport)
{
	__u32 csum = pkt->l4_off + l4_csum_off(pkt->l4_proto);
	/* UDP over IPv4: a zero checksum (none) stays zero, a computed zero is sent as 0xffff */
	__u64 mangled = pkt->l4_proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__be32 old_addr = pkt->fl.saddr[0];
	__be16 old_port = pkt->fl.sport;

	if (bpf_l4_csum_replace(skb, csum, old_addr, saddr,
	                        BPF_F_PSEUDO_HDR | mangled | sizeof(saddr)))
		return -1;
	if (bpf_l4_csum_replace(skb, csum, old_port, sport, mangled | sizeof(sport)))
		return -1;
	if (bpf_l3_csum_replace(skb, pkt->l3_off + offsetof(struct iphdr, check), old_addr, saddr,
	                        sizeof(saddr)))
		return -1;
	if (bpf_skb_store_bytes(skb, pkt->l3_off + offsetof(struct iphdr, saddr), &saddr,
	                        sizeof(saddr), 0))
		return -1;
	return bpf_skb_store_bytes(skb, pkt->l4_off, &sport, sizeof(sport), 0) ? -1 : 0;
}

/* IPv6 twin: no IP header checksum; the UDP checksum is mandatory (a computed zero -> 0xffff). */
static __always_inline int local6_rev_rewrite(struct __sk_buff *skb, const struct pkt *pkt,
                                              const __be32 *saddr, __be16 sport)
{
	__u32 csum = pkt->l4_off + l4_csum_off(pkt->l4_proto);
	__u64 mangled = pkt->l4_proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__be32 from[4], to[4];
	__s64 diff;

	__builtin_memcpy(from, pkt->fl.saddr, 16);
	__builtin_memcpy(to, saddr, 16);
	diff = bpf_csum_diff(from, sizeof(from), to, sizeof(to), 0);
	/* size 0: `to` is a checksum difference, not a 2/4-byte value */
	if (bpf_l4_csum_replace(skb, csum, 0, (__u64)diff, BPF_F_PSEUDO_HDR | mangled))
		return -1;
	if (bpf_l4_csum_replace(skb, csum, pkt->fl.sport, sport, mangled | sizeof(sport)))
		return -1;
	if (bpf_skb_store_bytes(skb, pkt->l3_off + offsetof(struct ipv6hdr, saddr), to, sizeof(to),
	                        0))
		return -1;
	return bpf_skb_store_bytes(skb, pkt->l4_off, &sport, sizeof(sport), 0) ? -1 : 0;
}

/* A parsed TCP/UDP packet without IPv4 options / IPv6 extension headers / fragmentation: the reply
 * of a local flow, or not ours. Returns the reason. */
static __always_inline __u32 local_rev_xlate(struct __sk_buff *skb, const struct pkt *pkt,
                                             __u8 family)
{
	struct kxlb_flow_key rk = {};
	struct kxlb_nat_value *nat;
	__be32 vip[4];
	__be16 vip_port;
	__u32 bits;
	__u64 now;
	int refresh;

	__builtin_memcpy(rk.saddr, pkt->fl.saddr, 16);
	__builtin_memcpy(rk.daddr, pkt->fl.daddr, 16);
	rk.sport = pkt->fl.sport;
	rk.dport = pkt->fl.dport;
	rk.proto = pkt->l4_proto;
	rk.family = family;
	nat = bpf_map_lookup_elem(&kxlb_nat, &rk);
	/* a full-NAT entry's key has the node's address as destination: such a packet does not leave */
	if (!nat || !(nat->flags & KXLB_CT_F_LOCAL))
		return KXLB_LR_PASS_NOT_LOCAL_REPLY;

	now = bpf_ktime_get_coarse_ns();
	bits = rk.proto == IPPROTO_TCP ? ct_tcp_bits(pkt->tcp_flags, KXLB_CT_F_FIN_BACKEND) : 0;
	refresh = age_ns(now, nat->last_seen_ns) > LB_REFRESH_NS;
	if (refresh || bits) {
		struct kxlb_flow_key fk = {};
		struct kxlb_ct_value *ct;

		__builtin_memcpy(fk.saddr, nat->client_addr, 16);
		__builtin_memcpy(fk.daddr, nat->vip_addr, 16);
		fk.sport = nat->client_port;
		fk.dport = nat->vip_port;
		fk.proto = rk.proto;
		fk.family = family;
		ct = bpf_map_lookup_elem(&kxlb_ct, &fk);
		/* only the forward entry this reply belongs to (the client may have re-balanced) */
		if (ct && !((ct->flags & KXLB_CT_F_LOCAL) && ct->backend_id == nat->backend_id))
			ct = NULL;
		if (refresh && !(nat->flags & KXLB_CT_F_CLOSED)) {
			nat->last_seen_ns = now;
			if (ct)
				ct->last_seen_ns =
					now; /* replies keep a UDP flow from looking idle */
		}
		ct_track_close(ct, nat, bits, now);
	}

	__builtin_memcpy(vip, nat->vip_addr, 16);
	vip_port = nat->vip_port;
	if (family == KXLB_AF_INET) {
		if (local4_rev_rewrite(skb, pkt, vip[0], vip_port))
			return KXLB_LR_DROP_XLATE_FAILED;
	} else if (local6_rev_rewrite(skb, pkt, vip, vip_port)) {
		return KXLB_LR_DROP_XLATE_FAILED;
	}
	return KXLB_LR_REV_LOCAL;
}

static __always_inline int kxlb_local_rev_main(struct __sk_buff *skb)
{
	__u32 want = skb->len < LREV_HDR_MAX ? skb->len : LREV_HDR_MAX;
	__u64 len = skb->len;
	struct pkt pkt = {};
	struct cursor c;
	__u32 reason;
	int err;

	/* Headers outside the linear area (rare: most drivers and GSO keep them there) are pulled in;
	 * on failure the parser reports the packet truncated and it passes untouched. */
	if ((void *)(long)skb->data + want > (void *)(long)skb->data_end)
		bpf_skb_pull_data(skb, want);
	cursor_init_skb(&c, skb);
	err = parse_packet(&c, &pkt);
	if (err)
		reason = KXLB_LR_PASS_MALFORMED;
	else if (pkt.vlan_tags)
		reason = KXLB_LR_PASS_VLAN;
	else if (pkt.l3_proto != ETH_P_IP && pkt.l3_proto != ETH_P_IPV6)
		reason = KXLB_LR_PASS_NOT_IP;
	else if ((pkt.flags & (PKT_F_FRAGMENT | PKT_F_IPV4_OPTIONS | PKT_F_IPV6_EXTHDR)) ||
	         (pkt.l4_proto != IPPROTO_TCP && pkt.l4_proto != IPPROTO_UDP))
		reason = KXLB_LR_PASS_OTHER_L4;
	else
		reason = local_rev_xlate(skb, &pkt,
		                         pkt.l3_proto == ETH_P_IP ? KXLB_AF_INET : KXLB_AF_INET6);
	local_rev_count(reason, len);
	/* UNSPEC, not OK: the next filter on the hook (a CNI's) still runs; the packet is sent either way */
	return reason == KXLB_LR_DROP_XLATE_FAILED ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

#endif /* KXLB_BPF_LOCAL_REV_H */
