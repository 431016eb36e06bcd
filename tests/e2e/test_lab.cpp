// E2E tests (root) for the netns lab: real namespaces, veths, bridges, routes, sockets, processes, XDP pass,
// teardown and stale cleanup, each proven with real traffic or kernel state.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/privileges.hpp"
#include "lab/lab.hpp"
#include "lab/netns.hpp"
#include "lab/process.hpp"

namespace kxlb::lab {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---- helpers -------------------------------------------------------------------------------

bool have_ping() { return ::access("/usr/bin/ping", X_OK) == 0 || ::access("/bin/ping", X_OK) == 0; }

std::uint16_t inet_checksum(const void* data, std::size_t len) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i + 1 < len; i += 2) sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
    if (len & 1) sum += static_cast<std::uint32_t>(p[len - 1] << 8);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return htons(static_cast<std::uint16_t>(~sum));
}

// One ICMP echo from ns to addr over a raw socket opened with lab.socket; true on a matching reply within 1 s.
// Used when the ping binary is not installed (iputils-ping).
testing::AssertionResult icmp_echo(Lab& lab, std::string_view ns, const std::string& addr) {
    const bool v6 = address_family(addr) == AF_INET6;
    auto fd = lab.socket(ns, v6 ? AF_INET6 : AF_INET, SOCK_RAW, v6 ? int{IPPROTO_ICMPV6} : int{IPPROTO_ICMP});
    if (!fd) return testing::AssertionFailure() << fd.error().message;
    const std::uint16_t id = static_cast<std::uint16_t>(::getpid() ^ 0x5a5a), seq = 1;
    std::uint8_t pkt[16] = {};
    pkt[0] = v6 ? ICMP6_ECHO_REQUEST : ICMP_ECHO;
    std::uint16_t nid = htons(id), nseq = htons(seq);
    std::memcpy(pkt + 4, &nid, 2);
    std::memcpy(pkt + 6, &nseq, 2);
    std::memcpy(pkt + 8, "kxlb-lab", 8);
    sockaddr_storage ss{};
    socklen_t sl;
    if (v6) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        ::inet_pton(AF_INET6, addr.c_str(), &s6->sin6_addr);
        sl = sizeof *s6;  // the kernel fills in the ICMPv6 checksum
    } else {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        ::inet_pton(AF_INET, addr.c_str(), &s4->sin_addr);
        sl = sizeof *s4;
        std::uint16_t ck = inet_checksum(pkt, sizeof pkt);
        std::memcpy(pkt + 2, &ck, 2);
    }
    if (::sendto(fd->get(), pkt, sizeof pkt, 0, reinterpret_cast<sockaddr*>(&ss), sl) < 0)
        return testing::AssertionFailure() << "sendto " << addr << ": " << std::strerror(errno);
    auto deadline = Clock::now() + 1s;
    while (Clock::now() < deadline) {
        pollfd p{fd->get(), POLLIN, 0};
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (::poll(&p, 1, static_cast<int>(std::max<long>(left, 1))) <= 0) continue;
        std::uint8_t buf[1500];
        ssize_t n = ::recv(fd->get(), buf, sizeof buf, 0);
        if (n <= 0) continue;
        const std::uint8_t* icmp = buf;
        if (!v6) {  // IPv4 raw sockets deliver the IP header too
            std::size_t ihl = static_cast<std::size_t>(buf[0] & 0x0f) * 4;
            if (static_cast<std::size_t>(n) < ihl + 8) continue;
            icmp = buf + ihl;
            n -= static_cast<ssize_t>(ihl);
        }
        if (n < 8) continue;
        std::uint16_t rid, rseq;
        std::memcpy(&rid, icmp + 4, 2);
        std::memcpy(&rseq, icmp + 6, 2);
        if (icmp[0] == (v6 ? ICMP6_ECHO_REPLY : ICMP_ECHOREPLY) && ntohs(rid) == id && ntohs(rseq) == seq)
            return testing::AssertionSuccess();
    }
    return testing::AssertionFailure() << "no ICMP echo reply from " << addr << " in namespace " << ns << " within 1 s";
}

