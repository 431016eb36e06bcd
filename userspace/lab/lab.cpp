// The netns lab: topology validation, building with `ip`, XDP pass attachment, and guaranteed teardown.
#include "lab/lab.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <mutex>
#include <set>

#include "lib/xdp_programs.hpp"

namespace kxlb::lab {

namespace {

constexpr std::chrono::milliseconds kIpTimeout{5000};
constexpr std::chrono::milliseconds kProcessTermGrace{2000};
constexpr int kPrefixAttempts = 16;

// Prefixes of live Labs in this process: two Labs never share one, even if the random tags collide.
std::mutex g_prefix_mutex;
std::set<std::string> g_prefixes;

void release_prefix(const std::string& prefix) {
    std::lock_guard lock(g_prefix_mutex);
    g_prefixes.erase(prefix);
}

// Reserves a prefix unused both in this process and in /run/netns.
Result<std::string> reserve_prefix() {
    auto existing = list_netns();
    if (!existing) return existing.error();
    std::lock_guard lock(g_prefix_mutex);
    for (int i = 0; i < kPrefixAttempts; ++i) {
        std::string p = make_prefix();
        if (g_prefixes.count(p)) continue;
        std::string dash = p + "-";
        if (std::any_of(existing->begin(), existing->end(), [&](const std::string& n) { return n.starts_with(dash); }))
            continue;
        g_prefixes.insert(p);
        return p;
    }
    return Error{EEXIST, "lab: no unused name prefix found"};
}

std::string quote(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

// ---- pure helpers --------------------------------------------------------------------------

int address_family(std::string_view addr) {
    std::string a(addr);
    unsigned char buf[sizeof(in6_addr)];
    if (::inet_pton(AF_INET, a.c_str(), buf) == 1) return AF_INET;
    if (::inet_pton(AF_INET6, a.c_str(), buf) == 1) return AF_INET6;
    return 0;
}

std::optional<Cidr> parse_cidr(std::string_view s) {
    auto slash = s.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    std::string_view addr = s.substr(0, slash), len_s = s.substr(slash + 1);
    int family = address_family(addr);
    if (family == 0 || len_s.empty() || len_s.size() > 3) return std::nullopt;
    int len = -1;
    auto [ptr, ec] = std::from_chars(len_s.data(), len_s.data() + len_s.size(), len);
    if (ec != std::errc{} || ptr != len_s.data() + len_s.size()) return std::nullopt;
    if (len < 0 || len > (family == AF_INET ? 32 : 128)) return std::nullopt;
    return Cidr{family, std::string(addr), len};
}

bool valid_ifname(std::string_view name) {
    if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..") return false;
    return std::none_of(name.begin(), name.end(),
                        [](char c) { return c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c)); });
}

bool valid_logical_name(std::string_view name) {
    if (name.empty() || name.size() > 64) return false;
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; });
}

