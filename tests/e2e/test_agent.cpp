// e2e tier: the kxlb-agent binary in the netns lab. Health probes take a dead backend out of
// rotation and bring it back; SIGKILL + restart (which also swaps in a newly loaded program) under
// continuous traffic fails no request and keeps a long-lived TCP connection; a bad config reload
// keeps the old state serving and a good one applies; an interface that appears, disappears and
// comes back gets the program again.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "common/privileges.hpp"
#include "e2e/agent_lab.hpp"
#include "lab/lb_scenario.hpp"
#include "lab/netns.hpp"
#include "lib/bpf_link.hpp"
#include "lib/pinning.hpp"

namespace kxlb {
namespace {

using lab::LbScenario;
using namespace std::chrono_literals;

constexpr const char* kVip = "10.90.0.100";
constexpr int kIntervalMs = 200;
constexpr int kFall = 2;
constexpr int kRise = 2;

std::string config_yaml(const std::string& pin, const std::vector<int>& backends,
                        const std::vector<std::string>& ifaces = {"eth0"}, const std::string& cgroup = "") {
    std::ostringstream y;
    y << "node:\n  interfaces:\n";
    for (const auto& i : ifaces) y << "    - name: " << i << "\n";
    y << "pin_path: " << pin << "\n";
    y << "socket_lb:\n  cgroup: \"" << cgroup << "\"\n";
    y << "metrics:\n  address: \"\"\n";
    y << "services:\n  - name: web\n    frontends:\n      - { address: " << kVip << ", port: 80, protocol: tcp }\n";
    y << "    backends:\n";
    for (int i : backends)
        y << "      - { address: " << LbScenario::backend4(i) << ", port: " << LbScenario::kHttpPort << " }\n";
    y << "    health_check:\n      type: http\n      path: /readyz\n      interval: " << kIntervalMs
      << "ms\n      timeout: 100ms\n      rise: " << kRise << "\n      fall: " << kFall << "\n";
    return y.str();
}

class AgentTest : public test::AgentLabTest {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        open_lab("agent", 3, kVip);
        if (HasFatalFailure()) return;
        config_ = (dir_ / "agent.yaml").string();
        write_config(config_yaml(pin_, {1, 2, 3}));
    }
    void write_config(const std::string& text) {
        const auto tmp = config_ + ".tmp";
        std::ofstream(tmp) << text;
        std::filesystem::rename(tmp, config_);  // atomically, as a ConfigMap update would
    }
    lab::Process* start_agent() {
        auto p = sc_->lab().spawn("node", {KXLB_AGENT_BIN, "--config", config_});
        EXPECT_TRUE(p) << (p ? "" : p.error().message);
        return p ? *p : nullptr;
    }
    // Body of GET /readyz through the VIP ("be1".."be3"), or "" on failure.
    std::string get() {
        auto r = sc_->lab().run("client", {"curl", "-s", "--max-time", "2", std::string("http://") + kVip + "/readyz"});
        if (!r || r->exit_code != 0) return "";
        auto out = r->out;
        while (!out.empty() && out.back() == '\n') out.pop_back();
        return out;
    }
    bool wait_serving(std::chrono::milliseconds limit) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < end) {
            if (!get().empty()) return true;
            std::this_thread::sleep_for(50ms);
        }
        return false;
    }
    std::map<std::string, int> spread(int n) {
        std::map<std::string, int> hits;
        for (int i = 0; i < n; ++i) ++hits[get()];
        return hits;
    }
    XdpAttachState xdp_state(const std::string& ifname) {
        auto idx = sc_->lab().ifindex("node", ifname);
        if (!idx) return {};
        auto st = sc_->lab().in_ns("node", [&] { return query_xdp(*idx); });
        return st ? *st : XdpAttachState{};
    }

    std::string config_;
};

