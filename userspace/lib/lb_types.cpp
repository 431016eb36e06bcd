// Address parsing/formatting and ABI conversions for the load balancer vocabulary.
#include "lib/lb_types.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <set>

namespace kxlb {

Result<IpAddr> IpAddr::parse(std::string_view text) {
    std::string s(text);
    IpAddr a;
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
        a.family = AF_INET;
        return a;
    }
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
        a.family = AF_INET6;
        return a;
    }
    return Error::invalid("'" + s + "' is not an IPv4 or IPv6 address");
}

IpAddr IpAddr::v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
    IpAddr r;
    r.family = AF_INET;
    r.bytes = {a, b, c, d};
    return r;
}

std::string IpAddr::str() const {
    char buf[INET6_ADDRSTRLEN] = {};
    if (family != AF_INET && family != AF_INET6) return "<none>";
    inet_ntop(family, bytes.data(), buf, sizeof(buf));
    return buf;
}

bool IpAddr::is_zero() const {
    for (auto b : bytes)
        if (b) return false;
    return true;
}

void IpAddr::to_words(__be32 out[4]) const { std::memcpy(out, bytes.data(), 16); }

IpAddr IpAddr::from_words(std::uint8_t fam, const __be32 in[4]) {
    IpAddr a;
    a.family = fam;
    std::memcpy(a.bytes.data(), in, 16);
    return a;
}

const char* proto_name(std::uint8_t proto) {
    switch (proto) {
        case IPPROTO_TCP: return "tcp";
        case IPPROTO_UDP: return "udp";
        default: return "other";
    }
}

kxlb_vip_key Frontend::key() const {
    kxlb_vip_key k{};
    addr.to_words(k.addr);
    k.port = htons(port);
    k.proto = proto;
    k.family = addr.family;
    return k;
}

Frontend Frontend::from_key(const kxlb_vip_key& key) {
    return Frontend{IpAddr::from_words(key.family, key.addr), ntohs(key.port), key.proto};
}

std::string Frontend::str() const {
    std::string a = addr.family == AF_INET6 ? "[" + addr.str() + "]" : addr.str();
    return a + ":" + std::to_string(port) + "/" + proto_name(proto);
}

BackendIdentity BackendSpec::identity() const {
    BackendIdentity id;
    id.family = addr.family;
    id.addr = addr.bytes;
    id.port = port;
    return id;
}

std::string BackendSpec::str() const {
    std::string a = addr.family == AF_INET6 ? "[" + addr.str() + "]" : addr.str();
    return a + ":" + std::to_string(port);
}

std::string Cidr::str() const { return addr.str() + "/" + std::to_string(prefix_len); }

Cidr Cidr::network() const {
    Cidr n = *this;
    for (std::size_t i = 0; i < n.addr.bytes.size(); ++i) {
        const int keep = std::clamp(static_cast<int>(prefix_len) - static_cast<int>(i) * 8, 0, 8);
        n.addr.bytes[i] &= static_cast<std::uint8_t>(0xff00 >> keep);
    }
    return n;
}

kxlb_src_range_key source_range_key(std::uint32_t svc_id, const Cidr& range) {
    kxlb_src_range_key k{};
    k.prefixlen = KXLB_SRC_RANGE_KEY_BITS + range.prefix_len;
    k.svc_id = htonl(svc_id);
    k.family = range.addr.family;
    range.addr.to_words(k.addr);
    return k;
}

std::optional<std::pair<std::uint32_t, Cidr>> source_range_from_key(const kxlb_src_range_key& key) {
    if (key.family != AF_INET && key.family != AF_INET6) return std::nullopt;
    const unsigned max_len = key.family == AF_INET ? 32 : 128;
    if (key.prefixlen < KXLB_SRC_RANGE_KEY_BITS || key.prefixlen - KXLB_SRC_RANGE_KEY_BITS > max_len)
        return std::nullopt;
    Cidr c{IpAddr::from_words(key.family, key.addr),
           static_cast<std::uint8_t>(key.prefixlen - KXLB_SRC_RANGE_KEY_BITS)};
    return std::make_pair(ntohl(key.svc_id), c);
}

kxlb_service service_value(std::uint32_t id, const ServiceSpec& spec) {
    kxlb_service v{};
    v.id = id;
    v.flags = spec.flags | (spec.source_ranges.empty() ? 0u : static_cast<std::uint32_t>(KXLB_SVC_F_SOURCE_RANGES));
    v.affinity_timeout_s = spec.affinity_timeout_s;
    return v;
}

