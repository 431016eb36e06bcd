// Independent frame verifier: re-parses frames byte by byte and checks checksums and length fields (see checksum.hpp).
#include "common/checksum.hpp"

#include <cstdio>
#include <map>
#include <string_view>
#include <utility>

namespace kxlb::test {

std::uint16_t ones_complement_sum(std::span<const std::uint8_t> data, std::uint32_t initial) {
    std::uint64_t sum = initial;
    std::size_t i = 0;
    for (; i + 1 < data.size(); i += 2) sum += (static_cast<std::uint32_t>(data[i]) << 8) | data[i + 1];
    if (i < data.size()) sum += static_cast<std::uint32_t>(data[i]) << 8;
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(sum);
}

namespace {

enum class Kind { Eth, Vlan, Ipv4, Ipv6, Ext, Tcp, Udp, Icmp, Icmpv6 };

struct Layer {
    std::string name;  // "ipv4", "ipv4#2", "tcp", ...
    Kind kind;
    std::size_t off;      // first header byte
    std::size_t hdr_len;  // nominal header length (may run past the end of a truncated frame)
    std::size_t end;      // end of what the layer's length fields (or the enclosing layer) claim
};

// Source/destination addresses of the IP header that governs an upper-layer header (for pseudo-headers).
struct IpInfo {
    bool v6;
    std::size_t src_off;
    std::size_t dst_off;
};

std::string hex16(std::uint16_t v) {
    char buf[8];
    (void)std::snprintf(buf, sizeof buf, "0x%04x", static_cast<unsigned>(v));
    return buf;
}

std::string num(std::size_t v) { return std::to_string(v); }

constexpr int kMaxDepth = 8;  // nested IP headers / extension headers walked before giving up (not an error)

class Walker {
public:
    explicit Walker(std::span<const std::uint8_t> frame) : f_(frame) {}

    void run();

    std::vector<std::string> errors;
    std::vector<Layer> layers;

private:
    std::uint8_t u8(std::size_t off) const { return f_[off]; }
    std::uint16_t be16(std::size_t off) const {
        return static_cast<std::uint16_t>((static_cast<unsigned>(f_[off]) << 8) | f_[off + 1]);
    }
    std::string add_layer(std::string_view base, Kind kind, std::size_t off, std::size_t hdr_len, std::size_t end);
    void error(std::string msg) { errors.push_back(std::move(msg)); }

    // Verifies that [off, end) plus the optional pseudo-header sums to 0xffff; field_off is the checksum field.
    void check_sum(const std::string& what, std::size_t off, std::size_t end, std::size_t field_off,
                   std::uint32_t pseudo);
    std::uint32_t pseudo_sum(const IpInfo& ip, std::uint8_t proto, std::size_t len) const;

    void ipv4(std::size_t off, std::size_t end, bool outermost, int depth);
    void ipv6(std::size_t off, std::size_t end, bool outermost, int depth);
    void upper(std::uint8_t proto, std::size_t off, std::size_t end, const IpInfo& ip, int depth);
    void tcp(std::size_t off, std::size_t end, const IpInfo& ip);
    void udp(std::size_t off, std::size_t end, const IpInfo& ip);
    void icmp(std::size_t off, std::size_t end, const IpInfo& ip);