TEST_F(AgentTest, DeadBackendLeavesRotationWithinTheProbeWindowAndComesBack) {
    auto* agent = start_agent();
    ASSERT_NE(agent, nullptr);
    ASSERT_TRUE(wait_serving(10s)) << agent->output();
    auto hits = spread(30);
    EXPECT_EQ(hits[""], 0);
    EXPECT_GT(hits["be1"], 0);
    EXPECT_GT(hits["be2"], 0);
    EXPECT_GT(hits["be3"], 0);

    sc_->stop_backend(2);
    // interval x fall + 1 s: out of rotation, no request fails after that.
    std::this_thread::sleep_for(std::chrono::milliseconds(kIntervalMs * kFall) + 1s);
    hits = spread(30);
    EXPECT_EQ(hits["be2"], 0);
    EXPECT_EQ(hits[""], 0) << agent->output();
    EXPECT_NE(agent->output().find("is now unhealthy"), std::string::npos);

    ASSERT_TRUE(sc_->start_backend(2));
    std::this_thread::sleep_for(std::chrono::milliseconds(kIntervalMs * (kRise + 1)) + 1s);
    hits = spread(30);
    EXPECT_GT(hits["be2"], 0) << agent->output();
    EXPECT_EQ(hits[""], 0);
}

TEST_F(AgentTest, KillAndRestartUnderTrafficFailsNothingAndKeepsLongConnections) {
    auto* agent = start_agent();
    ASSERT_NE(agent, nullptr);
    ASSERT_TRUE(wait_serving(10s)) << agent->output();
    const auto prog_before = xdp_state("eth0").prog_id;
    ASSERT_NE(prog_before, 0u);

    // A long-lived keep-alive connection through the VIP.
    const auto sock = keepalive(kVip);
    ASSERT_TRUE(sock.valid()) << std::strerror(errno);
    const auto backend = request(sock);
    ASSERT_FALSE(backend.empty());

    // Continuous new connections from the client for the whole restart.
    auto load = sc_->lab().spawn(
        "client", {"sh", "-c",
                   std::string("i=0; while [ $i -lt 150 ]; do curl -s -o /dev/null -m 2 -w '%{http_code}\\n' http://") +
                       kVip + "/readyz || echo fail; i=$((i+1)); sleep 0.01; done"});
    ASSERT_TRUE(load);
    std::this_thread::sleep_for(300ms);
    agent->kill(SIGKILL);
    ASSERT_TRUE(agent->wait(2s));
    std::this_thread::sleep_for(300ms);  // traffic flows with no agent at all
    auto* again = start_agent();
    ASSERT_NE(again, nullptr);
    auto done = (*load)->wait(60s);
    ASSERT_TRUE(done);
    const auto out = (*load)->output();
    std::istringstream lines(out);
    int ok = 0, failed = 0;
    for (std::string l; std::getline(lines, l);) (l == "200" ? ok : failed)++;
    EXPECT_EQ(ok, 150) << out;
    EXPECT_EQ(failed, 0) << out;

    // The long-lived connection still talks to the same backend.
    EXPECT_EQ(request(sock), backend);
    // The restarted agent swapped a newly loaded program into the pinned link.
    const auto after = xdp_state("eth0");
    EXPECT_TRUE(after.native);
    EXPECT_NE(after.prog_id, prog_before);
    EXPECT_NE(again->output().find("1 services adopted"), std::string::npos) << again->output();
}

// The capabilities the DaemonSet grants (deploy/kxlb-daemonset.yaml, `add: [...]`): read from the
// manifest so that the test and what operators deploy cannot drift apart.
std::vector<std::string> daemonset_capabilities() {
    std::ifstream in(std::string(KXLB_DEPLOY_DIR) + "/kxlb-daemonset.yaml");
    std::vector<std::string> caps;
    for (std::string line; std::getline(in, line);) {
        const auto at = line.find("add: [");
        if (at == std::string::npos) continue;
        std::string list = line.substr(at + 6, line.find(']') - at - 6);
        std::istringstream items(list);
        for (std::string item; std::getline(items, item, ',');) {
            std::erase_if(item, [](char c) { return c == '"' || c == ' '; });
            if (!item.empty()) caps.push_back(item);
        }
    }
    return caps;
}

