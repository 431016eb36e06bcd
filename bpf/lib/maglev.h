/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Backend resolution shared by the XDP datapath and the socket-LB hooks: backend ids to backends,
 * and a slot of a service's Maglev table (see KXLB_MAGLEV_SIZE_SLOT in the ABI).
 */
#ifndef KXLB_BPF_MAGLEV_H
#define KXLB_BPF_MAGLEV_H

#include "lib/common.h"
#include "lib/maps.h"

static __always_inline struct kxlb_backend *backend_get(__u32 id)
{
	struct kxlb_backend *be = bpf_map_lookup_elem(&kxlb_backends, &id);

	return be && be->family ? be : NULL;
}

/* Picks a backend id from the service's Maglev table. Returns 0, KXLB_R_DROP_NO_BACKEND (no table:
 * the caller answers with ICMP unreachable) or KXLB_R_DROP_BACKEND_MISSING. */
static __always_inline int maglev_pick(__u32 svc_id, __u32 hash, __u32 *bid)
{
	void *table = bpf_map_lookup_elem(&kxlb_maglev, &svc_id);
	__u32 key = KXLB_MAGLEV_SIZE_SLOT;
	__u32 *size, *base, *slot;

	if (!table)
		return KXLB_R_DROP_NO_BACKEND;
	size = bpf_map_lookup_elem(table, &key);
	if (!size || *size == 0)
		return KXLB_R_DROP_NO_BACKEND;
	key = KXLB_MAGLEV_ACTIVE_SLOT;
	base = bpf_map_lookup_elem(table, &key);
	if (!base)
		return KXLB_R_DROP_BACKEND_MISSING;
	/* One load of the active half: the slot read below belongs to that table. */
	key = READ_ONCE(*base) + hash % *size;
	slot = bpf_map_lookup_elem(table, &key);
	if (!slot)
		return KXLB_R_DROP_BACKEND_MISSING;
	*bid = *slot;
	return 0;
}

#endif /* KXLB_BPF_MAGLEV_H */
