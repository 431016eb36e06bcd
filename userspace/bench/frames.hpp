// Minimal frame writer for the benchmarks: Ethernet + IPv4/IPv6 + TCP/UDP with correct lengths and
// checksums, written into a caller-owned buffer so per-iteration frames (a fresh 5-tuple per BPF_PROG_TEST_RUN
// call) cost no allocation. The test tier has a richer builder (tests/common); the bench must not depend on it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "lib/lb_types.hpp"
#include "lib/result.hpp"

namespace kxlb::bench {

using MacAddr = std::array<std::uint8_t, 6>;

// "02:00:00:00:00:01" -> bytes.
Result<MacAddr> parse_mac(std::string_view text);

inline constexpr std::uint8_t kTcpSyn = 0x02, kTcpAck = 0x10;

struct FrameSpec {
    MacAddr dst_mac{};
    MacAddr src_mac{};
    IpAddr saddr;  // saddr and daddr of one family
    IpAddr daddr;
    std::uint8_t proto = IPPROTO_TCP;  // IPPROTO_TCP or IPPROTO_UDP
    std::uint16_t sport = 0;           // host order
    std::uint16_t dport = 0;
    std::uint8_t tcp_flags = kTcpSyn;
    std::size_t payload = 0;  // zero bytes after the L4 header
    std::uint8_t ttl = 64;
};

// Byte offsets inside a frame written from a FrameSpec (no VLAN tags, no IP options).
struct FrameLayout {
    std::size_t l3_off = 14;
    std::size_t l4_off = 0;
    std::size_t saddr_off = 0;
    std::size_t daddr_off = 0;
    std::size_t sport_off = 0;
    std::size_t dport_off = 0;
    std::size_t l4_csum_off = 0;
    std::size_t size = 0;  // whole frame
};

FrameLayout layout_of(const FrameSpec& spec);

// Writes the frame into out (resized to the frame's size); every length and checksum is computed.
void write_frame(const FrameSpec& spec, std::vector<std::uint8_t>& out);

}  // namespace kxlb::bench
