/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Common includes and helpers for every kxlb BPF program: UAPI headers only (no glibc). */
#ifndef KXLB_BPF_COMMON_H
#define KXLB_BPF_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include <kxlb/abi.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#ifndef offsetof
#define offsetof(type, member) __builtin_offsetof(type, member)
#endif

/* A single load the compiler may neither tear, repeat nor merge (for values userspace updates
 * while the program runs). */
#define READ_ONCE(x) (*(const volatile typeof(x) *)&(x))

#define NSEC_PER_SEC 1000000000ULL

/* What the datapath does with a frame, and the counted reason why. */
struct lb_verdict {
	int action;   /* XDP_* */
	__u32 reason; /* enum kxlb_reason */
};

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#endif /* KXLB_BPF_COMMON_H */
