// Runs a loaded XDP (or tc) program on a crafted frame with BPF_PROG_TEST_RUN: used by the bpf test tier,
// benchmarks, and (later) `kxlbctl trace`.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lib/result.hpp"

namespace kxlb {

struct XdpRun {
    std::uint32_t verdict = 0;       // XDP_PASS, XDP_TX, ...
    std::vector<std::uint8_t> data;  // the frame as the program left it
    std::uint32_t duration_ns = 0;   // kernel-measured mean time per repetition
};

struct XdpRunOptions {
    std::uint32_t repeat = 1;           // >1 reuses the (rewritten) buffer: see docs/development.md
    std::uint32_t ingress_ifindex = 0;  // 0: none (the program must not rely on it)
    std::size_t headroom_out = 256;     // extra output space for programs that grow the frame
};

Result<XdpRun> run_xdp(int prog_fd, std::span<const std::uint8_t> frame, const XdpRunOptions& opts = {});

// The same into a caller-owned output buffer (no allocation: for benchmark loops). out.data is
// ignored; on success `out_bytes` holds the output length.
struct XdpRunInto {
    std::uint32_t verdict = 0;
    std::uint32_t duration_ns = 0;
    std::size_t out_bytes = 0;
};
Result<XdpRunInto> run_xdp_into(int prog_fd, std::span<const std::uint8_t> frame, std::span<std::uint8_t> out,
                                const XdpRunOptions& opts = {});

// Runs a loaded tc (SCHED_CLS) program on a crafted frame: the kernel builds an skb from it (linear,
// CHECKSUM_NONE, skb->len = frame size). verdict is the program's TC_ACT_* return value.
struct TcRun {
    std::int32_t verdict = 0;
    std::vector<std::uint8_t> data;  // the packet as the program left it
};
Result<TcRun> run_tc(int prog_fd, std::span<const std::uint8_t> frame, std::size_t headroom_out = 256);

}  // namespace kxlb
