// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* kxlb tc egress entry for node NICs: reverse-translate the replies of flows the XDP datapath sent
 * to local backends (pods on this node, DNAT only): source backend -> frontend. Shares kxlb_ct and
 * kxlb_nat with bpf/xdp_lb.bpf.c; everything else leaves untouched. Every packet ends in one
 * counted kxlb_local_rev_reason.
 */
#include "lib/local_rev.h"

SEC("tc")
int kxlb_tc_local_rev(struct __sk_buff *skb)
{
	return kxlb_local_rev_main(skb);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
