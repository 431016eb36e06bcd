// Tests for the agent's netlink layer (userspace/agent/netlink.*).
// - NetlinkPick*: pick_node_address, pure (no root).
// - NetlinkMonitorHost*: open/dump/move in the test's own namespace, read-only (no root).
// - NetlinkMonitor*: root; a monitor opened inside a lab namespace, driven with `ip` in that namespace:
//   events (names, MACs, up/carrier, exact addresses, deletions, order), dumps against `ip -j`,
//   namespace isolation, bridge-port notifications, and overflow (ENOBUFS -> resync_needed).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "agent/netlink.hpp"
#include "common/privileges.hpp"
#include "lab/lab.hpp"
#include "lab/netns.hpp"
#include "lab/process.hpp"
#include "lab/temp_dir.hpp"

namespace kxlb::agent {

// gtest printer for event kinds (found by ADL, so it lives in the type's namespace).
void PrintTo(NetlinkEvent::Kind kind, std::ostream* os) { *os << to_string(kind); }

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Mac = std::array<std::uint8_t, 6>;

// ---- helpers -----------------------------------------------------------------------------------

IpAddr ip_of(const std::string& s) {
    auto r = IpAddr::parse(s);
    EXPECT_TRUE(r.ok()) << s;
    return r ? *r : IpAddr{};
}

std::string mac_str(const Mac& m) {
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return buf;
}

std::string describe(const NetlinkEvent& e) {
    std::ostringstream os;
    os << to_string(e.kind) << ' ';
    if (e.kind == NetlinkEvent::Kind::LinkNew || e.kind == NetlinkEvent::Kind::LinkDel)
        os << e.link.name << '#' << e.link.ifindex << ' ' << mac_str(e.link.mac) << (e.link.up ? " up" : " down")
           << (e.link.running ? " running" : "") << " mtu " << e.link.mtu;
    else
        os << '#' << e.addr.ifindex << ' ' << e.addr.addr.str() << '/' << int{e.addr.prefix_len} << " scope "
           << int{e.addr.scope} << " flags 0x" << std::hex << e.addr.flags;
    return os.str();
}

AddrInfo addr(int ifindex, const std::string& ip, int prefix, int scope = RT_SCOPE_UNIVERSE, std::uint32_t flags = 0) {
    AddrInfo a;
    a.ifindex = ifindex;
    a.addr = ip_of(ip);
    a.prefix_len = static_cast<std::uint8_t>(prefix);
    a.scope = static_cast<std::uint8_t>(scope);
    a.flags = flags;
    return a;
}

LinkInfo link_info(int ifindex, const std::string& name, bool up, bool loopback = false) {
    LinkInfo l;
    l.ifindex = ifindex;
    l.name = name;
    l.up = up;
    l.running = up;
    l.loopback = loopback;
    l.mtu = 1500;
    return l;
}

// Everything a monitor reported so far, with bounded waits for more.
class EventLog {
public:
    explicit EventLog(NetlinkMonitor& mon) : mon_(mon) {}

    // Index of the first event at or after `from` matching pred, polling the monitor (at most `timeout`).
    std::optional<std::size_t> wait_for(const std::function<bool(const NetlinkEvent&)>& pred, std::size_t from = 0,
                                        std::chrono::milliseconds timeout = 2s) {
        const auto deadline = Clock::now() + timeout;
        std::size_t checked = from;
        for (;;) {
            for (; checked < events.size(); ++checked)
                if (pred(events[checked])) return checked;
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return std::nullopt;
            pollfd p{mon_.fd(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
            pump();
        }
    }
    // Reads whatever arrives within `window` (for asserting that something does not happen).
    void settle(std::chrono::milliseconds window = 300ms) {
        const auto deadline = Clock::now() + window;
        while (Clock::now() < deadline) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            pollfd p{mon_.fd(), POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 1))) > 0) pump();
        }
    }
    std::string dump() const {
        std::string s = "events so far (" + std::to_string(events.size()) + "):";
        for (const auto& e : events) s += "\n  " + describe(e);
        return s;
    }

    std::vector<NetlinkEvent> events;
    bool resync_needed = false;

private:
    void pump() {
        auto r = mon_.drain();
        ASSERT_TRUE(r.ok()) << r.error().message;
        resync_needed |= r->resync_needed;
        events.insert(events.end(), r->events.begin(), r->events.end());
    }
    NetlinkMonitor& mon_;
};

