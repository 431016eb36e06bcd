// kxlb-demo: shows the datapath at work in a network-namespace lab. Three nginx "apiservers", a node
// running kxlb (XDP full-NAT on its NIC for an external client, socket-LB for a node-local client),
// a TCP health check that takes a dead backend out of rotation and puts it back when it recovers.
// The health check here is the demo's own loop; the agent's prober replaces it.
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>

#include "lab/lb_scenario.hpp"
#include "lib/lb_inspect.hpp"
#include "lib/libbpf_log.hpp"
#include "lib/sock_lb_program.hpp"

namespace {

using kxlb::lab::LbScenario;
using namespace std::chrono_literals;

constexpr const char* kVip = "10.96.0.10";
constexpr int kBackends = 3;

struct Health {
    bool up = true;
    int streak = 0;  // consecutive results disagreeing with `up`
};

class Demo {
public:
    explicit Demo(LbScenario& sc, std::string cgroup) : sc_(sc), cgroup_(std::move(cgroup)) {
        for (int i = 1; i <= kBackends; ++i) health_[i] = Health{};
    }

    kxlb::Status program() {
        kxlb::ServiceSpec s;
        s.frontend = kxlb::Frontend{kxlb::IpAddr::parse(kVip).value(), 80, IPPROTO_TCP};
        s.flags = KXLB_SVC_F_SOCKET_LB;
        for (int i = 1; i <= kBackends; ++i)
            if (health_[i].up)
                s.backends.push_back(
                    kxlb::BackendSpec{kxlb::IpAddr::parse(LbScenario::backend4(i)).value(), LbScenario::kHttpPort});
        auto id = sc_.lb().upsert_service(s);
        if (!id) return id.error();
        svc_id_ = *id;
        return {};
    }

    // One probe round (TCP connect, 200 ms timeout; fall 2, rise 2). Reprograms on a change.
    void probe() {
        bool changed = false;
        for (auto& [i, h] : health_) {
            const bool ok =
                kxlb::lab::tcp_probe(sc_.lab(), "node", LbScenario::backend4(i), LbScenario::kHttpPort, 200);
            h.streak = ok == h.up ? 0 : h.streak + 1;
            if (h.streak >= 2) {
                h.up = ok;
                h.streak = 0;
                changed = true;
                std::printf("      health: be%d is %s -> %s rotation\n", i, ok ? "back" : "down",
                            ok ? "back in" : "out of");
            }
        }
        if (changed)
            if (auto st = program(); !st) std::printf("      reprogramming failed: %s\n", st.error().message.c_str());
    }

    // An HTTP request from the external client (through XDP) or the node-local client (socket-LB).
    std::string request(bool local) {
        const std::string url = std::string("http://") + kVip + "/readyz";
        std::vector<std::string> argv =
            local ? std::vector<std::string>{"sh", "-c",
                                             "echo $$ > " + cgroup_ + "/cgroup.procs && exec curl -sS --max-time 2 " +
                                                 url}
                  : std::vector<std::string>{"curl", "-sS", "--max-time", "2", url};
        auto r = sc_.lab().run(local ? "node" : "client", argv, 5s);
        if (!r || r->exit_code != 0) {
            ++failed_;
            return "FAILED";
        }
        std::string body = r->out;
        while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
        ++answered_[body];
        return body;
    }

    void burst(const char* label, bool local, int n) {
        std::printf("      %-34s", label);
        for (int k = 0; k < n; ++k) std::printf(" %s", request(local).c_str());
        std::printf("\n");
    }

    std::uint32_t svc_id() const { return svc_id_; }
    int failed() const { return failed_; }
    const std::map<std::string, int>& answered() const { return answered_; }
    bool up(int i) const { return health_.at(i).up; }

private:
    LbScenario& sc_;
    std::string cgroup_;
    std::map<int, Health> health_;
    std::uint32_t svc_id_ = 0;
    int failed_ = 0;
    std::map<std::string, int> answered_;
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"kxlb-demo: the kxlb datapath in a network-namespace lab"};
    std::string cgroup_root = "/sys/fs/cgroup/unified";
    app.add_option("--cgroup-root", cgroup_root, "cgroup v2 mount point");
    CLI11_PARSE(app, argc, argv);
    if (::geteuid() != 0) {
        std::fprintf(stderr, "kxlb-demo needs root (network namespaces, BPF)\n");
        return 1;
    }
    kxlb::route_libbpf_log_to_spdlog();
    spdlog::set_level(spdlog::level::warn);

