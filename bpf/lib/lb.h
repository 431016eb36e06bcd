/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Load-balancing decisions: frontend lookup, conntrack, Maglev backend choice, full-NAT in both
 * directions, DSR encapsulation toward the backend, DNAT-only toward local backends (local.h). Family-specific steps are lb4_* / lb6_* twins
 * (nat.h, encap.h, icmp.h); the flow logic is
 * shared through struct kxlb_flow_key, whose addresses are 16 bytes for both families.
 */
#ifndef KXLB_BPF_LB_H
#define KXLB_BPF_LB_H

#include "lib/common.h"
#include "lib/ct.h"
#include "lib/encap.h"
#include "lib/fib.h"
#include "lib/flow_cache.h"
#include "lib/icmp_xlate.h"
#include "lib/icmp.h"
#include "lib/local.h"
#include "lib/maglev.h"
#include "lib/flow_maps.h"
#include "lib/maps.h"
#include "lib/nat.h"
#include "lib/parse.h"
#include "lib/stats.h"

static __always_inline __u32 lb_mix32(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return (__u32)h;
}

/* 5-tuple hash with the configured seed: equal on every node for the same flow. */
static __always_inline __u32 lb_flow_hash(const struct kxlb_flow_key *k, __u64 seed)
{
	const __u32 *w = (const __u32 *)k;
	__u64 h = seed ^ 0x9e3779b97f4a7c15ULL;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*k) / 4); i++)
		h = (h ^ w[i]) * 0x100000001b3ULL + (h >> 29);
	return lb_mix32(h);
}

/* ICMP port unreachable in place of the frame (no usable backend). */
static __always_inline int lb_icmp_unreach(struct xdp_md *ctx, const struct pkt *pkt, __u8 family)
{
	if (family == KXLB_AF_INET)
		return lb4_icmp_error(ctx, pkt, ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, 0);
	return lb6_icmp_error(ctx, pkt, ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, 0);
}

/* Key of the reverse (kxlb_nat) entry of a forward flow. */
static __always_inline void nat_key_of(struct kxlb_flow_key *nk, const struct kxlb_backend *be,
                                       const __be32 *snat, __be16 snat_port, __u8 proto)
{
	__builtin_memcpy(nk->saddr, be->addr, 16);
	__builtin_memcpy(nk->daddr, snat, 16);
	nk->sport = be->port;
	nk->dport = snat_port;
	nk->proto = proto;
	nk->family = be->family;
}

/* The client may open flows to the service: it has no source ranges, or one holds the client. */
static __always_inline int lb_source_allowed(const struct kxlb_service *svc,
                                             const struct kxlb_flow_key *fk)
{
	struct kxlb_src_range_key k = {};

	if (!(svc->flags & KXLB_SVC_F_SOURCE_RANGES))
		return 1;
	k.prefixlen = KXLB_SRC_RANGE_KEY_BITS + (fk->family == KXLB_AF_INET ? 32 : 128);
	k.svc_id = bpf_htonl(svc->id);
	k.family = fk->family;
	__builtin_memcpy(k.addr, fk->saddr, 16);
	return bpf_map_lookup_elem(&kxlb_source_ranges, &k) != NULL;
}

/* Backend id for a new flow. Under session affinity (affinity_s > 0) the client's remembered
 * backend while it was used within affinity_s and can still take new flows (same generation, not
 * draining, weight > 0) — Maglev table changes do not move it; otherwise the Maglev pick, which
 * affinity then remembers. Returns 0 or a kxlb_reason as maglev_pick does. */
