// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* kxlb XDP entry for node NICs: parse every frame and count what was seen; load-balance frames for
 * frontends (full-NAT toward a Maglev-chosen backend) and reverse-translate their replies; pass
 * everything else untouched. Every frame ends in one counted kxlb_reason.
 */
#include "lib/xdp_lb_main.h"

SEC("xdp")
int kxlb_xdp_lb(struct xdp_md *ctx)
{
	return kxlb_xdp_lb_main(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
