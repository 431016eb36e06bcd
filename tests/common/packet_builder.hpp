// Test-support packet builder: assembles Ethernet/VLAN/IPv4/IPv6/TCP/UDP/ICMP frames with correct (or deliberately
// broken) lengths and checksums, plus hex dump and frame diff helpers for golden-packet test failure messages.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace kxlb::test {

using Bytes = std::vector<std::uint8_t>;

// An Ethernet address. parse() accepts exactly six colon-separated two-digit hex octets ("02:00:00:00:00:01",
// either case) and throws std::invalid_argument on anything else.
struct Mac {
    std::array<std::uint8_t, 6> b{};

    static Mac parse(std::string_view s);
    std::string to_string() const;  // lower-case "02:00:00:00:00:01"
    friend bool operator==(const Mac&, const Mac&) = default;
};

// Dotted-quad / RFC 4291 text to network-order bytes. Throw std::invalid_argument on bad input.
std::array<std::uint8_t, 4> ipv4_addr(std::string_view s);
std::array<std::uint8_t, 16> ipv6_addr(std::string_view s);

// TCP flag bits (byte 13 of the header).
inline constexpr std::uint8_t TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_RST = 0x04, TCP_PSH = 0x08, TCP_ACK = 0x10;
inline constexpr std::uint8_t TCP_URG = 0x20, TCP_ECE = 0x40, TCP_CWR = 0x80;

struct Ipv4Opts {
    std::uint8_t ttl = 64;
    std::uint8_t tos = 0;
    std::uint16_t id = 0;
    bool df = false;
    bool mf = false;
    std::uint16_t frag_offset = 0;  // in 8-byte units, <= 0x1fff
    Bytes options;                  // raw option bytes (<= 40), padded by the builder to a multiple of 4 with EOL(0)
    // Overrides: when set, written verbatim instead of the computed value (to build malformed packets). The header
    // checksum is still computed over the overridden fields unless `checksum` itself is overridden.
    std::optional<std::uint8_t> version, ihl, protocol;  // version/ihl: low 4 bits used
    std::optional<std::uint16_t> tot_len, checksum;
};

struct Ipv6Opts {
    std::uint8_t hop_limit = 64;
    std::uint8_t traffic_class = 0;
    std::uint32_t flow_label = 0;  // <= 0xfffff
    // next_header override (e.g. 0 = hop-by-hop) without adding an extension header; version: low 4 bits used.
    std::optional<std::uint8_t> version, next_header;
    std::optional<std::uint16_t> payload_len;
};

struct TcpOpts {
    std::uint8_t flags = TCP_SYN;
    std::uint32_t seq = 1;
    std::uint32_t ack = 0;
    std::uint16_t window = 65535;
    Bytes options;                            // raw option bytes (<= 40), padded to a multiple of 4 with NOP(1)
    std::optional<std::uint8_t> data_offset;  // in 32-bit words (low 4 bits used), override
    std::optional<std::uint16_t> checksum;
};

// A length override shorter than the datagram but >= 8 limits what the computed checksum covers (and its
// pseudo-header length) to the claimed bytes, so the length mismatch is the frame's only inconsistency.
struct UdpOpts {
    std::optional<std::uint16_t> length, checksum;  // checksum override; IPv4 may legitimately use 0 = "no checksum"
};

// A built frame. Offsets index `bytes`.
struct Packet {
    Bytes bytes;
    std::size_t l3_off = 0;        // first IP header (or the end of the L2 headers when there is none)
    std::size_t l4_off = 0;        // TCP/UDP/ICMP header (or the end of the innermost IP headers when there is none)
    std::size_t payload_off = 0;   // first payload byte (== end of all headers when the payload is empty)
    std::size_t inner_l3_off = 0;  // addition: innermost IP header (== l3_off unless tunnelled)

    std::size_t size() const;
    // Corrupt/patch any field after building (no checksum fix-up): offsets are absolute, values are written in
    // network order. Throw std::out_of_range when the field does not fit inside the frame.
    Packet& set_u8(std::size_t off, std::uint8_t v);
    Packet& set_be16(std::size_t off, std::uint16_t v);
    Packet& set_be32(std::size_t off, std::uint32_t v);
    Packet& truncate(std::size_t new_size);  // throws std::out_of_range if larger than size()
    std::span<const std::uint8_t> span() const;

    // Additions: network-order readers (throw std::out_of_range past the end) and a view from `off` to the end
    // (e.g. `inner.span_from(inner.l3_off)` to quote a datagram in an ICMP error). span_from(size()) is empty.
    std::uint8_t u8(std::size_t off) const;
    std::uint16_t be16(std::size_t off) const;
    std::uint32_t be32(std::size_t off) const;
    std::span<const std::uint8_t> span_from(std::size_t off) const;  // throws std::out_of_range if off > size()
};

