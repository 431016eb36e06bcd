// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Benchmark floor: the cheapest useful XDP forwarder. Parses the frame with the datapath's own
 * parser (lib/parse.h), then for untagged IPv4/IPv6 TCP/UDP swaps the MACs, the IP addresses and the
 * L4 ports and sends the frame back out of the NIC it came in on (XDP_TX). The checksums stay valid:
 * one's-complement sums do not depend on the order of the words. Everything else is passed.
 */
#include "lib/reflect_main.h"

SEC("xdp")
int kxlb_xdp_reflect(struct xdp_md *ctx)
{
	return kxlb_reflect_main(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