static __always_inline int lb_pick_backend(const struct kxlb_flow_key *fk, __u32 svc_id,
                                           __u32 affinity_s, __u32 hash, __u64 now, __u32 *bid)
{
	struct kxlb_affinity_key ak = {};
	struct kxlb_affinity_value av = {};
	struct kxlb_affinity_value *a;
	struct kxlb_backend *be;
	int r;

	if (!affinity_s)
		return maglev_pick(svc_id, hash, bid);
	__builtin_memcpy(ak.client, fk->saddr, 16);
	ak.svc_id = svc_id;
	ak.family = fk->family;
	a = bpf_map_lookup_elem(&kxlb_affinity, &ak);
	if (a && age_ns(now, a->last_seen_ns) <= (__u64)affinity_s * NSEC_PER_SEC) {
		be = backend_get(a->backend_id);
		if (be && be->gen == a->backend_gen && !(be->flags & KXLB_BE_F_DRAINING) &&
		    be->weight) {
			a->last_seen_ns = now;
			*bid = a->backend_id;
			return 0;
		}
	}
	r = maglev_pick(svc_id, hash, bid);
	if (r)
		return r;
	be = backend_get(*bid);
	if (!be)
		return KXLB_R_DROP_BACKEND_MISSING;
	av.last_seen_ns = now;
	av.backend_id = *bid;
	av.backend_gen = be->gen;
	/* Best effort: without an entry the next flow is simply hashed again. */
	bpf_map_update_elem(&kxlb_affinity, &ak, &av, BPF_ANY);
	return 0;
}

/* The frame's source address toward the backend: the node's SNAT address (full-NAT) or the DSR
 * outer source (prefix spread by the flow hash, else the node address). Returns 0, or the pass
 * reason when the family has none. */
static __always_inline __u32 lb_flow_src(const struct kxlb_config *cfg, __u8 family, int dsr,
                                         __u32 hash, __be32 *src)
{
	if (dsr) {
		lb_encap_src(cfg, family, hash, src);
		return addr_is_zero(src, family) ? KXLB_R_PASS_NO_ENCAP_SRC : 0;
	}
	snat_addr(cfg, family, src);
	return addr_is_zero(src, family) ? KXLB_R_PASS_NO_SNAT_ADDR : 0;
}

/* IPv4 DF bit of the frame (no VLAN tags or options reach here: fixed offset). */
static __always_inline int lb4_df(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	struct iphdr *ip = data + LB4_L3_OFF;

	if ((void *)(ip + 1) > (void *)(long)ctx->data_end)
		return 0;
	return (ip->frag_off & bpf_htons(IPV4_FLAG_DF)) != 0;
}

/* A DSR frame that would not fit the egress MTU once encapsulated (mtu: that MTU): an IPv4 frame
 * with DF and every IPv6 frame is answered with ICMP fragmentation needed / packet too big from
 * the VIP, announcing the MTU left for the inner packet; IPv4 without DF is dropped (XDP cannot
 * fragment). */
static __always_inline struct lb_verdict lb_dsr_too_big(struct xdp_md *ctx, const struct pkt *pkt,
                                                        __u8 family, __u32 mtu)
{
	struct lb_verdict v = { XDP_DROP, KXLB_R_DROP_TOO_BIG };
	int r;

	if (family == KXLB_AF_INET) {
		if (!lb4_df(ctx))
			return v;
		r = lb4_icmp_error(ctx, pkt, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED,
		                   mtu > ENCAP4_OVERHEAD ? mtu - ENCAP4_OVERHEAD : 0);
	} else {
		r = lb6_icmp_error(ctx, pkt, ICMPV6_PKT_TOOBIG, 0,
		                   mtu > ENCAP6_OVERHEAD ? mtu - ENCAP6_OVERHEAD : 0);
	}
	if (r == 0) {
		v.action = XDP_TX;
		v.reason = KXLB_R_TX_ICMP_TOO_BIG;
	}
	return v;
}

/* A frame the flow cache may carry: mid-connection TCP (no SYN, FIN or RST: those change or
 * check flow state) or UDP. */
static __always_inline int lb_cacheable(const struct pkt *pkt)
{
	return pkt->l4_proto == IPPROTO_UDP ||
	       !(pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_FIN | TCP_FLAG_RST));
}

/* A flow may be cached after this frame: not closed (its frames then take the conntrack path until
 * its SNAT port changes hands), and for TCP a TIME_WAIT of at least the cache's lifetime, so an
 * entry is stale before its port can be given to another flow. */