Status validate(const Topology& topo) {
    auto fail = [](const std::string& msg) -> Status { return Error::invalid("topology: " + msg); };
    std::set<std::string, std::less<>> ns_set;
    for (const auto& n : topo.namespaces) {
        if (!valid_logical_name(n))
            return fail("invalid namespace name " + quote(n) + ": use 1-64 characters of [A-Za-z0-9_-]");
        if (!ns_set.insert(n).second) return fail("duplicate namespace " + quote(n));
    }
    auto known = [&](const std::string& n) { return ns_set.count(n) != 0; };

    // Interfaces per namespace: "lo", bridges, veth ends.
    std::set<std::pair<std::string, std::string>> ifaces;
    std::set<std::string> switch_ns;
    for (std::size_t i = 0; i < topo.switches.size(); ++i) {
        const auto& s = topo.switches[i];
        std::string what = "switch #" + std::to_string(i);
        if (!known(s.ns)) return fail(what + ": unknown namespace " + quote(s.ns));
        if (!switch_ns.insert(s.ns).second) return fail(what + ": namespace " + quote(s.ns) + " already has a switch");
        if (!valid_ifname(s.bridge))
            return fail(what + ": invalid bridge name " + quote(s.bridge) + " (1-15 chars, no '/', ':' or spaces)");
        if (s.bridge == "lo") return fail(what + ": bridge cannot be named 'lo'");
        ifaces.insert({s.ns, s.bridge});
    }
    for (const auto& n : topo.namespaces) ifaces.insert({n, "lo"});

    for (std::size_t i = 0; i < topo.veths.size(); ++i) {
        const auto& v = topo.veths[i];
        if (v.mtu != 0 && (v.mtu < 68 || v.mtu > 65535))
            return fail("veth #" + std::to_string(i) + ": bad mtu " + std::to_string(v.mtu) + " (68..65535)");
        for (const auto* end : {&v.a, &v.b}) {
            std::string what = "veth #" + std::to_string(i) + " end " + (end == &v.a ? "a" : "b");
            if (!known(end->ns)) return fail(what + ": unknown namespace " + quote(end->ns));
            if (end->name.size() >= IFNAMSIZ)
                return fail(what + ": interface name " + quote(end->name) + " is too long (" +
                            std::to_string(end->name.size()) + " chars, max " + std::to_string(IFNAMSIZ - 1) + ")");
            if (!valid_ifname(end->name))
                return fail(what + ": invalid interface name " + quote(end->name) + " (no '/', ':' or spaces)");
            if (!ifaces.insert({end->ns, end->name}).second)
                return fail(what + ": duplicate interface " + quote(end->name) + " in namespace " + quote(end->ns));
            for (const auto& a : end->addrs)
                if (!parse_cidr(a))
                    return fail(what + ": bad CIDR " + quote(a) + " on " + end->ns + "/" + end->name +
                                " (expected e.g. 10.0.0.1/24 or fd00::1/64)");
            if (switch_ns.count(end->ns) && !end->addrs.empty())
                return fail(what + ": " + end->ns + "/" + end->name +
                            " is a switch port (enslaved to the bridge) and cannot have addresses");
        }
    }

    for (const auto& n : topo.ip_forwarding)
        if (!known(n)) return fail("ip_forwarding: unknown namespace " + quote(n));

    for (std::size_t i = 0; i < topo.routes.size(); ++i) {
        const auto& r = topo.routes[i];
        std::string what = "route #" + std::to_string(i) + " (" + r.dst + ")";
        if (!known(r.ns)) return fail(what + ": unknown namespace " + quote(r.ns));
        int dst_family = 0;
        if (r.dst != "default") {
            auto c = parse_cidr(r.dst);
            if (!c) return fail(what + ": bad destination " + quote(r.dst) + " (a CIDR or \"default\")");
            dst_family = c->family;
        }
        if (r.via.empty() && r.dev.empty()) return fail(what + ": needs via and/or dev");
        if (!r.via.empty()) {
            int via_family = address_family(r.via);
            if (via_family == 0) return fail(what + ": bad gateway " + quote(r.via) + " (an address, no prefix)");
            if (dst_family != 0 && via_family != dst_family)
                return fail(what + ": gateway " + quote(r.via) + " is not of the destination's address family");
        }
        if (!r.dev.empty() && !ifaces.count({r.ns, r.dev}))
            return fail(what + ": unknown device " + quote(r.dev) + " in namespace " + quote(r.ns));
    }
    return {};
}

// ---- Lab -----------------------------------------------------------------------------------

Result<std::unique_ptr<Lab>> Lab::create(const Topology& topo) {
    if (auto st = validate(topo); !st) return st.error();
    // Best effort: a failure here (say a leftover that cannot be unmounted) must not block new labs.
    if (auto stale = cleanup_stale_namespaces(); !stale)
        std::fprintf(stderr, "kxlb lab: stale namespace cleanup: %s\n", stale.error().message.c_str());
    auto prefix = reserve_prefix();
    if (!prefix) return prefix.error();
    std::unique_ptr<Lab> lab(new Lab(topo, std::move(prefix).value()));
    if (auto st = lab->build(); !st) {
        lab.reset();  // tears down whatever was created
        return Error{st.error().code, "lab: " + st.error().message};
    }
    return lab;
}

Lab::Lab(Topology topo, std::string prefix) : topo_(std::move(topo)), prefix_(std::move(prefix)) {}