// `ping -c1 -W1 addr` inside ns through lab.run (falls back to an in-process ICMP echo without iputils-ping).
testing::AssertionResult reachable(Lab& lab, std::string_view ns, const std::string& addr) {
    if (!have_ping()) return icmp_echo(lab, ns, addr);
    auto r = lab.run(ns, {"ping", "-c1", "-W1", addr}, 5s);
    if (!r) return testing::AssertionFailure() << r.error().message;
    if (r->exit_code != 0)
        return testing::AssertionFailure()
               << "ping " << addr << " from " << ns << " exited " << r->exit_code << ": " << r->out << r->err;
    return testing::AssertionSuccess();
}

std::unique_ptr<Lab> must_create(const Topology& t) {
    auto lab = Lab::create(t);
    EXPECT_TRUE(lab.ok()) << lab.error().message;
    return lab ? std::move(lab).value() : nullptr;
}

bool netns_exists(const std::string& name) {
    struct stat st {};
    return ::stat(netns_path(name).c_str(), &st) == 0;
}

// The names `ip netns list` prints (first word of each line).
std::vector<std::string> ip_netns_list() {
    std::vector<std::string> names;
    auto r = run_command({"ip", "netns", "list"});
    if (!r || r->exit_code != 0) return names;
    std::size_t pos = 0;
    while (pos < r->out.size()) {
        auto eol = r->out.find('\n', pos);
        if (eol == std::string::npos) eol = r->out.size();
        std::string line = r->out.substr(pos, eol - pos);
        if (!line.empty()) names.push_back(line.substr(0, line.find(' ')));
        pos = eol + 1;
    }
    return names;
}

// Deletes hand-made namespaces at scope exit, also when an assertion fails.
struct NetnsCleanup {
    std::vector<std::string> names;
    ~NetnsCleanup() {
        for (const auto& n : names) (void)delete_netns(n);
    }
};

std::optional<ino_t> inode_of(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return st.st_ino;
}

// Waits (bounded) until pred() is true.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 3s) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(20ms);
    }
    return pred();
}

Topology two_hosts(bool xdp_on_b = false) {
    Topology t;
    t.namespaces = {"a", "b"};
    t.veths = {{{"a", "veth-a", {"10.11.0.1/24", "fd11::1/64"}},
                {"b", "veth-b", {"10.11.0.2/24", "fd11::2/64"}},
                false,
                xdp_on_b}};
    return t;
}

// ---- topologies ----------------------------------------------------------------------------

TEST(LabVeth, TwoNamespacesPingV4AndV6) {
    KXLB_REQUIRE_ROOT();
    auto lab = must_create(two_hosts());
    ASSERT_TRUE(lab);
    EXPECT_TRUE(reachable(*lab, "a", "10.11.0.2"));
    EXPECT_TRUE(reachable(*lab, "a", "fd11::2"));
    EXPECT_TRUE(reachable(*lab, "b", "10.11.0.1"));
    EXPECT_TRUE(reachable(*lab, "b", "fd11::1"));
    // The in-process ICMP path (used without iputils-ping) works too, and neither check is vacuous.
    EXPECT_TRUE(icmp_echo(*lab, "a", "10.11.0.2"));
    EXPECT_TRUE(icmp_echo(*lab, "a", "fd11::2"));
    EXPECT_FALSE(icmp_echo(*lab, "a", "10.11.0.99"));
    EXPECT_FALSE(reachable(*lab, "a", "fd11::99"));
    // Names follow the scheme and exist where `ip netns` looks.
    EXPECT_EQ(lab->ns_name("a"), lab->prefix() + "-a");
    EXPECT_EQ(lab->ns_path("a"), "/run/netns/" + lab->prefix() + "-a");
    auto parsed = parse_lab_netns_name(lab->ns_name("a"));
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->pid, ::getpid());
    auto listed = ip_netns_list();
    EXPECT_NE(std::find(listed.begin(), listed.end(), lab->ns_name("b")), listed.end());
    // Interfaces are not prefixed: each namespace has its own.
    auto idx = lab->ifindex("a", "veth-a");
    ASSERT_TRUE(idx.ok()) << idx.error().message;
    EXPECT_GT(*idx, 1);
    EXPECT_FALSE(lab->ifindex("a", "veth-b").ok());
    EXPECT_FALSE(lab->ifindex("nope", "veth-a").ok());
}

