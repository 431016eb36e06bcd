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

/* Counts what the parser saw: every frame, its tags, L3 and L4 kinds (the ids the parser noted) and
 * its unusual IP features, or the error that stopped it. */
static __always_inline void count_observations(const struct pkt *pkt, int err, __u64 len)
{
	struct kxlb_parse_counters *pc = parse_counters();

	if (!pc)
		return;
	parse_stat_inc(pc, KXLB_PS_FRAMES, len);
	if (pkt->vlan_tags)
		parse_stat_inc(pc, KXLB_PS_VLAN, len);
	if (pkt->l3_stat)
		parse_stat_inc(pc, pkt->l3_stat, len);
	if (pkt->flags & (PKT_F_IPV4_OPTIONS | PKT_F_FRAGMENT | PKT_F_IPV6_EXTHDR)) {
		if (pkt->flags & PKT_F_IPV4_OPTIONS)
			parse_stat_inc(pc, KXLB_PS_IPV4_OPTIONS, len);
		if (pkt->flags & PKT_F_FRAGMENT)
			parse_stat_inc(pc, KXLB_PS_IPV4_FRAGMENT, len);
		if (pkt->flags & PKT_F_IPV6_EXTHDR)
			parse_stat_inc(pc, KXLB_PS_IPV6_EXTHDR, len);
	}
	if (err)
		parse_stat_inc(pc, err, len);
	else if (pkt->l4_stat)
		parse_stat_inc(pc, pkt->l4_stat, len);
}

/* The frame being processed, per CPU: its parse result (with its flow key) lives here rather than on
 * the 512-byte stack, which the conntrack paths need for themselves, and where clang cannot split it
 * into scalars (it did: re-zeroing them at every early exit of the parser, dozens of stores on every
 * frame's path). Safe as XDP runs to completion on one CPU without nesting. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pkt);
} kxlb_frame SEC(".maps");

static __always_inline int kxlb_xdp_lb_main(struct xdp_md *ctx)
{
	struct lb_verdict v = { XDP_PASS, KXLB_R_PASS_NOT_IP };
	struct pkt *pkt;
	struct cursor c;
	__u32 zero = 0;
	__u64 len;
	int err;

	cursor_init(&c, ctx);
	len = c.end - c.start;
	pkt = bpf_map_lookup_elem(&kxlb_frame, &zero);
	if (!pkt) { /* cannot happen (one entry per CPU); still a counted outcome */
		reason_inc(KXLB_R_PASS_MALFORMED, len);
		return XDP_PASS;
	}
	__builtin_memset(pkt, 0, sizeof(*pkt));
	err = parse_packet(&c, pkt);
	count_observations(pkt, err, len);

	if (err)
		v.reason =
			KXLB_R_PASS_MALFORMED; /* the kernel stack drops (and counts) bad frames */
	else if (pkt->vlan_tags)
		v.reason = KXLB_R_PASS_VLAN;
	else if (pkt->l3_proto == ETH_P_IP)
		v = lb_process(ctx, pkt, KXLB_AF_INET, len);
	else if (pkt->l3_proto == ETH_P_IPV6)
		v = lb_process(ctx, pkt, KXLB_AF_INET6, len);
	if (v.action ==
	    LB_ACT_LOCAL) /* a local backend's flow: see lb_local_forward for why here */
		v = lb_local_forward(ctx, pkt);
	reason_inc(v.reason, len);
	return v.action;
}

#endif /* KXLB_BPF_XDP_LB_MAIN_H */