// Effective capability mask of a process (/proc/<pid>/status CapEff).
std::uint64_t effective_caps(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("CapEff:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
    return ~0ull;
}

// `bpftool cgroup show PATH`: the programs attached to a cgroup.
std::string cgroup_programs(const std::string& path) {
    std::string out;
    if (FILE* f = ::popen(("bpftool cgroup show " + path + " 2>&1").c_str(), "r")) {
        char buf[512];
        while (std::fgets(buf, sizeof(buf), f)) out += buf;
        ::pclose(f);
    }
    return out;
}

// A cgroup v2 directory of the test's own for the socket-LB hooks, removed afterwards.
struct ScratchCgroup {
    std::string path = "/sys/fs/cgroup/unified/kxlb-e2e-caps-" + std::to_string(::getpid());
    ScratchCgroup() { std::filesystem::create_directories(path); }
    ~ScratchCgroup() { ::rmdir(path.c_str()); }
};

TEST_F(AgentTest, RunsWithOnlyTheDaemonSetCapabilitiesAndEachIsNeeded) {
    const auto caps = daemonset_capabilities();
    ASSERT_FALSE(caps.empty()) << "no `add: [...]` capability list in the DaemonSet";
    ScratchCgroup cg;
    write_config(config_yaml(pin_, {1, 2, 3}, {"eth0"}, cg.path));
    const auto start_with = [&](const std::vector<std::string>& granted) -> lab::Process* {
        std::string bset = "-all";
        for (auto c : granted) {
            std::transform(c.begin(), c.end(), c.begin(), [](unsigned char ch) { return std::tolower(ch); });
            bset += ",+" + c;
        }
        auto p = sc_->lab().spawn("node", {"setpriv", "--bounding-set=" + bset, "--inh-caps=-all", "--", KXLB_AGENT_BIN,
                                           "--config", config_});
        EXPECT_TRUE(p) << (p ? "" : p.error().message);
        return p ? *p : nullptr;
    };
    const auto wait_log = [](lab::Process* p, const std::string& text, std::chrono::milliseconds limit) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (p->output().find(text) == std::string::npos && std::chrono::steady_clock::now() < end)
            std::this_thread::sleep_for(50ms);
        return p->output().find(text) != std::string::npos;
    };

    // A first start (load, pin, attach XDP and the cgroup hooks, probe) and a restart that adopts
    // the pinned datapath, both with exactly the DaemonSet's capabilities.
    for (int run = 0; run < 2; ++run) {
        auto* agent = start_with(caps);
        ASSERT_NE(agent, nullptr);
        ASSERT_TRUE(wait_log(agent, "serving 1 services on 1 interfaces", 10s)) << agent->output();
        ASSERT_TRUE(wait_serving(10s)) << agent->output();
        EXPECT_EQ(std::popcount(effective_caps(agent->pid())), static_cast<int>(caps.size()))
            << "the test's own bounding set lacks one of the DaemonSet's capabilities: it cannot prove them";
        EXPECT_NE(agent->output().find(run == 0 ? "0 services adopted" : "1 services adopted"), std::string::npos)
            << agent->output();
        EXPECT_NE(cgroup_programs(cg.path).find("connect4"), std::string::npos) << cgroup_programs(cg.path);
        agent->kill(SIGKILL);
        ASSERT_TRUE(agent->wait(2s));
    }
    // Without any one of them, a fresh start cannot bring the datapath up (no XDP program on the
    // NIC): it fails with EPERM.
    for (const auto& missing : caps) {
        ASSERT_TRUE(remove_pinned(PinLayout{pin_}));  // fresh: nothing pinned, nothing attached
        for (int i = 0; i < 60 && xdp_state("eth0").prog_id != 0; ++i) std::this_thread::sleep_for(50ms);
        ASSERT_EQ(xdp_state("eth0").prog_id, 0u);
        std::vector<std::string> fewer;
        for (const auto& c : caps)
            if (c != missing) fewer.push_back(c);
        auto* agent = start_with(fewer);
        ASSERT_NE(agent, nullptr);
        EXPECT_TRUE(wait_log(agent, "Operation not permitted", 10s)) << "without " << missing << ":\n"
                                                                     << agent->output();
        std::this_thread::sleep_for(500ms);
        EXPECT_EQ(xdp_state("eth0").prog_id, 0u) << "XDP attached without " << missing;
        agent->kill(SIGKILL);
        ASSERT_TRUE(agent->wait(2s));
    }
}

