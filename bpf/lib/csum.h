/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Internet checksum helpers: incremental updates (RFC 1624) and full sums for generated headers.
 * Words are summed in memory order, so the same code serves either host byte order.
 */
#ifndef KXLB_BPF_CSUM_H
#define KXLB_BPF_CSUM_H

#include "lib/common.h"

/* Folds a 64-bit one's-complement accumulator to 16 bits (not complemented). */
static __always_inline __u16 csum_fold64(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

/* A pending incremental change: accumulate ~old + new for every changed word, then apply. */
static __always_inline void csum_delta32(__u64 *d, __u32 from, __u32 to)
{
	*d += (__u32)~from;
	*d += to;
}

static __always_inline void csum_delta16(__u64 *d, __u16 from, __u16 to)
{
	*d += (__u16)~from;
	*d += to;
}

static __always_inline void csum_delta128(__u64 *d, const __be32 *from, const __be32 *to)
{
#pragma unroll
	for (int i = 0; i < 4; i++)
		csum_delta32(d, from[i], to[i]);
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). */
static __always_inline __sum16 csum_apply(__sum16 old, __u64 d)
{
	d += (__u16)~old;
	return (__sum16)~csum_fold64(d);
}

/* Sum of len bytes (len a multiple of 4 and a compile-time bound) starting at p. */
static __always_inline __u64 csum_words(const void *p, __u32 nwords)
{
	const __u32 *w = p;
	__u64 s = 0;

	for (__u32 i = 0; i < nwords && i < 64; i++)
		s += w[i];
	return s;
}

/* Offset of the L4 checksum field inside the TCP or UDP header. */
static __always_inline __u32 l4_csum_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) :
	                              offsetof(struct udphdr, check);
}

#endif /* KXLB_BPF_CSUM_H */