    std::span<const std::uint8_t> f_;
    std::map<std::string, int, std::less<>> seen_;
};

std::string Walker::add_layer(std::string_view base, Kind kind, std::size_t off, std::size_t hdr_len, std::size_t end) {
    int n = ++seen_[std::string(base)];
    std::string name(base);
    if (n > 1) name += "#" + std::to_string(n);
    layers.push_back(Layer{name, kind, off, hdr_len, end});
    return name;
}

void Walker::check_sum(const std::string& what, std::size_t off, std::size_t end, std::size_t field_off,
                       std::uint32_t pseudo) {
    auto region = f_.subspan(off, end - off);
    if (ones_complement_sum(region, pseudo) == 0xffff) return;
    std::vector<std::uint8_t> zeroed(region.begin(), region.end());
    zeroed[field_off - off] = 0;
    zeroed[field_off - off + 1] = 0;
    auto correct = static_cast<std::uint16_t>(~ones_complement_sum(zeroed, pseudo));
    error(what + " checksum " + hex16(be16(field_off)) + " at offset " + num(field_off) +
          " is wrong (correct: " + hex16(correct) + ")");
}

std::uint32_t Walker::pseudo_sum(const IpInfo& ip, std::uint8_t proto, std::size_t len) const {
    std::vector<std::uint8_t> ph;
    std::size_t alen = ip.v6 ? 16 : 4;
    ph.insert(ph.end(), f_.begin() + static_cast<std::ptrdiff_t>(ip.src_off),
              f_.begin() + static_cast<std::ptrdiff_t>(ip.src_off + alen));
    ph.insert(ph.end(), f_.begin() + static_cast<std::ptrdiff_t>(ip.dst_off),
              f_.begin() + static_cast<std::ptrdiff_t>(ip.dst_off + alen));
    if (ip.v6) {
        // RFC 8200 8.1: 32-bit upper-layer length, 3 zero bytes, next header.
        for (int shift = 24; shift >= 0; shift -= 8) ph.push_back(static_cast<std::uint8_t>(len >> shift));
        ph.insert(ph.end(), {0, 0, 0, proto});
    } else {
        // RFC 793/768: zero, protocol, 16-bit length.
        ph.insert(ph.end(), {0, proto, static_cast<std::uint8_t>(len >> 8), static_cast<std::uint8_t>(len)});
    }
    return ones_complement_sum(ph);
}

void Walker::run() {
    const std::size_t n = f_.size();
    add_layer("eth", Kind::Eth, 0, 14, n);
    if (n < 14) {
        error("truncated ethernet header: " + num(n) + " bytes, need 14");
        return;
    }
    std::uint16_t type = be16(12);
    std::size_t off = 14;
    for (int tags = 0; (type == 0x8100 || type == 0x88a8 || type == 0x9100) && tags < kMaxDepth; ++tags) {
        std::string name = add_layer("vlan", Kind::Vlan, off, 4, n);
        if (n - off < 4) {
            error("truncated " + name + " tag at offset " + num(off) + ": " + num(n - off) + " bytes, need 4");
            return;
        }
        type = be16(off + 2);
        off += 4;
    }
    if (type == 0x0800) ipv4(off, n, true, 1);
    if (type == 0x86dd) ipv6(off, n, true, 1);
}

void Walker::ipv4(std::size_t off, std::size_t end, bool outermost, int depth) {
    const std::size_t avail = end - off;
    const std::uint8_t ihl = avail >= 1 ? (u8(off) & 0x0f) : 5;
    std::string name = add_layer("ipv4", Kind::Ipv4, off, ihl >= 5 ? ihl * 4u : 20u, end);
    if (avail < 20) {
        error("truncated " + name + " header at offset " + num(off) + ": " + num(avail) + " bytes, need 20");
        return;
    }
    if (u8(off) >> 4 != 4) {
        error(name + " version field is " + num(u8(off) >> 4) + ", expected 4 (offset " + num(off) + ")");
        return;
    }
    if (ihl < 5) {
        error(name + " ihl " + num(ihl) + " < 5 (offset " + num(off) + ")");
        return;
    }
    const std::size_t hlen = std::size_t{ihl} * 4;
    if (hlen > avail) {
        error("truncated " + name + " header (options) at offset " + num(off) + ": ihl says " + num(hlen) + " bytes, " +
              num(avail) + " present");
        return;
    }
    check_sum(name + " header", off, off + hlen, off + 10, 0);

    const std::size_t tot_len = be16(off + 2);
    if (tot_len < hlen) {
        error(name + " tot_len " + num(tot_len) + " is smaller than its header length " + num(hlen));
        return;
    }
    if (tot_len > avail) {
        error("truncated " + name + " packet: tot_len " + num(tot_len) + " but only " + num(avail) + " bytes present");
        return;
    }
    if (!outermost && tot_len < avail)
        error(name + " tot_len " + num(tot_len) + " but the enclosing payload has " + num(avail) + " bytes");
    layers.back().end = off + tot_len;

    const std::uint16_t frag = be16(off + 6);
    if (frag & 0x3fff) return;  // MF or offset != 0: the L4 header/checksum cannot be verified from one fragment
    upper(u8(off + 9), off + hlen, off + tot_len, IpInfo{false, off + 12, off + 16}, depth);
}

void Walker::ipv6(std::size_t off, std::size_t end, bool outermost, int depth) {
    const std::size_t avail = end - off;
    std::string name = add_layer("ipv6", Kind::Ipv6, off, 40, end);
    if (avail < 40) {
        error("truncated " + name + " header at offset " + num(off) + ": " + num(avail) + " bytes, need 40");
        return;
    }
    if (u8(off) >> 4 != 6) {
        error(name + " version field is " + num(u8(off) >> 4) + ", expected 6 (offset " + num(off) + ")");
        return;
    }
    const std::size_t plen = be16(off + 4);
    if (plen > avail - 40) {
        error("truncated " + name + " packet: payload_len " + num(plen) + " but only " + num(avail - 40) +
              " bytes follow the header");
        return;
    }
    if (!outermost && plen < avail - 40)
        error(name + " payload_len " + num(plen) + " but the enclosing payload has " + num(avail - 40) +
              " bytes after the header");
    const std::size_t pend = off + 40 + plen;
    layers.back().end = pend;
    const IpInfo ip{true, off + 8, off + 24};

    std::uint8_t nh = u8(off + 6);
    std::size_t cur = off + 40;
    for (int i = 0; i < kMaxDepth; ++i) {
        std::string_view ext;
        switch (nh) {
            case 0: ext = "hopopts"; break;
            case 43: ext = "routing"; break;
            case 44: ext = "fragment"; break;
            case 51: ext = "ah"; break;
            case 60: ext = "dstopts"; break;
            default: upper(nh, cur, pend, ip, depth); return;
        }
        const std::size_t left = pend - cur;
        std::size_t len = 8;
        if (left >= 2 && nh == 51) len = (std::size_t{u8(cur + 1)} + 2) * 4;
        else if (left >= 2 && nh != 44) len = (std::size_t{u8(cur + 1)} + 1) * 8;
        std::string ename = add_layer(ext, Kind::Ext, cur, len, pend);
        if (left < 2 || len > left) {
            error("truncated " + ename + " extension header at offset " + num(cur) + ": " + num(left) +
                  " bytes left, need " + num(left < 2 ? 2 : len));
            return;
        }
        if (nh == 44 && (be16(cur + 2) & 0xfff9) != 0) return;  // offset != 0 or M: fragment, L4 not verifiable
        nh = u8(cur);
        cur += len;
    }
}

void Walker::upper(std::uint8_t proto, std::size_t off, std::size_t end, const IpInfo& ip, int depth) {
    switch (proto) {
        case 4:
            if (depth < kMaxDepth) ipv4(off, end, false, depth + 1);
            return;
        case 41:
            if (depth < kMaxDepth) ipv6(off, end, false, depth + 1);
            return;
        case 6: tcp(off, end, ip); return;
        case 17: udp(off, end, ip); return;
        case 1:
            if (!ip.v6) icmp(off, end, ip);
            return;
        case 58:
            if (ip.v6) icmp(off, end, ip);
            return;
        default: return;
    }
}

void Walker::tcp(std::size_t off, std::size_t end, const IpInfo& ip) {
    const std::size_t len = end - off;
    const std::uint8_t doff = len > 12 ? (u8(off + 12) >> 4) : 5;
    std::string name = add_layer("tcp", Kind::Tcp, off, doff >= 5 ? std::size_t{doff} * 4 : 20u, end);
    if (len < 20) {
        error("truncated " + name + " header at offset " + num(off) + ": " + num(len) + " bytes, need 20");
        return;
    }
    if (doff < 5) error(name + " data offset " + num(doff) + " < 5 (offset " + num(off + 12) + ")");
    else if (std::size_t{doff} * 4 > len)
        error("truncated " + name + " header (options): data offset says " + num(std::size_t{doff} * 4) +
              " bytes, segment has " + num(len));
    check_sum(name, off, end, off + 16, pseudo_sum(ip, 6, len));
}

void Walker::udp(std::size_t off, std::size_t end, const IpInfo& ip) {
    const std::size_t avail = end - off;
    std::string name = add_layer("udp", Kind::Udp, off, 8, end);
    if (avail < 8) {
        error("truncated " + name + " header at offset " + num(off) + ": " + num(avail) + " bytes, need 8");
        return;
    }
    const std::size_t ulen = be16(off + 4);
    if (ulen < 8) {
        error(name + " length " + num(ulen) + " < 8 (offset " + num(off + 4) + ")");
        return;
    }
    if (ulen > avail) {
        error("truncated " + name + " datagram: udp length " + num(ulen) + " but only " + num(avail) +
              " bytes of IP payload");
        return;
    }
    if (ulen != avail) error(name + " length " + num(ulen) + " does not match the IP payload length " + num(avail));
    if (be16(off + 6) == 0) {
        if (ip.v6) error(name + " checksum is 0 over ipv6 (mandatory in IPv6, RFC 8200 8.1)");
        return;  // IPv4: 0 = no checksum transmitted
    }
    check_sum(name, off, off + ulen, off + 6, pseudo_sum(ip, 17, ulen));
}

void Walker::icmp(std::size_t off, std::size_t end, const IpInfo& ip) {
    const std::size_t len = end - off;
    std::string name = add_layer(ip.v6 ? "icmpv6" : "icmp", ip.v6 ? Kind::Icmpv6 : Kind::Icmp, off, 8, end);
    if (len < 8) {
        error("truncated " + name + " header at offset " + num(off) + ": " + num(len) + " bytes, need 8");
        return;
    }
    check_sum(name, off, end, off + 2, ip.v6 ? pseudo_sum(ip, 58, len) : 0);
}

struct Field {
    std::size_t off, len;
    const char* name;
};

constexpr Field kEthFields[] = {{0, 6, "dst"}, {6, 6, "src"}, {12, 2, "ethertype"}};
constexpr Field kVlanFields[] = {{0, 2, "tci"}, {2, 2, "ethertype"}};
constexpr Field kIpv4Fields[] = {{0, 1, "version_ihl"}, {1, 1, "tos"},    {2, 2, "tot_len"},  {4, 2, "id"},
                                 {6, 2, "frag_off"},    {8, 1, "ttl"},    {9, 1, "protocol"}, {10, 2, "checksum"},
                                 {12, 4, "saddr"},      {16, 4, "daddr"}, {20, 40, "options"}};
constexpr Field kIpv6Fields[] = {{0, 4, "version_tc_flow"}, {4, 2, "payload_len"}, {6, 1, "next_header"},
                                 {7, 1, "hop_limit"},       {8, 16, "saddr"},      {24, 16, "daddr"}};
constexpr Field kExtFields[] = {{0, 1, "next_header"}, {1, 1, "length"}, {2, 2046, "data"}};
constexpr Field kTcpFields[] = {{0, 2, "sport"},        {2, 2, "dport"},    {4, 4, "seq"},     {8, 4, "ack"},
                                {12, 1, "data_offset"}, {13, 1, "flags"},   {14, 2, "window"}, {16, 2, "checksum"},
                                {18, 2, "urg_ptr"},     {20, 40, "options"}};
constexpr Field kUdpFields[] = {{0, 2, "sport"}, {2, 2, "dport"}, {4, 2, "length"}, {6, 2, "checksum"}};
constexpr Field kIcmpFields[] = {{0, 1, "type"}, {1, 1, "code"}, {2, 2, "checksum"}, {4, 4, "rest"}};

std::span<const Field> fields_of(Kind k) {
    switch (k) {
        case Kind::Eth: return kEthFields;
        case Kind::Vlan: return kVlanFields;
        case Kind::Ipv4: return kIpv4Fields;
        case Kind::Ipv6: return kIpv6Fields;
        case Kind::Ext: return kExtFields;
        case Kind::Tcp: return kTcpFields;
        case Kind::Udp: return kUdpFields;
        case Kind::Icmp:
        case Kind::Icmpv6: return kIcmpFields;
    }
    return {};
}

}  // namespace

std::vector<std::string> checksum_errors(std::span<const std::uint8_t> frame) {
    Walker w(frame);
    w.run();
    return std::move(w.errors);
}

std::string describe_offset(std::span<const std::uint8_t> frame, std::size_t off) {
    if (off >= frame.size()) return "beyond end";
    Walker w(frame);
    w.run();
    // Layers form one chain, each nested inside the previous: the last one containing `off` is the deepest.
    const Layer* hit = nullptr;
    for (const Layer& l : w.layers) {
        if (off >= l.off && (off < l.end || off < l.off + l.hdr_len)) hit = &l;
    }
    if (hit == nullptr) return "beyond end";  // not reached: the Ethernet layer spans the whole frame
    const std::size_t rel = off - hit->off;
    if (rel < hit->hdr_len) {
        for (const Field& fd : fields_of(hit->kind)) {
            if (rel >= fd.off && rel < fd.off + fd.len) {
                std::string s = hit->name + "." + fd.name;
                if (fd.len > 1) s += "[" + std::to_string(rel - fd.off) + "]";
                return s;
            }
        }
        return hit->name + " header+" + std::to_string(rel);
    }
    if (hit->kind == Kind::Eth || hit->kind == Kind::Vlan) {
        for (const Layer& l : w.layers) {
            if (l.kind == Kind::Ipv4 || l.kind == Kind::Ipv6) return "trailer+" + std::to_string(off - l.end);
        }
        return "l2 payload+" + std::to_string(rel - hit->hdr_len);
    }
    return hit->name + " payload+" + std::to_string(rel - hit->hdr_len);
}

}  // namespace kxlb::test