static __always_inline int lb_may_cache(const struct kxlb_config *cfg, const struct pkt *pkt,
                                        __u32 flow_flags)
{
	return lb_cacheable(pkt) && !(flow_flags & KXLB_CT_F_CLOSED) &&
	       (pkt->l4_proto == IPPROTO_UDP ||
	        cfg->tcp_timewait_s >= LB_REFRESH_NS / NSEC_PER_SEC);
}

/* Sends a frame of a cached flow (either direction): the same rewrite, counters and next hop the
 * conntrack path would have used. Returns 0 without touching the frame when the flow is not cached
 * here, its backend id changed hands, or its next hop is no longer usable. */
static __always_inline int lb_cached_xmit(struct xdp_md *ctx, const struct pkt *pkt,
                                          const struct kxlb_flow_key *k, __u64 len,
                                          struct lb_verdict *v)
{
	struct kxlb_flow_cache_entry *e = flow_cache_get(k);
	struct kxlb_backend *be;

	if (!e)
		return 0;
	be = backend_get(e->backend_id);
	if (!be || be->gen != e->backend_gen || !nexthop_usable(ctx, &e->nh))
		return 0;
	if (lb_rewrite(ctx, pkt, k->family, e->saddr, e->daddr, e->sport, e->dport)) {
		v->action = XDP_PASS;
		v->reason = KXLB_R_PASS_MALFORMED;
		return 1;
	}
	lb_counter_inc(&kxlb_svc_stats, e->svc_id, len, 0);
	lb_counter_inc(&kxlb_backend_stats, e->backend_id, len, 0);
	flow_cache_count(FLOW_CACHE_HIT);
	v->action = fib_xmit(ctx, &e->nh, &v->reason);
	return 1;
}

/* Client -> frontend, for a frame that passed the frontend filter. An established flow is found
 * by its conntrack entry alone (one hash lookup); only new flows look the service up. Full-NAT
 * rewrites addresses and ports and keeps a kxlb_nat entry for the replies; DSR (service flag
 * KXLB_SVC_F_DSR, remembered as KXLB_CT_F_DSR in the flow entry) picks the backend the same way and
 * sends the frame unchanged inside an outer header (encap.h), as replies never come back here. */
