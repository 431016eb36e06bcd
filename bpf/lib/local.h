/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Local backends (KXLB_BE_F_LOCAL: pods on this node behind veths the node's kernel routes to), the
 * XDP half. A flow to such a backend is destination-NATed only (address and port -> the backend's;
 * the client's source stays, so the pod sees the real client and the kernel's rp_filter / martian
 * checks pass) and handed to the kernel (XDP_PASS, fwd_local), which forwards it to the pod: XDP
 * cannot redirect into a pod veth without an XDP program inside the pod. The reply leaves through a
 * node NIC, where the tc egress program (local_rev.h) puts the frontend back as its source, using
 * the kxlb_nat entry written here. docs/datapath.md "Local backends".
 */
#ifndef KXLB_BPF_LOCAL_H
#define KXLB_BPF_LOCAL_H

#include "lib/common.h"
#include "lib/ct.h"
#include "lib/flow_maps.h"
#include "lib/maglev.h"
#include "lib/maps.h"
#include "lib/nat.h"
#include "lib/stats.h"

/* Key of a local flow's reverse entry: its reply as the backend sends it,
 * {backend addr:port -> client addr:port}. It never equals a full-NAT reverse key
 * {backend addr:port -> node SNAT addr:SNAT port}: that would need the client's address to be the
 * node's SNAT address, and lb_local_forward refuses such clients (drop_local_node_src). */
static __always_inline void local_nat_key(struct kxlb_flow_key *nk, const struct kxlb_backend *be,
                                          const struct kxlb_flow_key *fk)
{
	__builtin_memcpy(nk->saddr, be->addr, 16);
	__builtin_memcpy(nk->daddr, fk->saddr, 16);
	nk->sport = be->port;
	nk->dport = fk->sport;
	nk->proto = fk->proto;
	nk->family = fk->family;
}

/* Stores the reverse entry nv of a new local flow under nk. The key leaves out the frontend, so the
 * same client addr:port reaching the same backend through two frontends would share it: the entry
 * is taken over only when it is free, expired (closed past TIME_WAIT, or idle UDP) or the same
 * frontend's (a re-balanced or re-opened flow). Returns 0 or a drop reason. */
static __always_inline __u32 local_nat_claim(const struct kxlb_flow_key *nk,
                                             const struct kxlb_nat_value *nv,
                                             const struct kxlb_config *cfg, __u64 now)
{
	struct kxlb_nat_value *old;

	if (bpf_map_update_elem(&kxlb_nat, nk, nv, BPF_NOEXIST) == 0)
		return 0;
	old = bpf_map_lookup_elem(&kxlb_nat, nk);
	if (old &&
	    !nat_entry_expired(old, (__u64)cfg->tcp_timewait_s * NSEC_PER_SEC,
	                       (__u64)cfg->udp_timeout_s * NSEC_PER_SEC, nk->proto, now) &&
	    !((old->flags & KXLB_CT_F_LOCAL) && old->vip_port == nv->vip_port &&
	      addr_eq(old->vip_addr, nv->vip_addr, KXLB_AF_INET6)))
		return KXLB_R_DROP_LOCAL_TUPLE_BUSY;
	if (bpf_map_update_elem(&kxlb_nat, nk, nv, BPF_ANY))
		return KXLB_R_DROP_CT_FULL;
	return 0;
}

/* Per-CPU scratch space of lb_local_forward: its arguments (from lb_forward) and every key/value it
 * builds, off the nearly full 512-byte stack. Safe as XDP runs to completion on one CPU without
 * nesting. */
struct local_scratch {
	struct kxlb_flow_key fk; /* argument: client -> frontend, as received */
	__u64 len;               /* argument: frame bytes, for the counters */
	__u32 bid;               /* argument: the chosen (new_flow) or tracked backend */
	__u32 svc_id;            /* argument */
	__u32 new_flow;          /* argument; 0: established, kxlb_ct holds the live entry */
	__u32 pad;
	struct kxlb_flow_key nk;
	struct kxlb_nat_value nv;
	struct kxlb_ct_value cv;
	__be32 snat[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct local_scratch);
} kxlb_local_scratch SEC(".maps");

/* lb_forward's verdict for a frame to hand to lb_local_forward: not an XDP action; the arguments
 * are in this CPU's kxlb_local_scratch. */
#define LB_ACT_LOCAL 0x100

/* lb_forward's side: stores the arguments and returns the LB_ACT_LOCAL verdict. */
static __always_inline struct lb_verdict lb_local_defer(const struct kxlb_flow_key *fk, __u32 bid,
                                                        __u32 svc_id, int new_flow, __u64 len)
{
	struct lb_verdict v = { XDP_PASS, KXLB_R_PASS_MALFORMED };
	struct local_scratch *s;
	__u32 zero = 0;

	s = bpf_map_lookup_elem(&kxlb_local_scratch, &zero);
	if (!s)
		return v;
	s->fk = *fk;
	s->len = len;
	s->bid = bid;
	s->svc_id = svc_id;
	s->new_flow = new_flow;
	v.action = LB_ACT_LOCAL;
	v.reason = KXLB_R_FWD_LOCAL;
	return v;
}

/* Client -> frontend for a flow whose backend is local (arguments in this CPU's kxlb_local_scratch):
 * new, or established. Frontend lookup, source ranges, backend choice (affinity, Maglev) and
 * re-balancing happened in lb_forward, shared with full-NAT and DSR.
 *
 * Called from the program's entry after lb_process returned, not from inside lb_forward: there every
 * path of lb_forward reaching it would be verified through it again (inlined there, the program
 * exceeds the verifier's 1M-instruction limit), whereas after the return those paths have nothing
 * live but the frame and the parsed struct pkt and prune into one. Also why it takes nothing but the
 * scratch entry and looks the config, backend and flow entry up again. */
static __always_inline struct lb_verdict lb_local_forward(struct xdp_md *ctx, const struct pkt *pkt)
{
	struct lb_verdict v = { XDP_PASS, KXLB_R_PASS_MALFORMED };
	struct local_scratch *s;
	struct kxlb_backend *be;
	struct kxlb_config *cfg;
	struct kxlb_ct_value *ct;
	__u32 zero = 0;
	__u64 now;

	s = bpf_map_lookup_elem(&kxlb_local_scratch, &zero);
	cfg = bpf_map_lookup_elem(&kxlb_config, &zero);
	if (!s || !cfg)
		return v;
	be = backend_get(s->bid);
	if (!be || be->family != s->fk.family) {
		v.action = XDP_DROP;
		v.reason = KXLB_R_DROP_BACKEND_MISSING;
		return v;
	}
	now = bpf_ktime_get_coarse_ns();

	local_nat_key(&s->nk, be, &s->fk);
	if (s->new_flow) {
		__u32 r;

		/* The argument that keeps local and full-NAT reverse keys apart (see local_nat_key). A
		 * frame from the wire claiming the node's own address is spoofed anyway. */
		snat_addr(cfg, s->fk.family, s->snat);
		if (!addr_is_zero(s->snat, s->fk.family) &&
		    addr_eq(s->fk.saddr, s->snat, s->fk.family)) {
			v.action = XDP_DROP;
			v.reason = KXLB_R_DROP_LOCAL_NODE_SRC;
			return v;
		}
		__builtin_memset(&s->nv, 0, sizeof(s->nv));
		s->nv.last_seen_ns = now;
		__builtin_memcpy(s->nv.client_addr, s->fk.saddr, 16);
		__builtin_memcpy(s->nv.vip_addr, s->fk.daddr, 16);
		s->nv.client_port = s->fk.sport;
		s->nv.vip_port = s->fk.dport;
		s->nv.svc_id = s->svc_id;
		s->nv.backend_id = s->bid;
		s->nv.flags = KXLB_CT_F_LOCAL;
		r = local_nat_claim(&s->nk, &s->nv, cfg, now);
		if (r) {
			v.action = XDP_DROP;
			v.reason = r;
			return v;
		}
		__builtin_memset(&s->cv, 0, sizeof(s->cv));
		s->cv.last_seen_ns = now;
		s->cv.backend_id = s->bid;
		s->cv.backend_gen = be->gen;
		s->cv.svc_id = s->svc_id;
		s->cv.flags = KXLB_CT_F_LOCAL;
		if (bpf_map_update_elem(&kxlb_ct, &s->fk, &s->cv, BPF_ANY)) {
			bpf_map_delete_elem(&kxlb_nat, &s->nk);
			v.action = XDP_DROP;
			v.reason = KXLB_R_DROP_CT_FULL;
			return v;
		}
	} else if ((ct = bpf_map_lookup_elem(&kxlb_ct, &s->fk))) {
		__u32 bits = s->fk.proto == IPPROTO_TCP ?
		                     ct_tcp_bits(pkt->tcp_flags, KXLB_CT_F_FIN_CLIENT) :
		                     0;
		int refresh = age_ns(now, ct->last_seen_ns) > LB_REFRESH_NS;

		if (refresh || bits) {
			struct kxlb_nat_value *nat = bpf_map_lookup_elem(&kxlb_nat, &s->nk);

			if (refresh) {
				ct->last_seen_ns = now;
				/* keeps a one-way (idle-looking) UDP flow's entry from expiring */
				if (nat && !(nat->flags & KXLB_CT_F_CLOSED))
					nat->last_seen_ns = now;
			}
			ct_track_close(ct, nat, bits, now);
		}
	}
	if (lb_rewrite(ctx, pkt, s->fk.family, s->fk.saddr, be->addr, s->fk.sport, be->port))
		return v; /* pass_malformed: bounds re-check failed before any write */
	lb_counter_inc(&kxlb_svc_stats, s->svc_id, s->len, s->new_flow);
	lb_counter_inc(&kxlb_backend_stats, s->bid, s->len, s->new_flow);
	v.reason = KXLB_R_FWD_LOCAL;
	return v;
}

#endif /* KXLB_BPF_LOCAL_H */