auto link_event(NetlinkEvent::Kind kind, const std::string& name, std::function<bool(const LinkInfo&)> extra = {}) {
    return [=](const NetlinkEvent& e) { return e.kind == kind && e.link.name == name && (!extra || extra(e.link)); };
}
auto addr_event(NetlinkEvent::Kind kind, const AddrInfo& want) {
    return [=](const NetlinkEvent& e) {
        return e.kind == kind && e.addr.ifindex == want.ifindex && e.addr.addr == want.addr &&
               e.addr.prefix_len == want.prefix_len && e.addr.scope == want.scope;
    };
}

// ---- pick_node_address (pure) --------------------------------------------------------------------

TEST(NetlinkPick, PreferredInterfacesInTheGivenOrder) {
    std::vector<LinkInfo> links{link_info(1, "lo", true, true), link_info(2, "eth0", true), link_info(3, "eth1", true)};
    std::vector<AddrInfo> addrs{addr(2, "10.0.0.2", 24), addr(3, "10.1.0.3", 24), addr(3, "10.1.0.4", 24),
                                addr(2, "fd00::2", 64), addr(3, "fd01::3", 64)};
    EXPECT_EQ(pick_node_address(AF_INET, {"eth1", "eth0"}, links, addrs), ip_of("10.1.0.3"));
    EXPECT_EQ(pick_node_address(AF_INET6, {"eth1", "eth0"}, links, addrs), ip_of("fd01::3"));
    EXPECT_EQ(pick_node_address(AF_INET, {"eth0", "eth1"}, links, addrs), ip_of("10.0.0.2"));
    // Unknown names are skipped; a named interface without a candidate falls through to the next name.
    EXPECT_EQ(pick_node_address(AF_INET, {"nope", "eth1"}, links, addrs), ip_of("10.1.0.3"));
    std::vector<AddrInfo> only_v6_on_eth1{addr(2, "10.0.0.2", 24), addr(3, "fd01::3", 64)};
    EXPECT_EQ(pick_node_address(AF_INET, {"eth1", "eth0"}, links, only_v6_on_eth1), ip_of("10.0.0.2"));
    // A named interface is used even when it is down (explicit choice)...
    links[2].up = false;
    EXPECT_EQ(pick_node_address(AF_INET, {"eth1"}, links, addrs), ip_of("10.1.0.3"));
    // ...but the fallback skips it.
    EXPECT_EQ(pick_node_address(AF_INET, {}, links, {addr(3, "10.1.0.3", 24)}), std::nullopt);
}

TEST(NetlinkPick, OnlyUsableGlobalAddresses) {
    std::vector<LinkInfo> links{link_info(2, "eth0", true)};
    std::vector<AddrInfo> addrs{
        addr(2, "fe80::1", 64, RT_SCOPE_LINK),
        addr(2, "fd00::dead", 64, RT_SCOPE_UNIVERSE, IFA_F_DEPRECATED),
        addr(2, "fd00::beef", 64, RT_SCOPE_UNIVERSE, IFA_F_TENTATIVE),
        addr(2, "fd00::bad", 64, RT_SCOPE_UNIVERSE, IFA_F_DADFAILED | IFA_F_TENTATIVE),
        addr(2, "fd00::5", 64, RT_SCOPE_UNIVERSE, IFA_F_NODAD | IFA_F_PERMANENT),  // harmless flags
        addr(2, "127.0.0.2", 8, RT_SCOPE_HOST),
        addr(2, "169.254.1.1", 16, RT_SCOPE_LINK),
        addr(2, "192.0.2.1", 24),
    };
    EXPECT_EQ(pick_node_address(AF_INET6, {"eth0"}, links, addrs), ip_of("fd00::5"));
    EXPECT_EQ(pick_node_address(AF_INET6, {}, links, addrs), ip_of("fd00::5"));
    EXPECT_EQ(pick_node_address(AF_INET, {"eth0"}, links, addrs), ip_of("192.0.2.1"));
    addrs.pop_back();
    EXPECT_EQ(pick_node_address(AF_INET, {"eth0"}, links, addrs), std::nullopt);
}

