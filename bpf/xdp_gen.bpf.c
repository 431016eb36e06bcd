// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark traffic generator, run with BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES: on every
 * frame it writes the whole header template (set in rodata before load) over the frame, puts a
 * source port cycling over nports values into it (fixing the L4 checksum incrementally) and sends
 * the frame out of the test run's ingress device with XDP_TX. Live frames are recycled with whatever
 * the receivers last wrote into them, so the full template is written each time.
 */
#include "lib/common.h"
#include "lib/csum.h"

#define GEN_TMPL_WORDS 8
#define GEN_TMPL_BYTES (GEN_TMPL_WORDS * 8)

/* The first GEN_TMPL_BYTES of every frame, with the source port sport_base and its L4 checksum. */
const volatile __u64 tmpl[GEN_TMPL_WORDS] = {};
const volatile __u32 sport_off = 0;  /* offset of the L4 source port */
const volatile __u32 csum_off = 0;   /* offset of the L4 checksum; 0: leave it alone */
const volatile __u16 sport_base = 0; /* host order */
const volatile __u16 nports = 1;     /* source ports sport_base .. sport_base + nports - 1 */

/* Next port index, per CPU (every CPU cycles over the same ports: the same flows). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} kxlb_gen_seq SEC(".maps");

SEC("xdp")
int kxlb_xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 *w = data;
	__u32 key = 0, idx, off;
	__u32 *seq;
	__be16 port, base;

	if (data + GEN_TMPL_BYTES > end)
		return XDP_ABORTED;
	seq = bpf_map_lookup_elem(&kxlb_gen_seq, &key);
	if (!seq)
		return XDP_ABORTED;
	idx = *seq;
	*seq = idx + 1 >= nports ? 0 : idx + 1;

#pragma unroll
	for (int i = 0; i < GEN_TMPL_WORDS; i++)
		w[i] = tmpl[i];

	base = bpf_htons(sport_base);
	port = bpf_htons((__u16)(sport_base + idx));
	off = sport_off;
	if (off > GEN_TMPL_BYTES - sizeof(__be16))
		return XDP_ABORTED;
	*(__be16 *)(data + off) = port;

	off = csum_off;
	if (off && off <= GEN_TMPL_BYTES - sizeof(__sum16)) {
		__sum16 *sum = data + off;
		__u64 d = 0;

		if (*sum) { /* 0: UDP over IPv4 without a checksum */
			csum_delta16(&d, base, port);
			*sum = csum_apply(*sum, d) ?: 0xffff;
		}
	}
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