// A backend at the node's own address (a host-network process, e.g. a static-pod apiserver on a
// control-plane node) is local without being told: XDP hands its flows to the kernel with only the
// destination translated, and the tc egress filter the agent put on eth0 gives the replies the VIP.
TEST_F(AgentTest, BackendAtTheNodesOwnAddressIsServedLocallyInBothDirections) {
    const auto www = dir_ / "www";
    std::filesystem::create_directories(www);
    std::ofstream(www / "readyz") << "node\n";
    auto server = sc_->lab().spawn(
        "node", {"python3", "-m", "http.server", "8081", "--bind", LbScenario::kNode4, "--directory", www.string()});
    ASSERT_TRUE(server) << server.error().message;
    std::ostringstream y;
    y << "node:\n  interfaces: [{ name: eth0 }]\npin_path: " << pin_ << "\nsocket_lb: { cgroup: \"\" }\n"
      << "metrics: { address: \"\" }\nservices:\n  - name: web\n    frontends: [{ address: " << kVip
      << ", port: 80 }]\n    backends: [{ address: " << LbScenario::kNode4 << ", port: 8081 }]\n";
    write_config(y.str());
    auto* agent = start_agent();
    ASSERT_NE(agent, nullptr);
    ASSERT_TRUE(wait_serving(10s)) << agent->output() << (*server)->output();
    const auto hits = spread(10);
    EXPECT_EQ(hits.count("node") ? hits.at("node") : 0, 10) << agent->output();
    // The server saw the client's own address (destination NAT only).
    EXPECT_NE((*server)->output().find(LbScenario::kClient4), std::string::npos) << (*server)->output();
    // Uninstall removes the tc filter with everything else.
    agent->kill(SIGTERM);
    ASSERT_TRUE(agent->wait(5s));
    auto tc = sc_->lab().run("node", {"tc", "filter", "show", "dev", "eth0", "egress"});
    ASSERT_TRUE(tc && tc->exit_code == 0);
    EXPECT_NE(tc->out.find("bpf"), std::string::npos) << tc->out;  // stopping leaves it for the next agent
    auto r = sc_->lab().run("node", {KXLB_AGENT_BIN, "--uninstall", "--pin-path", pin_});
    ASSERT_TRUE(r && r->exit_code == 0) << (r ? r->out + r->err : r.error().message);
    tc = sc_->lab().run("node", {"tc", "filter", "show", "dev", "eth0", "egress"});
    ASSERT_TRUE(tc && tc->exit_code == 0);
    EXPECT_EQ(tc->out.find("bpf"), std::string::npos) << tc->out;
}