static __always_inline struct lb_verdict lb_forward(struct xdp_md *ctx, const struct pkt *pkt,
                                                    const struct kxlb_flow_key *fk,
                                                    const struct kxlb_config *cfg, __u64 len)
{
	struct lb_verdict v = { XDP_PASS, KXLB_R_PASS_NOT_VIP };
	__be32 src[4];
	int is_tcp = fk->proto == IPPROTO_TCP;
	int syn = is_tcp && (pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN;
	__u64 now = bpf_ktime_get_coarse_ns();
	struct kxlb_ct_value *ct = bpf_map_lookup_elem(&kxlb_ct, fk);
	struct kxlb_backend *be = NULL;
	struct kxlb_nexthop nh;
	__be16 snat_port = 0;
	__u32 bid = 0, svc_id = 0, affinity_s = 0, hash = 0;
	__u32 inner_len = lb_encap_inner_len(pkt, fk->family);
	int new_flow = 0, recover = 0, dsr = 0, r;
	/* the outer header's protocol (DSR) or the flow's own, for policy routing in the FIB */
	__u8 fib_proto = fk->proto;

	if (ct) {
		bid = ct->backend_id;
		svc_id = ct->svc_id;
		dsr = (ct->flags & KXLB_CT_F_DSR) != 0;
		be = backend_get(bid);
		if (!be || be->gen != ct->backend_gen)
			new_flow = 1; /* its backend is gone: re-balance instead of black-holing */
		else if (syn && (ct->flags & KXLB_CT_F_CLOSED))
			new_flow = 1; /* a new connection on a finished 5-tuple */
		else if (!is_tcp &&
		         age_ns(now, ct->last_seen_ns) > (__u64)cfg->udp_timeout_s * NSEC_PER_SEC)
			new_flow = 1;
	} else {
		new_flow = 1;
	}
	if (new_flow) {
		struct kxlb_vip_key vk = {};
		struct kxlb_service *svc;

		__builtin_memcpy(vk.addr, fk->daddr, 16);
		vk.port = fk->dport;
		vk.proto = fk->proto;
		vk.family = fk->family;
		svc = bpf_map_lookup_elem(&kxlb_services, &vk);
		if (!svc)
			return v; /* not a frontend (the filter is approximate) */
		if (!lb_source_allowed(svc, fk)) {
			v.action = XDP_DROP;
			v.reason = KXLB_R_DROP_SOURCE_RANGE;
			return v;
		}
		/* the service decides again: a re-balanced flow follows its current mode */
		dsr = (svc->flags & KXLB_SVC_F_DSR) != 0;
		if (!ct && is_tcp && !syn) {
			/* An ACK segment of a connection whose entry is gone (LRU eviction under a flood
			 * of new flows, a flush) is recovered (snat_alloc's recover mode; DSR simply
			 * re-picks, Maglev giving the same backend while the table is unchanged); resets
			 * and other flag mixes open nothing. */
			if ((pkt->tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_RST | TCP_FLAG_ACK)) !=
			    TCP_FLAG_ACK) {
				v.action = XDP_DROP;
				v.reason = KXLB_R_DROP_TCP_NO_FLOW;
				return v;
			}
			recover = 1;
		}
		svc_id = svc->id;
		affinity_s = svc->affinity_timeout_s;
	}
	if (new_flow || dsr)
		hash = lb_flow_hash(fk, cfg->hash_seed);

	/* The backend first: a local one (this node's pod) takes its own branch (local.h) whatever
	 * the service's mode, needing neither a source address nor a next hop. */
	if (new_flow) {
		r = lb_pick_backend(fk, svc_id, affinity_s, hash, now, &bid);
		if (r == KXLB_R_DROP_NO_BACKEND) {
			if (lb_icmp_unreach(ctx, pkt, fk->family)) {
				v.action = XDP_DROP;
				v.reason = KXLB_R_DROP_NO_BACKEND;
				return v;
			}
			v.action = XDP_TX;
			v.reason = KXLB_R_TX_UNREACH_NO_BACKEND;
			return v;
		}
		be = r ? NULL : backend_get(bid);
		if (!be || be->family != fk->family) {
			v.action = XDP_DROP;
			v.reason = KXLB_R_DROP_BACKEND_MISSING;
			return v;
		}
		if (be->flags & KXLB_BE_F_LOCAL)
			return lb_local_defer(fk, bid, svc_id, 1, len);
	} else if (ct->flags & KXLB_CT_F_LOCAL) {
		return lb_local_defer(fk, bid, svc_id, 0, len);
	}

	if (dsr)
		fib_proto = fk->family == KXLB_AF_INET ? IPPROTO_IPIP : IPPROTO_IPV6;
	r = lb_flow_src(cfg, fk->family, dsr, hash, src);
	if (r) {
		v.reason = r;
		return v;
	}

	if (new_flow) {
		struct kxlb_nat_value nv = {};

		r = fib_nexthop_backend(ctx, fk->family, src, be->addr, fib_proto, bid, be->gen,
		                        now, &nh);
		if (r) {
			v.reason = r;
			return v;
		}
		if (!dsr) {
			nv.last_seen_ns = now;
			__builtin_memcpy(nv.client_addr, fk->saddr, 16);
			__builtin_memcpy(nv.vip_addr, fk->daddr, 16);
			nv.client_port = fk->sport;
			nv.vip_port = fk->dport;
			nv.svc_id = svc_id;
			nv.backend_id = bid;
			r = snat_alloc(be, src, cfg, fk->proto, hash, now, &nv, recover,
			               &snat_port);
			if (r) {
				v.action = XDP_DROP;
				v.reason = r;
				return v;
			}
		}
	} else {
		snat_port = ct->snat_port;
		nh = ct->nh;
		if (age_ns(now, ct->last_seen_ns) > LB_REFRESH_NS || !nexthop_usable(ctx, &nh)) {
			struct kxlb_flow_key nk = {};
			struct kxlb_nat_value *nat = NULL;

			ct->last_seen_ns = now;
			r = fib_nexthop(ctx, fk->family, src, be->addr, fib_proto, &nh);
			if (r == 0) {
				ct->nh = nh;
			} else if (!nexthop_usable(ctx, &ct->nh)) {
				v.reason = r; /* nothing written yet: pass the frame as it came */
				return v;
			} else {
				nh = ct->nh; /* keep the last good next hop */
			}
			if (!dsr) {
				nat_key_of(&nk, be, src, snat_port, fk->proto);
				nat = bpf_map_lookup_elem(&kxlb_nat, &nk);
			}
			/* keeps the port of a one-way (idle-looking) UDP flow reserved */
			if (nat && !(nat->flags & KXLB_CT_F_CLOSED))
				nat->last_seen_ns = now;
		}
	}

	/* Before any state changes: a frame that cannot leave opens no flow and closes none (a new
	 * flow's first frame is mostly a small SYN; the client resends smaller data after the ICMP). */
	if (dsr) {
		__u32 mtu = lb_encap_mtu_exceeded(ctx, nh.ifindex, inner_len, fk->family);

		if (mtu)
			return lb_dsr_too_big(ctx, pkt, fk->family, mtu);
	}
	if (new_flow) {
		struct kxlb_ct_value cv = {};

		cv.last_seen_ns = now;
		cv.backend_id = bid;
		cv.backend_gen = be->gen;
		cv.svc_id = svc_id;
		cv.flags = dsr ? KXLB_CT_F_DSR : 0;
		cv.snat_port = snat_port;
		cv.nh = nh;
		if (bpf_map_update_elem(&kxlb_ct, fk, &cv, BPF_ANY)) {
			struct kxlb_flow_key nk = {};

			if (!dsr) {
				nat_key_of(&nk, be, src, snat_port, fk->proto);
				bpf_map_delete_elem(&kxlb_nat, &nk);
			}
			v.action = XDP_DROP;
			v.reason = KXLB_R_DROP_CT_FULL;
			return v;
		}
	} else if (is_tcp && (pkt->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))) {
		struct kxlb_flow_key nk = {};
		struct kxlb_nat_value *nat = NULL;

		/* DSR: the client's side is all this node sees (no reverse entry) */
		if (!dsr) {
			nat_key_of(&nk, be, src, snat_port, fk->proto);
			nat = bpf_map_lookup_elem(&kxlb_nat, &nk);
		}
		ct_track_close(ct, nat, ct_tcp_bits(pkt->tcp_flags, KXLB_CT_F_FIN_CLIENT), now);
		flow_cache_drop(fk);
	}

	if (dsr) {
		if (lb_encap(ctx, fk->family, src, be->addr, inner_len, hash)) {
			v.action = XDP_DROP;
			v.reason = KXLB_R_DROP_ENCAP_FAILED;
			return v;
		}
	} else if (lb_rewrite(ctx, pkt, fk->family, src, be->addr, snat_port, be->port)) {
		v.reason = KXLB_R_PASS_MALFORMED; /* bounds re-check failed before any write */
		return v;
	} else if (!new_flow && lb_may_cache(cfg, pkt, ct->flags)) {
		/* from the second frame on: a flood of new flows does not churn the cache */
		flow_cache_put(fk, ct->last_seen_ns, now, src, be->addr, snat_port, be->port,
		               svc_id, bid, be->gen, &nh);
	}
	lb_counter_inc(&kxlb_svc_stats, svc_id, len, new_flow);
	lb_counter_inc(&kxlb_backend_stats, bid, len, new_flow);
	v.action = fib_xmit(ctx, &nh, &v.reason);
	if (dsr && v.reason == KXLB_R_FWD_TX)
		v.reason = KXLB_R_FWD_ENCAP_TX;
	else if (dsr && v.reason == KXLB_R_FWD_REDIRECT)
		v.reason = KXLB_R_FWD_ENCAP_REDIRECT;
	return v;
}

