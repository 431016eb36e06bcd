/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The body of the benchmark floor (bpf/xdp_reflect.bpf.c), shared with bpf/xdp_lb_bench.bpf.c. */
#ifndef KXLB_BPF_REFLECT_MAIN_H
#define KXLB_BPF_REFLECT_MAIN_H

#include "lib/common.h"
#include "lib/parse.h"

static __always_inline int kxlb_reflect_main(struct xdp_md *ctx)
{
	struct cursor c;
	struct pkt pkt = {};
	void *data, *end;
	struct ethhdr *eth;
	__be16 *ports, port;
	__u8 mac[ETH_ALEN];
	__u32 l4_off;

	cursor_init(&c, ctx);
	if (parse_packet(&c, &pkt) || pkt.vlan_tags || !(pkt.flags & PKT_F_L4) ||
	    (pkt.l4_proto != IPPROTO_TCP && pkt.l4_proto != IPPROTO_UDP))
		return XDP_PASS;

	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	/* <= 14 + 60 without VLAN tags; the mask bounds it for the verifier */
	l4_off = pkt.l4_off & 0xff;
	ports = data + l4_off;
	if ((void *)(ports + 2) > end)
		return XDP_PASS;

	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);

	if (pkt.l3_proto == ETH_P_IP) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		ip->saddr = pkt.fl.daddr[0];
		ip->daddr = pkt.fl.saddr[0];
	} else {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		__builtin_memcpy(&ip6->saddr, pkt.fl.daddr, sizeof(ip6->saddr));
		__builtin_memcpy(&ip6->daddr, pkt.fl.saddr, sizeof(ip6->daddr));
	}
	port = ports[0];
	ports[0] = ports[1];
	ports[1] = port;
	return XDP_TX;
}

#endif /* KXLB_BPF_REFLECT_MAIN_H */
