// e2e tier: the kxlb-agent binary with kubernetes.enabled in the netns lab, fed by the fake
// apiserver (tests/k8s/fake_apiserver.py, run in the node namespace beside the agent): a
// LoadBalancer Service is served within 100 ms of its EndpointSlice event, scaling down takes a
// backend out, a terminating endpoint gets no new connections, a relist storm writes nothing to the
// maps, and the VIP keeps being served after the API goes away. A terminating endpoint keeps its
// established connections; externalTrafficPolicy: Local serves this node's endpoints only.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/privileges.hpp"
#include "e2e/agent_lab.hpp"
#include "k8s/api_client.hpp"
#include "lab/lb_scenario.hpp"
#include "lib/pinning.hpp"

namespace kxlb {
namespace {

using lab::LbScenario;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kVip = "10.90.0.100";
constexpr const char* kMetrics = "127.0.0.1:19464";
constexpr const char* kServices = "/api/v1/services";
constexpr const char* kSlices = "/apis/discovery.k8s.io/v1/endpointslices";

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

json service(bool etp_local = false) {
    auto s = json::parse(R"({"metadata": {"name": "web", "namespace": "shop"},
      "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "clusterIP": "10.96.0.10",
               "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"],
               "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "web"}]},
      "status": {"loadBalancer": {"ingress": [{"ip": "10.90.0.100"}]}}})");
    if (etp_local) s["spec"]["externalTrafficPolicy"] = "Local";
    return s;
}

// One endpoint: backend be<index>, on node `node` (the agent runs as node-a).
struct Ep {
    int index;
    bool terminating = false;
    const char* node = "node-a";
};
json slice(const std::vector<Ep>& eps) {
    json endpoints = json::array();
    for (const auto& e : eps)
        endpoints.push_back(
            {{"addresses", {LbScenario::backend4(e.index)}},
             {"nodeName", e.node},
             {"conditions", {{"ready", !e.terminating}, {"serving", true}, {"terminating", e.terminating}}}});
    return {
        {"metadata", {{"name", "web-abc"}, {"namespace", "shop"}, {"labels", {{"kubernetes.io/service-name", "web"}}}}},
        {"addressType", "IPv4"},
        {"ports", {{{"name", "http"}, {"protocol", "TCP"}, {"port", LbScenario::kHttpPort}}}},
        {"endpoints", endpoints}};
}

class AgentK8sTest : public test::AgentLabTest {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        open_lab("k8s", 3, kVip);
        if (HasFatalFailure()) return;
        // The fake apiserver listens on the node namespace's loopback, where the agent runs.
        auto api = sc_->lab().spawn("node", {"python3", KXLB_FAKE_APISERVER, "--dir", dir_.string()});
        ASSERT_TRUE(api) << api.error().message;
        api_ = *api;
        const auto deadline = std::chrono::steady_clock::now() + 15s;
        while (port_ == 0 && std::chrono::steady_clock::now() < deadline) {
            const auto out = api_->output();
            if (auto at = out.find("PORT "); at != std::string::npos && out.find('\n', at) != std::string::npos)
                port_ = std::stoi(out.substr(at + 5));
            else std::this_thread::sleep_for(20ms);
        }
        ASSERT_NE(port_, 0) << api_->output();
        k8s::KubeConfig kc;
        kc.server = "https://127.0.0.1:" + std::to_string(port_);
        kc.ca_pem = read_text((dir_ / "ca.crt").string());
        kc.token = "test-token";
        auto client = k8s::ApiClient::create(kc);
        ASSERT_TRUE(client) << client.error().message;
        control_ = *client;
        std::ofstream(dir_ / "kubeconfig") << "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
                                           << "clusters:\n- name: fake\n  cluster:\n    server: " << kc.server
                                           << "\n    certificate-authority: " << (dir_ / "ca.crt").string() << "\n"
                                           << "users:\n- name: agent\n  user:\n    token: test-token\n"
                                           << "contexts:\n- name: fake\n  context: {cluster: fake, user: agent}\n";
        std::ofstream(dir_ / "agent.yaml")
            << "node:\n  interfaces:\n    - name: eth0\n"
            << "pin_path: " << pin_ << "\nsocket_lb:\n  cgroup: \"\"\n"
            << "metrics:\n  address: \"" << kMetrics << "\"\n"
            << "kubernetes:\n  enabled: true\n  node_name: node-a\n  kubeconfig: " << (dir_ / "kubeconfig").string()
            << "\n";
    }

    json control(const json& cmd) {
        const std::string q = k8s::query_escape(cmd.dump());
        auto r = sc_->lab().in_ns("node", [&] { return control_->get("/_control?c=" + q); });
        EXPECT_TRUE(r && r->status == 200) << (r ? r->body.dump() : r.error().message);
        return r && r->status == 200 ? r->body : json();
    }
    void put(const char* path, const json& obj) { control({{"cmd", "put"}, {"path", path}, {"object", obj}}); }

    std::string http(const std::string& url) {
        auto r = sc_->lab().run("node", {"curl", "-s", "--max-time", "2", url});
        return r && r->exit_code == 0 ? r->out : "";
    }
    // Sum of a metric's samples (all label sets); -1 if absent.
    double metric(const std::string& name) {
        const auto text = http(std::string("http://") + kMetrics + "/metrics");
        double sum = -1;
        std::istringstream in(text);
        for (std::string line; std::getline(in, line);) {
            if (!line.starts_with(name) ||
                (line.size() > name.size() && line[name.size()] != ' ' && line[name.size()] != '{'))
                continue;
            sum = (sum < 0 ? 0 : sum) + std::stod(line.substr(line.rfind(' ') + 1));
        }
        return sum;
    }
    std::string get() {
        auto r = sc_->lab().run("client", {"curl", "-s", "--max-time", "2", std::string("http://") + kVip + "/readyz"});
        if (!r || r->exit_code != 0) return "";
        auto out = r->out;
        while (!out.empty() && out.back() == '\n') out.pop_back();
        return out;
    }
    std::map<std::string, int> spread(int n) {
        std::map<std::string, int> hits;
        for (int i = 0; i < n; ++i) ++hits[get()];
        return hits;
    }
    template <typename F>
    bool wait_for(F&& cond, std::chrono::milliseconds limit) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (!cond()) {
            if (std::chrono::steady_clock::now() > end) return cond();
            std::this_thread::sleep_for(50ms);
        }
        return true;
    }

    lab::Process* api_ = nullptr;
    int port_ = 0;
    std::shared_ptr<k8s::ApiClient> control_;
};