TEST(LabSwitch, ThreeHostsThroughBridge) {
    KXLB_REQUIRE_ROOT();
    Topology t;
    t.namespaces = {"h1", "h2", "h3", "sw"};
    t.switches = {{"sw", "br0"}};
    for (int i = 1; i <= 3; ++i) {
        std::string h = "h" + std::to_string(i);
        t.veths.push_back({{h, "eth0", {"10.12.0." + std::to_string(i) + "/24", "fd12::" + std::to_string(i) + "/64"}},
                           {"sw", "port" + std::to_string(i), {}}});
    }
    auto lab = must_create(t);
    ASSERT_TRUE(lab);
    EXPECT_TRUE(reachable(*lab, "h1", "10.12.0.3"));
    EXPECT_TRUE(reachable(*lab, "h1", "fd12::3"));
    EXPECT_TRUE(reachable(*lab, "h3", "10.12.0.2"));
    // The ports really are enslaved to the bridge in the switch namespace.
    auto r = lab->run("sw", {"ip", "-o", "link", "show", "master", "br0"});
    ASSERT_TRUE(r.ok()) << r.error().message;
    for (const char* port : {"port1@", "port2@", "port3@"}) EXPECT_NE(r->out.find(port), std::string::npos) << r->out;
}

TEST(LabRouted, ClientRouterServer) {
    KXLB_REQUIRE_ROOT();
    Topology t;
    t.namespaces = {"client", "router", "server"};
    t.veths = {
        {{"client", "eth0", {"10.13.1.2/24", "fd13:1::2/64"}}, {"router", "c0", {"10.13.1.1/24", "fd13:1::1/64"}}},
        {{"router", "s0", {"10.13.2.1/24", "fd13:2::1/64"}}, {"server", "eth0", {"10.13.2.2/24", "fd13:2::2/64"}}},
    };
    t.ip_forwarding = {"router"};
    t.routes = {{"client", "default", "10.13.1.1", ""},
                {"client", "::/0", "fd13:1::1", "eth0"},
                {"server", "10.13.1.0/24", "10.13.2.1", "eth0"},
                {"server", "fd13:1::/64", "fd13:2::1", ""}};
    auto lab = must_create(t);
    ASSERT_TRUE(lab);
    EXPECT_TRUE(reachable(*lab, "client", "10.13.2.2"));
    EXPECT_TRUE(reachable(*lab, "client", "fd13:2::2"));
    EXPECT_TRUE(reachable(*lab, "server", "10.13.1.2"));
    // A child inside a namespace sees that namespace's sysctls.
    auto fwd = lab->run("router", {"cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"});
    ASSERT_TRUE(fwd.ok()) << fwd.error().message;
    EXPECT_EQ(fwd->out, "1\n1\n");
    auto nofwd = lab->run("client", {"cat", "/proc/sys/net/ipv4/ip_forward"});
    ASSERT_TRUE(nofwd.ok()) << nofwd.error().message;
    EXPECT_EQ(nofwd->out, "0\n");
    // Lab::sysctl writes the namespace's copy only.
    ASSERT_TRUE(lab->sysctl("client", "net.ipv4.ip_forward", "1").ok());
    EXPECT_EQ(lab->run("client", {"cat", "/proc/sys/net/ipv4/ip_forward"})->out, "1\n");
    EXPECT_EQ(lab->run("server", {"cat", "/proc/sys/net/ipv4/ip_forward"})->out, "0\n");
    auto bad = lab->sysctl("client", "kernel.pid_max", "1");
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.error().message.find("only per-namespace"), std::string::npos);
}

// ---- sockets -------------------------------------------------------------------------------