TEST(NetlinkPick, FallbackTakesUpNonLoopbackLinksInLinkOrder) {
    std::vector<LinkInfo> links{link_info(1, "lo", true, true), link_info(5, "down0", false),
                                link_info(3, "eth1", true), link_info(2, "eth0", true)};
    std::vector<AddrInfo> addrs{addr(1, "203.0.113.1", 32),   // global, but on loopback
                                addr(5, "198.51.100.5", 24),  // on a down link
                                addr(2, "10.0.0.2", 24), addr(3, "10.1.0.3", 24)};
    // links order (eth1 before eth0), not ifindex or address order.
    EXPECT_EQ(pick_node_address(AF_INET, {}, links, addrs), ip_of("10.1.0.3"));
    EXPECT_EQ(pick_node_address(AF_INET, {"missing"}, links, addrs), ip_of("10.1.0.3"));
    // Naming the loopback or the down link explicitly does select it.
    EXPECT_EQ(pick_node_address(AF_INET, {"lo"}, links, addrs), ip_of("203.0.113.1"));
    EXPECT_EQ(pick_node_address(AF_INET, {"down0"}, links, addrs), ip_of("198.51.100.5"));
}

TEST(NetlinkPick, FamilyAndEmptyInputs) {
    std::vector<LinkInfo> links{link_info(2, "eth0", true)};
    std::vector<AddrInfo> addrs{addr(2, "10.0.0.2", 24)};
    EXPECT_EQ(pick_node_address(AF_INET6, {"eth0"}, links, addrs), std::nullopt);
    EXPECT_EQ(pick_node_address(AF_UNSPEC, {"eth0"}, links, addrs), std::nullopt);
    EXPECT_EQ(pick_node_address(AF_PACKET, {"eth0"}, links, addrs), std::nullopt);
    EXPECT_EQ(pick_node_address(AF_INET, {"eth0"}, {}, addrs), std::nullopt);  // address of an unknown link
    EXPECT_EQ(pick_node_address(AF_INET, {}, links, {}), std::nullopt);
}

// ---- the monitor in the test's own namespace (read-only, no root) ----------------------------------

TEST(NetlinkMonitorHost, OpenDumpLookupAndMove) {
    auto opened = NetlinkMonitor::open();
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    NetlinkMonitor mon = std::move(opened).value();
    const int fd = mon.fd();
    ASSERT_GE(fd, 0);
    EXPECT_NE(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);

    auto links = mon.links();
    ASSERT_TRUE(links.ok()) << links.error().message;
    EXPECT_TRUE(std::is_sorted(links->begin(), links->end(),
                               [](const LinkInfo& a, const LinkInfo& b) { return a.ifindex < b.ifindex; }));
    auto lo = std::find_if(links->begin(), links->end(), [](const LinkInfo& l) { return l.name == "lo"; });
    ASSERT_NE(lo, links->end());
    EXPECT_TRUE(lo->loopback);
    EXPECT_EQ(lo->mac, Mac{});
    auto by_name = mon.link("lo");
    ASSERT_TRUE(by_name.ok()) << by_name.error().message;
    EXPECT_EQ(*by_name, *lo);

    auto absent = mon.link("kxlbnope0");
    ASSERT_FALSE(absent.ok());
    EXPECT_EQ(absent.error().code, ENOENT) << absent.error().message;
    for (const std::string& bad : {std::string(), std::string(16, 'x')}) {
        auto r = mon.link(bad);
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.error().code, EINVAL) << r.error().message;
    }
    auto addrs = mon.addresses();
    ASSERT_TRUE(addrs.ok()) << addrs.error().message;

    // Moving keeps the sockets; the moved-from monitor reports EBADF instead of crashing.
    NetlinkMonitor moved = std::move(mon);
    EXPECT_EQ(moved.fd(), fd);
    EXPECT_EQ(mon.fd(), -1);  // NOLINT(bugprone-use-after-move): documented moved-from state
    auto d = mon.drain();     // NOLINT(bugprone-use-after-move)
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.error().code, EBADF);
    EXPECT_FALSE(mon.links().ok());  // NOLINT(bugprone-use-after-move)
    auto again = moved.links();
    ASSERT_TRUE(again.ok()) << again.error().message;
    // Nothing pending in a quiet moment is not an error and does not block.
    auto start = Clock::now();
    auto drained = moved.drain();
    ASSERT_TRUE(drained.ok()) << drained.error().message;
    EXPECT_LT(Clock::now() - start, 1s);
}

