/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Socket-level load balancing: frontend -> backend at connect()/sendmsg(), and the reverse mapping
 * that makes recvmsg()/getpeername() show the frontend: per-socket local storage for connected
 * sockets, an LRU map keyed by socket cookie and backend for unconnected UDP. Shares the service
 * maps with the XDP datapath (lib/maps.h); its own maps are below.
 */
#ifndef KXLB_BPF_SOCK_H
#define KXLB_BPF_SOCK_H

#include "lib/common.h"
#include "lib/maglev.h"
#include "lib/maps.h"

#define KXLB_SOCK_REV_ENTRIES 262144

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KXLB_SOCK_REV_ENTRIES);
	__type(key, struct kxlb_sock_rev_key);
	__type(value, struct kxlb_sock_rev_value);
} kxlb_sock_rev SEC(".maps");

/* Connected sockets remember their frontend here: no LRU churn, freed when the socket closes. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kxlb_sock_peer);
} kxlb_sock_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KXLB_SOCK_REASON_MAX);
	__type(key, __u32);
	__type(value, __u64);
} kxlb_sock_reasons SEC(".maps");

/* Connections (and unconnected datagrams) balanced, per service id and per backend id. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KXLB_MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u64);
} kxlb_sock_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KXLB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, __u64);
} kxlb_sock_backend_stats SEC(".maps");

#ifndef SOCK_STREAM
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#endif
#define ECONNREFUSED 111

static __always_inline __u32 sock_cookie_hash(__u64 cookie)
{
	cookie ^= cookie >> 33;
	cookie *= 0xff51afd7ed558ccdULL;
	cookie ^= cookie >> 33;
	return (__u32)cookie;
}

static __always_inline void sock_count(void *map, __u32 key)
{
	__u64 *c = bpf_map_lookup_elem(map, &key);

	if (c)
		(*c)++;
}

/* A socket address in ABI form (IPv4 in addr[0]). */
struct sock_addr {
	__be32 addr[4];
	__be16 port;
	__u8 family; /* of the service: KXLB_AF_INET or KXLB_AF_INET6 */
	__u8 mapped; /* IPv4 reached through an IPv4-mapped IPv6 address */
};

enum sock_pick {
	SOCK_PICK_NOT_SERVICE, /* not a socket-LB frontend: leave the call alone */
	SOCK_PICK_OK,
	SOCK_PICK_REFUSE, /* frontend without a usable backend: fail the call */
};

/* Chooses a backend for dst (a frontend) and rewrites *dst to it, through the service's Maglev
 * table (slots are shared out by weight; removed backends have none) at slot hash % size. */
static __always_inline enum sock_pick sock_lb_pick(struct sock_addr *dst, __u8 proto, __u32 hash,
                                                   __u32 *svc_id)
{
	struct kxlb_vip_key vk = {};
	struct kxlb_service *svc;
	struct kxlb_backend *be;
	__u32 bid;
	int r;

	__builtin_memcpy(vk.addr, dst->addr, 16);
	vk.port = dst->port;
	vk.proto = proto;
	vk.family = dst->family;
	svc = bpf_map_lookup_elem(&kxlb_services, &vk);
	if (!svc || !(svc->flags & KXLB_SVC_F_SOCKET_LB))
		return SOCK_PICK_NOT_SERVICE;
	*svc_id = svc->id;
	r = maglev_pick(svc->id, hash, &bid);
	if (r) {
		sock_count(&kxlb_sock_reasons, r == KXLB_R_DROP_NO_BACKEND ?
		                                       KXLB_SR_FAIL_NO_BACKEND :
		                                       KXLB_SR_FAIL_BACKEND_MISSING);
		return SOCK_PICK_REFUSE;
	}
	be = backend_get(bid);
	if (!be || be->family != dst->family) {
		sock_count(&kxlb_sock_reasons, KXLB_SR_FAIL_BACKEND_MISSING);
		return SOCK_PICK_REFUSE;
	}
	__builtin_memcpy(dst->addr, be->addr, 16);
	dst->port = be->port;
	sock_count(&kxlb_sock_svc_stats, svc->id);
	sock_count(&kxlb_sock_backend_stats, bid);
	return SOCK_PICK_OK;
}

/* Reads the address of a sock_addr hook; IPv4-mapped IPv6 addresses become IPv4. v6 must be a
 * compile-time constant: the verifier rejects any user_ip6 access in IPv4 hooks (and vice versa),
 * even on a path that never runs. */
static __always_inline void sock_addr_read(struct bpf_sock_addr *ctx, struct sock_addr *a,
                                           const int v6)
{
	a->port = (__be16)ctx->user_port;
	if (!v6) {
		a->family = KXLB_AF_INET;
		a->addr[0] = ctx->user_ip4;
		a->addr[1] = 0;
		a->addr[2] = 0;
		a->addr[3] = 0;
		a->mapped = 0;
		return;
	}
	a->addr[0] = ctx->user_ip6[0];
	a->addr[1] = ctx->user_ip6[1];
	a->addr[2] = ctx->user_ip6[2];
	a->addr[3] = ctx->user_ip6[3];
	a->mapped = a->addr[0] == 0 && a->addr[1] == 0 && a->addr[2] == bpf_htonl(0xffff);
	if (a->mapped) {
		a->family = KXLB_AF_INET;
		a->addr[0] = a->addr[3];
		a->addr[2] = 0;
		a->addr[3] = 0;
	} else {
		a->family = KXLB_AF_INET6;
	}
}

