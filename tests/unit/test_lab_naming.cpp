// Unit tests (no root) for the netns lab's pure logic: naming, stale detection, topology validation.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>
#include <set>
#include <string>

#include "lab/lab.hpp"
#include "lab/netns.hpp"

namespace kxlb::lab {
namespace {

TEST(LabNaming, PrefixFormat) {
    EXPECT_EQ(make_prefix(12345, 0xa1b2), "kxlb-12345-a1b2");
    EXPECT_EQ(make_prefix(1, 0x000f), "kxlb-1-000f");
    EXPECT_EQ(make_prefix(4194304, 0xffff), "kxlb-4194304-ffff");
}

TEST(LabNaming, RandomPrefixUsesOwnPidAndFourHexDigits) {
    std::regex re("kxlb-" + std::to_string(::getpid()) + "-[0-9a-f]{4}");
    std::set<std::string> seen;
    for (int i = 0; i < 64; ++i) {
        std::string p = make_prefix();
        EXPECT_TRUE(std::regex_match(p, re)) << p;
        seen.insert(p);
    }
    EXPECT_GT(seen.size(), 1u) << "the tag should be random";
}

TEST(LabNaming, NetnsNameAndPath) {
    EXPECT_EQ(make_netns_name("kxlb-12345-a1b2", "client"), "kxlb-12345-a1b2-client");
    EXPECT_EQ(netns_path("kxlb-12345-a1b2-client"), "/run/netns/kxlb-12345-a1b2-client");
}

TEST(LabNaming, ParsesOwnNamesBack) {
    auto p = parse_lab_netns_name(make_netns_name(make_prefix(12345, 0xbeef), "x"));
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->pid, 12345);
    EXPECT_EQ(p->tag, "beef");
    EXPECT_EQ(p->logical, "x");

    auto q = parse_lab_netns_name("kxlb-7-0a0b-be-1_x");  // logical names may contain '-'
    ASSERT_TRUE(q.has_value());
    EXPECT_EQ(q->pid, 7);
    EXPECT_EQ(q->tag, "0a0b");
    EXPECT_EQ(q->logical, "be-1_x");
}

TEST(LabNaming, RejectsNamesOutsideTheScheme) {
    for (const char* n : {"",
                          "kxlb",
                          "kxlb-",
                          "kxlb-123",
                          "kxlb-123-",
                          "kxlb-123-beef",
                          "kxlb-123-beef-",
                          "kxlb-123-bee-x",
                          "kxlb-123-beeff-x",
                          "kxlb-123-BEEF-x",
                          "kxlb-123-ghij-x",
                          "kxlb--beef-x",
                          "kxlb-0-beef-x",
                          "kxlb-0123-beef-x",
                          "kxlb-+12-beef-x",
                          "kxlb--12-beef-x",
                          "kxlb-12a-beef-x",
                          "kxlb-99999999999-beef-x",
                          "kxlb-2147483648-beef-x",
                          "xkxlb-123-beef-x",
                          "KXLB-123-beef-x",
                          "foo",
                          "cni-1234-5678",
                          "kxlb_123_beef_x"})
        EXPECT_FALSE(parse_lab_netns_name(n).has_value()) << n;
    EXPECT_TRUE(parse_lab_netns_name("kxlb-2147483647-beef-x").has_value());
}

TEST(LabNaming, StaleSelectionOnlyDeadPidsAndOnlyOurScheme) {
    std::vector<std::string> names{"kxlb-100-beef-x",
                                   "kxlb-100-cafe-y",
                                   "kxlb-200-beef-x",
                                   "kxlb-300-0000-a-b",
                                   "kxlb-100-beef",
                                   "cni-100-beef-x",
                                   "myns",
                                   "kxlb-0100-beef-x",
                                   "kxlb-300-beef-x2"};
    std::set<pid_t> alive{200};
    std::vector<pid_t> asked;
    auto stale = select_stale_namespaces(names, [&](pid_t pid) {
        asked.push_back(pid);
        return alive.count(pid) != 0;
    });
    EXPECT_EQ(stale, (std::vector<std::string>{"kxlb-100-beef-x", "kxlb-100-cafe-y", "kxlb-300-0000-a-b",
                                               "kxlb-300-beef-x2"}));
    for (pid_t p : asked) EXPECT_TRUE(p == 100 || p == 200 || p == 300) << p;
}

TEST(LabNaming, PidAlive) {
    EXPECT_TRUE(pid_alive(::getpid()));
    EXPECT_FALSE(pid_alive(0));
    EXPECT_FALSE(pid_alive(-1));
}

TEST(LabNaming, CidrAndNames) {
    auto c = parse_cidr("10.0.0.1/24");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->family, AF_INET);
    EXPECT_EQ(c->addr, "10.0.0.1");
    EXPECT_EQ(c->prefix_len, 24);
    auto c6 = parse_cidr("fd00::1/64");
    ASSERT_TRUE(c6);
    EXPECT_EQ(c6->family, AF_INET6);
    EXPECT_EQ(c6->prefix_len, 64);
    EXPECT_TRUE(parse_cidr("0.0.0.0/0"));
    EXPECT_TRUE(parse_cidr("::/0"));
    for (const char* bad : {"", "10.0.0.1", "10.0.0.1/", "10.0.0.1/33", "10.0.0.1/-1", "10.0.0.1/2x", "10.0.0/24",
                            "10.0.0.256/24", "fd00::1/129", "fd00::g/64", "/24", "default", "10.0.0.1/24 "})
        EXPECT_FALSE(parse_cidr(bad)) << bad;
    EXPECT_EQ(address_family("10.1.2.3"), AF_INET);
    EXPECT_EQ(address_family("fe80::1"), AF_INET6);
    EXPECT_EQ(address_family("10.1.2.3/8"), 0);