// ---- the monitor inside a lab namespace (root) -------------------------------------------------

// A lab with namespaces "n" (the monitored one) and "other", and a monitor opened inside "n".
class NetlinkMonitorTest : public testing::Test {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        lab::Topology t;
        t.namespaces = {"n", "other"};
        auto created = lab::Lab::create(t);
        ASSERT_TRUE(created.ok()) << created.error().message;
        lab_ = std::move(created).value();
        auto path = lab_->find_ns_path("n");
        ASSERT_TRUE(path.ok()) << path.error().message;
        {
            auto guard = lab::NetnsGuard::enter(*path);
            ASSERT_TRUE(guard.ok()) << guard.error().message;
            auto mon = NetlinkMonitor::open();
            ASSERT_TRUE(mon.ok()) << mon.error().message;
            mon_.emplace(std::move(mon).value());
        }  // back in the test's namespace: the sockets stay in "n"
        log_.emplace(*mon_);
    }

    // `ip args...` inside ns; the assertion fails with the command's output if it does not exit 0.
    testing::AssertionResult ip(std::vector<std::string> args, const std::string& ns = "n") {
        args.insert(args.begin(), "ip");
        auto r = lab_->run(ns, args);
        if (!r) return testing::AssertionFailure() << r.error().message;
        if (r->exit_code != 0)
            return testing::AssertionFailure()
                   << lab::format_argv(args) << " in " << ns << " exited " << r->exit_code << ": " << r->out << r->err;
        return testing::AssertionSuccess();
    }
    // `ip -j args...` inside "n", parsed.
    nlohmann::json ip_json(std::vector<std::string> args) {
        args.insert(args.begin(), {"ip", "-j"});
        auto r = lab_->run("n", args);
        EXPECT_TRUE(r.ok() && r->exit_code == 0) << (r ? r->err : r.error().message);
        if (!r || r->exit_code != 0) return nlohmann::json::array();
        return nlohmann::json::parse(r->out);
    }
    int ifindex(const std::string& name) {
        auto r = lab_->ifindex("n", name);
        EXPECT_TRUE(r.ok()) << r.error().message;
        return r ? *r : -1;
    }

    std::unique_ptr<lab::Lab> lab_;
    std::optional<NetlinkMonitor> mon_;
    std::optional<EventLog> log_;
};

