// Test-support packet builder, hex dump and frame diff (see packet_builder.hpp).
#include "common/packet_builder.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "common/checksum.hpp"

namespace kxlb::test {

namespace {

constexpr std::uint16_t kEthTypeIpv4 = 0x0800;
constexpr std::uint16_t kEthTypeIpv6 = 0x86dd;
constexpr std::uint16_t kEthTypeLocalExperimental = 0x88b5;
constexpr std::uint8_t kProtoIcmp = 1, kProtoIpip = 4, kProtoTcp = 6, kProtoUdp = 17, kProtoIpv6 = 41,
                       kProtoIcmpv6 = 58, kProtoNoNext = 59, kProtoExperimental = 253;

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

void put_u8(Bytes& b, std::uint8_t v) { b.push_back(v); }
void put_be16(Bytes& b, std::uint16_t v) {
    b.push_back(static_cast<std::uint8_t>(v >> 8));
    b.push_back(static_cast<std::uint8_t>(v));
}
void put_be32(Bytes& b, std::uint32_t v) {
    put_be16(b, static_cast<std::uint16_t>(v >> 16));
    put_be16(b, static_cast<std::uint16_t>(v));
}
template <std::size_t N>
void put_bytes(Bytes& b, const std::array<std::uint8_t, N>& a) {
    b.insert(b.end(), a.begin(), a.end());
}
void write_be16(Bytes& b, std::size_t off, std::uint16_t v) {
    b[off] = static_cast<std::uint8_t>(v >> 8);
    b[off + 1] = static_cast<std::uint8_t>(v);
}

// The builder's own checksum arithmetic (deliberately not shared with checksum.cpp, which verifies it): sums the
// high-order (even-offset) and low-order (odd-offset) bytes separately, then combines and folds.
class Csum {
public:
    void add(std::span<const std::uint8_t> d) {
        for (std::size_t i = 0; i < d.size(); ++i) {
            // Position parity is relative to the running total, so consecutive add() calls behave like one buffer.
            if ((count_ + i) % 2 == 0) hi_ += d[i];
            else lo_ += d[i];
        }
        count_ += d.size();
    }
    void add16(std::uint16_t v) {
        const std::uint8_t b[2] = {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
        add(b);
    }
    // The value to store in the checksum field (the complement of the folded sum).
    std::uint16_t result() const {
        std::uint64_t s = (hi_ << 8) + lo_;
        while (s >> 16) s = (s & 0xffff) + (s >> 16);
        return static_cast<std::uint16_t>(~s & 0xffff);
    }

private:
    std::uint64_t hi_ = 0, lo_ = 0;
    std::size_t count_ = 0;
};

void check_fits(std::size_t off, std::size_t n, std::size_t size, const char* what) {
    if (off > size || n > size - off)
        throw std::out_of_range(std::string(what) + ": offset " + std::to_string(off) + " + " + std::to_string(n) +
                                " past the end of a " + std::to_string(size) + "-byte frame");
}

// Layer i of ls exists and holds a T.
template <typename T, typename V>
bool holds(const std::vector<V>& ls, std::size_t i) {
    return i < ls.size() && std::holds_alternative<T>(ls[i]);
}

const Mac kDefaultSrc{{0x02, 0, 0, 0, 0, 0x01}};
const Mac kDefaultDst{{0x02, 0, 0, 0, 0, 0x02}};

}  // namespace

// ---- addresses ----

Mac Mac::parse(std::string_view s) {
    if (s.size() != 17) throw std::invalid_argument("bad MAC address '" + std::string(s) + "'");
    Mac m;
    for (std::size_t i = 0; i < 6; ++i) {
        const int hi = hex_digit(s[i * 3]), lo = hex_digit(s[i * 3 + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':'))
            throw std::invalid_argument("bad MAC address '" + std::string(s) + "'");
        m.b[i] = static_cast<std::uint8_t>(hi * 16 + lo);
    }
    return m;
}

std::string Mac::to_string() const {
    char buf[18];
    (void)std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
    return buf;
}

std::array<std::uint8_t, 4> ipv4_addr(std::string_view s) {
    std::array<std::uint8_t, 4> a{};
    const std::string z(s);  // inet_pton needs NUL termination
    if (z.find('\0') != std::string::npos || ::inet_pton(AF_INET, z.c_str(), a.data()) != 1)
        throw std::invalid_argument("bad IPv4 address '" + z + "'");
    return a;
}

std::array<std::uint8_t, 16> ipv6_addr(std::string_view s) {
    std::array<std::uint8_t, 16> a{};
    const std::string z(s);
    if (z.find('\0') != std::string::npos || ::inet_pton(AF_INET6, z.c_str(), a.data()) != 1)
        throw std::invalid_argument("bad IPv6 address '" + z + "'");
    return a;
}

// ---- Packet ----

std::size_t Packet::size() const { return bytes.size(); }

Packet& Packet::set_u8(std::size_t off, std::uint8_t v) {
    check_fits(off, 1, bytes.size(), "set_u8");
    bytes[off] = v;
    return *this;
}

Packet& Packet::set_be16(std::size_t off, std::uint16_t v) {
    check_fits(off, 2, bytes.size(), "set_be16");
    write_be16(bytes, off, v);
    return *this;
}

Packet& Packet::set_be32(std::size_t off, std::uint32_t v) {
    check_fits(off, 4, bytes.size(), "set_be32");
    write_be16(bytes, off, static_cast<std::uint16_t>(v >> 16));
    write_be16(bytes, off + 2, static_cast<std::uint16_t>(v));
    return *this;
}

Packet& Packet::truncate(std::size_t new_size) {
    if (new_size > bytes.size())
        throw std::out_of_range("truncate to " + std::to_string(new_size) + " bytes, frame has " +
                                std::to_string(bytes.size()));
    bytes.resize(new_size);
    return *this;
}

std::span<const std::uint8_t> Packet::span() const { return bytes; }

std::uint8_t Packet::u8(std::size_t off) const {
    check_fits(off, 1, bytes.size(), "u8");
    return bytes[off];
}

std::uint16_t Packet::be16(std::size_t off) const {
    check_fits(off, 2, bytes.size(), "be16");
    return static_cast<std::uint16_t>((bytes[off] << 8) | bytes[off + 1]);
}

std::uint32_t Packet::be32(std::size_t off) const {
    check_fits(off, 4, bytes.size(), "be32");
    return (static_cast<std::uint32_t>(be16(off)) << 16) | be16(off + 2);
}

std::span<const std::uint8_t> Packet::span_from(std::size_t off) const {
    check_fits(off, 0, bytes.size(), "span_from");
    return std::span<const std::uint8_t>(bytes).subspan(off);
}

// ---- PacketBuilder: recording ----

PacketBuilder& PacketBuilder::eth(Mac src, Mac dst) {
    layers_.emplace_back(EthL{src, dst});
    return *this;
}

PacketBuilder& PacketBuilder::eth_type(std::uint16_t ethertype) {
    eth_type_ = ethertype;
    return *this;
}

PacketBuilder& PacketBuilder::vlan(std::uint16_t vid, std::uint8_t pcp, std::uint16_t tpid) {
    if (vid > 0x0fff) throw std::invalid_argument("vlan id " + std::to_string(vid) + " > 4095");
    if (pcp > 7) throw std::invalid_argument("vlan pcp " + std::to_string(pcp) + " > 7");
    layers_.emplace_back(VlanL{vid, pcp, tpid});
    return *this;
}

PacketBuilder& PacketBuilder::ipv4(std::string_view src, std::string_view dst, Ipv4Opts opts) {
    if (opts.options.size() > 40)
        throw std::invalid_argument("ipv4 options: " + std::to_string(opts.options.size()) + " bytes > 40");
    if (opts.frag_offset > 0x1fff)
        throw std::invalid_argument("ipv4 frag_offset " + std::to_string(opts.frag_offset) + " > 0x1fff");
    layers_.emplace_back(Ip4L{ipv4_addr(src), ipv4_addr(dst), std::move(opts)});
    return *this;
}

PacketBuilder& PacketBuilder::ipv6(std::string_view src, std::string_view dst, Ipv6Opts opts) {
    if (opts.flow_label > 0xfffff)
        throw std::invalid_argument("ipv6 flow label " + std::to_string(opts.flow_label) + " > 0xfffff");
    layers_.emplace_back(Ip6L{ipv6_addr(src), ipv6_addr(dst), opts});
    return *this;
}

PacketBuilder& PacketBuilder::ipv6_ext(std::uint8_t type, Bytes body) {
    const std::size_t max = type == 44 ? 6 : type == 51 ? 1022 : 2046;
    if (body.size() > max)
        throw std::invalid_argument("ipv6 extension header " + std::to_string(type) + ": body of " +
                                    std::to_string(body.size()) + " bytes > " + std::to_string(max));
    layers_.emplace_back(ExtL{type, std::move(body)});
    return *this;
}

PacketBuilder& PacketBuilder::tcp(std::uint16_t sport, std::uint16_t dport, TcpOpts opts) {
    if (opts.options.size() > 40)
        throw std::invalid_argument("tcp options: " + std::to_string(opts.options.size()) + " bytes > 40");
    layers_.emplace_back(TcpL{sport, dport, std::move(opts)});
    return *this;
}

PacketBuilder& PacketBuilder::udp(std::uint16_t sport, std::uint16_t dport, UdpOpts opts) {
    layers_.emplace_back(UdpL{sport, dport, opts});
    return *this;
}

PacketBuilder& PacketBuilder::icmp(std::uint8_t type, std::uint8_t code, std::uint32_t rest) {
    layers_.emplace_back(IcmpL{type, code, rest});
    return *this;
}

PacketBuilder& PacketBuilder::payload(std::span<const std::uint8_t> data) {
    if (layers_.empty() || !std::holds_alternative<PayloadL>(layers_.back())) layers_.emplace_back(PayloadL{});
    Bytes& p = std::get<PayloadL>(layers_.back()).data;
    p.insert(p.end(), data.begin(), data.end());
    return *this;
}

PacketBuilder& PacketBuilder::payload(std::string_view text) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(text.data());
    return payload(std::span<const std::uint8_t>(p, text.size()));
}

PacketBuilder& PacketBuilder::payload(std::initializer_list<std::uint8_t> data) {
    return payload(std::span<const std::uint8_t>(data.begin(), data.size()));
}

PacketBuilder& PacketBuilder::pad_to(std::size_t min_size) {
    pad_to_ = min_size;
    return *this;
}

// ---- PacketBuilder: build ----

Packet PacketBuilder::build() const {
    // Layer list with the default Ethernet header in front when eth() was never called.
    std::vector<Layer> ls;
    const bool has_eth = !layers_.empty() && std::holds_alternative<EthL>(layers_.front());
    if (!has_eth) ls.emplace_back(EthL{kDefaultSrc, kDefaultDst});
    ls.insert(ls.end(), layers_.begin(), layers_.end());
    const std::size_t n = ls.size();

    auto is_l2 = [&](std::size_t i) { return holds<EthL>(ls, i) || holds<VlanL>(ls, i); };
    auto is_ip = [&](std::size_t i) { return holds<Ip4L>(ls, i) || holds<Ip6L>(ls, i); };
    auto is_l4 = [&](std::size_t i) { return holds<TcpL>(ls, i) || holds<UdpL>(ls, i) || holds<IcmpL>(ls, i); };

    // Layering rules; ls[0] is always the Ethernet header.
    for (std::size_t i = 1; i < n; ++i) {
        const std::size_t p = i - 1;
        if (holds<EthL>(ls, i)) throw std::logic_error("PacketBuilder: eth() must be the first call, and only one");
        if (holds<VlanL>(ls, i) && !is_l2(p))
            throw std::logic_error("PacketBuilder: vlan() must come right after eth() or another vlan()");
        if (is_ip(i) && !(is_l2(p) || is_ip(p) || holds<ExtL>(ls, p)))
            throw std::logic_error("PacketBuilder: ipv4()/ipv6() cannot follow an L4 header or the payload");
        if (holds<ExtL>(ls, i) && !(holds<Ip6L>(ls, p) || holds<ExtL>(ls, p)))
            throw std::logic_error("PacketBuilder: ipv6_ext() must follow ipv6() or another ipv6_ext()");
        if (is_l4(i) && !(is_ip(p) || holds<ExtL>(ls, p)))
            throw std::logic_error("PacketBuilder: tcp()/udp()/icmp() must follow an IP header (one L4 header only)");
    }

    // Governing IP header of layer i: the closest IPv4/IPv6 header before it (n if none).
    auto governing_ip = [&](std::size_t i) {
        for (std::size_t j = i; j-- > 0;)
            if (is_ip(j)) return j;
        return n;
    };
    auto is_v6_context = [&](std::size_t i) {
        const std::size_t g = governing_ip(i);
        return g < n && holds<Ip6L>(ls, g);
    };
    // Protocol / next-header value announcing layer i+1 from IP or extension header i.
    auto next_proto = [&](std::size_t i) -> std::uint8_t {
        const std::size_t x = i + 1;
        if (holds<Ip4L>(ls, x)) return kProtoIpip;
        if (holds<Ip6L>(ls, x)) return kProtoIpv6;
        if (holds<ExtL>(ls, x)) return std::get<ExtL>(ls[x]).type;
        if (holds<TcpL>(ls, x)) return kProtoTcp;
        if (holds<UdpL>(ls, x)) return kProtoUdp;
        if (holds<IcmpL>(ls, x)) return is_v6_context(x) ? kProtoIcmpv6 : kProtoIcmp;
        return holds<Ip4L>(ls, i) ? kProtoExperimental : kProtoNoNext;
    };
    // Ethertype announcing layer i+1 from L2 header i.
    auto next_ethertype = [&](std::size_t i) -> std::uint16_t {
        const std::size_t x = i + 1;
        if (eth_type_ && !holds<VlanL>(ls, x)) return *eth_type_;
        if (holds<VlanL>(ls, x)) return std::get<VlanL>(ls[x]).tpid;
        if (holds<Ip4L>(ls, x)) return kEthTypeIpv4;
        if (holds<Ip6L>(ls, x)) return kEthTypeIpv6;
        return kEthTypeLocalExperimental;
    };

    // Pass 1: serialize every header with zero lengths/checksums.
    Bytes out;
    std::vector<std::size_t> off(n), hdr_len(n);
    for (std::size_t i = 0; i < n; ++i) {
        off[i] = out.size();
        std::visit(
            [&](const auto& l) {
                using T = std::decay_t<decltype(l)>;
                if constexpr (std::is_same_v<T, EthL>) {
                    put_bytes(out, l.dst.b);
                    put_bytes(out, l.src.b);
                    put_be16(out, next_ethertype(i));
                } else if constexpr (std::is_same_v<T, VlanL>) {
                    put_be16(out, static_cast<std::uint16_t>((l.pcp << 13) | l.vid));
                    put_be16(out, next_ethertype(i));
                } else if constexpr (std::is_same_v<T, Ip4L>) {
                    const auto& o = l.opts;
                    const std::size_t opt_len = (o.options.size() + 3) / 4 * 4;
                    const auto ihl = static_cast<std::uint8_t>(o.ihl.value_or((20 + opt_len) / 4) & 0x0f);
                    put_u8(out, static_cast<std::uint8_t>((o.version.value_or(4) & 0x0f) << 4 | ihl));
                    put_u8(out, o.tos);
                    put_be16(out, 0);  // tot_len, pass 2
                    put_be16(out, o.id);
                    put_be16(out,
                             static_cast<std::uint16_t>((o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | o.frag_offset));
                    put_u8(out, o.ttl);
                    put_u8(out, o.protocol.value_or(next_proto(i)));
                    put_be16(out, 0);  // checksum, pass 3
                    put_bytes(out, l.src);
                    put_bytes(out, l.dst);
                    out.insert(out.end(), o.options.begin(), o.options.end());
                    out.resize(out.size() + opt_len - o.options.size(), 0x00);  // EOL padding
                } else if constexpr (std::is_same_v<T, Ip6L>) {
                    const auto& o = l.opts;
                    put_be32(out, (static_cast<std::uint32_t>(o.version.value_or(6) & 0x0f) << 28) |
                                      (static_cast<std::uint32_t>(o.traffic_class) << 20) | o.flow_label);
                    put_be16(out, 0);  // payload_len, pass 2
                    put_u8(out, o.next_header.value_or(next_proto(i)));
                    put_u8(out, o.hop_limit);
                    put_bytes(out, l.src);
                    put_bytes(out, l.dst);
                } else if constexpr (std::is_same_v<T, ExtL>) {
                    const std::size_t total = l.type == 44 ? 8 : (2 + l.body.size() + 7) / 8 * 8;
                    put_u8(out, next_proto(i));
                    put_u8(out, static_cast<std::uint8_t>(l.type == 44   ? 0
                                                          : l.type == 51 ? total / 4 - 2
                                                                         : total / 8 - 1));
                    out.insert(out.end(), l.body.begin(), l.body.end());
                    out.resize(off[i] + total, 0x00);
                } else if constexpr (std::is_same_v<T, TcpL>) {
                    const auto& o = l.opts;
                    const std::size_t opt_len = (o.options.size() + 3) / 4 * 4;
                    put_be16(out, l.sport);
                    put_be16(out, l.dport);
                    put_be32(out, o.seq);
                    put_be32(out, o.ack);
                    put_u8(out, static_cast<std::uint8_t>((o.data_offset.value_or((20 + opt_len) / 4) & 0x0f) << 4));
                    put_u8(out, o.flags);
                    put_be16(out, o.window);
                    put_be16(out, 0);  // checksum, pass 3
                    put_be16(out, 0);  // urgent pointer
                    out.insert(out.end(), o.options.begin(), o.options.end());
                    out.resize(out.size() + opt_len - o.options.size(), 0x01);  // NOP padding
                } else if constexpr (std::is_same_v<T, UdpL>) {
                    put_be16(out, l.sport);
                    put_be16(out, l.dport);
                    put_be16(out, 0);  // length, pass 2
                    put_be16(out, 0);  // checksum, pass 3
                } else if constexpr (std::is_same_v<T, IcmpL>) {
                    put_u8(out, l.type);
                    put_u8(out, l.code);
                    put_be16(out, 0);  // checksum, pass 3
                    put_be32(out, l.rest);
                } else {
                    static_assert(std::is_same_v<T, PayloadL>);
                    out.insert(out.end(), l.data.begin(), l.data.end());
                }
            },
            ls[i]);
        hdr_len[i] = out.size() - off[i];
    }
    const std::size_t end = out.size();

    // Pass 2: length fields (everything from the header to the end of the frame, before padding).
    auto length16 = [&](std::size_t len, const char* what) {
        if (len > 0xffff)
            throw std::logic_error(std::string("PacketBuilder: ") + what + " " + std::to_string(len) + " > 65535");
        return static_cast<std::uint16_t>(len);
    };
    for (std::size_t i = 0; i < n; ++i) {
        if (const auto* l = std::get_if<Ip4L>(&ls[i])) {
            const auto& o = l->opts.tot_len;
            write_be16(out, off[i] + 2, o ? *o : length16(end - off[i], "ipv4 total length"));
        } else if (const auto* l6 = std::get_if<Ip6L>(&ls[i])) {
            const auto& o = l6->opts.payload_len;
            write_be16(out, off[i] + 4, o ? *o : length16(end - off[i] - 40, "ipv6 payload length"));
        } else if (const auto* u = std::get_if<UdpL>(&ls[i])) {
            const auto& o = u->opts.length;
            write_be16(out, off[i] + 4, o ? *o : length16(end - off[i], "udp length"));
        }
    }

    // Pass 3: L4 checksums (over [l4, end) and, for TCP/UDP/ICMPv6, the governing IP header's pseudo-header),
    // then IPv4 header checksums.
    for (std::size_t i = 0; i < n; ++i) {
        if (!is_l4(i)) continue;
        const std::size_t g = governing_ip(i);
        const bool v6 = holds<Ip6L>(ls, g);
        std::size_t seg_len = end - off[i];
        std::size_t csum_off = off[i] + 16;
        std::uint8_t proto = kProtoTcp;
        std::optional<std::uint16_t> override;
        if (const auto* t = std::get_if<TcpL>(&ls[i])) {
            override = t->opts.checksum;
        } else if (const auto* u = std::get_if<UdpL>(&ls[i])) {
            csum_off = off[i] + 6;
            proto = kProtoUdp;
            override = u->opts.checksum;
            // A length override that is shorter but valid limits what the checksum covers, so the only
            // inconsistency in the frame is the length itself.
            if (u->opts.length && *u->opts.length >= 8 && *u->opts.length < seg_len) seg_len = *u->opts.length;
        } else {
            csum_off = off[i] + 2;
            proto = v6 ? kProtoIcmpv6 : kProtoIcmp;
        }
        Csum c;
        if (proto != kProtoIcmp) {
            if (v6) {
                const auto& ip = std::get<Ip6L>(ls[g]);
                c.add(ip.src);
                c.add(ip.dst);
                c.add16(static_cast<std::uint16_t>(seg_len >> 16));
                c.add16(static_cast<std::uint16_t>(seg_len));
                c.add16(proto);
            } else {
                const auto& ip = std::get<Ip4L>(ls[g]);
                c.add(ip.src);
                c.add(ip.dst);
                c.add16(proto);
                c.add16(static_cast<std::uint16_t>(seg_len));
            }
        }
        c.add(std::span<const std::uint8_t>(out).subspan(off[i], seg_len));
        std::uint16_t sum = c.result();
        if (proto == kProtoUdp && sum == 0) sum = 0xffff;  // RFC 768: 0 means "no checksum"
        write_be16(out, csum_off, override.value_or(sum));
    }
    for (std::size_t i = 0; i < n; ++i) {
        const auto* l = std::get_if<Ip4L>(&ls[i]);
        if (l == nullptr) continue;
        Csum c;
        c.add(std::span<const std::uint8_t>(out).subspan(off[i], hdr_len[i]));
        write_be16(out, off[i] + 10, l->opts.checksum.value_or(c.result()));
    }

    Packet pkt;
    std::size_t l2_end = 0, last_l3_end = 0, first_ip = n, last_ip = n, l4 = n, pay = n;
    for (std::size_t i = 0; i < n; ++i) {
        if (is_l2(i)) l2_end = off[i] + hdr_len[i];
        if (is_ip(i) || holds<ExtL>(ls, i)) last_l3_end = off[i] + hdr_len[i];
        if (is_ip(i) && first_ip == n) first_ip = i;
        if (is_ip(i)) last_ip = i;
        if (is_l4(i)) l4 = i;
        if (holds<PayloadL>(ls, i)) pay = i;
    }
    pkt.l3_off = first_ip < n ? off[first_ip] : l2_end;
    pkt.inner_l3_off = last_ip < n ? off[last_ip] : pkt.l3_off;
    pkt.l4_off = l4 < n ? off[l4] : last_ip < n ? last_l3_end : pkt.l3_off;
    pkt.payload_off = pay < n ? off[pay] : end;
    if (out.size() < pad_to_) out.resize(pad_to_, 0x00);
    pkt.bytes = std::move(out);
    return pkt;
}

// ---- one-liners ----

Packet tcp4(std::string_view src, std::uint16_t sport, std::string_view dst, std::uint16_t dport, std::uint8_t flags,
            std::string_view payload) {
    return PacketBuilder().ipv4(src, dst).tcp(sport, dport, TcpOpts{.flags = flags}).payload(payload).build();
}

Packet udp4(std::string_view src, std::uint16_t sport, std::string_view dst, std::uint16_t dport,
            std::string_view payload) {
    return PacketBuilder().ipv4(src, dst).udp(sport, dport).payload(payload).build();
}

Packet tcp6(std::string_view src, std::uint16_t sport, std::string_view dst, std::uint16_t dport, std::uint8_t flags,
            std::string_view payload) {
    return PacketBuilder().ipv6(src, dst).tcp(sport, dport, TcpOpts{.flags = flags}).payload(payload).build();
}

Packet udp6(std::string_view src, std::uint16_t sport, std::string_view dst, std::uint16_t dport,
            std::string_view payload) {
    return PacketBuilder().ipv6(src, dst).udp(sport, dport).payload(payload).build();
}

// ---- hex dump / diff ----

namespace {

// One 16-byte row: "0010  xx xx ... xx  xx ... xx  |ascii|", absent bytes shown as blanks.
std::string hex_row(std::span<const std::uint8_t> data, std::size_t row_off) {
    char buf[8];
    (void)std::snprintf(buf, sizeof buf, "%04zx", row_off);
    std::string s = buf;
    s += "  ";
    std::string ascii;
    for (std::size_t i = 0; i < 16; ++i) {
        if (i == 8) s += ' ';
        const std::size_t o = row_off + i;
        if (o < data.size()) {
            (void)std::snprintf(buf, sizeof buf, "%02x ", data[o]);
            s += buf;
            ascii += (data[o] >= 0x20 && data[o] < 0x7f) ? static_cast<char>(data[o]) : '.';
        } else {
            s += "   ";
        }
    }
    return s + " |" + ascii + "|";
}

}  // namespace

std::string hexdump(std::span<const std::uint8_t> data) {
    std::string s;
    for (std::size_t row = 0; row < data.size(); row += 16) s += hex_row(data, row) + "\n";
    return s;
}

std::string diff_frames(std::span<const std::uint8_t> expected, std::span<const std::uint8_t> actual) {
    if (std::ranges::equal(expected, actual)) return "";
    const std::size_t common = std::min(expected.size(), actual.size());
    const std::size_t longest = std::max(expected.size(), actual.size());
    std::size_t first = common;
    std::size_t ndiff = longest - common;
    for (std::size_t i = 0; i < common; ++i) {
        if (expected[i] == actual[i]) continue;
        if (first == common) first = i;
        ++ndiff;
    }
    auto byte_or_end = [](std::span<const std::uint8_t> d, std::size_t i) {
        char buf[8];
        if (i >= d.size()) return std::string("<end>");
        (void)std::snprintf(buf, sizeof buf, "0x%02x", d[i]);
        return std::string(buf);
    };
    char hexoff[16];
    (void)std::snprintf(hexoff, sizeof hexoff, "0x%04zx", first);
    std::string s = "frames differ at offset " + std::to_string(first) + " (" + hexoff + ", " +
                    describe_offset(expected.size() > first ? expected : actual, first) + "): expected " +
                    byte_or_end(expected, first) + ", actual " + byte_or_end(actual, first) + "; expected " +
                    std::to_string(expected.size()) + " bytes, actual " + std::to_string(actual.size()) + " bytes, " +
                    std::to_string(ndiff) + " byte(s) differ\n";
    s += "      (-: expected, +: actual, ^: differing byte)\n";
    constexpr int kMaxRows = 16;
    int rows = 0;
    for (std::size_t row = first / 16 * 16; row < longest; row += 16) {
        std::string marks;
        bool any = false;
        for (std::size_t i = 0; i < 16; ++i) {
            if (i == 8) marks += ' ';
            const std::size_t o = row + i;
            const bool differ = o < longest && (o >= common || expected[o] != actual[o]);
            any = any || differ;
            marks += differ ? "^^ " : "   ";
        }
        if (!any) continue;
        if (++rows > kMaxRows) {
            s += "      ... more differing rows omitted\n";
            break;
        }
        s += "  -" + hex_row(expected, row) + "\n";
        s += "  +" + hex_row(actual, row) + "\n";
        s += "         " + marks + "\n";
    }
    return s;
}

}  // namespace kxlb::test
