// e2e tier: DSR through the netns lab. The node's XDP balancer encapsulates client packets for DSR
// services (IPIP / IP6IP6) toward the backends, where kxlb-agent (dsr_decap: in its config) runs the
// XDP decap program (bpf/xdp_decap.bpf.c) that strips the outer header; the backends hold the VIPs on
// lo and answer the client directly. Proven
// here: real TCP (curl against nginx) and UDP over IPv4 and IPv6 spread over the backends; the replies
// never pass the node (counted on the node: zero frames from a VIP; the node's service counter equals
// what the client sent, not sent + received; the backends' decap counters equal it too); and PMTU: a
// 4 MiB upload whose full-size segments no longer fit after encapsulation completes, because the
// balancer answers them with ICMP "fragmentation needed" / "packet too big" and the client's TCP
// lowers its segment size. The backends' agents can die and restart without a failed request: the
// decapsulation program stays attached through its pinned link. Every test runs twice: with the
// balancer programmed through the library, and by kxlb-agent from a config with `mode: dsr` services
// and `datapath.dsr_source_prefixes` (outer sources spread over 10.99.0.0/24 and fd99::/64).
//
//   client 10.90.0.10 fd90::10 ─┐
//   node   10.90.0.1  fd90::1  ─┤ sw     node: kxlb XDP (LbScenario, library-programmed)
//   beN    10.90.0.1N fd90::1N ─┘        beN: kxlb-agent with dsr_decap on eth0, VIPs on lo, nginx :8080,
//                                         UDP responder and TCP sink bound to the VIPs
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/privileges.hpp"
#include "ctl/pinned_maps.hpp"
#include "e2e/sockets.hpp"
#include "lab/lb_scenario.hpp"
#include "lib/decap_program.hpp"
#include "lib/lb_inspect.hpp"
#include "lib/pinning.hpp"

