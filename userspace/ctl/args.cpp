// Argument value parsers for kxlbctl.
#include "ctl/args.hpp"

#include <netinet/in.h>

#include <array>
#include <charconv>
#include <utility>

namespace kxlb::ctl {

namespace {

constexpr std::array<std::pair<std::string_view, std::uint8_t>, 5> kTcpFlags = {{
    {"fin", 0x01},
    {"syn", 0x02},
    {"rst", 0x04},
    {"psh", 0x08},
    {"ack", 0x10},
}};

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

Error bad_service(std::string_view text) {
    return Error::invalid("bad service '" + std::string(text) +
                          "': expected ADDRESS:PORT/PROTO (10.96.0.1:443/tcp, [fd00::1]:53/udp) or a service id");
}

}  // namespace

std::string ServiceRef::str() const {
    if (const auto* id = std::get_if<std::uint32_t>(&v)) return std::to_string(*id);
    return std::get<Frontend>(v).str();
}

Result<std::uint64_t> parse_number(std::string_view what, std::string_view text, std::uint64_t max) {
    std::uint64_t n = 0;
    const auto* end = text.data() + text.size();
    auto [p, ec] = std::from_chars(text.data(), end, n);
    if (!all_digits(text) || ec != std::errc() || p != end || n > max)
        return Error::invalid(std::string(what) + ": '" + std::string(text) + "' is not a number from 0 to " +
                              std::to_string(max));
    return n;
}

Result<std::uint16_t> parse_port(std::string_view what, std::string_view text) {
    auto n = parse_number(what, text, 65535);
    if (!n || *n == 0)
        return Error::invalid(std::string(what) + ": '" + std::string(text) + "' is not a port (1-65535)");
    return static_cast<std::uint16_t>(*n);
}

Result<std::uint8_t> parse_proto(std::string_view text) {
    const std::string p = lower(text);
    if (p == "tcp") return static_cast<std::uint8_t>(IPPROTO_TCP);
    if (p == "udp") return static_cast<std::uint8_t>(IPPROTO_UDP);
    return Error::invalid("bad protocol '" + std::string(text) + "': expected tcp or udp");
}

Result<ServiceRef> parse_service_ref(std::string_view text) {
    if (all_digits(text)) {
        auto id = parse_number("service id", text, KXLB_MAX_SERVICES - 1);
        if (!id) return id.error();
        return ServiceRef{static_cast<std::uint32_t>(*id)};
    }
    const auto slash = text.rfind('/');
    if (slash == std::string_view::npos) return bad_service(text);
    const std::string_view hostport = text.substr(0, slash);
    std::string_view host, port;
    if (!hostport.empty() && hostport.front() == '[') {
        const auto close = hostport.find(']');
        if (close == std::string_view::npos || close + 1 >= hostport.size() || hostport[close + 1] != ':')
            return bad_service(text);
        host = hostport.substr(1, close - 1);
        port = hostport.substr(close + 2);
    } else {
        const auto colon = hostport.rfind(':');
        if (colon == std::string_view::npos) return bad_service(text);
        host = hostport.substr(0, colon);
        port = hostport.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) return bad_service(text);  // IPv6 needs brackets
    }
    auto addr = IpAddr::parse(host);
    auto p = parse_port("port", port);
    auto proto = parse_proto(text.substr(slash + 1));
    if (!addr || !p || !proto) return bad_service(text);
    if (!hostport.empty() && hostport.front() == '[' && addr->family != AF_INET6) return bad_service(text);
    return ServiceRef{Frontend{*addr, *p, *proto}};
}

Result<std::uint8_t> parse_tcp_flags(std::string_view text) {
    std::uint8_t bits = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const auto comma = text.find(',', pos);
        const auto name =
            lower(text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
        bool known = false;
        for (const auto& [n, bit] : kTcpFlags)
            if (n == name) {
                bits |= bit;
                known = true;
            }
        if (!known)
            return Error::invalid("bad TCP flags '" + std::string(text) +
                                  "': expected a comma-separated list of syn, ack, fin, rst, psh");
        if (comma == std::string_view::npos) break;
        pos = comma + 1;
    }
    return bits;
}

std::string tcp_flags_str(std::uint8_t flags) {
    std::string out;
    for (std::string_view n : {"syn", "fin", "rst", "psh", "ack"})
        for (const auto& [name, bit] : kTcpFlags)
            if (name == n && (flags & bit)) out += (out.empty() ? "" : ",") + std::string(n);
    return out.empty() ? "none" : out;
}

}  // namespace kxlb::ctl
