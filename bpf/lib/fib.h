/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Next hop by bpf_fib_lookup, and transmission: XDP_TX out the ingress NIC, or XDP_REDIRECT
 * through the kxlb_tx_ports devmap. Lookups happen before any rewrite so a failure can still hand
 * the untouched frame to the kernel.
 */
#ifndef KXLB_BPF_FIB_H
#define KXLB_BPF_FIB_H

#include "lib/common.h"
#include "lib/flow_maps.h"
#include "lib/maps.h"

#ifndef AF_INET
#define AF_INET KXLB_AF_INET
#define AF_INET6 KXLB_AF_INET6
#endif

/* Fills *nh for src -> dst. Returns 0, or the kxlb_reason to pass the frame with. */
static __always_inline int fib_nexthop(struct xdp_md *ctx, __u8 family, const __be32 *src,
                                       const __be32 *dst, __u8 proto, struct kxlb_nexthop *nh)
{
	struct bpf_fib_lookup p = {};
	long rc;

	p.family = family;
	p.l4_protocol = proto;
	p.ifindex = ctx->ingress_ifindex;
	if (family == KXLB_AF_INET) {
		p.ipv4_src = src[0];
		p.ipv4_dst = dst[0];
	} else {
		__builtin_memcpy(p.ipv6_src, src, 16);
		__builtin_memcpy(p.ipv6_dst, dst, 16);
	}
	rc = bpf_fib_lookup(ctx, &p, sizeof(p), 0);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return KXLB_R_PASS_NO_NEIGH;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return KXLB_R_PASS_FIB_FAILED;
	if (p.ifindex != ctx->ingress_ifindex && !bpf_map_lookup_elem(&kxlb_tx_ports, &p.ifindex))
		return KXLB_R_PASS_NO_TX_PORT;
	nh->ifindex = p.ifindex;
	__builtin_memcpy(nh->dmac, p.dmac, 6);
	__builtin_memcpy(nh->smac, p.smac, 6);
	return 0;
}

/* A cached next hop can still be used: it leaves through the ingress NIC (XDP_TX) or through a NIC
 * that is still in kxlb_tx_ports (the agent may have removed it, or the flow now arrives elsewhere). */
static __always_inline int nexthop_usable(struct xdp_md *ctx, const struct kxlb_nexthop *nh)
{
	__u32 ifindex = nh->ifindex;

	if (ifindex == 0)
		return 0;
	return ifindex == ctx->ingress_ifindex || bpf_map_lookup_elem(&kxlb_tx_ports, &ifindex);
}

/* Writes the next hop's MACs and sends. *reason receives FWD_TX or FWD_REDIRECT. */
static __always_inline int fib_xmit(struct xdp_md *ctx, const struct kxlb_nexthop *nh,
                                    __u32 *reason)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end) {
		*reason = KXLB_R_PASS_MALFORMED;
		return XDP_DROP;
	}
	__builtin_memcpy(eth->h_dest, nh->dmac, 6);
	__builtin_memcpy(eth->h_source, nh->smac, 6);
	if (nh->ifindex == ctx->ingress_ifindex) {
		*reason = KXLB_R_FWD_TX;
		return XDP_TX;
	}
	*reason = KXLB_R_FWD_REDIRECT;
	/* The port was checked before the rewrite; if it vanished since, drop the rewritten frame. */
	return bpf_redirect_map(&kxlb_tx_ports, nh->ifindex, XDP_DROP);
}

#endif /* KXLB_BPF_FIB_H */