void udp_exchange(Lab& lab, int family, const std::string& server_addr) {
    auto srv = lab.socket("b", family, SOCK_DGRAM);
    ASSERT_TRUE(srv.ok()) << srv.error().message;
    auto cli = lab.socket("a", family, SOCK_DGRAM);
    ASSERT_TRUE(cli.ok()) << cli.error().message;

    sockaddr_storage ss{};
    socklen_t sl;
    if (family == AF_INET6) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(40000);
        ASSERT_EQ(::inet_pton(AF_INET6, server_addr.c_str(), &s6->sin6_addr), 1);
        sl = sizeof *s6;
    } else {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(40000);
        ASSERT_EQ(::inet_pton(AF_INET, server_addr.c_str(), &s4->sin_addr), 1);
        sl = sizeof *s4;
    }
    // The server address exists only in namespace b: binding proves the socket lives there.
    ASSERT_EQ(::bind(srv->get(), reinterpret_cast<sockaddr*>(&ss), sl), 0) << std::strerror(errno);

    const std::string msg = "hello from a";
    ASSERT_EQ(::sendto(cli->get(), msg.data(), msg.size(), 0, reinterpret_cast<sockaddr*>(&ss), sl),
              static_cast<ssize_t>(msg.size()))
        << std::strerror(errno);
    pollfd p{srv->get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 2000), 1) << "no datagram within 2 s";
    char buf[64];
    sockaddr_storage from{};
    socklen_t fl = sizeof from;
    ssize_t n = ::recvfrom(srv->get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &fl);
    ASSERT_EQ(n, static_cast<ssize_t>(msg.size()));
    EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), msg);

    // Reply to the source address seen: a round trip.
    ASSERT_EQ(::sendto(srv->get(), "pong", 4, 0, reinterpret_cast<sockaddr*>(&from), fl), 4) << std::strerror(errno);
    pollfd q{cli->get(), POLLIN, 0};
    ASSERT_EQ(::poll(&q, 1, 2000), 1) << "no reply within 2 s";
    n = ::recv(cli->get(), buf, sizeof buf, 0);
    EXPECT_EQ(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))), "pong");
}

TEST(LabSocket, UdpDatagramAcrossNamespacesV4AndV6) {
    KXLB_REQUIRE_ROOT();
    auto lab = must_create(two_hosts());
    ASSERT_TRUE(lab);
    udp_exchange(*lab, AF_INET, "10.11.0.2");
    udp_exchange(*lab, AF_INET6, "fd11::2");
    // A socket made in the root namespace cannot bind the lab address.
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    UniqueFd root_sock(fd);
    sockaddr_in s4{};
    s4.sin_family = AF_INET;
    ::inet_pton(AF_INET, "10.11.0.2", &s4.sin_addr);
    EXPECT_NE(::bind(root_sock.get(), reinterpret_cast<sockaddr*>(&s4), sizeof s4), 0);
}

TEST(LabNetns, InNsRunsOnThisThreadAndRestores) {
    KXLB_REQUIRE_ROOT();
    auto lab = must_create(two_hosts());
    ASSERT_TRUE(lab);
    auto before = inode_of("/proc/thread-self/ns/net");
    auto inside = lab->in_ns("b", [] { return inode_of("/proc/thread-self/ns/net"); });
    EXPECT_EQ(inside, inode_of(lab->ns_path("b")));
    EXPECT_NE(inside, before);
    EXPECT_EQ(inode_of("/proc/thread-self/ns/net"), before);
    // Restored also when fn throws.
    EXPECT_THROW(lab->in_ns("a", []() -> int { throw std::logic_error("x"); }), std::logic_error);
    EXPECT_EQ(inode_of("/proc/thread-self/ns/net"), before);
    EXPECT_THROW(lab->in_ns("nope", [] { return 0; }), std::runtime_error);
    // A void fn is fine too.
    int idx = 0;
    lab->in_ns("a", [&] { idx = static_cast<int>(::if_nametoindex("veth-a")); });
    EXPECT_EQ(idx, lab->ifindex("a", "veth-a").value());
    // The guard on its own, moved around.
    {
        auto g = NetnsGuard::enter(lab->ns_path("a"));
        ASSERT_TRUE(g.ok()) << g.error().message;
        NetnsGuard moved = std::move(g).value();
        EXPECT_EQ(inode_of("/proc/thread-self/ns/net"), inode_of(lab->ns_path("a")));
    }
    EXPECT_EQ(inode_of("/proc/thread-self/ns/net"), before);
    EXPECT_FALSE(NetnsGuard::enter("/run/netns/kxlb-does-not-exist").ok());
}

// ---- processes -----------------------------------------------------------------------------

TEST(LabProcess, RunCommandCapturesOutputAndExitCode) {
    auto r = run_command({"sh", "-c", "echo out; echo err >&2; exit 3"});
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->exit_code, 3);
    EXPECT_EQ(r->out, "out\n");
    EXPECT_EQ(r->err, "err\n");
    auto big = run_command({"head", "-c", "1000000", "/dev/zero"});  // more than a pipe buffer
    ASSERT_TRUE(big.ok()) << big.error().message;
    EXPECT_EQ(big->out.size(), 1000000u);
    auto sig = run_command({"sh", "-c", "kill -9 $$"});
    ASSERT_TRUE(sig.ok());
    EXPECT_EQ(sig->exit_code, 128 + 9);
}