    EXPECT_TRUE(valid_ifname("eth0"));
    EXPECT_TRUE(valid_ifname("a23456789012345"));
    EXPECT_FALSE(valid_ifname("a234567890123456"));
    for (const char* bad : {"", ".", "..", "a/b", "a:b", "a b", "a\tb"}) EXPECT_FALSE(valid_ifname(bad)) << bad;
    EXPECT_TRUE(valid_logical_name("be-1_x"));
    for (const char* bad : {"", "a.b", "a/b", "a b"}) EXPECT_FALSE(valid_logical_name(bad)) << bad;
    EXPECT_FALSE(valid_logical_name(std::string(65, 'a')));
}

// A valid two-host topology through a switch and a router, to break one piece at a time.
Topology good() {
    Topology t;
    t.namespaces = {"client", "sw", "router", "server"};
    t.switches = {{"sw", "br0"}};
    t.veths = {
        {{"client", "eth0", {"10.0.1.2/24", "fd00:1::2/64"}}, {"sw", "p1", {}}},
        {{"router", "eth0", {"10.0.1.1/24", "fd00:1::1/64"}}, {"sw", "p2", {}}, false, true},
        {{"router", "eth1", {"10.0.2.1/24"}}, {"server", "eth0", {"10.0.2.2/24"}}, false, false, 1400},
    };
    t.ip_forwarding = {"router"};
    t.routes = {{"client", "default", "10.0.1.1", ""},
                {"client", "fd00:2::/64", "fd00:1::1", "eth0"},
                {"server", "10.0.1.0/24", "", "eth0"},
                {"router", "10.9.0.0/16", "", "lo"}};
    return t;
}

void expect_invalid(const Topology& t, const std::string& fragment) {
    auto st = validate(t);
    ASSERT_FALSE(st.ok()) << "expected an error containing: " << fragment;
    EXPECT_EQ(st.error().code, EINVAL);
    EXPECT_NE(st.error().message.find(fragment), std::string::npos) << st.error().message;
    EXPECT_EQ(st.error().message.rfind("topology: ", 0), 0u) << st.error().message;
}

