/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-CPU flow cache (kxlb_flow_cache): the translation of an established full-NAT flow's frames,
 * found with an inlined array lookup and a 40-byte compare instead of a kxlb_ct / kxlb_nat hash
 * lookup. A direct-mapped copy of what the conntrack path computed for the flow's previous frame;
 * see struct kxlb_flow_cache_entry for when it is valid and lb.h for what may be cached.
 */
#ifndef KXLB_BPF_FLOW_CACHE_H
#define KXLB_BPF_FLOW_CACHE_H

#include "lib/common.h"
#include "lib/ct.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KXLB_FLOW_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct kxlb_flow_cache_entry);
} kxlb_flow_cache SEC(".maps");

/* Hits, misses and fills (struct kxlb_flow_cache_counters), read by the agent and kxlbctl. Not
 * "kxlb_flow_cache_stats": the kernel keeps 15 characters of a map's name, which would make it
 * indistinguishable from kxlb_flow_cache. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kxlb_flow_cache_counters);
} kxlb_fcache_stats SEC(".maps");

/* 0 turns the cache off (every frame takes the conntrack path); set by the loader. */
const volatile __u32 kxlb_flow_cache_on = 1;

/* The kernel's tick rate, from its config (libbpf reads /proc/config.gz or /boot/config-*). Entries
 * expire in jiffies: bpf_jiffies64() is inlined by the verifier, a clock read without a helper
 * call on the cached path. Unknown (0): the cache stays off. */
extern unsigned int CONFIG_HZ __kconfig __weak;

enum flow_cache_event {
	FLOW_CACHE_HIT,
	FLOW_CACHE_MISS,
	FLOW_CACHE_FILL,
};

/* Counts one event in kxlb_fcache_stats (per-CPU entry: plain increments). */
static __always_inline void flow_cache_count(enum flow_cache_event ev)
{
	struct kxlb_flow_cache_counters *c;
	__u32 zero = 0;

	if (!kxlb_flow_cache_on || !CONFIG_HZ)
		return;
	c = bpf_map_lookup_elem(&kxlb_fcache_stats, &zero);
	if (!c)
		return;
	if (ev == FLOW_CACHE_HIT)
		c->hits++;
	else if (ev == FLOW_CACHE_MISS)
		c->misses++;
	else
		c->fills++;
}

/* Both take the key as five 64-bit words: struct kxlb_flow_key is 40 bytes and 8-byte aligned. */
static __always_inline __u32 flow_cache_slot(const struct kxlb_flow_key *k)
{
	const __u64 *w = (const __u64 *)k;
	/* Rotations keep the two halves of each address apart; one multiply mixes (Fibonacci hashing:
	 * the slot is taken from the product's top bits). */
	__u64 h = w[0] ^ ((w[1] << 21) | (w[1] >> 43)) ^ ((w[2] << 42) | (w[2] >> 22)) ^
	          ((w[3] << 13) | (w[3] >> 51)) ^ w[4];

	return (__u32)((h * 0x9e3779b97f4a7c15ULL) >> (64 - KXLB_FLOW_CACHE_BITS));
}

static __always_inline int flow_key_eq(const struct kxlb_flow_key *a, const struct kxlb_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4])) == 0;
}

/* The entry for key k, if cached here and not expired; else NULL. */
static __always_inline struct kxlb_flow_cache_entry *flow_cache_get(const struct kxlb_flow_key *k)
{
	struct kxlb_flow_cache_entry *e;
	__u32 slot;

	if (!kxlb_flow_cache_on || !CONFIG_HZ)
		return NULL;
	slot = flow_cache_slot(k);
	e = bpf_map_lookup_elem(&kxlb_flow_cache, &slot);
	if (!e || !flow_key_eq(&e->key, k) || bpf_jiffies64() > e->expires)
		return NULL;
	return e;
}

/* Caches the translation of key k's frames (see struct kxlb_flow_cache_entry), replacing
 * whatever shared its slot, until the flow entry it comes from (last seen at stamp) is due for its
 * refresh: LB_REFRESH_NS after stamp, less a tick for the two clocks' granularity. now: the
 * current bpf_ktime_get_coarse_ns(). The conntrack path calls it for every frame the cache could
 * have carried, so each call is counted as a miss (and as a fill if it writes). */
static __always_inline void flow_cache_put(const struct kxlb_flow_key *k, __u64 stamp, __u64 now,
                                           const __be32 *saddr, const __be32 *daddr, __be16 sport,
                                           __be16 dport, __u32 svc_id, __u32 backend_id,
                                           __u32 backend_gen, const struct kxlb_nexthop *nh)
{
	struct kxlb_flow_cache_entry *e;
	__u64 age = age_ns(now, stamp), ticks;
	__u32 slot;

	if (!kxlb_flow_cache_on || !CONFIG_HZ)
		return;
	flow_cache_count(FLOW_CACHE_MISS);
	if (!stamp || age >= LB_REFRESH_NS)
		return;
	ticks = (LB_REFRESH_NS - age) * CONFIG_HZ / NSEC_PER_SEC;
	if (ticks < 2)
		return; /* due for the refresh within a tick anyway */
	slot = flow_cache_slot(k);
	e = bpf_map_lookup_elem(&kxlb_flow_cache, &slot);
	if (!e)
		return;
	e->key = *k;
	e->expires = bpf_jiffies64() + ticks - 1;
	__builtin_memcpy(e->saddr, saddr, 16);
	__builtin_memcpy(e->daddr, daddr, 16);
	e->sport = sport;
	e->dport = dport;
	e->svc_id = svc_id;
	e->backend_id = backend_id;
	e->backend_gen = backend_gen;
	e->nh = *nh;
	flow_cache_count(FLOW_CACHE_FILL);
}

/* Forgets key k's entry on this CPU (its flow is closing). */
static __always_inline void flow_cache_drop(const struct kxlb_flow_key *k)
{
	struct kxlb_flow_cache_entry *e;
	__u32 slot;

	if (!kxlb_flow_cache_on)
		return;
	slot = flow_cache_slot(k);
	e = bpf_map_lookup_elem(&kxlb_flow_cache, &slot);
	if (e && flow_key_eq(&e->key, k))
		e->expires = 0;
}

#endif /* KXLB_BPF_FLOW_CACHE_H */
