// Network namespaces for the lab: setns guard, lab naming scheme, add/delete, stale cleanup.
#include "lab/netns.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <utility>

#include "lab/process.hpp"

namespace kxlb::lab {

namespace {

constexpr std::chrono::milliseconds kIpTimeout{5000};

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// Runs `ip <args...>` and turns a non-zero exit into an error carrying ip's stderr.
Status run_ip(const std::vector<std::string>& args) {
    std::vector<std::string> argv{"ip"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_command(argv, kIpTimeout);
    if (!r) return r.error();
    if (r->exit_code != 0) {
        std::string err = r->err.empty() ? r->out : r->err;
        while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
        return Error{EIO, format_argv(argv) + " failed (exit " + std::to_string(r->exit_code) + "): " + err};
    }
    return {};
}

}  // namespace

std::string make_prefix(pid_t pid, std::uint16_t tag) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "%04x", static_cast<unsigned>(tag));
    return std::string(kLabNetnsPrefix) + std::to_string(pid) + "-" + hex;
}

std::string make_prefix() {
    static thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<unsigned> dist(0, 0xffff);
    return make_prefix(::getpid(), static_cast<std::uint16_t>(dist(rng)));
}

std::string make_netns_name(std::string_view prefix, std::string_view logical) {
    std::string s(prefix);
    s += '-';
    s += logical;
    return s;
}

std::string netns_path(std::string_view name) {
    std::string s(kNetnsRunDir);
    s += '/';
    s += name;
    return s;
}

std::optional<LabNetnsName> parse_lab_netns_name(std::string_view name) {
    if (!name.starts_with(kLabNetnsPrefix)) return std::nullopt;
    std::string_view rest = name.substr(kLabNetnsPrefix.size());

    auto dash = rest.find('-');
    if (dash == std::string_view::npos || dash == 0) return std::nullopt;
    std::string_view pid_s = rest.substr(0, dash);
    if (pid_s[0] == '0') return std::nullopt;  // no leading zeros (also rejects pid 0)
    for (char c : pid_s)
        if (c < '0' || c > '9') return std::nullopt;
    long long pid = 0;
    auto [ptr, ec] = std::from_chars(pid_s.data(), pid_s.data() + pid_s.size(), pid);
    if (ec != std::errc{} || ptr != pid_s.data() + pid_s.size() || pid <= 0 || pid > std::numeric_limits<pid_t>::max())
        return std::nullopt;
    rest = rest.substr(dash + 1);

    if (rest.size() < 6 || rest[4] != '-') return std::nullopt;  // "hhhh-" + at least one logical char
    for (int i = 0; i < 4; ++i)
        if (!is_lower_hex(rest[i])) return std::nullopt;
    return LabNetnsName{static_cast<pid_t>(pid), std::string(rest.substr(0, 4)), std::string(rest.substr(5))};
}

bool pid_alive(pid_t pid) {
    if (pid <= 0) return false;
    return ::kill(pid, 0) == 0 || errno == EPERM;
}

std::vector<std::string> select_stale_namespaces(const std::vector<std::string>& names,
                                                 const std::function<bool(pid_t)>& alive) {
    std::vector<std::string> stale;
    for (const auto& n : names) {
        auto parsed = parse_lab_netns_name(n);
        if (parsed && !alive(parsed->pid)) stale.push_back(n);
    }
    return stale;
}

Result<std::vector<std::string>> list_netns() {
    std::vector<std::string> names;
    std::string dir(kNetnsRunDir);
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
        if (errno == ENOENT) return names;
        return Error::from_errno(errno, "open " + dir);
    }
    while (dirent* e = ::readdir(d)) {
        std::string_view n = e->d_name;
        if (n == "." || n == "..") continue;
        names.emplace_back(n);
    }
    ::closedir(d);
    return names;
}

Status add_netns(const std::string& name) { return run_ip({"netns", "add", name}); }

Status delete_netns(const std::string& name) {
    auto st = run_ip({"netns", "del", name});
    if (st) return st;
    // Fallback, what `ip netns del` does: lazily unmount the nsfs bind mount, then remove the file.
    std::string path = netns_path(name);
    ::umount2(path.c_str(), MNT_DETACH);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return Error::from_errno(errno, "delete netns " + name + " (" + st.error().message + "); unlink " + path);
    return {};
}

Result<int> cleanup_stale_namespaces() {
    auto names = list_netns();
    if (!names) return names.error();
    int removed = 0;
    std::string failures;
    for (const auto& n : select_stale_namespaces(*names, pid_alive)) {
        if (auto st = delete_netns(n); st) ++removed;
        else failures += (failures.empty() ? "" : "; ") + st.error().message;
    }
    if (!failures.empty())
        return Error{EIO, "removed " + std::to_string(removed) + " stale lab namespaces, failed: " + failures};
    return removed;
}

// ---- NetnsGuard ----------------------------------------------------------------------------

Result<NetnsGuard> NetnsGuard::enter(const std::string& netns_path) {
    UniqueFd original(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!original.valid()) return Error::from_errno(errno, "open /proc/thread-self/ns/net");
    UniqueFd target(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!target.valid()) return Error::from_errno(errno, "open netns " + netns_path);
    if (::setns(target.get(), CLONE_NEWNET) != 0) return Error::from_errno(errno, "setns " + netns_path);
    return NetnsGuard(std::move(original));
}

NetnsGuard& NetnsGuard::operator=(NetnsGuard&& o) noexcept {
    if (this != &o) {
        restore();
        original_ = std::move(o.original_);
    }
    return *this;
}

NetnsGuard::~NetnsGuard() { restore(); }

void NetnsGuard::restore() noexcept {
    if (!original_.valid()) return;
    if (::setns(original_.get(), CLONE_NEWNET) != 0) {
        std::fprintf(stderr, "kxlb lab: cannot restore the thread's network namespace: %s; aborting\n",
                     std::strerror(errno));
        std::abort();
    }
    original_.reset();
}

}  // namespace kxlb::lab