// Builds a frame layer by layer, outermost first: eth, then optional vlan()s, then ipv4/ipv6 (may be repeated for
// IPIP / IP6IP6 / 4in6 / 6in4 tunnels: the outer header's protocol/next-header becomes 4 or 41), optionally followed
// by ipv6_ext()s after an ipv6, then tcp/udp/icmp, then payload. Lengths, ethertypes, protocol numbers and all
// checksums (IPv4 header, TCP, UDP, ICMP, ICMPv6 with the IPv6 pseudo-header) are computed at build() unless
// overridden.
//
// Errors: bad argument values (addresses, vid > 4095, pcp > 7, flow label > 0xfffff, options > 40 bytes,
// frag_offset > 0x1fff) throw std::invalid_argument from the call itself; impossible layering (two L4 headers,
// eth() not first, vlan() after IP, L4 without IP, a header after payload(), ipv6_ext() not after IPv6...) throws
// std::logic_error from build().
//
// Defaults when a layer does not say: eth src 02:00:00:00:00:01 / dst 02:00:00:00:00:02; the ethertype after the
// L2 headers is that of the first IP header, or 0x88B5 (IEEE 802 local experimental) when there is none; an IP
// header with no L4/IP header after it gets protocol 253 (RFC 3692 experimental) for IPv4 and next header 59
// (No Next Header) for IPv6. A UDP checksum that computes to 0 is sent as 0xffff (RFC 768).
class PacketBuilder {
public:
    PacketBuilder& eth(Mac src, Mac dst);
    PacketBuilder& eth_type(std::uint16_t ethertype);  // override the (innermost) ethertype, e.g. ARP 0x0806
    PacketBuilder& vlan(std::uint16_t vid, std::uint8_t pcp = 0, std::uint16_t tpid = 0x8100);
    PacketBuilder& ipv4(std::string_view src, std::string_view dst, Ipv4Opts opts = {});
    PacketBuilder& ipv6(std::string_view src, std::string_view dst, Ipv6Opts opts = {});
    // Addition: an IPv6 extension header after ipv6() (or another ipv6_ext()). The builder writes the next-header
    // byte and the length byte, then `body`, zero-padded so the header is a multiple of 8 bytes: hdr ext len in
    // 8-octet units for hop-by-hop (0), routing (43), destination options (60) and anything else; reserved byte
    // 0 for fragment (44; body = frag offset/flags (2) + id (4)); 4-octet units minus 2 for AH (51).
    PacketBuilder& ipv6_ext(std::uint8_t type, Bytes body = {});
    PacketBuilder& tcp(std::uint16_t sport, std::uint16_t dport, TcpOpts opts = {});
    PacketBuilder& udp(std::uint16_t sport, std::uint16_t dport, UdpOpts opts = {});
    PacketBuilder& icmp(std::uint8_t type, std::uint8_t code, std::uint32_t rest = 0);  // ICMPv4 after ipv4(),
                                                                                        // ICMPv6 after ipv6()
    // Appends to the payload (repeated calls concatenate).
    PacketBuilder& payload(std::span<const std::uint8_t> data);
    PacketBuilder& payload(std::string_view text);
    PacketBuilder& payload(std::initializer_list<std::uint8_t> data);  // addition: payload({0xde, 0xad})
    // Addition: append zero bytes after everything (not counted in any length field) until the frame is at
    // least min_size bytes, e.g. pad_to(60) for Ethernet minimum-size padding.
    PacketBuilder& pad_to(std::size_t min_size);

    Packet build() const;  // throws std::logic_error on impossible layering (e.g. tcp() twice)

private:
    struct EthL {
        Mac src, dst;
    };
    struct VlanL {
        std::uint16_t vid;
        std::uint8_t pcp;
        std::uint16_t tpid;
    };
    struct Ip4L {
        std::array<std::uint8_t, 4> src, dst;
        Ipv4Opts opts;
    };
    struct Ip6L {
        std::array<std::uint8_t, 16> src, dst;
        Ipv6Opts opts;
    };
    struct ExtL {
        std::uint8_t type;
        Bytes body;
    };
    struct TcpL {
        std::uint16_t sport, dport;
        TcpOpts opts;
    };
    struct UdpL {
        std::uint16_t sport, dport;
        UdpOpts opts;
    };
    struct IcmpL {
        std::uint8_t type, code;
        std::uint32_t rest;
    };
    struct PayloadL {
        Bytes data;
    };
    using Layer = std::variant<EthL, VlanL, Ip4L, Ip6L, ExtL, TcpL, UdpL, IcmpL, PayloadL>;

    std::vector<Layer> layers_;
    std::optional<std::uint16_t> eth_type_;
    std::size_t pad_to_ = 0;
};

// Convenience one-liners used all over golden tests: default Ethernet, one IP header, TCP (seq 1, window 65535)
// or UDP, and the payload text. Throw std::invalid_argument on bad addresses.
Packet tcp4(std::string_view src, std::uint16_t sport, std::string_view dst, std::uint16_t dport,
            std::uint8_t flags = TCP_SYN, std::string_view payload = {});
Packet udp4(std::string_view src, std::uint16_t sport, std::string_view dst, std::uint16_t dport,
            std::string_view payload = {});
Packet tcp6(std::string_view src, std::uint16_t sport, std::string_view dst, std::uint16_t dport,
            std::uint8_t flags = TCP_SYN, std::string_view payload = {});
Packet udp6(std::string_view src, std::uint16_t sport, std::string_view dst, std::uint16_t dport,
            std::string_view payload = {});

// Hex dump, 16 bytes a line: "0000  45 00 00 73 00 00 40 00  40 11 b8 61 c0 a8 00 01  |E..s..@.@..a....|".
std::string hexdump(std::span<const std::uint8_t> data);
// "" when equal; otherwise a report naming the first differing offset (in decimal and hex, with the protocol
// field it falls in, e.g. "ipv4.ttl"), the sizes, the number of differing bytes, and the differing 16-byte rows
// of both frames.
std::string diff_frames(std::span<const std::uint8_t> expected, std::span<const std::uint8_t> actual);

}  // namespace kxlb::test
