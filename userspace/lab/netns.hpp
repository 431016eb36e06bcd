// Network namespaces for the lab: entering one on the calling thread, the "kxlb-<pid>-<hex>-<logical>"
// naming scheme, and removal of namespaces left behind by lab processes that died.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lib/result.hpp"
#include "lib/unique_fd.hpp"

namespace kxlb::lab {

// Where `ip netns add` mounts named namespaces.
inline constexpr std::string_view kNetnsRunDir = "/run/netns";
// Every lab namespace name starts with this.
inline constexpr std::string_view kLabNetnsPrefix = "kxlb-";

// "kxlb-<pid>-<tag as 4 lowercase hex digits>", e.g. make_prefix(12345, 0xa1b2) == "kxlb-12345-a1b2".
std::string make_prefix(pid_t pid, std::uint16_t tag);
// A fresh prefix for this process: its pid plus a random tag.
std::string make_prefix();
// "<prefix>-<logical>": the real netns name of a lab's logical namespace.
std::string make_netns_name(std::string_view prefix, std::string_view logical);
// "/run/netns/<name>".
std::string netns_path(std::string_view name);

// A lab netns name taken apart.
struct LabNetnsName {
    pid_t pid = 0;        // the process that created it
    std::string tag;      // the 4 hex digits
    std::string logical;  // the rest (non-empty; may itself contain '-')
};
// Parses "kxlb-<pid>-<4 hex>-<logical>". pid: decimal, no sign, no leading zero, > 0, fits pid_t;
// tag: exactly 4 lowercase hex digits; logical: non-empty. Anything else yields nullopt.
std::optional<LabNetnsName> parse_lab_netns_name(std::string_view name);

// True if a process with this pid exists (kill(pid, 0) succeeds or fails with EPERM).
bool pid_alive(pid_t pid);
// Pure selection: the names among `names` that follow the lab scheme and whose pid `alive` reports
// dead. Names not matching the scheme are never selected.
std::vector<std::string> select_stale_namespaces(const std::vector<std::string>& names,
                                                 const std::function<bool(pid_t)>& alive);

// Names of the namespaces in /run/netns (empty if the directory does not exist).
Result<std::vector<std::string>> list_netns();
// `ip netns add <name>`.
Status add_netns(const std::string& name);
// `ip netns del <name>`; if that fails, unmounts and unlinks /run/netns/<name> directly. Bounded (~5 s).
// A process or fd still inside the namespace keeps it alive, but it disappears from /run/netns.
Status delete_netns(const std::string& name);

// Deletes every netns named "kxlb-<pid>-<hex>-<logical>" whose <pid> is not a live process. Never
// touches names of live pids or names outside the scheme. Returns how many were removed; an error if
// /run/netns could not be read or some deletion failed (the others are still attempted).
// Caveat: pids are checked in the caller's pid namespace.
Result<int> cleanup_stale_namespaces();

// Enters a network namespace on the calling thread for the guard's lifetime (setns(CLONE_NEWNET)) and
// restores the thread's previous namespace on destruction. Must be destroyed on the thread that created
// it. Other threads of the process are unaffected. If restoring fails (it should never happen), the
// process aborts: continuing in the wrong namespace would silently misdirect every later operation.
class NetnsGuard {
public:
    // netns_path: a file naming a netns, e.g. "/run/netns/NAME" or "/proc/<pid>/ns/net".
    static Result<NetnsGuard> enter(const std::string& netns_path);
    ~NetnsGuard();
    NetnsGuard(NetnsGuard&& o) noexcept = default;
    NetnsGuard& operator=(NetnsGuard&& o) noexcept;
    NetnsGuard(const NetnsGuard&) = delete;
    NetnsGuard& operator=(const NetnsGuard&) = delete;

private:
    explicit NetnsGuard(UniqueFd original) : original_(std::move(original)) {}
    void restore() noexcept;
    UniqueFd original_;  // the thread's namespace before enter(); invalid once moved from
};

}  // namespace kxlb::lab
