// kxlbctl's grammar: `kxlbctl [global options] OBJECT COMMAND [ARGS]` parsed (with CLI11) into a
// typed Invocation, a help text, or a usage error with its exact message. Nothing here touches the
// system, so every argument error is decided before any map is opened.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ctl/args.hpp"
#include "lib/lb_types.hpp"

namespace kxlb::ctl {

inline constexpr const char* kDefaultPinPath = "/sys/fs/bpf/kxlb";

enum class OutputMode { Table, Json, JsonPretty };

struct GlobalOptions {
    OutputMode mode = OutputMode::Table;
    std::string pin_path = kDefaultPinPath;
    bool json() const { return mode != OutputMode::Table; }
};

struct ServiceListCmd {};
struct ServiceShowCmd {
    ServiceRef service;
};
struct BackendListCmd {
    std::optional<ServiceRef> service;
};
struct MaglevShowCmd {
    ServiceRef service;
    bool full = false;
};
struct ConntrackListCmd {
    std::optional<ServiceRef> service;
    std::optional<std::uint32_t> backend_id;
    std::optional<std::size_t> limit;
};
struct ConntrackFlushCmd {
    std::optional<ServiceRef> service;  // all flows when unset
};
struct StatsCmd {
    bool all = false;
};
// One synthetic packet: SRC:SPORT -> DST:DPORT/PROTO with TCP flags, arriving on ifname.
struct TraceCmd {
    IpAddr src, dst;
    std::uint16_t sport = 0, dport = 0;
    std::uint8_t proto = 0;
    std::uint8_t tcp_flags = 0;  // for TCP; default SYN
    std::string ifname;          // empty: the interface of the pinned XDP link, if there is exactly one
};
struct VersionCmd {};

using Command = std::variant<ServiceListCmd, ServiceShowCmd, BackendListCmd, MaglevShowCmd, ConntrackListCmd,
                             ConntrackFlushCmd, StatsCmd, TraceCmd, VersionCmd>;

struct Invocation {
    GlobalOptions global;
    Command command;
};

struct HelpRequest {
    std::string text;
};

struct UsageError {
    std::string message;
    bool json = false;  // -j/-p was given: report the error as JSON
};

using ParseOutcome = std::variant<Invocation, HelpRequest, UsageError>;

// args: the command line without argv[0].
ParseOutcome parse_command_line(const std::vector<std::string>& args);

}  // namespace kxlb::ctl
