/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps of the XDP datapath only: connection tracking (forward and reverse NAT), TX ports and the
 * frontend filter. */
#ifndef KXLB_BPF_FLOW_MAPS_H
#define KXLB_BPF_FLOW_MAPS_H

#include "lib/common.h"
#include "lib/ct_maps.h" /* kxlb_ct, kxlb_nat */

/* Next hops toward backends for new flows (see struct kxlb_nh_cache_entry); datapath-private. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KXLB_NH_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct kxlb_nh_cache_entry);
} kxlb_nh_cache SEC(".maps");

/* Client prefixes allowed into services with KXLB_SVC_F_SOURCE_RANGES, written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, KXLB_MAX_SOURCE_RANGES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct kxlb_src_range_key);
	__type(value, __u32);
} kxlb_source_ranges SEC(".maps");

/* Session affinity: (service, client address) -> backend, written by the datapath. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KXLB_DEFAULT_AFFINITY_ENTRIES);
	__type(key, struct kxlb_affinity_key);
	__type(value, struct kxlb_affinity_value);
} kxlb_affinity SEC(".maps");

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