/* Writes a (possibly IPv4-mapped) address back into the hook's context. */
static __always_inline void sock_addr_write(struct bpf_sock_addr *ctx, const struct sock_addr *a,
                                            const int v6)
{
	ctx->user_port = (__u32)a->port;
	if (!v6) {
		ctx->user_ip4 = a->addr[0];
		return;
	}
	if (a->mapped) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = a->addr[0];
		return;
	}
	ctx->user_ip6[0] = a->addr[0];
	ctx->user_ip6[1] = a->addr[1];
	ctx->user_ip6[2] = a->addr[2];
	ctx->user_ip6[3] = a->addr[3];
}

static __always_inline void sock_rev_key(struct kxlb_sock_rev_key *k, struct bpf_sock_addr *ctx,
                                         const struct sock_addr *a)
{
	k->cookie = bpf_get_socket_cookie(ctx);
	__builtin_memcpy(k->addr, a->addr, 16);
	k->port = a->port;
	k->family = a->family;
}

/* connect() and unconnected sendmsg(): frontend -> backend. Returns the hook verdict. */
static __always_inline int sock_lb_forward(struct bpf_sock_addr *ctx, __u32 reason, const int v6)
{
	struct kxlb_sock_rev_value rv = {};
	struct kxlb_sock_rev_key rk = {};
	struct sock_addr a;
	__u32 svc_id = 0, hash;
	__u8 proto;

	if (ctx->type == SOCK_STREAM)
		proto = IPPROTO_TCP;
	else if (ctx->type == SOCK_DGRAM)
		proto = IPPROTO_UDP;
	else
		return 1;
	sock_addr_read(ctx, &a, v6);
	__builtin_memcpy(rv.addr, a.addr, 16);
	rv.port = a.port;
	/* connect(): a random weighted choice per connection. Unconnected sendmsg(): keyed by the socket,
	 * so every datagram a socket sends to a frontend reaches the same backend (request/response
	 * protocols that span several datagrams keep working) while the table stays the same. */
	hash = reason == KXLB_SR_SENDMSG ? sock_cookie_hash(bpf_get_socket_cookie(ctx)) :
	                                   bpf_get_prandom_u32();
	switch (sock_lb_pick(&a, proto, hash, &svc_id)) {
	case SOCK_PICK_NOT_SERVICE:
		return 1;
	case SOCK_PICK_REFUSE:
		bpf_set_retval(-ECONNREFUSED); /* fail fast, as a TCP RST would */
		return 0;
	case SOCK_PICK_OK:
		break;
	}
	rv.svc_id = svc_id;
	if (reason == KXLB_SR_CONNECT) {
		struct kxlb_sock_peer *peer = bpf_sk_storage_get(&kxlb_sock_peer, ctx->sk, 0,
		                                                 BPF_SK_STORAGE_GET_F_CREATE);

		if (peer) {
			__builtin_memcpy(peer->backend, a.addr, 16);
			__builtin_memcpy(peer->frontend, rv.addr, 16);
			peer->backend_port = a.port;
			peer->frontend_port = rv.port;
			peer->svc_id = svc_id;
		} else {
			sock_count(&kxlb_sock_reasons, KXLB_SR_FAIL_REV_UPDATE);
		}
	} else {
		sock_rev_key(&rk, ctx, &a);
		if (bpf_map_update_elem(&kxlb_sock_rev, &rk, &rv, BPF_ANY))
			sock_count(&kxlb_sock_reasons, KXLB_SR_FAIL_REV_UPDATE);
	}
	sock_addr_write(ctx, &a, v6);
	sock_count(&kxlb_sock_reasons, reason);
	return 1;
}

/* recvmsg() and getpeername(): backend -> the frontend this socket used. */
static __always_inline int sock_lb_reverse(struct bpf_sock_addr *ctx, __u32 reason, const int v6)
{
	struct kxlb_sock_rev_key rk = {};
	struct kxlb_sock_rev_value *rv;
	struct kxlb_sock_peer *peer;
	struct sock_addr a;

	sock_addr_read(ctx, &a, v6);
	peer = bpf_sk_storage_get(&kxlb_sock_peer, ctx->sk, 0, 0);
	if (peer && peer->backend_port == a.port && peer->backend[0] == a.addr[0] &&
	    peer->backend[1] == a.addr[1] && peer->backend[2] == a.addr[2] &&
	    peer->backend[3] == a.addr[3]) {
		__builtin_memcpy(a.addr, peer->frontend, 16);
		a.port = peer->frontend_port;
	} else {
		sock_rev_key(&rk, ctx, &a);
		rv = bpf_map_lookup_elem(&kxlb_sock_rev, &rk);
		if (!rv)
			return 1;
		__builtin_memcpy(a.addr, rv->addr, 16);
		a.port = rv->port;
	}
	sock_addr_write(ctx, &a, v6);
	sock_count(&kxlb_sock_reasons, reason);
	return 1;
}

#endif /* KXLB_BPF_SOCK_H */