TEST_F(AgentTest, BadReloadKeepsServingAndGoodReloadApplies) {
    auto* agent = start_agent();
    ASSERT_NE(agent, nullptr);
    ASSERT_TRUE(wait_serving(10s)) << agent->output();
    write_config("services:\n  - name: web\n    frontends: []\n    bogus: 1\n");
    std::this_thread::sleep_for(500ms);
    EXPECT_NE(agent->output().find("config reload rejected"), std::string::npos) << agent->output();
    auto hits = spread(20);
    EXPECT_EQ(hits[""], 0);
    EXPECT_GT(hits["be3"], 0);

    write_config(config_yaml(pin_, {1, 2}));  // be3 removed
    std::this_thread::sleep_for(500ms);
    EXPECT_NE(agent->output().find("config reloaded"), std::string::npos) << agent->output();
    hits = spread(30);
    EXPECT_EQ(hits["be3"], 0);
    EXPECT_EQ(hits[""], 0);
    EXPECT_GT(hits["be1"], 0);
    EXPECT_GT(hits["be2"], 0);

    // SIGHUP reloads too (same file: nothing changes, still serving).
    agent->kill(SIGHUP);
    std::this_thread::sleep_for(300ms);
    EXPECT_NE(agent->output().find("SIGHUP: reloading"), std::string::npos);
    EXPECT_EQ(spread(5)[""], 0);
}

TEST_F(AgentTest, InterfaceThatComesAndGoesGetsTheProgramBack) {
    write_config(config_yaml(pin_, {1, 2, 3}, {"eth0", "ext0"}));
    auto* agent = start_agent();
    ASSERT_NE(agent, nullptr);
    ASSERT_TRUE(wait_serving(10s)) << agent->output();
    auto wait_attached = [&](bool want) {
        for (int i = 0; i < 60; ++i) {
            if ((xdp_state("ext0").prog_id != 0) == want) return true;
            std::this_thread::sleep_for(50ms);
        }
        return false;
    };
    auto add = [&] {
        return sc_->lab().run("node", {"ip", "link", "add", "ext0", "type", "veth", "peer", "name", "ext0p"});
    };
    for (int round = 0; round < 2; ++round) {
        auto r = add();
        ASSERT_TRUE(r && r->exit_code == 0);
        ASSERT_TRUE(sc_->lab().run("node", {"ip", "link", "set", "ext0", "up"}));
        EXPECT_TRUE(wait_attached(true)) << "round " << round << "\n" << agent->output();
        ASSERT_TRUE(sc_->lab().run("node", {"ip", "link", "del", "ext0"}));
        std::this_thread::sleep_for(200ms);
    }
    EXPECT_EQ(spread(5)[""], 0);  // eth0 unaffected throughout
}

TEST_F(AgentTest, NodeAddressChangeMovesTheFullNatSource) {
    auto* agent = start_agent();
    ASSERT_NE(agent, nullptr);
    ASSERT_TRUE(wait_serving(10s)) << agent->output();
    EXPECT_NE(agent->output().find("node addresses for full-NAT: ipv4 10.90.0.1 "), std::string::npos)
        << agent->output();
    // The node gets an address in another subnet and loses its first (deleting a primary address
    // also deletes its subnet's secondaries): the agent follows through netlink.
    ASSERT_TRUE(sc_->lab().run("node", {"ip", "addr", "add", "10.91.0.2/24", "dev", "eth0"}));
    ASSERT_TRUE(sc_->lab().run("node", {"ip", "addr", "del", "10.90.0.1/24", "dev", "eth0"}));
    bool moved = false;
    for (int i = 0; i < 40 && !moved; ++i) {
        moved = agent->output().find("node addresses for full-NAT: ipv4 10.91.0.2 ") != std::string::npos;
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_TRUE(moved) << agent->output();
}

TEST_F(AgentTest, UninstallDetachesAndRemovesEverything) {
    auto* agent = start_agent();
    ASSERT_NE(agent, nullptr);
    ASSERT_TRUE(wait_serving(10s)) << agent->output();
    agent->kill(SIGTERM);
    ASSERT_TRUE(agent->wait(5s));
    EXPECT_NE(xdp_state("eth0").prog_id, 0u);  // stopping detaches nothing
    EXPECT_FALSE(get().empty());
    auto r = lab::run_command({KXLB_AGENT_BIN, "--uninstall", "--pin-path", pin_});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
    EXPECT_EQ(xdp_state("eth0").prog_id, 0u);
    EXPECT_FALSE(std::filesystem::exists(pin_));
}

}  // namespace
}  // namespace kxlb
