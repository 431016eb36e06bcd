// netlink: what kxlb-agent needs to know about the node's network — interfaces (index, name, MAC, up,
// carrier, MTU) and their addresses — as rtnetlink dumps plus a non-blocking stream of change events,
// read through libnl (libnl-3 + libnl-route-3). Also the pure choice of the node address that full-NAT
// SNAT uses (pick_node_address).
//
// Typical agent use: open() once, links()/addresses() to build the initial view, add fd() to the event
// loop and call drain() whenever it is readable; when drain() reports resync_needed (events were lost),
// rebuild the view from links()/addresses() again (events already returned by that drain() are older than
// the dump and can be ignored).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lib/lb_types.hpp"
#include "lib/result.hpp"

struct nl_sock;  // libnl; only netlink.cpp includes the libnl headers

namespace kxlb::agent {

// One network interface (an rtnetlink link of family AF_UNSPEC).
struct LinkInfo {
    int ifindex = 0;
    std::string name;
    std::array<std::uint8_t, 6> mac{};  // IFLA_ADDRESS; all zero if the link has no 6-byte L2 address
    bool up = false;                    // IFF_UP: administratively up
    bool running = false;               // IFF_RUNNING: up with carrier (operstate UP or UNKNOWN)
    bool loopback = false;              // IFF_LOOPBACK
    std::uint32_t mtu = 0;
    bool operator==(const LinkInfo&) const = default;
};

// One unicast interface address (IPv4 or IPv6).
struct AddrInfo {
    int ifindex = 0;
    IpAddr addr;  // the local address (IFA_LOCAL, or IFA_ADDRESS when there is no IFA_LOCAL)
    std::uint8_t prefix_len = 0;
    std::uint8_t scope = 0;   // RT_SCOPE_*: 0 universe (global), 253 link, 254 host
    std::uint32_t flags = 0;  // IFA_F_* (IFA_F_DEPRECATED, IFA_F_TENTATIVE, IFA_F_DADFAILED, ...)
    bool operator==(const AddrInfo&) const = default;
};

// One change notification. `link` is meaningful for LinkNew/LinkDel, `addr` for AddrNew/AddrDel.
// LinkNew is sent for a new link and for every change of an existing one (state, MAC, MTU, name, ...).
struct NetlinkEvent {
    enum class Kind { LinkNew, LinkDel, AddrNew, AddrDel };
    Kind kind = Kind::LinkNew;
    LinkInfo link;
    AddrInfo addr;
};

const char* to_string(NetlinkEvent::Kind kind);  // "LinkNew", ...

// What one drain() read.
struct DrainResult {
    std::vector<NetlinkEvent> events;  // in the order the kernel sent them
    // Events were lost (the socket overflowed: ENOBUFS, or a message could not be read or parsed). The
    // caller must resynchronize with links() + addresses(). The monitor keeps working.
    bool resync_needed = false;
};

// RAII owner of two rtnetlink sockets, both bound to the network namespace the calling thread was in
// when open() ran (they stay there whatever the thread does later):
//   - an event socket subscribed to RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR and RTNLGRP_IPV6_IFADDR, non-blocking;
//   - a request socket for dumps and lookups, so replies never interleave with events.
// Movable, not copyable; on a moved-from monitor fd() is -1 and the other calls fail with EBADF. Not
// thread-safe: use one monitor from one thread at a time.
class NetlinkMonitor {
public:
    // Opens and subscribes both sockets in the caller's current network namespace. Call it before the
    // initial dump so that no change falls between the dump and the first event.
    static Result<NetlinkMonitor> open();

    NetlinkMonitor(NetlinkMonitor&&) noexcept;
    NetlinkMonitor& operator=(NetlinkMonitor&&) noexcept;
    NetlinkMonitor(const NetlinkMonitor&) = delete;
    NetlinkMonitor& operator=(const NetlinkMonitor&) = delete;
    ~NetlinkMonitor();

    // The event socket (O_NONBLOCK). Poll it for POLLIN (level-triggered) and call drain(). Owned by
    // the monitor: do not close it. -1 for a moved-from monitor.
    int fd() const;

    // Full dumps from the kernel, links sorted by ifindex, addresses in kernel order (per family, per
    // interface). A dump interrupted by a concurrent change is retried (a few times, then EAGAIN).
    // Requests (these and link()) wait at most 5 s for the kernel's reply (EAGAIN otherwise). After a
    // request fails with anything but ENOENT/EINVAL from link() or an interrupted dump, the request
    // socket may be out of step with the kernel's replies: reopen the monitor in the same namespace.
    Result<std::vector<LinkInfo>> links();
    Result<std::vector<AddrInfo>> addresses();
    // One link by name. ENOENT if there is none, EINVAL for a name that cannot be an interface name.
    Result<LinkInfo> link(const std::string& name);

    // Reads the pending events without blocking (returns an empty result if there are none). Reads at
    // most a bounded number of datagrams per call; if more remain, fd() stays readable. Errors only for
    // unexpected socket failures (then the events of that call are dropped: resync as well); lost events are
    // reported through resync_needed, not as an error.
    Result<DrainResult> drain();

private:
    struct SockDeleter {
        void operator()(nl_sock* sk) const noexcept;
    };
    using SockPtr = std::unique_ptr<nl_sock, SockDeleter>;

    NetlinkMonitor(SockPtr events, SockPtr requests);

    SockPtr events_;
    SockPtr requests_;
    std::vector<std::uint8_t> buf_;  // receive buffer for the event socket
};

// The address full-NAT SNAT should use for `family` (AF_INET or AF_INET6; anything else: nullopt).
// Candidates are addresses of that family with global scope (RT_SCOPE_UNIVERSE) that are not deprecated,
// tentative or DAD-failed. Returns the first candidate, in `addrs` order, on the first interface of
// `preferred_ifnames` (in that order; names not in `links` are skipped; their up state is not checked:
// naming an interface is an explicit choice); failing that, the first candidate on any up, non-loopback
// link, links taken in `links` order; nullopt if there is none. Pure function.
std::optional<IpAddr> pick_node_address(int family, const std::vector<std::string>& preferred_ifnames,
                                        const std::vector<LinkInfo>& links, const std::vector<AddrInfo>& addrs);

}  // namespace kxlb::agent
