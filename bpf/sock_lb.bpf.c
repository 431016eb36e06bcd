// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* kxlb socket-level load balancing: cgroup v2 sock_addr hooks for node-local clients. connect4/6
 * (TCP, connected UDP) and sendmsg4/6 (unconnected UDP) send a frontend's traffic straight to a
 * backend; recvmsg4/6 and getpeername4/6 make the backend look like the frontend again.
 */
#include "lib/common.h"
#include "lib/sock.h"

SEC("cgroup/connect4")
int kxlb_connect4(struct bpf_sock_addr *ctx)
{
	return sock_lb_forward(ctx, KXLB_SR_CONNECT, 0);
}

SEC("cgroup/connect6")
int kxlb_connect6(struct bpf_sock_addr *ctx)
{
	return sock_lb_forward(ctx, KXLB_SR_CONNECT, 1);
}

SEC("cgroup/sendmsg4")
int kxlb_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock_lb_forward(ctx, KXLB_SR_SENDMSG, 0);
}

SEC("cgroup/sendmsg6")
int kxlb_sendmsg6(struct bpf_sock_addr *ctx)
{
	return sock_lb_forward(ctx, KXLB_SR_SENDMSG, 1);
}

SEC("cgroup/recvmsg4")
int kxlb_recvmsg4(struct bpf_sock_addr *ctx)
{
	return sock_lb_reverse(ctx, KXLB_SR_RECVMSG, 0);
}

SEC("cgroup/recvmsg6")
int kxlb_recvmsg6(struct bpf_sock_addr *ctx)
{
	return sock_lb_reverse(ctx, KXLB_SR_RECVMSG, 1);
}

SEC("cgroup/getpeername4")
int kxlb_getpeername4(struct bpf_sock_addr *ctx)
{
	return sock_lb_reverse(ctx, KXLB_SR_GETPEERNAME, 0);
}

SEC("cgroup/getpeername6")
int kxlb_getpeername6(struct bpf_sock_addr *ctx)
{
	return sock_lb_reverse(ctx, KXLB_SR_GETPEERNAME, 1);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