TEST(LabProcess, RunCommandErrors) {
    auto missing = run_command({"/nonexistent/kxlb-no-such-command"});
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ENOENT);
    EXPECT_NE(missing.error().message.find("kxlb-no-such-command"), std::string::npos);
    EXPECT_FALSE(run_command({}).ok());
    EXPECT_FALSE(run_command({"true"}, 1s, "/run/netns/kxlb-does-not-exist").ok());

    auto t0 = Clock::now();
    auto slow = run_command({"sh", "-c", "echo started; sleep 30"}, 300ms);
    auto took = Clock::now() - t0;
    ASSERT_FALSE(slow.ok());
    EXPECT_EQ(slow.error().code, ETIMEDOUT);
    EXPECT_NE(slow.error().message.find("started"), std::string::npos) << slow.error().message;
    EXPECT_LT(took, 3s);
}

TEST(LabProcess, RunCommandDoesNotWaitForBackgroundedGrandchildren) {
    auto t0 = Clock::now();
    auto r = run_command({"sh", "-c", "sleep 5 & echo done"}, 10s);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->exit_code, 0);
    EXPECT_EQ(r->out, "done\n");
    EXPECT_LT(Clock::now() - t0, 3s);
}

TEST(LabProcess, SpawnOutputWaitKill) {
    auto p = spawn({"sh", "-c", "echo hello; echo oops >&2; exec sleep 30"});
    ASSERT_TRUE(p.ok()) << p.error().message;
    EXPECT_GT(p->pid(), 0);
    EXPECT_TRUE(eventually([&] { return p->output() == "hello\noops\n"; })) << p->output();
    EXPECT_TRUE(p->running());
    auto w = p->wait(50ms);
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(w.error().code, ETIMEDOUT);
    p->kill(SIGTERM);
    auto code = p->wait(2s);
    ASSERT_TRUE(code.ok()) << code.error().message;
    EXPECT_EQ(*code, 128 + SIGTERM);
    EXPECT_FALSE(p->running());
    EXPECT_EQ(p->wait(0ms).value(), 128 + SIGTERM);  // cached

    auto q = spawn({"true"});
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->wait(2s).value(), 0);
    auto missing = spawn({"/nonexistent/kxlb-no-such-command"});
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ENOENT);
}

TEST(LabProcess, DestructorEscalatesToSigkill) {
    pid_t pid;
    auto t0 = Clock::now();
    {
        auto p = spawn({"sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"});
        ASSERT_TRUE(p.ok()) << p.error().message;
        pid = p->pid();
        ASSERT_TRUE(eventually([&] { return p->output() == "ready\n"; }));
        Process moved = std::move(p).value();  // ownership moves; the moved-from object does nothing
    }
    auto took = Clock::now() - t0;
    EXPECT_FALSE(pid_alive(pid));
    EXPECT_GE(took, 1900ms);  // SIGTERM was ignored for the grace period
    EXPECT_LT(took, 6s);
}

TEST(LabSpawn, SpawnedProcessRunsInNamespaceAndIsKilledOnTeardown) {
    KXLB_REQUIRE_ROOT();
    pid_t pid = -1;
    {
        auto lab = must_create(two_hosts());
        ASSERT_TRUE(lab);
        auto p = lab->spawn("b", {"sleep", "30"});
        ASSERT_TRUE(p.ok()) << p.error().message;
        pid = (*p)->pid();
        ASSERT_TRUE((*p)->running());
        EXPECT_EQ(inode_of("/proc/" + std::to_string(pid) + "/ns/net"), inode_of(lab->ns_path("b")));
        EXPECT_FALSE(lab->spawn("nope", {"sleep", "30"}).ok());
        auto t0 = Clock::now();
        lab.reset();
        EXPECT_LT(Clock::now() - t0, 5s);
    }
    EXPECT_FALSE(pid_alive(pid)) << "spawned sleep survived the lab";
}