TEST_F(NetlinkMonitorTest, LinkAndAddressEvents) {
    KXLB_REQUIRE_ROOT();
    using K = NetlinkEvent::Kind;
    auto& log = *log_;
    const Mac mac_a{0x02, 0x00, 0x00, 0x00, 0x77, 0x0a}, mac_b{0x02, 0x00, 0x00, 0x00, 0x77, 0x0b};

    ASSERT_TRUE(ip({"link", "add", "nla", "type", "veth", "peer", "name", "nlb"}));
    auto a_new = log.wait_for(link_event(K::LinkNew, "nla"));
    ASSERT_TRUE(a_new) << log.dump();
    ASSERT_TRUE(log.wait_for(link_event(K::LinkNew, "nlb"))) << log.dump();
    const int a_idx = ifindex("nla"), b_idx = ifindex("nlb");
    EXPECT_EQ(log.events[*a_new].link.ifindex, a_idx);
    EXPECT_FALSE(log.events[*a_new].link.up);
    EXPECT_FALSE(log.events[*a_new].link.loopback);
    EXPECT_EQ(log.events[*a_new].link.mtu, 1500u);

    // Fixed MACs and an MTU change show up as LinkNew (the kernel's "changed" notification).
    std::size_t pos = log.events.size();
    ASSERT_TRUE(ip({"link", "set", "dev", "nla", "address", mac_str(mac_a)}));
    ASSERT_TRUE(ip({"link", "set", "dev", "nlb", "address", mac_str(mac_b)}));
    auto a_mac = log.wait_for(link_event(K::LinkNew, "nla", [&](const LinkInfo& l) { return l.mac == mac_a; }), pos);
    ASSERT_TRUE(a_mac) << log.dump();
    EXPECT_EQ(log.events[*a_mac].link.ifindex, a_idx);
    auto b_mac = log.wait_for(link_event(K::LinkNew, "nlb", [&](const LinkInfo& l) { return l.mac == mac_b; }), pos);
    ASSERT_TRUE(b_mac) << log.dump();
    EXPECT_EQ(log.events[*b_mac].link.ifindex, b_idx);
    EXPECT_LT(*a_mac, *b_mac);  // in the order the changes were made
    pos = log.events.size();
    ASSERT_TRUE(ip({"link", "set", "dev", "nla", "mtu", "1400"}));
    ASSERT_TRUE(log.wait_for(link_event(K::LinkNew, "nla", [](const LinkInfo& l) { return l.mtu == 1400; }), pos))
        << log.dump();

    // Up: first admin up, then (both ends up, so carrier) running; carrier goes through linkwatch (<= 1 s).
    pos = log.events.size();
    ASSERT_TRUE(ip({"link", "set", "dev", "nla", "up"}));
    auto a_up = log.wait_for(link_event(K::LinkNew, "nla", [](const LinkInfo& l) { return l.up; }), pos);
    ASSERT_TRUE(a_up) << log.dump();
    EXPECT_FALSE(log.events[*a_up].link.running) << "no carrier while the peer is down";
    ASSERT_TRUE(ip({"link", "set", "dev", "nlb", "up"}));
    auto a_running = log.wait_for(
        link_event(K::LinkNew, "nla", [&](const LinkInfo& l) { return l.up && l.running && l.mac == mac_a; }), pos, 3s);
    ASSERT_TRUE(a_running) << log.dump();

    // Addresses: exact address, prefix length, scope and interface; deletions after additions.
    const AddrInfo v4 = addr(a_idx, "10.77.0.1", 24), v6 = addr(a_idx, "fd77::1", 64);
    pos = log.events.size();
    ASSERT_TRUE(ip({"addr", "add", "10.77.0.1/24", "dev", "nla"}));
    auto v4_new = log.wait_for(addr_event(K::AddrNew, v4), pos);
    ASSERT_TRUE(v4_new) << log.dump();
    EXPECT_EQ(log.events[*v4_new].addr.addr.family, AF_INET);
    ASSERT_TRUE(ip({"-6", "addr", "add", "fd77::1/64", "dev", "nla", "nodad"}));
    auto v6_new = log.wait_for(addr_event(K::AddrNew, v6), pos);
    ASSERT_TRUE(v6_new) << log.dump();
    EXPECT_EQ(log.events[*v6_new].addr.addr.family, AF_INET6);
    EXPECT_NE(log.events[*v6_new].addr.flags & IFA_F_NODAD, 0u);
    EXPECT_EQ(log.events[*v6_new].addr.flags & IFA_F_TENTATIVE, 0u);
    EXPECT_LT(*v4_new, *v6_new);

    ASSERT_TRUE(ip({"addr", "del", "10.77.0.1/24", "dev", "nla"}));
    auto v4_del = log.wait_for(addr_event(K::AddrDel, v4), *v6_new);
    ASSERT_TRUE(v4_del) << log.dump();
    ASSERT_TRUE(ip({"-6", "addr", "del", "fd77::1/64", "dev", "nla"}));
    auto v6_del = log.wait_for(addr_event(K::AddrDel, v6), *v4_del);
    ASSERT_TRUE(v6_del) << log.dump();

    // Deleting one end deletes the pair: LinkDel for both, with their names and MACs.
    pos = log.events.size();
    ASSERT_TRUE(ip({"link", "del", "nla"}));
    auto a_del = log.wait_for(link_event(K::LinkDel, "nla"), pos);
    ASSERT_TRUE(a_del) << log.dump();
    EXPECT_EQ(log.events[*a_del].link.ifindex, a_idx);
    EXPECT_EQ(log.events[*a_del].link.mac, mac_a);
    auto b_del = log.wait_for(link_event(K::LinkDel, "nlb"), pos);
    ASSERT_TRUE(b_del) << log.dump();
    EXPECT_EQ(log.events[*b_del].link.mac, mac_b);
    // No AddrNew for our addresses after their deletion, and nothing was lost.
    for (std::size_t i = *v6_del; i < log.events.size(); ++i)
        EXPECT_FALSE(addr_event(K::AddrNew, v4)(log.events[i]) || addr_event(K::AddrNew, v6)(log.events[i]))
            << log.dump();
    EXPECT_FALSE(log.resync_needed);

    auto gone = mon_->link("nla");
    ASSERT_FALSE(gone.ok());
    EXPECT_EQ(gone.error().code, ENOENT) << gone.error().message;
}