/* Backend -> node SNAT address: a reply of a full-NAT flow, or not ours. */
static __always_inline struct lb_verdict lb_reverse(struct xdp_md *ctx, const struct pkt *pkt,
                                                    const struct kxlb_flow_key *rk,
                                                    const struct kxlb_config *cfg, __u64 len)
{
	struct lb_verdict v = { XDP_PASS, KXLB_R_PASS_NOT_VIP };
	struct kxlb_nat_value *nat = bpf_map_lookup_elem(&kxlb_nat, rk);
	struct kxlb_flow_key fk = {};
	struct kxlb_backend *be;
	struct kxlb_nexthop nh;
	int refresh, tcp_close;
	__u64 now;

	if (!nat)
		return v;
	now = bpf_ktime_get_coarse_ns();
	nh = nat->nh;
	refresh = nh.ifindex == 0 || age_ns(now, nat->last_seen_ns) > LB_REFRESH_NS ||
	          !nexthop_usable(ctx, &nh);
	if (refresh) {
		int r = fib_nexthop(ctx, rk->family, nat->vip_addr, nat->client_addr, rk->proto,
		                    &nh);

		if (r == 0) {
			nat->nh = nh;
		} else if (!nexthop_usable(ctx, &nat->nh)) {
			v.reason =
				r; /* nothing written yet: the kernel gets the frame as it came */
			return v;
		} else {
			nh = nat->nh; /* keep the last good next hop */
		}
		nat->last_seen_ns = now;
	}
	tcp_close = rk->proto == IPPROTO_TCP && (pkt->tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST));
	if (refresh || tcp_close) {
		struct kxlb_ct_value *ct;

		__builtin_memcpy(fk.saddr, nat->client_addr, 16);
		__builtin_memcpy(fk.daddr, nat->vip_addr, 16);
		fk.sport = nat->client_port;
		fk.dport = nat->vip_port;
		fk.proto = rk->proto;
		fk.family = rk->family;
		ct = bpf_map_lookup_elem(&kxlb_ct, &fk);
		/* Only the forward entry this reply belongs to: the client may have a newer flow on
		 * the same 5-tuple (another SNAT port or backend). */
		if (ct && !(ct->snat_port == rk->dport && ct->backend_id == nat->backend_id))
			ct = NULL;
		if (ct && refresh && !(ct->flags & KXLB_CT_F_CLOSED))
			ct->last_seen_ns = now; /* replies keep a UDP flow from looking idle */
		if (tcp_close) {
			ct_track_close(ct, nat, ct_tcp_bits(pkt->tcp_flags, KXLB_CT_F_FIN_BACKEND),
			               now);
			flow_cache_drop(rk);
		}
	}
	if (lb_rewrite(ctx, pkt, rk->family, nat->vip_addr, nat->client_addr, nat->vip_port,
	               nat->client_port)) {
		v.reason = KXLB_R_PASS_MALFORMED;
		return v;
	}
	if (lb_may_cache(cfg, pkt, nat->flags) && (be = backend_get(nat->backend_id)))
		flow_cache_put(rk, nat->last_seen_ns, now, nat->vip_addr, nat->client_addr,
		               nat->vip_port, nat->client_port, nat->svc_id, nat->backend_id,
		               be->gen, &nh);
	lb_counter_inc(&kxlb_svc_stats, nat->svc_id, len, 0);
	lb_counter_inc(&kxlb_backend_stats, nat->backend_id, len, 0);
	v.action = fib_xmit(ctx, &nh, &v.reason);
	return v;
}

