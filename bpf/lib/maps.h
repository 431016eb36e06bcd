/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Service maps shared by every kxlb program (XDP datapath and socket-LB hooks): configuration,
 * frontends, backends, Maglev tables. The socket-LB object reuses the XDP object's instances.
 * Keys and values come from include/kxlb/abi.h; docs/datapath.md lists who writes each map.
 */
#ifndef KXLB_BPF_MAPS_H
#define KXLB_BPF_MAPS_H

#include "lib/common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kxlb_config);
} kxlb_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KXLB_MAX_SERVICES);
	__type(key, struct kxlb_vip_key);
	__type(value, struct kxlb_service);
} kxlb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KXLB_MAX_VIP_ADDRS);
	__type(key, struct kxlb_vip_addr_key);
	__type(value, __u32); /* number of frontends on the address */
} kxlb_vip_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KXLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct kxlb_backend); /* family 0: unused id */
} kxlb_backends SEC(".maps");

struct kxlb_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KXLB_MAGLEV_HEADER_SLOTS + 2 * KXLB_MAX_MAGLEV_SIZE);
	/* Tables of every size fit the one outer map; userspace writes them through mmap. */
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, KXLB_MAX_SERVICES);
	__type(key, __u32);
	__array(values, struct kxlb_maglev_inner);
} kxlb_maglev SEC(".maps");

#endif /* KXLB_BPF_MAPS_H */