TEST_F(NetlinkMonitorTest, DumpsAgreeWithIpJson) {
    KXLB_REQUIRE_ROOT();
    ASSERT_TRUE(ip({"link", "add", "nla", "type", "veth", "peer", "name", "nlb"}));
    ASSERT_TRUE(ip({"link", "set", "dev", "nla", "address", "02:00:00:00:78:0a", "mtu", "1400"}));
    ASSERT_TRUE(ip({"link", "add", "nlbr", "type", "bridge"}));
    ASSERT_TRUE(ip({"link", "set", "dev", "nlb", "master", "nlbr"}));
    for (const char* dev : {"nla", "nlb"}) ASSERT_TRUE(ip({"link", "set", "dev", dev, "up"}));
    ASSERT_TRUE(ip({"addr", "add", "10.78.0.1/24", "dev", "nla"}));
    ASSERT_TRUE(ip({"addr", "add", "10.78.0.9/32", "dev", "nla"}));
    ASSERT_TRUE(ip({"addr", "add", "10.79.0.1/16", "dev", "nlbr"}));  // nlbr stays down
    ASSERT_TRUE(ip({"-6", "addr", "add", "fd78::1/64", "dev", "nla", "nodad"}));
    ASSERT_TRUE(ip({"-6", "addr", "add", "fd78::2/64", "dev", "nla", "nodad", "preferred_lft", "0"}));  // deprecated
    ASSERT_TRUE(ip({"-6", "addr", "add", "fd78::99/128", "dev", "lo"}));
    // Let carrier (linkwatch) settle so both views see the same operstate.
    ASSERT_TRUE(log_->wait_for([](const NetlinkEvent& e) { return e.link.name == "nla" && e.link.running; }, 0, 3s))
        << log_->dump();

    auto links = mon_->links();
    ASSERT_TRUE(links.ok()) << links.error().message;
    auto jlinks = ip_json({"link", "show"});
    ASSERT_EQ(links->size(), jlinks.size()) << jlinks.dump();
    for (const auto& j : jlinks) {
        const int idx = j.at("ifindex").get<int>();
        auto it = std::find_if(links->begin(), links->end(), [&](const LinkInfo& l) { return l.ifindex == idx; });
        ASSERT_NE(it, links->end()) << j.dump();
        const auto flags = j.at("flags").get<std::vector<std::string>>();
        auto has = [&](const char* f) { return std::find(flags.begin(), flags.end(), f) != flags.end(); };
        const auto oper = j.at("operstate").get<std::string>();
        EXPECT_EQ(it->name, j.at("ifname").get<std::string>());
        EXPECT_EQ(mac_str(it->mac), j.at("address").get<std::string>()) << it->name;
        EXPECT_EQ(it->mtu, j.at("mtu").get<std::uint32_t>()) << it->name;
        EXPECT_EQ(it->up, has("UP")) << it->name;
        EXPECT_EQ(it->loopback, has("LOOPBACK")) << it->name;
        EXPECT_EQ(it->running, oper == "UP" || oper == "UNKNOWN") << it->name << " operstate " << oper;
        // link(name) is the same view as the dump.
        auto one = mon_->link(it->name);
        ASSERT_TRUE(one.ok()) << one.error().message;
        EXPECT_EQ(*one, *it);
    }
    auto nla = mon_->link("nla");
    ASSERT_TRUE(nla.ok()) << nla.error().message;
    EXPECT_EQ(mac_str(nla->mac), "02:00:00:00:78:0a");
    EXPECT_EQ(nla->mtu, 1400u);
    EXPECT_TRUE(nla->up && nla->running && !nla->loopback);
    auto br = mon_->link("nlbr");
    ASSERT_TRUE(br.ok()) << br.error().message;
    EXPECT_FALSE(br->up);

    // Addresses: same set (ip groups by link, the kernel dumps by family), same flags that matter.
    auto addrs = mon_->addresses();
    ASSERT_TRUE(addrs.ok()) << addrs.error().message;
    using Row = std::tuple<int, std::string, int, int, bool>;  // ifindex, address, prefix, scope, deprecated
    std::vector<Row> ours, theirs;
    for (const auto& a : *addrs)
        ours.emplace_back(a.ifindex, a.addr.str(), a.prefix_len, a.scope, (a.flags & IFA_F_DEPRECATED) != 0);
    auto scope_of = [](const std::string& s) {
        return s == "global" ? RT_SCOPE_UNIVERSE : s == "link" ? RT_SCOPE_LINK : s == "host" ? RT_SCOPE_HOST : -1;
    };
    for (const auto& l : ip_json({"addr", "show"}))
        for (const auto& a : l.at("addr_info"))
            theirs.emplace_back(l.at("ifindex").get<int>(), a.at("local").get<std::string>(),
                                a.at("prefixlen").get<int>(), scope_of(a.at("scope").get<std::string>()),
                                a.value("deprecated", false));
    std::sort(ours.begin(), ours.end());
    std::sort(theirs.begin(), theirs.end());
    EXPECT_EQ(ours, theirs);
    const int a_idx = ifindex("nla");
    for (const Row& r :
         {Row{a_idx, "10.78.0.1", 24, RT_SCOPE_UNIVERSE, false}, Row{a_idx, "10.78.0.9", 32, RT_SCOPE_UNIVERSE, false},
          Row{a_idx, "fd78::2", 64, RT_SCOPE_UNIVERSE, true}, Row{1, "127.0.0.1", 8, RT_SCOPE_HOST, false}})
        EXPECT_NE(std::find(ours.begin(), ours.end(), r), ours.end()) << std::get<1>(r);

    // The SNAT choice on real dumps: nla is the first up non-loopback link with global addresses; the
    // deprecated fd78::2 is skipped; naming the (down) bridge selects its address.
    EXPECT_EQ(pick_node_address(AF_INET, {}, *links, *addrs), ip_of("10.78.0.1"));
    EXPECT_EQ(pick_node_address(AF_INET6, {}, *links, *addrs), ip_of("fd78::1"));
    EXPECT_EQ(pick_node_address(AF_INET, {"nlbr", "nla"}, *links, *addrs), ip_of("10.79.0.1"));
    EXPECT_EQ(pick_node_address(AF_INET6, {"nlbr", "nla"}, *links, *addrs), ip_of("fd78::1"));
    EXPECT_EQ(pick_node_address(AF_INET6, {"lo"}, *links, *addrs), ip_of("fd78::99"));
}

