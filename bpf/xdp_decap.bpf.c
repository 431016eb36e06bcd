// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* kxlb XDP entry for DSR backends: strip the IPIP / IP6IP6 header a kxlb balancer added toward one
 * of this node's decap addresses and pass the inner packet (addressed to a VIP bound locally) to
 * the stack; pass everything else untouched. Every frame ends in one counted kxlb_decap_reason.
 */
#include "lib/decap.h"

SEC("xdp")
int kxlb_xdp_decap(struct xdp_md *ctx)
{
	return kxlb_decap_main(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