TEST_F(AgentK8sTest, ServicesFollowTheApiAndSurviveItsLoss) {
    auto agent = sc_->lab().spawn("node", {KXLB_AGENT_BIN, "--config", (dir_ / "agent.yaml").string()});
    ASSERT_TRUE(agent) << agent.error().message;
    ASSERT_TRUE(wait_for([&] { return http(std::string("http://") + kMetrics + "/readyz").starts_with("ready"); }, 15s))
        << (*agent)->output();
    EXPECT_EQ(metric("kxlb_k8s_synced"), 1);

    // 1. A Service then its EndpointSlice: the VIP answers within 100 ms of the slice event.
    put(kServices, service());
    std::this_thread::sleep_for(300ms);  // the Service alone: frontends without backends
    EXPECT_FALSE(lab::tcp_probe(sc_->lab(), "client", kVip, 80, 200));
    put(kSlices, slice({{1, false}, {2, false}, {3, false}}));
    const auto t0 = std::chrono::steady_clock::now();
    bool served = false;
    while (!served && std::chrono::steady_clock::now() - t0 < 3s)
        served = lab::tcp_probe(sc_->lab(), "client", kVip, 80, 20);
    const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
    ASSERT_TRUE(served) << (*agent)->output();
    std::cout << "event -> VIP served: " << latency.count() << " us\n";
    EXPECT_LT(latency, 100ms);
    auto hits = spread(30);
    EXPECT_EQ(hits[""], 0);
    EXPECT_GT(hits["be1"], 0);
    EXPECT_GT(hits["be2"], 0);
    EXPECT_GT(hits["be3"], 0);

    // 2. Scale down: be3 gets no new connections.
    put(kSlices, slice({{1, false}, {2, false}}));
    std::this_thread::sleep_for(300ms);
    hits = spread(30);
    EXPECT_EQ(hits["be3"], 0);
    EXPECT_EQ(hits[""], 0);

    // 3. be2 terminating (serving): draining, so new connections go to be1 only, while an
    //    established connection to be2 keeps working.
    UniqueFd to_be2;
    for (int i = 0; i < 40 && !to_be2.valid(); ++i) {
        auto fd = keepalive(kVip);
        if (fd.valid() && request(fd) == "be2") to_be2 = std::move(fd);
    }
    ASSERT_TRUE(to_be2.valid()) << "no connection landed on be2";
    put(kSlices, slice({{1, false}, {2, true}}));
    std::this_thread::sleep_for(300ms);
    hits = spread(20);
    EXPECT_EQ(hits["be1"], 20) << (*agent)->output();
    EXPECT_EQ(request(to_be2), "be2");
    to_be2 = UniqueFd();

    // 3b. externalTrafficPolicy: Local: only node-a's endpoints serve the LoadBalancer IP; with none
    //     left on this node, the VIP is not served (no other node's endpoint is used).
    put(kServices, service(true));
    put(kSlices, slice({{1, false, "node-a"}, {2, false, "node-b"}, {3, false, "node-b"}}));
    std::this_thread::sleep_for(300ms);
    hits = spread(20);
    EXPECT_EQ(hits["be1"], 20) << (*agent)->output();
    put(kSlices, slice({{1, false, "node-b"}, {2, false, "node-b"}}));
    EXPECT_TRUE(wait_for([&] { return !lab::tcp_probe(sc_->lab(), "client", kVip, 80, 200); }, 3s));
    put(kSlices, slice({{1, false, "node-a"}, {2, false, "node-b"}}));
    EXPECT_TRUE(wait_for([&] { return lab::tcp_probe(sc_->lab(), "client", kVip, 80, 200); }, 3s));
    hits = spread(10);
    EXPECT_EQ(hits["be1"], 10) << (*agent)->output();

    // 4. A relist storm (410 Gone several times) writes nothing to the maps.
    const double writes = metric("kxlb_datapath_frontend_writes_total");
    const double relists = metric("kxlb_k8s_relists_total");
    ASSERT_GT(writes, 0);
    for (int i = 0; i < 4; ++i) {
        control({{"cmd", "compact"}});
        control({{"cmd", "gone_watches"}});
        std::this_thread::sleep_for(400ms);
    }
    EXPECT_TRUE(wait_for([&] { return metric("kxlb_k8s_relists_total") >= relists + 4; }, 10s))
        << metric("kxlb_k8s_relists_total") << " relists, before " << relists;
    EXPECT_EQ(metric("kxlb_datapath_frontend_writes_total"), writes);

    // 5. The API goes away: the last known state keeps serving.
    api_->kill(SIGKILL);
    std::this_thread::sleep_for(1500ms);
    hits = spread(10);
    EXPECT_EQ(hits["be1"], 10) << (*agent)->output();
    EXPECT_TRUE(http(std::string("http://") + kMetrics + "/readyz").starts_with("ready"));
}

}  // namespace
}  // namespace kxlb