TEST(LabSpawn, StubbornProcessesShareOneGracePeriod) {
    KXLB_REQUIRE_ROOT();
    std::vector<pid_t> pids;
    auto lab = must_create(two_hosts());
    ASSERT_TRUE(lab);
    for (int i = 0; i < 3; ++i) {
        auto p = lab->spawn(i % 2 ? "a" : "b", {"sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"});
        ASSERT_TRUE(p.ok()) << p.error().message;
        pids.push_back((*p)->pid());
        Process* proc = *p;
        ASSERT_TRUE(eventually([&] { return proc->output() == "ready\n"; }));
    }
    auto t0 = Clock::now();
    lab.reset();
    auto took = Clock::now() - t0;
    EXPECT_LT(took, 4s) << "SIGTERM-ignoring children should cost one 2 s grace period, not one each";
    for (pid_t pid : pids) EXPECT_FALSE(pid_alive(pid)) << pid;
}

// ---- teardown and stale cleanup ------------------------------------------------------------

TEST(LabTeardown, NoNamespaceLeftAfterDestroy) {
    KXLB_REQUIRE_ROOT();
    auto lab = must_create(two_hosts(true));
    ASSERT_TRUE(lab);
    std::string prefix = lab->prefix();
    std::vector<std::string> names{lab->ns_name("a"), lab->ns_name("b")};
    for (const auto& n : names) EXPECT_TRUE(netns_exists(n)) << n;
    (void)lab->spawn("a", {"sleep", "30"});
    lab.reset();
    for (const auto& n : names) EXPECT_FALSE(netns_exists(n)) << n;
    for (const auto& n : ip_netns_list()) EXPECT_NE(n.rfind(prefix + "-", 0), 0u) << "left behind: " << n;
}

TEST(LabTeardown, FailedCreateRemovesWhatItCreated) {
    KXLB_REQUIRE_ROOT();
    auto before = list_netns();
    ASSERT_TRUE(before.ok());
    Topology t = two_hosts();
    t.routes = {{"a", "10.99.0.0/16", "10.98.0.1", ""}};  // valid syntax, but the gateway is unreachable
    auto lab = Lab::create(t);
    ASSERT_FALSE(lab.ok());
    EXPECT_NE(lab.error().message.find("route add 10.99.0.0/16 via 10.98.0.1"), std::string::npos)
        << lab.error().message;
    std::cout << "expected error: " << lab.error().message << "\n";
    std::string mine = "kxlb-" + std::to_string(::getpid()) + "-";
    auto after = list_netns();
    ASSERT_TRUE(after.ok());
    for (const auto& n : *after) {
        if (n.rfind(mine, 0) == 0) {
            EXPECT_NE(std::find(before->begin(), before->end(), n), before->end()) << "left behind: " << n;
        }
    }
}

// A pid with no process, searched downward from pid_max (bounded).
std::optional<pid_t> dead_pid() {
    long max = 32768;
    std::ifstream("/proc/sys/kernel/pid_max") >> max;
    for (long p = max - 1; p > max - 2000 && p > 300; --p)
        if (!pid_alive(static_cast<pid_t>(p))) return static_cast<pid_t>(p);
    return std::nullopt;
}

TEST(LabStale, DeadPidRemovedLivePidKept) {
    KXLB_REQUIRE_ROOT();
    auto dead = dead_pid();
    ASSERT_TRUE(dead);
    const std::string stale = make_netns_name(make_prefix(*dead, 0xbeef), "x");
    const std::string live = make_netns_name(make_prefix(::getpid(), 0x0bad), "x");
    const std::string foreign = "kxlbx-" + std::to_string(*dead) + "-beef-x";  // outside the scheme
    NetnsCleanup cleanup{{stale, live, foreign}};
    for (const auto& n : cleanup.names) ASSERT_TRUE(add_netns(n).ok()) << n;

    auto removed = cleanup_stale_namespaces();
    ASSERT_TRUE(removed.ok()) << removed.error().message;
    EXPECT_GE(*removed, 1);
    EXPECT_FALSE(netns_exists(stale));
    EXPECT_TRUE(netns_exists(live));
    EXPECT_TRUE(netns_exists(foreign));
    auto listed = ip_netns_list();
    EXPECT_EQ(std::find(listed.begin(), listed.end(), stale), listed.end());

    // Lab::create does the same before building.
    ASSERT_TRUE(add_netns(stale).ok());
    ASSERT_TRUE(netns_exists(stale));
    {
        auto lab = must_create(two_hosts());
        ASSERT_TRUE(lab);
        EXPECT_FALSE(netns_exists(stale));
        EXPECT_TRUE(netns_exists(live));
        EXPECT_TRUE(netns_exists(lab->ns_name("a")));  // our own live lab is untouched by a second sweep
        ASSERT_TRUE(cleanup_stale_namespaces().ok());
        EXPECT_TRUE(netns_exists(lab->ns_name("a")));
    }
}

