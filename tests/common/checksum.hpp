// Independent frame verifier for tests: re-parses a frame from its bytes and checks every checksum and length field
// it can, without using any of the packet builder's code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace kxlb::test {

// RFC 1071 one's-complement sum over data (big-endian 16-bit words, an odd final byte padded with a zero low
// byte), plus `initial`, folded to 16 bits, NOT complemented. A region whose stored checksum is valid sums to 0xffff.
std::uint16_t ones_complement_sum(std::span<const std::uint8_t> data, std::uint32_t initial = 0);

// Walks Ethernet, 802.1Q/802.1ad tags (TPID 0x8100, 0x88a8, 0x9100), IPv4 / IPv6 (incl. nested IPIP/IP6IP6/4in6/
// 6in4 tunnels and IPv6 hop-by-hop/routing/fragment/destination-options/AH extension headers), TCP, UDP, ICMP,
// ICMPv6, and checks every checksum it can: IPv4 header; TCP; UDP (IPv4 checksum 0 = none is valid; IPv6 checksum
// 0 is an error); ICMP over the whole ICMP message; ICMPv6 with pseudo-header. Also checks length-field
// consistency: IPv4 tot_len / IPv6 payload_len vs bytes present (trailing bytes are allowed after the outermost IP
// packet as Ethernet padding, but not inside a tunnel), UDP length vs IP payload, IHL / TCP data offset >= 5.
// Returns one human-readable string per problem (naming the layer, e.g. "tcp checksum ...", "ipv4#2 header
// checksum ..." for the inner header of a tunnel), empty when all valid. Frames whose headers are truncated
// produce a "truncated ..." error and the walk stops there. Unknown ethertypes / protocols are not errors; L4 of
// IP fragments and the data quoted inside ICMP messages are not checked.
std::vector<std::string> checksum_errors(std::span<const std::uint8_t> frame);

// Addition: names the protocol field containing byte `off` of `frame`, from the same walk, e.g. "eth.src[3]",
// "vlan.tci[0]", "ipv4.ttl", "ipv4#2.daddr[1]", "tcp.flags", "udp payload+5", "trailer+2" (after the outermost IP
// packet), "beyond end" (off >= frame.size()). Never throws.
std::string describe_offset(std::span<const std::uint8_t> frame, std::size_t off);

}  // namespace kxlb::test