/* The frame is addressed to the node's SNAT address and port range: a reply of a full-NAT flow
 * (if kxlb_nat knows it). Compared straight from the parsed frame: no flow key for the others. */
static __always_inline int lb_is_reply(const struct kxlb_config *cfg, const struct pkt *pkt,
                                       __u8 family)
{
	__u16 dport = bpf_ntohs(pkt->fl.dport);

	if (dport < cfg->snat_port_lo || dport > cfg->snat_port_hi)
		return 0;
	if (family == KXLB_AF_INET)
		return cfg->snat_v4 && pkt->fl.daddr[0] == cfg->snat_v4;
	return !addr_is_zero(cfg->snat_v6, family) && addr_eq(pkt->fl.daddr, cfg->snat_v6, family);
}

static __always_inline int is_vip_addr(const struct pkt *pkt, __u8 family)
{
	struct kxlb_vip_addr_key k = {};

	__builtin_memcpy(k.addr, pkt->fl.daddr, 16);
	k.family = family;
	return bpf_map_lookup_elem(&kxlb_vip_addrs, &k) != NULL;
}

/* Entry of the load balancer for a parsed IPv4/IPv6 frame without VLAN tags. */
static __always_inline struct lb_verdict lb_process(struct xdp_md *ctx, const struct pkt *pkt,
                                                    __u8 family, __u64 len)
{
	const struct kxlb_flow_key *fk = &pkt->fl; /* the frame's conntrack key, as parsed */
	struct lb_verdict v = { XDP_PASS, KXLB_R_PASS_NOT_VIP };
	struct kxlb_frontend_filter *filter;
	struct kxlb_config *cfg;
	__u32 zero = 0;

	if (pkt->flags & (PKT_F_FRAGMENT | PKT_F_IPV4_OPTIONS | PKT_F_IPV6_EXTHDR) ||
	    (pkt->l4_proto != IPPROTO_TCP && pkt->l4_proto != IPPROTO_UDP)) {
		if (!(pkt->flags & (PKT_F_FRAGMENT | PKT_F_IPV4_OPTIONS | PKT_F_IPV6_EXTHDR)) &&
		    (pkt->l4_proto == IPPROTO_ICMP || pkt->l4_proto == IPPROTO_ICMPV6) &&
		    lb_icmp_error(ctx, pkt, family, len, &v))
			return v;
		if (!is_vip_addr(pkt, family))
			return v;
		if (pkt->flags & PKT_F_FRAGMENT)
			v.reason = KXLB_R_PASS_VIP_FRAGMENT;
		else if (pkt->flags & PKT_F_IPV4_OPTIONS)
			v.reason = KXLB_R_PASS_VIP_IPV4_OPTIONS;
		else if (pkt->flags & PKT_F_IPV6_EXTHDR)
			v.reason = KXLB_R_PASS_VIP_IPV6_EXTHDR;
		else
			v.reason = KXLB_R_PASS_VIP_OTHER_L4;
		return v;
	}

	cfg = bpf_map_lookup_elem(&kxlb_config, &zero);
	if (!cfg)
		return v;

	/* Replies first: a cheap compare rules them out for everything not sent to the SNAT address. */
	if (lb_is_reply(cfg, pkt, family)) {
		if (lb_cacheable(pkt) && lb_cached_xmit(ctx, pkt, fk, len, &v))
			return v;
		return lb_reverse(ctx, pkt, fk, cfg, len);
	}

	/* Most frames are not for a frontend: an inlined bitmap test rules them out without any
	 * hash-map lookup or flow key. A set bit may be a collision; lb_forward looks it up. */
	filter = bpf_map_lookup_elem(&kxlb_frontend_filter, &zero);
	if (filter) {
		__u32 bit = kxlb_frontend_bit(pkt->fl.daddr, family, pkt->fl.dport, pkt->l4_proto);

		if (!(filter->words[bit / 64] & (1ULL << (bit % 64))))
			return v;
	}
	if (lb_cacheable(pkt) && lb_cached_xmit(ctx, pkt, fk, len, &v))
		return v;
	return lb_forward(ctx, pkt, fk, cfg, len);
}

#endif /* KXLB_BPF_LB_H */
