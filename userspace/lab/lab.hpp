// The netns lab: declare a topology (namespaces, veth pairs, bridge "switches", addresses, routes,
// forwarding, XDP pass on veth peers), build it with unique names, use it, and tear it down for sure.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lab/netns.hpp"
#include "lab/process.hpp"
#include "lib/bpf_link.hpp"
#include "lib/result.hpp"
#include "lib/unique_fd.hpp"

namespace kxlb {
class XdpPassProgram;
}

namespace kxlb::lab {

// One end of a veth pair.
struct Interface {
    std::string ns;                  // logical namespace name
    std::string name;                // interface name inside ns (1..15 chars, no '/', ':' or spaces)
    std::vector<std::string> addrs;  // CIDRs, e.g. "10.0.0.1/24", "fd00::1/64" (IPv6 added with nodad)
};

// A veth pair between two namespaces (or within one). An end whose ns names a Switch is enslaved to that
// switch's bridge (such an end must not have addresses).
struct VethPair {
    Interface a;
    Interface b;
    bool xdp_pass_on_a = false;  // attach the XDP_PASS program natively on end a
    bool xdp_pass_on_b = false;  // ... on end b
    int mtu = 0;                 // 0: kernel default; otherwise set on both ends (68..65535)
};

// A route in a namespace. dst: CIDR or "default" ("default" is IPv4 unless via is IPv6; use "::/0" for an
// IPv6 default route through a device only). At least one of via/dev.
struct Route {
    std::string ns;
    std::string dst;
    std::string via;  // gateway address (no prefix length), same family as dst
    std::string dev;  // an interface of ns (a veth end, a bridge, or "lo")
};

// A namespace containing a Linux bridge (STP off, multicast snooping off) acting as a switch.
struct Switch {
    std::string ns;
    std::string bridge = "br0";
};

struct Topology {
    std::vector<std::string> namespaces;  // logical names: 1..64 chars of [A-Za-z0-9_-], unique
    std::vector<Switch> switches;         // their ns must also be listed in namespaces
    std::vector<VethPair> veths;
    std::vector<Route> routes;               // added after all links and addresses
    std::vector<std::string> ip_forwarding;  // logical namespaces with IPv4 + IPv6 forwarding enabled
};

// A parsed "addr/len".
struct Cidr {
    int family = 0;  // AF_INET or AF_INET6
    std::string addr;
    int prefix_len = 0;
};
// Parses "10.0.0.1/24" or "fd00::1/64" (the prefix length is required and range-checked).
std::optional<Cidr> parse_cidr(std::string_view s);
// AF_INET / AF_INET6 for a plain address ("10.0.0.1", "fd00::1"), 0 if it is not one.
int address_family(std::string_view addr);
// Linux's rules for interface names: 1..15 chars, not "." or "..", no '/', ':' or whitespace.
bool valid_ifname(std::string_view name);
// Lab logical namespace names: 1..64 chars of [A-Za-z0-9_-].
bool valid_logical_name(std::string_view name);

// Checks a topology without touching the system (no root needed). The error message names the offending
// element, e.g. "topology: veth #0 end b: unknown namespace 'nope'".
Status validate(const Topology& topo);

// A built topology. Not copyable or movable (hands out Process pointers); create() returns it boxed.
// Thread-compatible: use one Lab from one thread at a time.
class Lab {
public:
    // Validates the topology, removes stale lab namespaces left by dead processes (best effort), then
    // creates everything. On any failure, tears down what it created and returns the error.
    // Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN, CAP_BPF for XDP) and the `ip` tool.
    static Result<std::unique_ptr<Lab>> create(const Topology& topo);
    // Kills spawned processes (SIGTERM, 2 s, SIGKILL), detaches XDP links, deletes every namespace it
    // created. Bounded time (each step has a timeout); never throws; failures are printed to stderr.
    ~Lab();
    Lab(const Lab&) = delete;
    Lab& operator=(const Lab&) = delete;

    const std::string& prefix() const { return prefix_; }  // e.g. "kxlb-12345-a1b2"
    std::string ns_name(std::string_view logical) const;   // e.g. "kxlb-12345-a1b2-client"
    std::string ns_path(std::string_view logical) const;   // "/run/netns/<ns_name>"
    const Topology& topology() const { return topo_; }
    bool has_ns(std::string_view logical) const;
    // ns_path() for a logical namespace of this lab; error for an unknown one.
    Result<std::string> find_ns_path(std::string_view logical) const;

    // The interface's index inside ns.
    Result<int> ifindex(std::string_view ns, std::string_view ifname) const;
    // run_command() inside ns.
    Result<CommandResult> run(std::string_view ns, const std::vector<std::string>& argv,
                              std::chrono::milliseconds timeout = std::chrono::seconds(10));
    // spawn() inside ns. The Process is owned by the Lab (valid until ~Lab) and killed in ~Lab.
    Result<Process*> spawn(std::string_view ns, const std::vector<std::string>& argv);
    // socket(domain, type | SOCK_CLOEXEC, protocol) created inside ns (it stays in ns for its lifetime).
    Result<UniqueFd> socket(std::string_view ns, int domain, int type, int protocol = 0);
    // Writes value to /proc/sys/<key with '.' -> '/'> inside ns, e.g. ("net.ipv4.ip_forward", "1"). Only
    // "net." keys (others are not per-namespace and would change the host). A key containing '/' is used
    // as a path below /proc/sys as is (for interface names with dots: "net/ipv4/conf/eth0.5/rp_filter").
    Status sysctl(std::string_view ns, const std::string& key, const std::string& value);
    // Attaches the lab's XDP_PASS program natively to ns/ifname and verifies with query_xdp that it is
    // attached in native mode. The link lives until ~Lab. (create() does this for the VethPair flags.)
    Status attach_xdp_pass(std::string_view ns, std::string_view ifname);

    // Runs fn() on the calling thread inside ns, then restores the thread's namespace (also if fn throws);
    // fn's return value is passed through. Throws std::runtime_error if ns is unknown or cannot be
    // entered: the only member that throws.
    template <typename Fn>
    auto in_ns(std::string_view ns, Fn&& fn) -> decltype(fn()) {
        auto path = find_ns_path(ns);
        if (!path) throw std::runtime_error(path.error().message);
        auto guard = NetnsGuard::enter(*path);
        if (!guard) throw std::runtime_error(guard.error().message);
        return std::forward<Fn>(fn)();
    }

private:
    Lab(Topology topo, std::string prefix);
    Status build();
    Status build_namespace(const std::string& logical);
    Status build_veth(const VethPair& v);
    Status build_route(const Route& r);
    Status ip(std::string_view ns, std::vector<std::string> args);  // `ip -n <real ns> args...`
    const Switch* find_switch(std::string_view logical) const;

    Topology topo_;
    std::string prefix_;
    std::vector<std::string> created_;          // real netns names, in creation order
    std::unique_ptr<XdpPassProgram> xdp_pass_;  // loaded on first use
    std::vector<Link> xdp_links_;
    std::vector<std::unique_ptr<Process>> procs_;
};

}  // namespace kxlb::lab
