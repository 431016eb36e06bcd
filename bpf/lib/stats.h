/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Per-CPU counter maps and their increment helpers. */
#ifndef KXLB_BPF_STATS_H
#define KXLB_BPF_STATS_H

#include "lib/common.h"

/* What the parser saw: one entry, struct kxlb_parse_counters indexed by enum kxlb_parse_stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kxlb_parse_counters);
} kxlb_parse_stats SEC(".maps");

static __always_inline struct kxlb_parse_counters *parse_counters(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&kxlb_parse_stats, &zero);
}

static __always_inline void parse_stat_inc(struct kxlb_parse_counters *pc, __u32 id, __u64 bytes)
{
	if (id < KXLB_PARSE_STAT_MAX) { /* per-CPU entry: no atomics needed */
		pc->by_id[id].packets++;
		pc->by_id[id].bytes += bytes;
	}
}

/* Every frame's outcome, indexed by enum kxlb_reason. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KXLB_REASON_MAX);
	__type(key, __u32);
	__type(value, struct kxlb_counter);
} kxlb_reasons SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KXLB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct kxlb_lb_counter);
} kxlb_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KXLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct kxlb_lb_counter);
} kxlb_backend_stats SEC(".maps");

static __always_inline void reason_inc(__u32 reason, __u64 bytes)
{
	struct kxlb_counter *c = bpf_map_lookup_elem(&kxlb_reasons, &reason);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline void lb_counter_inc(void *map, __u32 id, __u64 bytes, int new_flow)
{
	struct kxlb_lb_counter *c = bpf_map_lookup_elem(map, &id);

	if (c) {
		c->packets++;
		c->bytes += bytes;
		c->new_flows += new_flow;
	}
}

#endif /* KXLB_BPF_STATS_H */
