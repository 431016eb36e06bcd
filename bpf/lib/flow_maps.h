/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps of the XDP datapath only: connection tracking (forward and reverse NAT), TX ports and the
 * frontend filter. */
#ifndef KXLB_BPF_FLOW_MAPS_H
#define KXLB_BPF_FLOW_MAPS_H

#include "lib/common.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KXLB_DEFAULT_CT_ENTRIES);
	__type(key, struct kxlb_flow_key);
	__type(value, struct kxlb_ct_value);
} kxlb_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KXLB_DEFAULT_CT_ENTRIES);
	__type(key, struct kxlb_flow_key);
	__type(value, struct kxlb_nat_value);
} kxlb_nat SEC(".maps");

/* Interfaces the datapath may redirect to (ifindex -> devmap value), written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} kxlb_tx_ports SEC(".maps");

/* One entry: the bitmap of frontend (address, port, protocol) hashes, written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kxlb_frontend_filter);
} kxlb_frontend_filter SEC(".maps");

#endif /* KXLB_BPF_FLOW_MAPS_H */
