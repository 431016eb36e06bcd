// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Hot-loop wrappers for kxlb-bench part A (method "loop"): BPF_PROG_TEST_RUN with repeat = R re-runs
 * a program on the buffer it already rewrote, so each program here FIRST restores the input frame
 * from a template (a fixed 80-byte copy) and THEN runs exactly the code it measures:
 *   bench_lb      restore + the datapath's entry body (lib/xdp_lb_main.h, the code of xdp_lb.bpf.c);
 *                 after a DSR encapsulation the restore first shrinks the head back (one extra
 *                 bpf_xdp_adjust_head, counted in the DSR cases' loop figures, not in the baseline);
 *   bench_base    restore + XDP_PASS: the baseline that "net" subtracts;
 *   bench_reflect restore + the reflector's body (lib/reflect_main.h): the floor.
 * With bench_vary set, the restore also writes a fresh source port and address derived from a per-CPU
 * iteration counter, so every bench_lb iteration is a new 5-tuple (the checksums are then stale:
 * the datapath only updates them incrementally, it never validates them). bench_base does the same
 * work, so it cancels out of "net".
 * Userspace loads this object with every kxlb_* map reused from a programmed xdp_lb instance
 * (bpf_map__reuse_fd), so bench_lb runs against that instance's services, conntrack and counters.
 */
#include "lib/reflect_main.h"
#include "lib/xdp_lb_main.h"

#define BENCH_FRAME_BYTES 80
#define BENCH_FRAME_WORDS (BENCH_FRAME_BYTES / 8)

/* Written by userspace (through the skeleton's .bss mmap) before each case. */
__u64 bench_frame[BENCH_FRAME_WORDS] = {}; /* the input frame, exactly BENCH_FRAME_BYTES long */
__u32 bench_vary = 0;                      /* 1: fresh source port and address per run */
__u32 bench_sport_off = 0;                 /* offset of the L4 source port */
__u32 bench_saddr_off = 0;  /* offset of the last 32-bit word of the source address */
__u32 bench_saddr_base = 0; /* host order: word = base + (n >> 15), port = 0x8000 | (n & 0x7fff) */

/* Runs so far on this CPU (vary only): never repeats, so no 5-tuple repeats either. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bench_iter SEC(".maps");

static __always_inline int restore(struct xdp_md *ctx)
{
	long grown = (long)ctx->data_end - (long)ctx->data - BENCH_FRAME_BYTES;
	void *data, *end;
	__u64 *w;

	/* A DSR run put an outer header in front of the frame: give the head back first, so the frame
	 * is the template's length again instead of growing until the headroom runs out. Only runs
	 * after an encapsulation (full-NAT keeps the size), once per run of a DSR case. */
	if (grown > 0 && bpf_xdp_adjust_head(ctx, (int)grown))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	w = data;
	if (data + BENCH_FRAME_BYTES > end)
		return -1;
#pragma unroll
	for (int i = 0; i < BENCH_FRAME_WORDS; i++)
		w[i] = bench_frame[i];

	if (bench_vary) {
		__u32 key = 0, so = bench_sport_off, ao = bench_saddr_off;
		__u64 *it = bpf_map_lookup_elem(&bench_iter, &key);
		__be16 *port;
		__be32 *word;
		__u64 n;

		if (!it || so > BENCH_FRAME_BYTES - 2 || ao > BENCH_FRAME_BYTES - 4)
			return -1;
		port = data + so;
		word = data + ao;
		/* the verifier forgets the range of a packet pointer moved by a variable: check again */
		if ((void *)(port + 1) > end || (void *)(word + 1) > end)
			return -1;
		n = (*it)++;
		*port = bpf_htons((__u16)(0x8000 | (n & 0x7fff)));
		*word = bpf_htonl(bench_saddr_base + (__u32)(n >> 15));
	}
	return 0;
}

SEC("xdp")
int bench_lb(struct xdp_md *ctx)
{
	if (restore(ctx))
		return XDP_ABORTED;
	return kxlb_xdp_lb_main(ctx);
}

SEC("xdp")
int bench_base(struct xdp_md *ctx)
{
	if (restore(ctx))
		return XDP_ABORTED;
	return XDP_PASS;
}

SEC("xdp")
int bench_reflect(struct xdp_md *ctx)
{
	if (restore(ctx))
		return XDP_ABORTED;
	return kxlb_reflect_main(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