TEST(LabStale, CrashedLabProcessIsCleanedUp) {
    KXLB_REQUIRE_ROOT();
    // A child builds a lab and dies without any teardown, as a crashed test run would.
    int pipefd[2];
    ASSERT_EQ(::pipe(pipefd), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::close(pipefd[0]);
        auto lab = Lab::create(two_hosts());
        char ok = lab.ok() ? 1 : 0;
        ssize_t n = ::write(pipefd[1], &ok, 1);
        ::_exit(n == 1 ? 0 : 1);  // no destructors: the namespaces stay behind
    }
    ::close(pipefd[1]);
    char ok = 0;
    pollfd p{pipefd[0], POLLIN, 0};
    bool got = ::poll(&p, 1, 20000) == 1 && ::read(pipefd[0], &ok, 1) == 1;
    ::close(pipefd[0]);
    int status = 0;
    for (int i = 0; i < 200 && ::waitpid(child, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(got && ok) << "child could not build its lab";

    std::string prefix = "kxlb-" + std::to_string(child) + "-";
    auto leftovers = [&] {
        std::vector<std::string> out;
        auto names = list_netns();  // (not a range-for over list_netns().value(): that would dangle)
        if (!names) return out;
        for (const auto& n : *names)
            if (n.rfind(prefix, 0) == 0) out.push_back(n);
        return out;
    };
    NetnsCleanup cleanup{leftovers()};  // deletes them even if the assertions below fail
    ASSERT_EQ(cleanup.names.size(), 2u);
    ASSERT_FALSE(pid_alive(child));
    auto removed = cleanup_stale_namespaces();
    ASSERT_TRUE(removed.ok()) << removed.error().message;
    EXPECT_GE(*removed, 2);
    EXPECT_TRUE(leftovers().empty());
}

// ---- XDP -----------------------------------------------------------------------------------

TEST(LabXdp, PassAttachedNativelyOnVethPeer) {
    KXLB_REQUIRE_ROOT();
    auto lab = must_create(two_hosts(/*xdp_on_b=*/true));
    ASSERT_TRUE(lab);
    auto idx = lab->ifindex("b", "veth-b");
    ASSERT_TRUE(idx.ok()) << idx.error().message;
    auto st = lab->in_ns("b", [&] { return query_xdp(*idx); });
    ASSERT_TRUE(st.ok()) << st.error().message;
    EXPECT_NE(st->prog_id, 0u);
    EXPECT_TRUE(st->native);
    EXPECT_FALSE(st->generic);
    // The other end has nothing attached.
    auto ia = lab->ifindex("a", "veth-a");
    ASSERT_TRUE(ia.ok());
    auto sa = lab->in_ns("a", [&] { return query_xdp(*ia); });
    ASSERT_TRUE(sa.ok()) << sa.error().message;
    EXPECT_EQ(sa->prog_id, 0u);
    // Traffic still passes both ways, through the XDP program.
    EXPECT_TRUE(reachable(*lab, "a", "10.11.0.2"));
    EXPECT_TRUE(reachable(*lab, "a", "fd11::2"));
    EXPECT_TRUE(reachable(*lab, "b", "10.11.0.1"));
    // The same program on the other end, attached after creation.
    ASSERT_TRUE(lab->attach_xdp_pass("a", "veth-a").ok());
    auto sa2 = lab->in_ns("a", [&] { return query_xdp(*ia); });
    ASSERT_TRUE(sa2.ok());
    EXPECT_EQ(sa2->prog_id, st->prog_id);
    EXPECT_TRUE(sa2->native);
    EXPECT_TRUE(reachable(*lab, "a", "10.11.0.2"));
}

}  // namespace
}  // namespace kxlb::lab