namespace kxlb {
namespace {

using lab::LbScenario;
using test::make_sockaddr;
using test::UdpResponders;
using namespace std::chrono_literals;

constexpr const char* kVip4 = "10.90.0.200";
constexpr const char* kVip6 = "fd90::200";
constexpr std::uint16_t kHttp = LbScenario::kHttpPort;  // DSR cannot translate ports: VIP port = backend port
constexpr std::uint16_t kUdp = 5353;
constexpr std::uint16_t kSink = 9000;
constexpr int kBackends = 3;
constexpr std::size_t kUpload = 4u << 20;

// A TCP server on the VIPs in one backend namespace: reads each connection to its end, then answers
// the byte count ("<n>\n") and closes.
class TcpSink {
public:
    void add(UniqueFd listener) { listeners_.push_back(std::move(listener)); }
    void start() {
        thread_ = std::thread([this] { loop(); });
    }
    ~TcpSink() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }

private:
    void loop() {
        std::vector<pollfd> pfds;
        for (const auto& l : listeners_) pfds.push_back({l.get(), POLLIN, 0});
        while (!stop_) {
            if (::poll(pfds.data(), pfds.size(), 100) <= 0) continue;
            for (const auto& p : pfds) {
                if (!(p.revents & POLLIN)) continue;
                UniqueFd c(::accept4(p.fd, nullptr, nullptr, SOCK_CLOEXEC));
                if (!c.valid()) continue;
                timeval tv{10, 0};
                ::setsockopt(c.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
                std::size_t total = 0;
                char buf[65536];
                for (ssize_t n; (n = ::recv(c.get(), buf, sizeof(buf), 0)) > 0;) total += static_cast<std::size_t>(n);
                const auto reply = std::to_string(total) + "\n";
                (void)::send(c.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
            }
        }
    }
    std::vector<UniqueFd> listeners_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// Who programs the node's balancer.
enum class Balancer { Library, Agent };

class DsrE2E : public ::testing::TestWithParam<Balancer> {
protected:
    static constexpr std::pair<std::uint16_t, int> kPorts[] = {
        {kHttp, IPPROTO_TCP}, {kUdp, IPPROTO_UDP}, {kSink, IPPROTO_TCP}};
    static std::string backend_of(const char* vip, int i) {
        return std::string(vip).find(':') != std::string::npos ? LbScenario::backend6(i) : LbScenario::backend4(i);
    }

    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        const bool agent = GetParam() == Balancer::Agent;
        auto sc = LbScenario::create(kBackends, {kVip4, kVip6},
                                     agent ? LbScenario::Datapath::None : LbScenario::Datapath::Library);
        ASSERT_TRUE(sc) << sc.error().message;
        sc_ = std::move(sc).value();
        if (agent) {
            ASSERT_NO_FATAL_FAILURE(start_node_agent());
        } else {
            for (const char* vip : {kVip4, kVip6})
                for (auto [port, proto] : kPorts) {
                    ServiceSpec spec;
                    spec.frontend = Frontend{IpAddr::parse(vip).value(), port, static_cast<std::uint8_t>(proto)};
                    spec.flags = KXLB_SVC_F_DSR;
                    for (int i = 1; i <= kBackends; ++i)
                        spec.backends.push_back(BackendSpec{IpAddr::parse(backend_of(vip, i)).value(), port});
                    auto id = sc_->lb().upsert_service(spec);
                    ASSERT_TRUE(id) << id.error().message;
                }
        }
        const LbMapFds fds = agent ? node_maps_->lb() : sc_->program().lb_map_fds();
        auto counters = LbCounters::bind(fds);
        ASSERT_TRUE(counters) << counters.error().message;
        counters_.emplace(*counters);
        for (const char* vip : {kVip4, kVip6})
            for (auto [port, proto] : kPorts) {
                const auto key = Frontend{IpAddr::parse(vip).value(), port, static_cast<std::uint8_t>(proto)}.key();
                kxlb_service svc{};
                ASSERT_EQ(bpf_map_lookup_elem(fds.services, &key, &svc), 0) << vip << ":" << port;
                ASSERT_TRUE(svc.flags & KXLB_SVC_F_DSR);
                ids_[{vip, port}] = svc.id;
            }
        for (int i = 1; i <= kBackends; ++i) ASSERT_NO_FATAL_FAILURE(setup_backend(i));
        udp_.start();
        sink_.start();
        // Replies to the client must not reach the node: count any frame from a VIP there.
        for (auto [tool, vip] : {std::pair{"iptables", kVip4}, std::pair{"ip6tables", kVip6}})
            ASSERT_TRUE(run("node", {tool, "-w", "-t", "raw", "-A", "PREROUTING", "-s", vip}));
        for (auto [tool, vip] : {std::pair{"iptables", kVip4}, std::pair{"ip6tables", kVip6}})
            ASSERT_TRUE(run("client", {tool, "-w", "-A", "OUTPUT", "-d", vip}));
    }

    // The backend side of DSR, as docs/dsr-decap.md tells an operator to set it up.
    void setup_backend(int i) {
        const auto ns = LbScenario::backend_ns(i);
        ASSERT_TRUE(run(ns, {"ip", "addr", "add", std::string(kVip4) + "/32", "dev", "lo"}));
        ASSERT_TRUE(run(ns, {"ip", "-6", "addr", "add", std::string(kVip6) + "/128", "dev", "lo", "nodad"}));
        ASSERT_TRUE(run(ns, {"sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
                             "net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.eth0.rp_filter=2"}));
        ASSERT_NO_FATAL_FAILURE(start_backend_agent(i));
        for (const char* vip : {kVip4, kVip6}) {
            const auto family = std::string(vip).find(':') != std::string::npos ? AF_INET6 : AF_INET;
            const auto sa = make_sockaddr(vip, kUdp);
            auto u = sc_->lab().socket(ns, family, SOCK_DGRAM);
            ASSERT_TRUE(u) << u.error().message;
            ASSERT_EQ(::bind(u->get(), sa.sa(), sa.len), 0) << vip << ": " << std::strerror(errno);
            udp_.add(std::move(u).value(), "be" + std::to_string(i));
            const auto st = make_sockaddr(vip, kSink);
            auto t = sc_->lab().socket(ns, family, SOCK_STREAM);
            ASSERT_TRUE(t) << t.error().message;
            const int one = 1;
            ::setsockopt(t->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            ASSERT_EQ(::bind(t->get(), st.sa(), st.len), 0) << vip << ": " << std::strerror(errno);
            ASSERT_EQ(::listen(t->get(), 16), 0);
            sink_.add(std::move(t).value());
        }
    }

    // The balancer as an operator runs it: kxlb-agent with DSR services in its config file.
    void start_node_agent() {
        std::ostringstream y;
        y << "node:\n  interfaces: [{ name: eth0 }]\npin_path: " << pin(0)
          << "\nsocket_lb: { cgroup: \"\" }\nmetrics: { address: \"\" }\n"
          << "datapath:\n  dsr_source_prefixes: [10.99.0.0/24, \"fd99::/64\"]\nservices:\n";
        for (const char* vip : {kVip4, kVip6})
            for (auto [port, proto] : kPorts) {
                y << "  - name: dsr-" << (std::string(vip).find(':') != std::string::npos ? "v6-" : "v4-") << port
                  << "\n    mode: dsr\n    frontends: [{ address: \"" << vip << "\", port: " << port
                  << ", protocol: " << (proto == IPPROTO_TCP ? "tcp" : "udp") << " }]\n    backends:\n";
                for (int i = 1; i <= kBackends; ++i)
                    y << "      - { address: \"" << backend_of(vip, i) << "\", port: " << port << " }\n";
            }
        const auto config = scratch_dir() / "node.yaml";
        std::ofstream(config) << y.str();
        auto p = sc_->lab().spawn("node", {KXLB_AGENT_BIN, "--config", config.string()});
        ASSERT_TRUE(p) << p.error().message;
        node_agent_ = *p;
        const auto end = std::chrono::steady_clock::now() + 10s;
        while (node_agent_->output().find("serving 6 services on 1 interfaces") == std::string::npos &&
               std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(50ms);
        ASSERT_NE(node_agent_->output().find("serving 6 services on 1 interfaces"), std::string::npos)
            << node_agent_->output();
        auto maps = ctl::PinnedMaps::open(pin(0));
        ASSERT_TRUE(maps) << maps.error().message;
        node_maps_.emplace(std::move(maps).value());
    }

    std::filesystem::path scratch_dir() {
        const auto dir = std::filesystem::temp_directory_path() / ("kxlb-dsr-e2e-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir);
        dirs_.insert(dir);
        return dir;
    }

    // Pin path of the node's agent (0) or of backend i's.
    std::string pin(int i) const {
        return "/sys/fs/bpf/kxlb-e2e-dsr-" + std::to_string(::getpid()) + "-be" + std::to_string(i);
    }

    // The backend's kxlb-agent: no balancing, DSR decapsulation on eth0 toward its node addresses.
    void start_backend_agent(int i) {
        const auto config = scratch_dir() / ("be" + std::to_string(i) + ".yaml");
        std::ofstream(config) << "node:\n  interfaces: []\n  addresses: [" << LbScenario::backend4(i) << ", \""
                              << LbScenario::backend6(i) << "\"]\n"
                              << "pin_path: " << pin(i) << "\nsocket_lb: { cgroup: \"\" }\nmetrics: { address: \"\" }\n"
                              << "dsr_decap:\n  interfaces: [{ name: eth0 }]\n";
        auto p = sc_->lab().spawn(LbScenario::backend_ns(i), {KXLB_AGENT_BIN, "--config", config.string()});
        ASSERT_TRUE(p) << p.error().message;
        agents_[i] = *p;
        const auto end = std::chrono::steady_clock::now() + 10s;
        while (agents_[i]->output().find("DSR decapsulation attached to eth0") == std::string::npos &&
               std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(50ms);
        ASSERT_NE(agents_[i]->output().find("DSR decapsulation attached to eth0"), std::string::npos)
            << agents_[i]->output();
        if (decap_.size() < static_cast<std::size_t>(i)) {
            // A second loader of the same program on the agent's pinned maps: reads its counters.
            auto prog = XdpDecapProgram::load(pin(i));
            ASSERT_TRUE(prog) << prog.error().message;
            decap_.push_back(std::move(prog).value());
        }
    }

    void TearDown() override {
        node_maps_.reset();
        sc_.reset();  // kills the agents and servers, deletes the namespaces
        decap_.clear();
        for (int i = 0; i <= kBackends; ++i) (void)remove_pinned(PinLayout{pin(i)});
        for (const auto& d : dirs_) std::filesystem::remove_all(d);
    }

    bool run(const std::string& ns, const std::vector<std::string>& argv) {
        auto r = sc_->lab().run(ns, argv);
        EXPECT_TRUE(r && r->exit_code == 0) << ns << ": " << (r ? r->out + r->err : r.error().message);
        return r && r->exit_code == 0;
    }
    // Packets counted by the first rule of an iptables/ip6tables chain.
    std::uint64_t rule_packets(const std::string& ns, const std::string& tool, const std::string& table,
                               const std::string& chain) {
        auto r = sc_->lab().run(ns, {tool, "-w", "-t", table, "-nvx", "-L", chain, "1"});
        EXPECT_TRUE(r && r->exit_code == 0) << (r ? r->out + r->err : r.error().message);
        return r ? std::strtoull(r->out.c_str(), nullptr, 10) : 0;
    }
    std::uint64_t decapsulated() {
        std::uint64_t n = 0;
        for (const auto& p : decap_) {
            auto r = p.reasons();
            EXPECT_TRUE(r) << r.error().message;
            if (r) n += (*r)[KXLB_DR_DECAP_IPIP].packets + (*r)[KXLB_DR_DECAP_IP6IP6].packets;
        }
        return n;
    }
    std::uint64_t service_packets(const char* vip, std::uint16_t port) {
        auto c = counters_->service(ids_.at({vip, port}));
        EXPECT_TRUE(c) << c.error().message;
        return c ? c->packets : 0;
    }
    std::uint64_t reason(kxlb_reason r) {
        auto all = counters_->reasons();
        EXPECT_TRUE(all) << all.error().message;
        return all ? (*all)[r].packets : 0;
    }
    static std::string url(const char* vip, std::uint16_t port) {
        const std::string host = std::string(vip).find(':') != std::string::npos ? "[" + std::string(vip) + "]" : vip;
        return "http://" + host + ":" + std::to_string(port) + "/readyz";
    }

    std::unique_ptr<LbScenario> sc_;
    std::optional<LbCounters> counters_;
    std::map<std::pair<std::string, std::uint16_t>, std::uint32_t> ids_;
    std::vector<XdpDecapProgram> decap_;   // read the backends' counters
    std::map<int, lab::Process*> agents_;  // the backends'
    lab::Process* node_agent_ = nullptr;   // Balancer::Agent only
    std::optional<ctl::PinnedMaps> node_maps_;
    std::set<std::filesystem::path> dirs_;
    UdpResponders udp_;
    TcpSink sink_;
};

TEST_P(DsrE2E, TcpAndUdpOverBothFamiliesAnswerDirectlyFromTheBackends) {
    constexpr int kRequests = 30;
    for (const char* vip : {kVip4, kVip6}) {
        const bool v6 = std::string(vip).find(':') != std::string::npos;
        const auto svc0 = service_packets(vip, kHttp);
        const auto decap0 = decapsulated();
        const auto sent0 = rule_packets("client", v6 ? "ip6tables" : "iptables", "filter", "OUTPUT");
        std::map<std::string, int> hits;
        for (int k = 0; k < kRequests; ++k) {
            auto r = sc_->lab().run("client", {"curl", "-s", "--max-time", "2", url(vip, kHttp)});
            std::string body = r && r->exit_code == 0 ? r->out : "";
            while (!body.empty() && body.back() == '\n') body.pop_back();
            ++hits[body];
        }
        EXPECT_EQ(hits[""], 0) << vip;
        for (int i = 1; i <= kBackends; ++i) EXPECT_GT(hits["be" + std::to_string(i)], 0) << vip;
        const auto sent = rule_packets("client", v6 ? "ip6tables" : "iptables", "filter", "OUTPUT") - sent0;
        EXPECT_GE(sent, static_cast<std::uint64_t>(kRequests) * 4);  // SYN, ACK, request, FIN at least
        // The node counted exactly what the client sent (full-NAT would count the replies too), and
        // the backends decapsulated exactly that.
        EXPECT_EQ(service_packets(vip, kHttp) - svc0, sent) << vip;
        EXPECT_EQ(decapsulated() - decap0, sent) << vip;

        // UDP: datagrams from 60 source ports; every one answered from the VIP by some backend.
        std::map<std::string, int> udp_hits;
        for (int k = 0; k < 60; ++k) {
            auto s = sc_->lab().socket("client", v6 ? AF_INET6 : AF_INET, SOCK_DGRAM);
            ASSERT_TRUE(s) << s.error().message;
            timeval tv{1, 0};
            ::setsockopt(s->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            const auto to = make_sockaddr(vip, kUdp);
            ASSERT_EQ(::connect(s->get(), to.sa(), to.len), 0);  // accepts replies from the VIP only
            ASSERT_EQ(::send(s->get(), "q", 1, 0), 1);
            char buf[16];
            const ssize_t n = ::recv(s->get(), buf, sizeof(buf), 0);
            ++udp_hits[n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : ""];
        }
        EXPECT_EQ(udp_hits[""], 0) << vip;
        for (int i = 1; i <= kBackends; ++i) EXPECT_GT(udp_hits["be" + std::to_string(i)], 0) << vip;
    }
    // Not one reply reached the node.
    EXPECT_EQ(rule_packets("node", "iptables", "raw", "PREROUTING"), 0u);
    EXPECT_EQ(rule_packets("node", "ip6tables", "raw", "PREROUTING"), 0u);
}

TEST_P(DsrE2E, BackendAgentsDieAndRestartWithoutAFailedRequest) {
    const auto requests = [&](int n) {
        int ok = 0;
        for (int k = 0; k < n; ++k)
            for (const char* vip : {kVip4, kVip6}) {
                auto r = sc_->lab().run("client", {"curl", "-s", "--max-time", "2", url(vip, kHttp)});
                ok += r && r->exit_code == 0 && r->out.starts_with("be");
            }
        return ok;
    };
    ASSERT_EQ(requests(5), 10);
    const auto decap0 = decapsulated();
    for (int i = 1; i <= kBackends; ++i) {
        agents_[i]->kill(SIGKILL);
        ASSERT_TRUE(agents_[i]->wait(2s));
    }
    EXPECT_EQ(requests(10), 20);  // no agent anywhere on the backends
    EXPECT_GT(decapsulated(), decap0);
    for (int i = 1; i <= kBackends; ++i) ASSERT_NO_FATAL_FAILURE(start_backend_agent(i));
    EXPECT_EQ(requests(10), 20);
}

TEST_P(DsrE2E, LargeUploadCompletesThroughPathMtuDiscovery) {
    for (const char* vip : {kVip4, kVip6}) {
        const bool v6 = std::string(vip).find(':') != std::string::npos;
        const auto too_big0 = reason(KXLB_R_TX_ICMP_TOO_BIG);
        auto s = sc_->lab().socket("client", v6 ? AF_INET6 : AF_INET, SOCK_STREAM);
        ASSERT_TRUE(s) << s.error().message;
        timeval tv{15, 0};
        ::setsockopt(s->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ::setsockopt(s->get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        const auto to = make_sockaddr(vip, kSink);
        ASSERT_EQ(::connect(s->get(), to.sa(), to.len), 0) << vip << ": " << std::strerror(errno);
        const std::string chunk(65536, 'x');
        std::size_t sent = 0;
        while (sent < kUpload) {
            const ssize_t n = ::send(s->get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
            ASSERT_GT(n, 0) << vip << " after " << sent << " bytes: " << std::strerror(errno);
            sent += static_cast<std::size_t>(n);
        }
        ASSERT_EQ(::shutdown(s->get(), SHUT_WR), 0);
        char buf[64] = {};
        const ssize_t n = ::recv(s->get(), buf, sizeof(buf) - 1, 0);
        ASSERT_GT(n, 0) << vip << ": no answer from the sink: " << std::strerror(errno);
        EXPECT_EQ(std::string(buf), std::to_string(sent) + "\n") << vip;
        // Full-size segments (MTU 1500 everywhere) did not fit after 20/40 bytes of outer header: the
        // balancer said so, and the client's route learned the smaller path MTU.
        EXPECT_GT(reason(KXLB_R_TX_ICMP_TOO_BIG) - too_big0, 0u) << vip;
        auto route = sc_->lab().run("client", {"ip", v6 ? "-6" : "-4", "route", "get", vip});
        ASSERT_TRUE(route && route->exit_code == 0);
        EXPECT_NE(route->out.find(v6 ? "mtu 1460" : "mtu 1480"), std::string::npos) << route->out;
    }
}

INSTANTIATE_TEST_SUITE_P(Balancer, DsrE2E, ::testing::Values(Balancer::Library, Balancer::Agent),
                         [](const auto& info) { return info.param == Balancer::Library ? "Library" : "Agent"; });

}  // namespace
}  // namespace kxlb
