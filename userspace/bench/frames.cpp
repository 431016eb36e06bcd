// Frame writer for the benchmarks: headers, lengths and Internet checksums (RFC 1071) for IPv4/IPv6 TCP/UDP.
#include "bench/frames.hpp"

#include <netinet/in.h>

#include <cstdio>
#include <cstring>

namespace kxlb::bench {

namespace {

constexpr std::size_t kEthLen = 14, kIp4Len = 20, kIp6Len = 40, kTcpLen = 20, kUdpLen = 8;

void put16(std::uint8_t* p, std::uint16_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
}

// One's-complement sum of big-endian 16-bit words (odd tail padded with zero), not folded.
std::uint64_t sum16(const std::uint8_t* p, std::size_t len) {
    std::uint64_t s = 0;
    for (std::size_t i = 0; i + 1 < len; i += 2) s += static_cast<std::uint64_t>(p[i] << 8 | p[i + 1]);
    if (len & 1) s += static_cast<std::uint64_t>(p[len - 1] << 8);
    return s;
}

std::uint16_t fold(std::uint64_t s) {
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<std::uint16_t>(~s & 0xffff);
}

}  // namespace

Result<MacAddr> parse_mac(std::string_view text) {
    MacAddr m{};
    unsigned v[6];
    std::string s(text);
    char tail = 0;
    if (text.size() != 17 ||
        std::sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6)
        return Error::invalid("'" + s + "' is not a MAC address");
    for (int i = 0; i < 6; ++i) m[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v[i]);
    return m;
}

FrameLayout layout_of(const FrameSpec& spec) {
    FrameLayout l;
    const bool v4 = spec.saddr.family == AF_INET;
    l.l3_off = kEthLen;
    l.saddr_off = kEthLen + (v4 ? 12 : 8);
    l.daddr_off = kEthLen + (v4 ? 16 : 24);
    l.l4_off = kEthLen + (v4 ? kIp4Len : kIp6Len);
    l.sport_off = l.l4_off;
    l.dport_off = l.l4_off + 2;
    l.l4_csum_off = l.l4_off + (spec.proto == IPPROTO_TCP ? 16 : 6);
    l.size = l.l4_off + (spec.proto == IPPROTO_TCP ? kTcpLen : kUdpLen) + spec.payload;
    return l;
}

void write_frame(const FrameSpec& spec, std::vector<std::uint8_t>& out) {
    const FrameLayout l = layout_of(spec);
    const bool v4 = spec.saddr.family == AF_INET;
    const std::size_t addr_len = v4 ? 4 : 16;
    const std::size_t l4_len = l.size - l.l4_off;
    out.assign(l.size, 0);
    std::uint8_t* f = out.data();

    std::memcpy(f, spec.dst_mac.data(), 6);
    std::memcpy(f + 6, spec.src_mac.data(), 6);
    put16(f + 12, v4 ? 0x0800 : 0x86dd);

    std::uint8_t* ip = f + l.l3_off;
    if (v4) {
        ip[0] = 0x45;
        put16(ip + 2, static_cast<std::uint16_t>(kIp4Len + l4_len));
        ip[8] = spec.ttl;
        ip[9] = spec.proto;
    } else {
        ip[0] = 0x60;
        put16(ip + 4, static_cast<std::uint16_t>(l4_len));
        ip[6] = spec.proto;
        ip[7] = spec.ttl;
    }
    std::memcpy(f + l.saddr_off, spec.saddr.bytes.data(), addr_len);
    std::memcpy(f + l.daddr_off, spec.daddr.bytes.data(), addr_len);
    if (v4) put16(ip + 10, fold(sum16(ip, kIp4Len)));

    std::uint8_t* l4 = f + l.l4_off;
    put16(l4, spec.sport);
    put16(l4 + 2, spec.dport);
    if (spec.proto == IPPROTO_TCP) {
        put16(l4 + 4, 0);
        l4[7] = 1;  // seq 1
        if (spec.tcp_flags & kTcpAck) l4[11] = 1;
        l4[12] = 5 << 4;
        l4[13] = spec.tcp_flags;
        put16(l4 + 14, 65535);
    } else {
        put16(l4 + 4, static_cast<std::uint16_t>(l4_len));
    }
    // Pseudo-header: addresses, protocol, L4 length.
    std::uint64_t s = sum16(f + l.saddr_off, addr_len) + sum16(f + l.daddr_off, addr_len) + spec.proto + l4_len;
    s += sum16(l4, l4_len);
    std::uint16_t c = fold(s);
    if (spec.proto == IPPROTO_UDP && c == 0) c = 0xffff;
    put16(f + l.l4_csum_off, c);
}

}  // namespace kxlb::bench
