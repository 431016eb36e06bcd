// The synthetic frame kxlbctl trace feeds to the datapath (Ethernet + IPv4/IPv6 + TCP/UDP with
// valid checksums) and the reading of the addresses/ports of the frame the program emits.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "ctl/views.hpp"

namespace kxlb::ctl {

struct FrameSpec {
    IpAddr src, dst;  // same family
    std::uint16_t sport = 0, dport = 0;
    std::uint8_t proto = 0;      // IPPROTO_TCP or IPPROTO_UDP
    std::uint8_t tcp_flags = 0;  // TCP only; ACK also sets the acknowledgment number
};

// Precondition: src and dst of one family, proto TCP or UDP.
std::vector<std::uint8_t> build_frame(const FrameSpec& spec);

// Addresses, protocol and (TCP/UDP) ports of an Ethernet frame; nullopt if it carries no IP packet
// or is truncated.
std::optional<TraceHeaders> parse_headers(std::span<const std::uint8_t> frame);

}  // namespace kxlb::ctl