Status validate(const ServiceSpec& svc) {
    std::string errs;
    auto err = [&](const std::string& e) { errs += (errs.empty() ? "" : "\n") + svc.frontend.str() + ": " + e; };
    const auto& fe = svc.frontend;
    if (fe.addr.family != AF_INET && fe.addr.family != AF_INET6) err("frontend address is not set");
    else if (fe.addr.is_zero()) err("frontend address is unspecified (0.0.0.0 / ::)");
    if (fe.port == 0) err("frontend port 0: a port is required");
    if (fe.proto != IPPROTO_TCP && fe.proto != IPPROTO_UDP) err("protocol must be tcp or udp");
    std::set<BackendIdentity> seen;
    for (const auto& be : svc.backends) {
        if (be.addr.family != fe.addr.family)
            err("backend " + be.str() + " has another address family than the frontend (full-NAT keeps the family)");
        if (be.addr.is_zero()) err("backend " + be.str() + " has an unspecified address");
        if (be.port == 0) err("backend " + be.str() + " has port 0");
        if (!seen.insert(be.identity()).second) err("backend " + be.str() + " is listed twice");
        if (be.weight > 65535) err("backend " + be.str() + " weight " + std::to_string(be.weight) + " > 65535");
    }
    if (svc.flags & ~static_cast<std::uint32_t>(KXLB_SVC_F_SOCKET_LB | KXLB_SVC_F_DSR))
        err("flags " + std::to_string(svc.flags) + " hold bits other than socket-lb and dsr");
    for (std::size_t i = 0; i < svc.source_ranges.size(); ++i) {
        const auto& r = svc.source_ranges[i];
        const unsigned max_len = r.addr.family == AF_INET ? 32 : 128;
        if (r.addr.family != AF_INET && r.addr.family != AF_INET6) err("source range without an address family");
        else if (r.prefix_len > max_len) err("source range " + r.str() + " is longer than /" + std::to_string(max_len));
        else if (!r.host_bits_zero()) err("source range " + r.str() + " has host bits set");
        if (i > 0 && !(svc.source_ranges[i - 1] < r)) err("source ranges must be sorted and unique");
    }
    if (svc.source_ranges.size() > KXLB_MAX_SOURCE_RANGES) err("too many source ranges");
    if (!errs.empty()) return Error::invalid(errs);
    return {};
}

kxlb_config LbConfig::to_abi() const {
    kxlb_config c{};
    c.hash_seed = hash_seed;
    if (snat_v4.family == AF_INET) std::memcpy(&c.snat_v4, snat_v4.bytes.data(), 4);
    if (snat_v6.family == AF_INET6) snat_v6.to_words(c.snat_v6);
    c.snat_port_lo = snat_port_lo;
    c.snat_port_hi = snat_port_hi;
    c.udp_timeout_s = udp_timeout_s;
    c.tcp_timewait_s = tcp_timewait_s;
    if (encap_src_v4.addr.family == AF_INET) {
        std::memcpy(&c.encap_src_v4, encap_src_v4.addr.bytes.data(), 4);
        c.encap_src_v4_len = encap_src_v4.prefix_len;
    }
    if (encap_src_v6.addr.family == AF_INET6) {
        encap_src_v6.addr.to_words(c.encap_src_v6);
        c.encap_src_v6_len = encap_src_v6.prefix_len;
    }
    return c;
}

Status validate(const LbConfig& cfg) {
    if (cfg.snat_v4.family != 0 && cfg.snat_v4.family != AF_INET)
        return Error::invalid("snat_v4 must be an IPv4 address");
    if (cfg.snat_v6.family != 0 && cfg.snat_v6.family != AF_INET6)
        return Error::invalid("snat_v6 must be an IPv6 address");
    if (cfg.snat_port_lo == 0 || cfg.snat_port_hi < cfg.snat_port_lo)
        return Error::invalid("SNAT port range " + std::to_string(cfg.snat_port_lo) + "-" +
                              std::to_string(cfg.snat_port_hi) + " is empty or starts at 0");
    if (cfg.udp_timeout_s == 0) return Error::invalid("udp_timeout_s must be > 0");
    // The datapath takes a prefix as set when its length is not 0: an address family without a
    // usable length would silently fall back to the node address.
    struct EncapSrc {
        const Cidr& c;
        const char* name;
        std::uint8_t family, min_len, max_len;
    };
    for (const EncapSrc& e : {EncapSrc{cfg.encap_src_v4, "encap_src_v4", AF_INET, 8, 32},
                              EncapSrc{cfg.encap_src_v6, "encap_src_v6", AF_INET6, 64, 128}}) {
        if (e.c.addr.family == 0) {
            if (e.c.prefix_len != 0) return Error::invalid(std::string(e.name) + " has a length but no address");
            continue;
        }
        if (e.c.addr.family != e.family)
            return Error::invalid(std::string(e.name) + " must be an " + (e.family == AF_INET ? "IPv4" : "IPv6") +
                                  " prefix");
        if (e.c.prefix_len < e.min_len || e.c.prefix_len > e.max_len)
            return Error::invalid(std::string(e.name) + " " + e.c.str() + ": length must be /" +
                                  std::to_string(e.min_len) + "../" + std::to_string(e.max_len));
        if (!e.c.host_bits_zero()) return Error::invalid(std::string(e.name) + " " + e.c.str() + " has host bits set");
        if (e.c.addr.is_zero()) return Error::invalid(std::string(e.name) + " is the unspecified address");
    }
    return {};
}

}  // namespace kxlb
