// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark receiver: counts every frame (and its bytes) in a per-CPU counter and drops it. Attached
 * natively to the receiving veth of a forwarding benchmark; the bench sums the CPUs before and after
 * a run to get packets per second. Being an XDP program on the veth also enables native XDP_TX and
 * XDP_REDIRECT into its peer.
 */
#include "lib/common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kxlb_counter);
} kxlb_sink_count SEC(".maps");

SEC("xdp")
int kxlb_xdp_sink(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct kxlb_counter *c = bpf_map_lookup_elem(&kxlb_sink_count, &key);

	if (c) { /* per-CPU slot: no atomics needed */
		c->packets++;
		c->bytes += ctx->data_end - ctx->data;
	}
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