Lab::~Lab() {
    // 1. Processes: SIGTERM all at once, a shared grace period, then each destructor SIGKILLs and reaps.
    for (auto& p : procs_) p->kill(SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + kProcessTermGrace;
    for (auto& p : procs_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        (void)p->wait(std::max(left, std::chrono::milliseconds(0)));
    }
    for (auto& p : procs_)
        if (p->running()) p->kill(SIGKILL);  // so each destructor below returns at once
    procs_.clear();
    // 2. XDP: detach before the devices go away (they would detach anyway), then unload.
    xdp_links_.clear();
    xdp_pass_.reset();
    // 3. Namespaces, newest first (veths and bridges die with them).
    for (auto it = created_.rbegin(); it != created_.rend(); ++it)
        if (auto st = delete_netns(*it); !st)
            std::fprintf(stderr, "kxlb lab: teardown: %s\n", st.error().message.c_str());
    created_.clear();
    release_prefix(prefix_);
}

std::string Lab::ns_name(std::string_view logical) const { return make_netns_name(prefix_, logical); }
std::string Lab::ns_path(std::string_view logical) const { return netns_path(ns_name(logical)); }

bool Lab::has_ns(std::string_view logical) const {
    return std::find(topo_.namespaces.begin(), topo_.namespaces.end(), logical) != topo_.namespaces.end();
}

Result<std::string> Lab::find_ns_path(std::string_view logical) const {
    if (!has_ns(logical)) return Error{ENOENT, "lab: unknown namespace " + quote(logical)};
    return ns_path(logical);
}

const Switch* Lab::find_switch(std::string_view logical) const {
    for (const auto& s : topo_.switches)
        if (s.ns == logical) return &s;
    return nullptr;
}

Status Lab::ip(std::string_view ns, std::vector<std::string> args) {
    std::vector<std::string> argv{"ip", "-n", ns_name(ns)};
    argv.insert(argv.end(), std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
    auto r = run_command(argv, kIpTimeout);
    if (!r) return r.error();
    if (r->exit_code != 0) {
        std::string err = r->err.empty() ? r->out : r->err;
        while (!err.empty() && std::isspace(static_cast<unsigned char>(err.back()))) err.pop_back();
        return Error{EIO, format_argv(argv) + " failed (exit " + std::to_string(r->exit_code) + "): " + err};
    }
    return {};
}

Status Lab::build() {
    for (const auto& n : topo_.namespaces)
        if (auto st = build_namespace(n); !st) return st;
    for (const auto& s : topo_.switches) {
        std::vector<std::string> add{"link", "add", s.bridge, "type", "bridge"};
        add.insert(add.end(), {"stp_state", "0", "mcast_snooping", "0"});
        if (auto st = ip(s.ns, std::move(add)); !st) return st;
        if (auto st = ip(s.ns, {"link", "set", s.bridge, "up"}); !st) return st;
    }
    for (const auto& v : topo_.veths)
        if (auto st = build_veth(v); !st) return st;
    for (const auto& n : topo_.ip_forwarding) {
        if (auto st = sysctl(n, "net.ipv4.ip_forward", "1"); !st) return st;
        if (auto st = sysctl(n, "net.ipv6.conf.all.forwarding", "1"); !st) return st;
    }
    for (const auto& r : topo_.routes)
        if (auto st = build_route(r); !st) return st;
    for (const auto& v : topo_.veths) {
        if (v.xdp_pass_on_a)
            if (auto st = attach_xdp_pass(v.a.ns, v.a.name); !st) return st;
        if (v.xdp_pass_on_b)
            if (auto st = attach_xdp_pass(v.b.ns, v.b.name); !st) return st;
    }
    return {};
}

Status Lab::build_namespace(const std::string& logical) {
    std::string name = ns_name(logical);
    if (auto st = add_netns(name); !st) return st;
    created_.push_back(name);
    // No DAD: IPv6 addresses (including link-local ones of interfaces created later) are usable at once.
    // Tolerate hosts without IPv6 (ENOENT); topologies using it then fail when adding addresses.
    for (const char* key : {"net.ipv6.conf.default.accept_dad", "net.ipv6.conf.all.accept_dad"})
        if (auto st = sysctl(logical, key, "0"); !st && st.error().code != ENOENT) return st;
    return ip(logical, {"link", "set", "lo", "up"});
}

Status Lab::build_veth(const VethPair& v) {
    std::vector<std::string> add{"link", "add", v.a.name};
    if (v.mtu != 0) add.insert(add.end(), {"mtu", std::to_string(v.mtu)});
    add.insert(add.end(), {"type", "veth", "peer", "name", v.b.name});
    if (v.mtu != 0) add.insert(add.end(), {"mtu", std::to_string(v.mtu)});
    if (v.b.ns != v.a.ns) add.insert(add.end(), {"netns", ns_name(v.b.ns)});
    if (auto st = ip(v.a.ns, std::move(add)); !st) return st;

    for (const auto* end : {&v.a, &v.b}) {
        if (const Switch* sw = find_switch(end->ns))
            if (auto st = ip(end->ns, {"link", "set", end->name, "master", sw->bridge}); !st) return st;
        if (auto st = ip(end->ns, {"link", "set", end->name, "up"}); !st) return st;
        for (const auto& a : end->addrs) {
            std::vector<std::string> args{"addr", "add", a, "dev", end->name};
            if (parse_cidr(a)->family == AF_INET6) args.emplace_back("nodad");
            if (auto st = ip(end->ns, std::move(args)); !st) return st;
        }
    }
    return {};
}

Status Lab::build_route(const Route& r) {
    bool v6 = (r.dst != "default" && parse_cidr(r.dst)->family == AF_INET6) ||
              (!r.via.empty() && address_family(r.via) == AF_INET6);
    std::vector<std::string> args{v6 ? "-6" : "-4", "route", "add", r.dst};
    if (!r.via.empty()) args.insert(args.end(), {"via", r.via});
    if (!r.dev.empty()) args.insert(args.end(), {"dev", r.dev});
    return ip(r.ns, std::move(args));
}

Result<int> Lab::ifindex(std::string_view ns, std::string_view ifname) const {
    auto path = find_ns_path(ns);
    if (!path) return path.error();
    auto guard = NetnsGuard::enter(*path);
    if (!guard) return guard.error();
    unsigned idx = ::if_nametoindex(std::string(ifname).c_str());
    if (idx == 0) return Error::from_errno(errno, "ifindex of " + quote(ifname) + " in namespace " + quote(ns));
    return static_cast<int>(idx);
}

Result<CommandResult> Lab::run(std::string_view ns, const std::vector<std::string>& argv,
                               std::chrono::milliseconds timeout) {
    auto path = find_ns_path(ns);
    if (!path) return path.error();
    return run_command(argv, timeout, *path);
}

Result<Process*> Lab::spawn(std::string_view ns, const std::vector<std::string>& argv) {
    auto path = find_ns_path(ns);
    if (!path) return path.error();
    auto p = lab::spawn(argv, *path);
    if (!p) return p.error();
    procs_.push_back(std::make_unique<Process>(std::move(p).value()));
    return procs_.back().get();
}

Result<UniqueFd> Lab::socket(std::string_view ns, int domain, int type, int protocol) {
    auto path = find_ns_path(ns);
    if (!path) return path.error();
    auto guard = NetnsGuard::enter(*path);
    if (!guard) return guard.error();
    int fd = ::socket(domain, type | SOCK_CLOEXEC, protocol);
    if (fd < 0) return Error::from_errno(errno, "socket in namespace " + quote(ns));
    return UniqueFd(fd);
}

Status Lab::sysctl(std::string_view ns, const std::string& key, const std::string& value) {
    std::string rel = key;
    if (rel.find('/') == std::string::npos) std::replace(rel.begin(), rel.end(), '.', '/');
    if (!rel.starts_with("net/") || rel.find("..") != std::string::npos || rel.find("//") != std::string::npos)
        return Error::invalid("sysctl " + quote(key) + ": only per-namespace \"net.\" keys are allowed");
    std::string path = "/proc/sys/" + rel;
    auto ns_file = find_ns_path(ns);
    if (!ns_file) return ns_file.error();
    auto guard = NetnsGuard::enter(*ns_file);
    if (!guard) return guard.error();
    std::string what = "sysctl " + key + "=" + value + " in namespace " + quote(ns);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) return Error::from_errno(errno, what + " (open " + path + ")");
    ssize_t n = ::write(fd.get(), value.data(), value.size());
    if (n < 0) return Error::from_errno(errno, what);
    if (static_cast<std::size_t>(n) != value.size()) return Error{EIO, what + ": short write"};
    return {};
}

Status Lab::attach_xdp_pass(std::string_view ns, std::string_view ifname) {
    if (!xdp_pass_) {
        auto prog = XdpPassProgram::load();
        if (!prog) return Error{prog.error().code, "load XDP pass program: " + prog.error().message};
        xdp_pass_ = std::make_unique<XdpPassProgram>(std::move(prog).value());
    }
    auto path = find_ns_path(ns);
    if (!path) return path.error();
    auto guard = NetnsGuard::enter(*path);
    if (!guard) return guard.error();
    std::string where = std::string(ns) + "/" + std::string(ifname);
    unsigned idx = ::if_nametoindex(std::string(ifname).c_str());
    if (idx == 0) return Error::from_errno(errno, "XDP pass on " + where + ": ifindex");
    auto link = xdp_pass_->attach(static_cast<int>(idx), XdpMode::Native);
    if (!link) return Error{link.error().code, "XDP pass on " + where + ": " + link.error().message};
    auto state = query_xdp(static_cast<int>(idx));
    if (!state) return Error{state.error().code, "XDP pass on " + where + ": " + state.error().message};
    if (!state->native || state->prog_id == 0)
        return Error{EIO, "XDP pass on " + where + ": not attached in native mode after attach (prog_id " +
                              std::to_string(state->prog_id) + ")"};
    xdp_links_.push_back(std::move(link).value());
    return {};
}

}  // namespace kxlb::lab
