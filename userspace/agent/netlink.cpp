// netlink: rtnetlink links, addresses and change events through libnl (see netlink.hpp).
//
// Every rtnetlink message, from a dump or from the event socket, goes through one parser: libnl's own
// object parsers (nl_msg_parse -> rtnl_link / rtnl_addr), converted to LinkInfo / AddrInfo. Dumps and
// lookups use libnl's request/reply machinery on the request socket (sequence checks, multipart replies,
// NLMSG_ERROR). The event socket is read with plain recvmsg() so that ENOBUFS (lost events) and
// truncation are seen exactly (libnl folds ENOBUFS into NLE_NOMEM).
#include "agent/netlink.hpp"

#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>  // IFF_*, IFNAMSIZ; before libnl (which includes <linux/if.h>)
#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/object.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

namespace kxlb::agent {
namespace {

constexpr int kEventRcvBuf = 4 << 20;            // event socket receive buffer (SO_RCVBUFFORCE if permitted)
constexpr std::size_t kEventBufInit = 64 << 10;  // initial recvmsg buffer; grows on truncation
constexpr std::size_t kEventBufMax = 1 << 20;
constexpr int kMaxDatagramsPerDrain = 1024;  // keeps one drain() bounded during an event storm
constexpr int kDumpAttempts = 5;             // retries of a dump interrupted by concurrent changes
constexpr int kRequestTimeoutS = 5;          // SO_RCVTIMEO of the request socket

// ---- libnl RAII ------------------------------------------------------------------------------

struct MsgDeleter {
    void operator()(nl_msg* m) const noexcept { nlmsg_free(m); }
};
using MsgPtr = std::unique_ptr<nl_msg, MsgDeleter>;

struct CbDeleter {
    void operator()(nl_cb* cb) const noexcept { nl_cb_put(cb); }
};
using CbPtr = std::unique_ptr<nl_cb, CbDeleter>;

struct LinkDeleter {
    void operator()(rtnl_link* l) const noexcept { rtnl_link_put(l); }
};
using LinkPtr = std::unique_ptr<rtnl_link, LinkDeleter>;

// ---- errors --------------------------------------------------------------------------------

// libnl's NLE_* codes mapped onto the errno values Result carries.
int nle_to_errno(int nle) {
    switch (nle < 0 ? -nle : nle) {
        case NLE_INTR: return EINTR;
        case NLE_AGAIN: return EAGAIN;
        case NLE_NOMEM: return ENOMEM;
        case NLE_EXIST: return EEXIST;
        case NLE_INVAL: return EINVAL;
        case NLE_RANGE: return ERANGE;
        case NLE_MSGSIZE: return EMSGSIZE;
        case NLE_OPNOTSUPP: return EOPNOTSUPP;
        case NLE_AF_NOSUPPORT: return EAFNOSUPPORT;
        case NLE_OBJ_NOTFOUND:
        case NLE_NODEV: return ENOENT;
        case NLE_BUSY: return EBUSY;
        case NLE_NOACCESS: return EACCES;
        case NLE_PERM: return EPERM;
        case NLE_DUMP_INTR: return EAGAIN;
        case NLE_MSG_TRUNC:
        case NLE_MSG_TOOSHORT:
        case NLE_PARSE_ERR: return EBADMSG;
        default: return EIO;
    }
}

Error nl_error(int nle, std::string_view what) {
    std::string msg(what);
    msg += ": ";
    msg += nl_geterror(nle);
    return Error{nle_to_errno(nle), std::move(msg)};
}

// ---- message parsing -------------------------------------------------------------------------

LinkInfo to_link_info(rtnl_link* l) {
    LinkInfo li;
    li.ifindex = rtnl_link_get_ifindex(l);
    if (const char* name = rtnl_link_get_name(l)) li.name = name;
    if (nl_addr* a = rtnl_link_get_addr(l); a != nullptr && nl_addr_get_len(a) == li.mac.size())
        std::memcpy(li.mac.data(), nl_addr_get_binary_addr(a), li.mac.size());
    const unsigned flags = rtnl_link_get_flags(l);
    li.up = (flags & IFF_UP) != 0;
    li.running = (flags & IFF_RUNNING) != 0;
    li.loopback = (flags & IFF_LOOPBACK) != 0;
    li.mtu = rtnl_link_get_mtu(l);
    return li;
}

std::optional<AddrInfo> to_addr_info(rtnl_addr* a) {
    const int family = rtnl_addr_get_family(a);
    const std::size_t len = family == AF_INET ? 4 : family == AF_INET6 ? 16 : 0;
    nl_addr* local = rtnl_addr_get_local(a);  // IFA_LOCAL, else IFA_ADDRESS (libnl's parser)
    if (len == 0 || local == nullptr || nl_addr_get_len(local) != len) return std::nullopt;
    AddrInfo ai;
    ai.ifindex = rtnl_addr_get_ifindex(a);
    ai.addr.family = static_cast<std::uint8_t>(family);
    std::memcpy(ai.addr.bytes.data(), nl_addr_get_binary_addr(local), len);
    ai.prefix_len = static_cast<std::uint8_t>(rtnl_addr_get_prefixlen(a));
    ai.scope = static_cast<std::uint8_t>(rtnl_addr_get_scope(a));
    ai.flags = rtnl_addr_get_flags(a);  // IFA_FLAGS (32 bit) when present, else ifa_flags
    return ai;
}

// One rtnetlink message, parsed.
struct Parsed {
    enum class What { Ignored, Link, Addr, Malformed } what = What::Ignored;
    bool is_delete = false;
    LinkInfo link;
    AddrInfo addr;
};

// Parses a link or address message with libnl's object parsers. Links of other families (AF_BRIDGE port
// notifications share RTNLGRP_LINK and even use RTM_DELLINK for "left the bridge") and addresses of
// families other than IPv4/IPv6 are Ignored, as are other message types.
Parsed parse_message(nl_msg* msg) {
    Parsed p;
    nlmsghdr* h = nlmsg_hdr(msg);
    switch (h->nlmsg_type) {
        case RTM_NEWLINK:
        case RTM_DELLINK: {
            if (!nlmsg_valid_hdr(h, sizeof(ifinfomsg))) return Parsed{Parsed::What::Malformed};
            if (static_cast<const ifinfomsg*>(nlmsg_data(h))->ifi_family != AF_UNSPEC) return p;
            break;
        }
        case RTM_NEWADDR:
        case RTM_DELADDR: {
            if (!nlmsg_valid_hdr(h, sizeof(ifaddrmsg))) return Parsed{Parsed::What::Malformed};
            const auto family = static_cast<const ifaddrmsg*>(nlmsg_data(h))->ifa_family;
            if (family != AF_INET && family != AF_INET6) return p;
            break;
        }
        default: return p;
    }
    p.is_delete = h->nlmsg_type == RTM_DELLINK || h->nlmsg_type == RTM_DELADDR;
    const bool want_link = h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK;
    p.what = Parsed::What::Malformed;  // until the callback says otherwise
    auto on_object = +[](nl_object* obj, void* arg) {
        auto* out = static_cast<Parsed*>(arg);
        const std::string_view type = nl_object_get_type(obj);
        if (type == "route/link") {
            // libnl objects "derive" from nl_object by embedding it first; this is libnl's own cast.
            out->link = to_link_info(reinterpret_cast<rtnl_link*>(obj));
            out->what = Parsed::What::Link;
        } else if (type == "route/addr") {
            if (auto a = to_addr_info(reinterpret_cast<rtnl_addr*>(obj))) {
                out->addr = *a;
                out->what = Parsed::What::Addr;
            }
        }
    };
    if (nl_msg_parse(msg, on_object, &p) < 0) p.what = Parsed::What::Malformed;
    if (p.what != (want_link ? Parsed::What::Link : Parsed::What::Addr)) p.what = Parsed::What::Malformed;
    return p;
}

// ---- requests --------------------------------------------------------------------------------

// What a dump collects.
struct DumpSink {
    std::vector<LinkInfo>* links = nullptr;
    std::vector<AddrInfo>* addrs = nullptr;
    int malformed = 0;
};

int on_dump_message(nl_msg* msg, void* arg) {
    auto* sink = static_cast<DumpSink*>(arg);
    Parsed p = parse_message(msg);
    switch (p.what) {
        case Parsed::What::Link:
            if (sink->links) sink->links->push_back(std::move(p.link));
            break;
        case Parsed::What::Addr:
            if (sink->addrs) sink->addrs->push_back(p.addr);
            break;
        case Parsed::What::Malformed: ++sink->malformed; break;
        case Parsed::What::Ignored: break;
    }
    return NL_OK;  // keep reading to NLMSG_DONE so the socket stays in sync
}

// Sends an RTM_GETLINK or RTM_GETADDR dump request (family AF_UNSPEC: all families) and collects the
// reply into sink. Retries a dump the kernel marks as interrupted (NLM_F_DUMP_INTR).
Status dump(nl_sock* sk, int type, DumpSink sink, std::string_view what) {
    for (int attempt = 0; attempt < kDumpAttempts; ++attempt) {
        if (sink.links) sink.links->clear();
        if (sink.addrs) sink.addrs->clear();
        sink.malformed = 0;

        MsgPtr msg(nlmsg_alloc_simple(type, NLM_F_DUMP));
        if (!msg) return Error{ENOMEM, std::string(what) + ": cannot allocate request"};
        int err;
        if (type == RTM_GETLINK) {
            ifinfomsg ifi{};
            ifi.ifi_family = AF_UNSPEC;
            err = nlmsg_append(msg.get(), &ifi, sizeof ifi, NLMSG_ALIGNTO);
        } else {
            ifaddrmsg ifa{};
            ifa.ifa_family = AF_UNSPEC;
            err = nlmsg_append(msg.get(), &ifa, sizeof ifa, NLMSG_ALIGNTO);
        }
        if (err < 0) return nl_error(err, what);
        if (err = nl_send_auto(sk, msg.get()); err < 0) return nl_error(err, std::string(what) + ": send");

        CbPtr cb(nl_cb_alloc(NL_CB_DEFAULT));
        if (!cb) return Error{ENOMEM, std::string(what) + ": cannot allocate callbacks"};
        nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, on_dump_message, &sink);
        err = nl_recvmsgs(sk, cb.get());
        if (err == -NLE_DUMP_INTR) continue;
        if (err < 0) return nl_error(err, std::string(what) + ": receive");
        if (sink.malformed > 0)
            return Error{EBADMSG, std::string(what) + ": " + std::to_string(sink.malformed) + " malformed message(s)"};
        return {};
    }
    return Error{EAGAIN,
                 std::string(what) + ": interrupted by concurrent changes " + std::to_string(kDumpAttempts) + " times"};
}

Result<nl_sock*> connect_route(std::string_view what) {
    nl_sock* sk = nl_socket_alloc();
    if (sk == nullptr) return Error{ENOMEM, std::string(what) + ": cannot allocate a libnl socket"};
    if (int err = nl_connect(sk, NETLINK_ROUTE); err < 0) {
        nl_socket_free(sk);
        return nl_error(err, std::string(what) + ": connect");
    }
    return sk;
}

}  // namespace

