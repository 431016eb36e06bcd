// Parsers for kxlbctl's argument values (services, addresses, ports, protocols, TCP flags, counts):
// pure functions whose errors are the exact messages the CLI prints for a usage error.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "lib/lb_types.hpp"
#include "lib/result.hpp"

namespace kxlb::ctl {

// A service named on the command line: by frontend or by numeric service id.
struct ServiceRef {
    std::variant<std::uint32_t, Frontend> v;
    std::string str() const;  // "7" or "10.96.0.1:443/tcp"
    bool operator==(const ServiceRef&) const = default;
};

// "10.96.0.1:443/tcp", "[fd00::1]:53/udp" or a service id ("7").
Result<ServiceRef> parse_service_ref(std::string_view text);
// "tcp" / "udp" (case-insensitive) -> IPPROTO_TCP / IPPROTO_UDP.
Result<std::uint8_t> parse_proto(std::string_view text);
// 1..65535. what names the argument in the message ("SPORT").
Result<std::uint16_t> parse_port(std::string_view what, std::string_view text);
// A decimal number 0..max. what names the argument in the message ("--limit").
Result<std::uint64_t> parse_number(std::string_view what, std::string_view text, std::uint64_t max);
// Comma-separated TCP flags: syn, ack, fin, rst, psh (e.g. "syn", "ack", "fin,ack") -> header bits.
Result<std::uint8_t> parse_tcp_flags(std::string_view text);
// Names of the TCP flag bits ("syn,ack"); "none" for 0.
std::string tcp_flags_str(std::uint8_t flags);

}  // namespace kxlb::ctl
