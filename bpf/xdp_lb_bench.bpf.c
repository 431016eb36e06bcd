// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Hot-loop wrappers for kxlb-bench part A (method "loop"): BPF_PROG_TEST_RUN with repeat = R re-runs
 * a program on the buffer it already rewrote, so each program here FIRST restores the input frame
 * from a template (a fixed 80-byte copy) and THEN runs exactly the code it measures:
 *   bench_lb      restore + the datapath's entry body (lib/xdp_lb_main.h, the code of xdp_lb.bpf.c);
 *                 after a DSR encapsulation the restore first shrinks the head back (one extra
 *                 bpf_xdp_adjust_head, counted in the DSR cases' loop figures, not in the baseline);
 *   bench_base    restore + XDP_PASS: the baseline that "net" subtracts;
 *   bench_reflect restore + the reflector's body (lib/reflect_main.h): the floor;
 *   bench_ct_probe restore + the datapath's parser + one kxlb_ct lookup of the frame's 5-tuple: the
 *                 first step of any frame that may open a flow, measured alone (new-flow cases: with
 *                 bench_vary on a fresh 5-tuple, the lookup misses in a table of live flows; the
 *                 misses are counted in bench_probe_misses, the hits in bench_probe_hits);
 *   bench_table_read restore + one read of a pseudo-random 64-byte slot among the first
 *                 2^bench_table_bits of bench_table (up to 64 MiB: 1M flows in 64-byte slots): the
 *                 memory latency that any flow-table design of that size pays at least once per new
 *                 flow, whatever its code.
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
/* bench_ct_probe's outcomes, read by userspace (the bench runs on one pinned CPU). */
__u64 bench_probe_misses = 0;
__u64 bench_probe_hits = 0;
__u64 bench_table_reads = 0; /* bench_table_read's runs so far; picks its slot */
__u64 bench_table_sum = 0;   /* the sum of the slots read (0): chains each read to the last */
/* bench_table_read reads the first 2^bits slots of bench_table (1..BENCH_TABLE_BITS) */
__u32 bench_table_bits = 0;

#define BENCH_TABLE_BITS 20
struct bench_slot {
	__u64 w[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << BENCH_TABLE_BITS);
	__type(key, __u32);
	__type(value, struct bench_slot);
} bench_table SEC(".maps");

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

SEC("xdp")
int bench_ct_probe(struct xdp_md *ctx)
{
	struct pkt *pkt;
	struct cursor c;
	__u32 zero = 0;

	if (restore(ctx))
		return XDP_ABORTED;
	pkt = bpf_map_lookup_elem(&kxlb_frame, &zero);
	if (!pkt)
		return XDP_ABORTED;
	cursor_init(&c, ctx);
	__builtin_memset(pkt, 0, sizeof(*pkt));
	if (parse_packet(&c, pkt))
		return XDP_ABORTED;
	if (bpf_map_lookup_elem(&kxlb_ct, &pkt->fl)) {
		bench_probe_hits++;
		return XDP_DROP;
	}
	bench_probe_misses++;
	return XDP_PASS;
}

SEC("xdp")
int bench_table_read(struct xdp_md *ctx)
{
	struct bench_slot *slot;
	__u32 idx, bits;

	if (restore(ctx))
		return XDP_ABORTED;
	/* Fibonacci hashing of the run number, so consecutive runs land far apart, plus what the
	 * previous run read (always 0: the table stays zeroed). That dependence makes each read wait
	 * for the one before, as in the datapath: there, the next frame's lookup is hundreds of
	 * instructions later, beyond the CPU's out-of-order window, so every miss costs its full
	 * latency. Without it, the CPU overlaps the reads of consecutive runs. */
	bits = bench_table_bits;
	if (bits < 1 || bits > BENCH_TABLE_BITS)
		return XDP_ABORTED;
	idx = (__u32)(((bench_table_reads++ + bench_table_sum) * 0x9e3779b97f4a7c15ULL) >>
	              (64 - bits));
	slot = bpf_map_lookup_elem(&bench_table, &idx);
	if (!slot)
		return XDP_ABORTED;
	bench_table_sum += slot->w[0];
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