TEST(LabTopology, ValidTopologyPasses) {
    auto st = validate(good());
    EXPECT_TRUE(st.ok()) << st.error().message;
    EXPECT_TRUE(validate(Topology{}).ok());
}

TEST(LabTopology, UnknownNamespaceInVeth) {
    auto t = good();
    t.veths[2].b.ns = "nope";
    expect_invalid(t, "veth #2 end b: unknown namespace 'nope'");
}

TEST(LabTopology, InterfaceNameTooLong) {
    auto t = good();
    t.veths[0].a.name = "a234567890123456";
    expect_invalid(t, "interface name 'a234567890123456' is too long (16 chars, max 15)");
}

TEST(LabTopology, InvalidInterfaceName) {
    auto t = good();
    t.veths[0].a.name = "eth/0";
    expect_invalid(t, "invalid interface name 'eth/0'");
}

TEST(LabTopology, BadCidr) {
    auto t = good();
    t.veths[1].a.addrs.push_back("10.0.1.300/24");
    expect_invalid(t, "bad CIDR '10.0.1.300/24' on router/eth0");
    t = good();
    t.veths[1].a.addrs = {"10.0.1.1"};
    expect_invalid(t, "bad CIDR '10.0.1.1'");
}

TEST(LabTopology, DuplicateNamespace) {
    auto t = good();
    t.namespaces.push_back("router");
    expect_invalid(t, "duplicate namespace 'router'");
}

TEST(LabTopology, InvalidNamespaceName) {
    auto t = good();
    t.namespaces.push_back("a.b");
    expect_invalid(t, "invalid namespace name 'a.b'");
}

TEST(LabTopology, DuplicateInterfaceInNamespace) {
    auto t = good();
    t.veths[2].a.name = "eth0";  // router already has eth0
    expect_invalid(t, "duplicate interface 'eth0' in namespace 'router'");
    t = good();
    t.veths[0].b.name = "br0";  // the bridge's name
    expect_invalid(t, "duplicate interface 'br0' in namespace 'sw'");
    t = good();
    t.veths[0].a.name = "lo";
    expect_invalid(t, "duplicate interface 'lo' in namespace 'client'");
}

TEST(LabTopology, SwitchErrors) {
    auto t = good();
    t.switches[0].ns = "nope";
    expect_invalid(t, "switch #0: unknown namespace 'nope'");
    t = good();
    t.switches.push_back({"sw", "br1"});
    expect_invalid(t, "switch #1: namespace 'sw' already has a switch");
    t = good();
    t.switches[0].bridge = "bridge-name-too-long";
    expect_invalid(t, "invalid bridge name 'bridge-name-too-long'");
    t = good();
    t.veths[0].b.addrs = {"10.0.1.9/24"};
    expect_invalid(t, "sw/p1 is a switch port");
}

TEST(LabTopology, MtuRange) {
    auto t = good();
    t.veths[0].mtu = 67;
    expect_invalid(t, "veth #0: bad mtu 67");
}

TEST(LabTopology, ForwardingAndRouteErrors) {
    auto t = good();
    t.ip_forwarding.push_back("ghost");
    expect_invalid(t, "ip_forwarding: unknown namespace 'ghost'");
    t = good();
    t.routes[0].ns = "ghost";
    expect_invalid(t, "route #0 (default): unknown namespace 'ghost'");
    t = good();
    t.routes[1].dst = "fd00:2::/200";
    expect_invalid(t, "bad destination 'fd00:2::/200'");
    t = good();
    t.routes[0].via = "10.0.1.1/24";
    expect_invalid(t, "bad gateway '10.0.1.1/24'");
    t = good();
    t.routes[0].via = "";
    expect_invalid(t, "needs via and/or dev");
    t = good();
    t.routes[2].dev = "eth9";
    expect_invalid(t, "unknown device 'eth9' in namespace 'server'");
    t = good();
    t.routes[1].via = "10.0.1.1";
    expect_invalid(t, "is not of the destination's address family");
}

}  // namespace
}  // namespace kxlb::lab