TEST_F(NetlinkMonitorTest, SocketsStayInTheirNamespace) {
    KXLB_REQUIRE_ROOT();
    using K = NetlinkEvent::Kind;
    // The test thread is back in its own namespace, yet the dumps are those of "n": only lo.
    auto links = mon_->links();
    ASSERT_TRUE(links.ok()) << links.error().message;
    ASSERT_EQ(links->size(), 1u);
    EXPECT_EQ(links->front().name, "lo");
    EXPECT_TRUE(links->front().loopback && links->front().up);
    auto addrs = mon_->addresses();
    ASSERT_TRUE(addrs.ok()) << addrs.error().message;
    for (const auto& a : *addrs) EXPECT_EQ(a.ifindex, links->front().ifindex);

    // Changes in another namespace produce no events here; changes in "n" do.
    ASSERT_TRUE(ip({"link", "add", "nlo", "type", "veth", "peer", "name", "nlp"}, "other"));
    ASSERT_TRUE(ip({"addr", "add", "10.80.0.1/24", "dev", "nlo"}, "other"));
    log_->settle();
    // (A late carrier notification for the lab's own lo is harmless; anything else would be a leak.)
    const int lo_idx = links->front().ifindex;
    for (const auto& e : log_->events) {
        const bool link_ev = e.kind == K::LinkNew || e.kind == K::LinkDel;
        EXPECT_EQ(link_ev ? e.link.ifindex : e.addr.ifindex, lo_idx) << log_->dump();
    }
    ASSERT_TRUE(ip({"link", "add", "nlx", "type", "veth", "peer", "name", "nly"}));
    EXPECT_TRUE(log_->wait_for(link_event(K::LinkNew, "nlx"))) << log_->dump();
    for (const auto& e : log_->events) EXPECT_NE(e.link.name, "nlo") << log_->dump();
}