    std::printf("kxlb demo — everything below lives in network namespaces created for this run\n\n");
    std::printf("[1/6] lab: client, node, be1..be3 on one switch; nginx in every backend\n");
    auto sc = LbScenario::create(kBackends, {kVip});
    if (!sc) {
        std::fprintf(stderr, "building the lab failed: %s\n", sc.error().message.c_str());
        return 1;
    }
    std::printf("      namespaces %s-*, VIP %s routed by the client via the node %s\n", (*sc)->lab().prefix().c_str(),
                kVip, LbScenario::kNode4);

    const std::string cgroup = cgroup_root + "/kxlb-demo-" + std::to_string(::getpid());
    if (::mkdir(cgroup.c_str(), 0755) != 0) {
        std::fprintf(stderr, "creating cgroup %s: %s\n", cgroup.c_str(), std::strerror(errno));
        return 1;
    }
    int rc = 0;
    {
        std::printf("[2/6] kxlb: XDP full-NAT natively on node/eth0, socket-LB hooks on cgroup %s\n", cgroup.c_str());
        auto sock = kxlb::SockLbProgram::load((*sc)->program().lb_map_fds());
        auto links = sock ? sock->attach(cgroup) : kxlb::Result<std::vector<kxlb::Link>>(sock.error());
        Demo demo(**sc, cgroup);
        if (!links) {
            std::fprintf(stderr, "socket-LB: %s\n", links.error().message.c_str());
            rc = 1;
        } else if (auto st = demo.program(); !st) {
            std::fprintf(stderr, "programming the service: %s\n", st.error().message.c_str());
            rc = 1;
        } else {
            std::printf(
                "      service %s:80/tcp -> be1 be2 be3 :%u (Maglev, full-NAT; socket-LB for local clients)\n\n", kVip,
                LbScenario::kHttpPort);
            std::printf("[3/6] who answers?\n");
            demo.burst("external client (XDP):", false, 8);
            demo.burst("node-local client (socket-LB):", true, 6);

            std::printf("\n[4/6] be2 dies (nginx killed); health check every 200 ms, 2 failures to go out\n");
            (*sc)->stop_backend(2);
            for (int round = 0; round < 15 && demo.up(2); ++round) {
                demo.probe();
                std::printf("      request: %s\n", demo.request(false).c_str());
                std::this_thread::sleep_for(200ms);
            }
            demo.burst("external client:", false, 6);
            demo.burst("node-local client:", true, 4);

            std::printf("\n[5/6] be2 comes back; 2 good probes to return\n");
            if (auto st = (*sc)->start_backend(2); !st)
                std::printf("      restart failed: %s\n", st.error().message.c_str());
            for (int round = 0; round < 15 && !demo.up(2); ++round) {
                demo.probe();
                std::this_thread::sleep_for(200ms);
            }
            demo.burst("external client:", false, 9);

            std::printf("\n[6/6] what the datapath counted\n");
            auto counters = kxlb::LbCounters::bind((*sc)->program().lb_map_fds());
            if (counters) {
                auto reasons = counters->reasons();
                if (reasons)
                    for (std::size_t i = 0; i < kxlb::kReasonCount; ++i)
                        if ((*reasons)[i].packets)
                            std::printf("      %-24s %8llu packets\n", std::string(kxlb::kReasonNames[i]).c_str(),
                                        static_cast<unsigned long long>((*reasons)[i].packets));
                auto svc = counters->service(demo.svc_id());
                if (svc)
                    std::printf("      service %s:80  %llu packets, %llu new flows\n", kVip,
                                static_cast<unsigned long long>(svc->packets),
                                static_cast<unsigned long long>(svc->new_flows));
            }
            if (sock) {
                auto sr = sock->reasons();
                if (sr)
                    for (std::size_t i = 0; i < kxlb::kSockReasonCount; ++i)
                        if ((*sr)[i])
                            std::printf("      socket-LB %-22s %6llu\n", std::string(kxlb::kSockReasonNames[i]).c_str(),
                                        static_cast<unsigned long long>((*sr)[i]));
            }
            std::printf("      answers:");
            for (const auto& [who, n] : demo.answered()) std::printf(" %s=%d", who.c_str(), n);
            std::printf("  failed=%d (only while be2 was dead and not yet detected)\n", demo.failed());
        }
    }
    std::printf("\ncleaning up\n");
    // Processes that entered the cgroup have exited; the directory can go.
    if (::rmdir(cgroup.c_str()) != 0) std::fprintf(stderr, "removing %s: %s\n", cgroup.c_str(), std::strerror(errno));
    sc->reset();
    return rc;
}
