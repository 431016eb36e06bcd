/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The two flow maps: kxlb_ct (forward state) and kxlb_nat (reverse translation). Apart from the rest
 * of flow_maps.h so the local-backend tc egress program (bpf/tc_local_rev.bpf.c) declares only these
 * two and shares them with the XDP datapath (same names: pinned or fd-reused instances).
 */
#ifndef KXLB_BPF_CT_MAPS_H
#define KXLB_BPF_CT_MAPS_H

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

#endif /* KXLB_BPF_CT_MAPS_H */
