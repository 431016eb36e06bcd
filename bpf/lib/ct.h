/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Flow-state helpers shared by the XDP datapath and the local-backend tc egress program: TCP close
 * tracking on the kxlb_ct / kxlb_nat entries of a flow, ages, address compares. No maps: a program
 * including this declares only the maps it uses.
 */
#ifndef KXLB_BPF_CT_H
#define KXLB_BPF_CT_H

#include "lib/common.h"

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10
/* Cached next hops and last_seen are refreshed at most this often (one write per flow per second). */
/* Time comes from bpf_ktime_get_coarse_ns() (tick resolution, a fraction of the cost of the precise
 * clock): ample for a 1 s refresh and timeouts of seconds. */
#define LB_REFRESH_NS NSEC_PER_SEC

static __always_inline int addr_is_zero(const __be32 *a, __u8 family)
{
	if (family == KXLB_AF_INET)
		return a[0] == 0;
	return (a[0] | a[1] | a[2] | a[3]) == 0;
}

static __always_inline int addr_eq(const __be32 *a, const __be32 *b, __u8 family)
{
	if (family == KXLB_AF_INET)
		return a[0] == b[0];
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

/* Nanoseconds since then; 0 if another CPU stored a time later than our `now`. */
static __always_inline __u64 age_ns(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}

/* The KXLB_CT_F_* bits a TCP segment from one side adds (fin_bit: that side's FIN flag). */
static __always_inline __u32 ct_tcp_bits(__u8 tcp_flags, __u32 fin_bit)
{
	if (tcp_flags & TCP_FLAG_RST)
		return KXLB_CT_F_CLOSED;
	return tcp_flags & TCP_FLAG_FIN ? fin_bit : 0;
}

/* ORs bits into a flow's flags atomically (forward and reply paths may run on two CPUs at once)
 * and closes the flow once both FINs are in. Returns the flags after the update. */
static __always_inline __u32 ct_mark(__u32 *flags, __u32 bits)
{
	const __u32 both = KXLB_CT_F_FIN_CLIENT | KXLB_CT_F_FIN_BACKEND;
	__u32 now = __sync_fetch_and_or(flags, bits) | bits;

	if (!(now & KXLB_CT_F_CLOSED) && (now & both) == both) {
		__sync_fetch_and_or(flags, KXLB_CT_F_CLOSED);
		now |= KXLB_CT_F_CLOSED;
	}
	return now;
}

/* Records FIN/RST of one direction in both entries of a flow; a close starts TIME_WAIT. */
static __always_inline void ct_track_close(struct kxlb_ct_value *ct, struct kxlb_nat_value *nat,
                                           __u32 bits, __u64 now)
{
	__u32 f;

	if (!bits)
		return;
	f = ct ? ct_mark(&ct->flags, bits) : bits;
	if (nat) {
		__u32 was = nat->flags;

		f = ct_mark(&nat->flags, f);
		if (ct)
			ct_mark(&ct->flags, f); /* the reply side may have added bits meanwhile */
		if ((f & KXLB_CT_F_CLOSED) && !(was & KXLB_CT_F_CLOSED))
			nat->last_seen_ns = now; /* TIME_WAIT counts from the close */
	}
}

#endif /* KXLB_BPF_CT_H */
