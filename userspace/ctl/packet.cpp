// Building and reading trace frames.
#include "ctl/packet.hpp"

#include <netinet/in.h>

#include <cassert>
#include <cstring>

namespace kxlb::ctl {

namespace {

constexpr std::size_t kEthLen = 14, kIpv4Len = 20, kIpv6Len = 40, kTcpLen = 20, kUdpLen = 8;
constexpr std::uint8_t kTcpAck = 0x10;
constexpr std::uint8_t kUdpPayload[] = {'k', 'x', 'l', 'b', 't', 'r', 'c', 'e'};

void put16(std::uint8_t* p, std::uint16_t v) {
    p[0] = static_cast<std::uint8_t>(v >> 8);
    p[1] = static_cast<std::uint8_t>(v);
}

void put32(std::uint8_t* p, std::uint32_t v) {
    put16(p, static_cast<std::uint16_t>(v >> 16));
    put16(p + 2, static_cast<std::uint16_t>(v));
}

std::uint16_t get16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

// One's complement sum of 16-bit big-endian words.
std::uint32_t sum16(const std::uint8_t* p, std::size_t len, std::uint32_t acc = 0) {
    for (std::size_t i = 0; i + 1 < len; i += 2) acc += get16(p + i);
    if (len & 1) acc += static_cast<std::uint32_t>(p[len - 1]) << 8;
    return acc;
}

std::uint16_t fold(std::uint32_t acc) {
    while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<std::uint16_t>(~acc & 0xffff);
}

std::size_t addr_len(const IpAddr& a) { return a.family == AF_INET6 ? 16 : 4; }

}  // namespace

std::vector<std::uint8_t> build_frame(const FrameSpec& s) {
    assert(s.src.family == s.dst.family && (s.proto == IPPROTO_TCP || s.proto == IPPROTO_UDP));
    const bool v6 = s.src.family == AF_INET6;
    const std::size_t l3 = v6 ? kIpv6Len : kIpv4Len;
    const std::size_t l4 = s.proto == IPPROTO_TCP ? kTcpLen : kUdpLen + sizeof kUdpPayload;
    std::vector<std::uint8_t> f(kEthLen + l3 + l4, 0);

    const std::uint8_t dmac[6] = {0x02, 0, 0, 0, 0, 0x01}, smac[6] = {0x02, 0, 0, 0, 0, 0x02};
    std::memcpy(&f[0], dmac, 6);
    std::memcpy(&f[6], smac, 6);
    put16(&f[12], v6 ? 0x86dd : 0x0800);

    std::uint8_t* ip = &f[kEthLen];
    const std::size_t alen = addr_len(s.src);
    std::uint8_t* src = ip + (v6 ? 8 : 12);
    std::uint8_t* dst = src + alen;
    if (v6) {
        ip[0] = 0x60;
        put16(ip + 4, static_cast<std::uint16_t>(l4));
        ip[6] = s.proto;
        ip[7] = 64;
    } else {
        ip[0] = 0x45;
        put16(ip + 2, static_cast<std::uint16_t>(l3 + l4));
        put16(ip + 6, 0x4000);  // DF
        ip[8] = 64;
        ip[9] = s.proto;
    }
    std::memcpy(src, s.src.bytes.data(), alen);
    std::memcpy(dst, s.dst.bytes.data(), alen);
    if (!v6) put16(ip + 10, fold(sum16(ip, kIpv4Len)));

    std::uint8_t* l4p = ip + l3;
    put16(l4p, s.sport);
    put16(l4p + 2, s.dport);
    std::size_t csum_off;
    if (s.proto == IPPROTO_TCP) {
        put32(l4p + 4, 1);                              // seq
        put32(l4p + 8, s.tcp_flags & kTcpAck ? 1 : 0);  // ack
        l4p[12] = 5 << 4;
        l4p[13] = s.tcp_flags;
        put16(l4p + 14, 65535);
        csum_off = 16;
    } else {
        put16(l4p + 4, static_cast<std::uint16_t>(l4));
        std::memcpy(l4p + kUdpLen, kUdpPayload, sizeof kUdpPayload);
        csum_off = 6;
    }
    // Pseudo-header: addresses, protocol, L4 length.
    std::uint32_t acc = sum16(src, 2 * alen);
    acc += s.proto;
    acc += static_cast<std::uint32_t>(l4);
    std::uint16_t csum = fold(sum16(l4p, l4, acc));
    if (s.proto == IPPROTO_UDP && csum == 0) csum = 0xffff;
    put16(l4p + csum_off, csum);
    return f;
}

std::optional<TraceHeaders> parse_headers(std::span<const std::uint8_t> f) {
    std::size_t off = 12;
    if (f.size() < kEthLen) return std::nullopt;
    std::uint16_t type = get16(&f[off]);
    while ((type == 0x8100 || type == 0x88a8) && f.size() >= off + 6) {
        off += 4;
        type = get16(&f[off]);
    }
    off += 2;
    TraceHeaders h;
    std::size_t l4;
    if (type == 0x0800) {
        if (f.size() < off + kIpv4Len) return std::nullopt;
        const std::size_t ihl = static_cast<std::size_t>(f[off] & 0x0f) * 4;
        h.proto = f[off + 9];
        h.src.family = h.dst.family = AF_INET;
        std::memcpy(h.src.bytes.data(), &f[off + 12], 4);
        std::memcpy(h.dst.bytes.data(), &f[off + 16], 4);
        l4 = off + ihl;
    } else if (type == 0x86dd) {
        if (f.size() < off + kIpv6Len) return std::nullopt;
        h.proto = f[off + 6];
        h.src.family = h.dst.family = AF_INET6;
        std::memcpy(h.src.bytes.data(), &f[off + 8], 16);
        std::memcpy(h.dst.bytes.data(), &f[off + 24], 16);
        l4 = off + kIpv6Len;
    } else {
        return std::nullopt;
    }
    if ((h.proto == IPPROTO_TCP || h.proto == IPPROTO_UDP) && f.size() >= l4 + 4) {
        h.sport = get16(&f[l4]);
        h.dport = get16(&f[l4 + 2]);
    }
    return h;
}

}  // namespace kxlb::ctl