const char* to_string(NetlinkEvent::Kind kind) {
    switch (kind) {
        case NetlinkEvent::Kind::LinkNew: return "LinkNew";
        case NetlinkEvent::Kind::LinkDel: return "LinkDel";
        case NetlinkEvent::Kind::AddrNew: return "AddrNew";
        case NetlinkEvent::Kind::AddrDel: return "AddrDel";
    }
    return "?";
}

// ---- NetlinkMonitor ------------------------------------------------------------------------------

void NetlinkMonitor::SockDeleter::operator()(nl_sock* sk) const noexcept { nl_socket_free(sk); }  // closes the fd

NetlinkMonitor::NetlinkMonitor(SockPtr events, SockPtr requests)
    : events_(std::move(events)), requests_(std::move(requests)), buf_(kEventBufInit) {}
NetlinkMonitor::NetlinkMonitor(NetlinkMonitor&&) noexcept = default;
NetlinkMonitor& NetlinkMonitor::operator=(NetlinkMonitor&&) noexcept = default;
NetlinkMonitor::~NetlinkMonitor() = default;

Result<NetlinkMonitor> NetlinkMonitor::open() {
    auto ev = connect_route("netlink: event socket");
    if (!ev) return ev.error();
    SockPtr events(*ev);
    auto rq = connect_route("netlink: request socket");
    if (!rq) return rq.error();
    SockPtr requests(*rq);

    if (int err = nl_socket_add_memberships(events.get(), RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR, 0);
        err < 0)
        return nl_error(err, "netlink: subscribe to link and address groups");
    if (int err = nl_socket_set_nonblocking(events.get()); err < 0)
        return nl_error(err, "netlink: make the event socket non-blocking");
    // A large queue makes overflow (ENOBUFS -> resync) rare. SO_RCVBUFFORCE needs CAP_NET_ADMIN; without it
    // SO_RCVBUF is capped by net.core.rmem_max, which is still fine.
    const int efd = nl_socket_get_fd(events.get());
    if (::setsockopt(efd, SOL_SOCKET, SO_RCVBUFFORCE, &kEventRcvBuf, sizeof kEventRcvBuf) != 0 &&
        ::setsockopt(efd, SOL_SOCKET, SO_RCVBUF, &kEventRcvBuf, sizeof kEventRcvBuf) != 0)
        return Error::from_errno(errno, "netlink: set the event socket's receive buffer");
    // Bound every request: a reply that never comes fails with EAGAIN instead of hanging the agent.
    timeval tv{kRequestTimeoutS, 0};
    if (::setsockopt(nl_socket_get_fd(requests.get()), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
        return Error::from_errno(errno, "netlink: set the request socket's timeout");
    return NetlinkMonitor(std::move(events), std::move(requests));
}

int NetlinkMonitor::fd() const { return events_ ? nl_socket_get_fd(events_.get()) : -1; }

Result<std::vector<LinkInfo>> NetlinkMonitor::links() {
    if (!requests_) return Error{EBADF, "netlink: dump links: moved-from monitor"};
    std::vector<LinkInfo> out;
    if (auto st = dump(requests_.get(), RTM_GETLINK, DumpSink{&out, nullptr}, "netlink: dump links"); !st)
        return st.error();
    std::sort(out.begin(), out.end(), [](const LinkInfo& a, const LinkInfo& b) { return a.ifindex < b.ifindex; });
    return out;
}

Result<std::vector<AddrInfo>> NetlinkMonitor::addresses() {
    if (!requests_) return Error{EBADF, "netlink: dump addresses: moved-from monitor"};
    std::vector<AddrInfo> out;
    if (auto st = dump(requests_.get(), RTM_GETADDR, DumpSink{nullptr, &out}, "netlink: dump addresses"); !st)
        return st.error();
    return out;
}

Result<LinkInfo> NetlinkMonitor::link(const std::string& name) {
    const std::string what = "netlink: link '" + name + "'";
    if (!requests_) return Error{EBADF, what + ": moved-from monitor"};
    if (name.empty() || name.size() >= IFNAMSIZ || name.find('\0') != std::string::npos)
        return Error::invalid(what + ": not a valid interface name");
    rtnl_link* raw = nullptr;
    if (int err = rtnl_link_get_kernel(requests_.get(), 0, name.c_str(), &raw); err < 0) return nl_error(err, what);
    LinkPtr l(raw);
    return to_link_info(l.get());
}

Result<DrainResult> NetlinkMonitor::drain() {
    if (!events_) return Error{EBADF, "netlink: read events: moved-from monitor"};
    DrainResult out;
    const int fd = nl_socket_get_fd(events_.get());
    for (int i = 0; i < kMaxDatagramsPerDrain; ++i) {
        sockaddr_nl from{};
        iovec iov{buf_.data(), buf_.size()};
        msghdr mh{};
        mh.msg_name = &from;
        mh.msg_namelen = sizeof from;
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        const ssize_t n = ::recvmsg(fd, &mh, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == ENOBUFS) {  // the kernel dropped events for us; the queue still holds later ones
                out.resync_needed = true;
                continue;
            }
            return Error::from_errno(errno, "netlink: read events");
        }
        if (n == 0) break;
        if ((mh.msg_flags & MSG_TRUNC) != 0) {  // this datagram is lost; make room for the next big one
            out.resync_needed = true;
            buf_.resize(std::min(buf_.size() * 2, kEventBufMax));
            continue;
        }
        if (from.nl_pid != 0) continue;  // only the kernel speaks on the event socket

        int rem = static_cast<int>(n);
        for (auto* h = reinterpret_cast<nlmsghdr*>(buf_.data()); nlmsg_ok(h, rem); h = nlmsg_next(h, &rem)) {
            if (h->nlmsg_type == NLMSG_OVERRUN) {
                out.resync_needed = true;
                continue;
            }
            if (h->nlmsg_type < NLMSG_MIN_TYPE) continue;  // NOOP, ERROR, DONE
            MsgPtr msg(nlmsg_convert(h));
            if (!msg) return Error{ENOMEM, "netlink: read events: cannot allocate a message"};
            nlmsg_set_proto(msg.get(), NETLINK_ROUTE);
            Parsed p = parse_message(msg.get());
            NetlinkEvent ev;
            switch (p.what) {
                case Parsed::What::Ignored: continue;
                case Parsed::What::Malformed: out.resync_needed = true; continue;
                case Parsed::What::Link:
                    ev.kind = p.is_delete ? NetlinkEvent::Kind::LinkDel : NetlinkEvent::Kind::LinkNew;
                    ev.link = std::move(p.link);
                    break;
                case Parsed::What::Addr:
                    ev.kind = p.is_delete ? NetlinkEvent::Kind::AddrDel : NetlinkEvent::Kind::AddrNew;
                    ev.addr = p.addr;
                    break;
            }
            out.events.push_back(std::move(ev));
        }
    }
    return out;
}

// ---- pick_node_address ---------------------------------------------------------------------------

std::optional<IpAddr> pick_node_address(int family, const std::vector<std::string>& preferred_ifnames,
                                        const std::vector<LinkInfo>& links, const std::vector<AddrInfo>& addrs) {
    if (family != AF_INET && family != AF_INET6) return std::nullopt;
    constexpr std::uint32_t kUnusable = IFA_F_DEPRECATED | IFA_F_TENTATIVE | IFA_F_DADFAILED;
    auto first_on = [&](int ifindex) -> std::optional<IpAddr> {
        for (const auto& a : addrs)
            if (a.ifindex == ifindex && a.addr.family == family && a.scope == RT_SCOPE_UNIVERSE &&
                (a.flags & kUnusable) == 0)
                return a.addr;
        return std::nullopt;
    };
    for (const auto& name : preferred_ifnames) {
        auto it = std::find_if(links.begin(), links.end(), [&](const LinkInfo& l) { return l.name == name; });
        if (it == links.end()) continue;
        if (auto a = first_on(it->ifindex)) return a;
    }
    for (const auto& l : links)
        if (l.up && !l.loopback)
            if (auto a = first_on(l.ifindex)) return a;
    return std::nullopt;
}

}  // namespace kxlb::agent
