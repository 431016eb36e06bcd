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

/* Next hop toward backend bid (generation gen) at dst for a new flow: from the per-CPU cache when
 * an entry for this backend and ingress NIC is younger than a second and still usable, else by
 * fib_nexthop (and cached). Established flows keep their own copy in the conntrack entry, refreshed
 * on the same schedule, so a route or neighbour change reaches both within about a second. */
static __always_inline int fib_nexthop_backend(struct xdp_md *ctx, __u8 family, const __be32 *src,
                                               const __be32 *dst, __u8 proto, __u32 bid, __u32 gen,
                                               __u64 now, struct kxlb_nexthop *nh)
{
	__u32 slot = bid & (KXLB_NH_CACHE_SLOTS - 1);
	struct kxlb_nh_cache_entry *e = bpf_map_lookup_elem(&kxlb_nh_cache, &slot);
	int r;

	if (e && e->stamp_ns && e->backend_id == bid && e->backend_gen == gen &&
	    e->ingress_ifindex == ctx->ingress_ifindex && now >= e->stamp_ns &&
	    now - e->stamp_ns <= NSEC_PER_SEC && nexthop_usable(ctx, &e->nh)) {
		*nh = e->nh;
		return 0;
	}
	r = fib_nexthop(ctx, family, src, dst, proto, nh);
	if (r == 0 && e) { /* per-CPU entry: plain stores */
		e->stamp_ns = now;
		e->backend_id = bid;
		e->backend_gen = gen;
		e->ingress_ifindex = ctx->ingress_ifindex;
		e->nh = *nh;
	}
	return r;
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