TEST_F(NetlinkMonitorTest, BridgePortNotificationsAreNotLinkEvents) {
    KXLB_REQUIRE_ROOT();
    using K = NetlinkEvent::Kind;
    // Enslaving/releasing a bridge port makes the kernel send AF_BRIDGE RTM_NEWLINK/RTM_DELLINK on
    // RTNLGRP_LINK; "removed from the bridge" must not look like "link deleted".
    ASSERT_TRUE(ip({"link", "add", "nla", "type", "veth", "peer", "name", "nlb"}));
    ASSERT_TRUE(ip({"link", "add", "nlbr", "type", "bridge"}));
    ASSERT_TRUE(ip({"link", "set", "dev", "nlb", "master", "nlbr"}));
    ASSERT_TRUE(ip({"link", "set", "dev", "nlb", "nomaster"}));
    ASSERT_TRUE(ip({"link", "set", "dev", "nla", "mtu", "1300"}));  // a marker after the bridge changes
    ASSERT_TRUE(log_->wait_for(link_event(K::LinkNew, "nla", [](const LinkInfo& l) { return l.mtu == 1300; })))
        << log_->dump();
    for (const auto& e : log_->events) EXPECT_NE(e.kind, K::LinkDel) << log_->dump();
    auto nlb = mon_->link("nlb");
    ASSERT_TRUE(nlb.ok()) << nlb.error().message;
    ASSERT_TRUE(ip({"link", "del", "nlbr"}));
    EXPECT_TRUE(log_->wait_for(link_event(K::LinkDel, "nlbr"))) << log_->dump();
}

TEST_F(NetlinkMonitorTest, OverflowReportsResyncAndKeepsWorking) {
    KXLB_REQUIRE_ROOT();
    using K = NetlinkEvent::Kind;
    ASSERT_TRUE(ip({"link", "add", "nla", "type", "veth", "peer", "name", "nlb"}));
    ASSERT_TRUE(log_->wait_for(link_event(K::LinkNew, "nlb"))) << log_->dump();
    const int a_idx = ifindex("nla");
    // Shrink the event queue to the kernel minimum, then make far more changes than fit, in one `ip` run.
    const int tiny = 1;
    ASSERT_EQ(::setsockopt(mon_->fd(), SOL_SOCKET, SO_RCVBUF, &tiny, sizeof tiny), 0);
    constexpr int kAddrs = 64;
    lab::TempDir dir("netlink");
    ASSERT_FALSE(dir.path().empty());
    const std::string batch = dir.path() + "/addrs.batch";
    {
        std::ofstream f(batch);
        for (int i = 1; i <= kAddrs; ++i) f << "addr add 10.81.0." << i << "/32 dev nla\n";
        ASSERT_TRUE(f.good());
    }
    ASSERT_TRUE(ip({"-batch", batch}));

    auto d = mon_->drain();
    ASSERT_TRUE(d.ok()) << d.error().message;
    EXPECT_TRUE(d->resync_needed);
    std::size_t seen = 0;
    for (const auto& e : d->events) seen += e.kind == K::AddrNew && e.addr.ifindex == a_idx;
    EXPECT_LT(seen, static_cast<std::size_t>(kAddrs)) << "the queue did not overflow; the test proves nothing";

    // Resync source: the dump has every address. Later events still arrive, and a clean read says so.
    auto addrs = mon_->addresses();
    ASSERT_TRUE(addrs.ok()) << addrs.error().message;
    EXPECT_EQ(std::count_if(addrs->begin(), addrs->end(),
                            [&](const AddrInfo& a) { return a.ifindex == a_idx && a.addr.family == AF_INET; }),
              kAddrs);
    const int roomy = 1 << 20;
    ASSERT_EQ(::setsockopt(mon_->fd(), SOL_SOCKET, SO_RCVBUF, &roomy, sizeof roomy), 0);
    EventLog after(*mon_);
    ASSERT_TRUE(ip({"addr", "add", "10.81.1.1/32", "dev", "nla"}));
    EXPECT_TRUE(after.wait_for(addr_event(K::AddrNew, addr(a_idx, "10.81.1.1", 32)))) << after.dump();
    EXPECT_FALSE(after.resync_needed);
}

}  // namespace
}  // namespace kxlb::agent
