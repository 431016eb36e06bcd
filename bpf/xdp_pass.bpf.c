// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Trivial XDP_PASS program. Attached to veth peers so that native XDP_TX/REDIRECT into the veth
 * works (the kernel requires an XDP program on the receiving peer), and used as the zero baseline
 * in benchmarks.
 */
#include "lib/common.h"

SEC("xdp")
int kxlb_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
