/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The body of the node-NIC datapath entry (bpf/xdp_lb.bpf.c): parse every frame and count what was
 * seen; load-balance frames for frontends (full-NAT toward a Maglev-chosen backend) and
 * reverse-translate their replies; pass everything else untouched. Every frame ends in one counted
 * kxlb_reason. Shared with bpf/xdp_lb_bench.bpf.c, so the hot-loop benchmark runs this very code.
 */
#ifndef KXLB_BPF_XDP_LB_MAIN_H
#define KXLB_BPF_XDP_LB_MAIN_H

#include "lib/common.h"
#include "lib/lb.h"
#include "lib/parse.h"
#include "lib/stats.h"

static __always_inline void count_observations(const struct pkt *pkt, int err, __u64 len)
{
	struct kxlb_parse_counters *pc = parse_counters();

	if (!pc)
		return;
	parse_stat_inc(pc, KXLB_PS_FRAMES, len);
	if (pkt->vlan_tags)
		parse_stat_inc(pc, KXLB_PS_VLAN, len);

	switch (pkt->l3_proto) {
	case 0: /* ethertype never reached */
		break;
	case ETH_P_IP:
		parse_stat_inc(pc, KXLB_PS_IPV4, len);
		break;
	case ETH_P_IPV6:
		parse_stat_inc(pc, KXLB_PS_IPV6, len);
		break;
	case ETH_P_ARP:
		parse_stat_inc(pc, KXLB_PS_ARP, len);
		break;
	default:
		parse_stat_inc(pc, KXLB_PS_L3_OTHER, len);
		break;
	}
	if (pkt->flags & PKT_F_IPV4_OPTIONS)
		parse_stat_inc(pc, KXLB_PS_IPV4_OPTIONS, len);
	if (pkt->flags & PKT_F_FRAGMENT)
		parse_stat_inc(pc, KXLB_PS_IPV4_FRAGMENT, len);
	if (pkt->flags & PKT_F_IPV6_EXTHDR)
		parse_stat_inc(pc, KXLB_PS_IPV6_EXTHDR, len);

	if (err) {
		parse_stat_inc(pc, err, len);
		return;
	}
	if (pkt->l3_proto != ETH_P_IP && pkt->l3_proto != ETH_P_IPV6)
		return;
	if (pkt->flags & (PKT_F_LATER_FRAGMENT | PKT_F_IPV6_EXTHDR))
		return;
	if (!(pkt->flags & PKT_F_L4)) {
		parse_stat_inc(pc, KXLB_PS_L4_OTHER, len);
		return;
	}
	switch (pkt->l4_proto) {
	case IPPROTO_TCP:
		parse_stat_inc(pc, KXLB_PS_TCP, len);
		break;
	case IPPROTO_UDP:
		parse_stat_inc(pc, KXLB_PS_UDP, len);
		break;
	case IPPROTO_ICMP:
		parse_stat_inc(pc, KXLB_PS_ICMP, len);
		break;
	case IPPROTO_ICMPV6:
		parse_stat_inc(pc, KXLB_PS_ICMPV6, len);
		break;
	}
}

static __always_inline int kxlb_xdp_lb_main(struct xdp_md *ctx)
{
	struct cursor c;
	struct pkt pkt = {};
	int err;

	struct lb_verdict v = { XDP_PASS, KXLB_R_PASS_NOT_IP };
	__u64 len;

	cursor_init(&c, ctx);
	len = c.end - c.start;
	err = parse_packet(&c, &pkt);
	count_observations(&pkt, err, len);

	if (err)
		v.reason =
			KXLB_R_PASS_MALFORMED; /* the kernel stack drops (and counts) bad frames */
	else if (pkt.vlan_tags)
		v.reason = KXLB_R_PASS_VLAN;
	else if (pkt.l3_proto == ETH_P_IP)
		v = lb_process(ctx, &pkt, KXLB_AF_INET, len);
	else if (pkt.l3_proto == ETH_P_IPV6)
		v = lb_process(ctx, &pkt, KXLB_AF_INET6, len);
	if (v.action ==
	    LB_ACT_LOCAL) /* a local backend's flow: see lb_local_forward for why here */
		v = lb_local_forward(ctx, &pkt);
	reason_inc(v.reason, len);
	return v.action;
}

#endif /* KXLB_BPF_XDP_LB_MAIN_H */
