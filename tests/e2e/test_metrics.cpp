// e2e tier: the kxlb-agent binary's metrics endpoint in the netns lab. Real HTTP traffic from the
// client namespace through the VIP must show up exactly in the scraped service counters (packets
// compared with the client's own iptables packet counters, new flows with the number of
// connections), the exposition must pass `promtool check metrics`, /healthz and /readyz must answer,
// a rejected reload must be counted, and a real Prometheus server scraping the agent every second
// must end up with the same kxlb_service_new_flows_total. Everything listens on 127.0.0.1 inside
// the node namespace, as a node-local Prometheus agent would scrape it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "common/privileges.hpp"
#include "e2e/agent_lab.hpp"
#include "lab/lb_scenario.hpp"
#include "lab/netns.hpp"
#include "lib/pinning.hpp"

namespace kxlb {
namespace {

using lab::LbScenario;
using namespace std::chrono_literals;

constexpr const char* kVip = "10.90.0.100";
constexpr const char* kMetricsUrl = "http://127.0.0.1:9464";
constexpr const char* kPrometheusAddress = "127.0.0.1:9090";
constexpr int kConntrackEntries = 65536;

std::string config_yaml(const std::string& pin) {
    std::ostringstream y;
    y << "node:\n  interfaces:\n    - name: eth0\n";
    y << "datapath:\n  conntrack_entries: " << kConntrackEntries << "\n";
    y << "pin_path: " << pin << "\n";
    y << "socket_lb:\n  cgroup: \"\"\n";
    y << "metrics:\n  address: \"127.0.0.1:9464\"\n";
    y << "services:\n  - name: web\n    frontends:\n      - { address: " << kVip << ", port: 80, protocol: tcp }\n";
    y << "    backends:\n";
    for (int i : {1, 2})
        y << "      - { address: " << LbScenario::backend4(i) << ", port: " << LbScenario::kHttpPort << " }\n";
    y << "    health_check:\n      type: http\n      path: /readyz\n      interval: 200ms\n      timeout: 100ms\n";
    return y.str();
}

// The value of one series ("name{labels}" exactly as exposed) in an exposition, if present.
std::optional<double> sample(const std::string& text, const std::string& series) {
    std::istringstream lines(text);
    for (std::string l; std::getline(lines, l);)
        if (l.rfind(series + " ", 0) == 0) return std::stod(l.substr(series.size() + 1));
    return std::nullopt;
}

// Sum of every series of a family (lines "name{...} value" or "name value").
double family_sum(const std::string& text, const std::string& name) {
    std::istringstream lines(text);
    double sum = 0;
    for (std::string l; std::getline(lines, l);)
        if (l.rfind(name + "{", 0) == 0 || l.rfind(name + " ", 0) == 0) sum += std::stod(l.substr(l.rfind(' ') + 1));
    return sum;
}

class MetricsE2E : public test::AgentLabTest {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        open_lab("metrics", 2, kVip);
        if (HasFatalFailure()) return;
        config_ = (dir_ / "agent.yaml").string();
        write_file(config_, config_yaml(pin_));
    }
    static void write_file(const std::string& path, const std::string& text) {
        const auto tmp = path + ".tmp";
        std::ofstream(tmp) << text;
        std::filesystem::rename(tmp, path);
    }

    // curl inside the node namespace: {HTTP status, body}, or nullopt if nothing answered.
    std::optional<std::pair<int, std::string>> node_get(const std::string& url) {
        auto r = sc_->lab().run("node", {"curl", "-s", "--max-time", "3", "-w", "\n%{http_code}", url});
        if (!r || r->exit_code != 0) return std::nullopt;
        const auto nl = r->out.rfind('\n');
        if (nl == std::string::npos) return std::nullopt;
        return std::make_pair(std::atoi(r->out.c_str() + nl + 1), r->out.substr(0, nl));
    }
    std::string scrape() {
        auto r = node_get(std::string(kMetricsUrl) + "/metrics");
        EXPECT_TRUE(r && r->first == 200) << (r ? r->second : "no answer from " + std::string(kMetricsUrl));
        return r ? r->second : "";
    }
    // Waits until /readyz answers 200 (the agent attached and programmed everything).
    bool wait_ready(std::chrono::milliseconds limit) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < end) {
            if (auto r = node_get(std::string(kMetricsUrl) + "/readyz"); r && r->first == 200) return true;
            std::this_thread::sleep_for(100ms);
        }
        return false;
    }
    // Packets of one iptables rule (rule 1 of chain) in the client namespace.
    std::uint64_t client_rule_packets(const std::string& chain) {
        auto r = sc_->lab().run("client", {"iptables", "-w", "-nvx", "-L", chain, "1"});
        EXPECT_TRUE(r && r->exit_code == 0) << (r ? r->out : r.error().message);
        return r ? std::strtoull(r->out.c_str(), nullptr, 10) : 0;
    }
    bool client(const std::vector<std::string>& argv) {
        auto r = sc_->lab().run("client", argv);
        EXPECT_TRUE(r && r->exit_code == 0) << (r ? r->out : r.error().message);
        return r && r->exit_code == 0;
    }

    std::string config_;
};

TEST_F(MetricsE2E, CountsRealTrafficAndPrometheusScrapesIt) {
    auto agent = sc_->lab().spawn("node", {KXLB_AGENT_BIN, "--config", config_});
    ASSERT_TRUE(agent) << agent.error().message;
    ASSERT_TRUE(wait_ready(15s)) << "kxlb-agent does not answer 200 on " << kMetricsUrl
                                 << "/readyz (is AgentMetrics wired into the agent?)\n"
                                 << (*agent)->output();
    const auto health = node_get(std::string(kMetricsUrl) + "/healthz");
    ASSERT_TRUE(health);
    EXPECT_EQ(health->first, 200);
    EXPECT_EQ(health->second, "ok\n");

    // Count, on the client, every packet of its connections to the VIP in both directions: the
    // datapath translates each of them exactly once (forward and reply path).
    ASSERT_TRUE(client({"iptables", "-w", "-I", "OUTPUT", "-d", kVip, "-p", "tcp", "--dport", "80", "-j", "ACCEPT"}));
    ASSERT_TRUE(client({"iptables", "-w", "-I", "INPUT", "-s", kVip, "-p", "tcp", "--sport", "80", "-j", "ACCEPT"}));
    (void)sc_->lab().run("client", {"ethtool", "-K", "eth0", "gro", "off"});  // one skb per wire frame

    const std::string svc = "kxlb_service_packets_total{service=\"" + std::string(kVip) + ":80/tcp\"}";
    const std::string flows = "kxlb_service_new_flows_total{service=\"" + std::string(kVip) + ":80/tcp\"}";
    const auto before = scrape();
    ASSERT_TRUE(sample(before, svc)) << before;
    ASSERT_TRUE(sample(before, flows)) << before;
    const double packets0 = *sample(before, svc);
    const double flows0 = *sample(before, flows);
    const double be_flows0 = family_sum(before, "kxlb_backend_new_flows_total");
    const double hits0 = sample(before, "kxlb_flow_cache_hits_total").value_or(-1);
    const double misses0 = sample(before, "kxlb_flow_cache_misses_total").value_or(-1);
    const double fills0 = sample(before, "kxlb_flow_cache_fills_total").value_or(-1);
    ASSERT_GE(hits0, 0) << before;
    ASSERT_GE(misses0, 0) << before;
    ASSERT_GE(fills0, 0) << before;

    constexpr int kRequests = 20;
    auto r = sc_->lab().run("client",
                            {"sh", "-c",
                             "for i in $(seq " + std::to_string(kRequests) + "); do curl -s --max-time 2 http://" +
                                 kVip + "/readyz || echo fail; done"},
                            60s);
    ASSERT_TRUE(r && r->exit_code == 0);
    std::istringstream answers(r->out);
    int ok = 0;
    for (std::string l; std::getline(answers, l);) ok += (l == "be1" || l == "be2");
    ASSERT_EQ(ok, kRequests) << r->out;
    std::this_thread::sleep_for(500ms);  // the last FIN/ACK exchanges complete

    const auto sent = client_rule_packets("OUTPUT");
    const auto received = client_rule_packets("INPUT");
    const auto after = scrape();
    ASSERT_TRUE(sample(after, svc)) << after;
    const double packets = *sample(after, svc) - packets0;
    EXPECT_GE(sent, static_cast<std::uint64_t>(kRequests) * 4);  // SYN, ACK, request, FIN at least
    EXPECT_EQ(packets, static_cast<double>(sent + received)) << "client sent " << sent << ", received " << received;
    EXPECT_EQ(*sample(after, flows) - flows0, kRequests);
    EXPECT_EQ(family_sum(after, "kxlb_backend_new_flows_total") - be_flows0, kRequests);
    EXPECT_GE(*sample(after, "kxlb_datapath_forwards_total{reason=\"fwd_tx\"}"), packets);
    EXPECT_EQ(sample(after, "kxlb_conntrack_capacity"), kConntrackEntries);
    EXPECT_TRUE(sample(after, "kxlb_conntrack_entries"));
    // Flow cache: every connection's handshake ACK is its first cacheable frame, a miss (and a fill); the frames the
    // cache carried or missed are among those translated.
    const double hits = sample(after, "kxlb_flow_cache_hits_total").value_or(0) - hits0;
    const double misses = sample(after, "kxlb_flow_cache_misses_total").value_or(0) - misses0;
    const double fills = sample(after, "kxlb_flow_cache_fills_total").value_or(0) - fills0;
    EXPECT_GE(misses, kRequests) << after;
    EXPECT_LE(fills, misses) << after;
    EXPECT_GE(fills, 1) << after;
    EXPECT_LE(hits + misses, packets) << after;
    for (int i : {1, 2}) {
        const std::string be = "{backend=\"" + LbScenario::backend4(i) + ":" + std::to_string(LbScenario::kHttpPort) +
                               "\",service=\"web\"}";
        EXPECT_EQ(sample(after, "kxlb_backend_healthy" + be), 1) << after;
        EXPECT_GE(sample(after, "kxlb_probe_duration_seconds_count" + be).value_or(0), 1) << after;
    }
    EXPECT_EQ(sample(after, "kxlb_build_info{version=\"" KXLB_VERSION "\"}"), 1) << after;
    EXPECT_GE(sample(after, "kxlb_reconcile_duration_seconds_count").value_or(0), 1) << after;

    // The exposition is valid for Prometheus.
    const auto lint = sc_->lab().run(
        "node", {"sh", "-c", "curl -s --max-time 3 " + std::string(kMetricsUrl) + "/metrics | promtool check metrics"});
    ASSERT_TRUE(lint);
    EXPECT_EQ(lint->exit_code, 0) << lint->out;

    // A real Prometheus scraping the agent every second sees the same total.
    const auto yml = (dir_ / "prometheus.yml").string();
    write_file(yml,
               "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
               "scrape_configs:\n  - job_name: kxlb\n    static_configs:\n      - targets: ['127.0.0.1:9464']\n");
    auto prom = sc_->lab().spawn(
        "node", {"/usr/bin/prometheus", "--config.file=" + yml, "--storage.tsdb.path=" + (dir_ / "tsdb").string(),
                 std::string("--web.listen-address=") + kPrometheusAddress});
    ASSERT_TRUE(prom) << prom.error().message;
    const double want = *sample(after, flows);
    std::string last;
    bool seen = false;
    for (const auto end = std::chrono::steady_clock::now() + 20s; !seen && std::chrono::steady_clock::now() < end;
         std::this_thread::sleep_for(500ms)) {
        auto q =
            node_get(std::string("http://") + kPrometheusAddress + "/api/v1/query?query=kxlb_service_new_flows_total");
        if (!q || q->first != 200) continue;
        last = q->second;
        const auto j = nlohmann::json::parse(q->second, nullptr, false);
        if (j.is_discarded() || j.value("status", "") != "success") continue;
        for (const auto& s : j["data"]["result"])
            if (s["metric"].value("service", "") == std::string(kVip) + ":80/tcp" &&
                std::stod(s["value"][1].get<std::string>()) == want)
                seen = true;
    }
    EXPECT_TRUE(seen) << "Prometheus never returned kxlb_service_new_flows_total = " << want
                      << "; last answer: " << last << "\n"
                      << (*prom)->output();

    // The conntrack count (recomputed at most every 5 s) catches up with the flows made above: closed
    // flows stay in the LRU map until they are evicted.
    std::optional<double> ct;
    for (const auto end = std::chrono::steady_clock::now() + 10s;
         ct.value_or(0) < kRequests && std::chrono::steady_clock::now() < end; std::this_thread::sleep_for(500ms))
        ct = sample(scrape(), "kxlb_conntrack_entries");
    EXPECT_GE(ct.value_or(0), kRequests);

    // A rejected reload is counted (and the endpoint keeps serving).
    write_file(config_, "services: [ {\n");
    std::optional<double> failed;
    for (int i = 0; i < 50 && failed.value_or(0) < 1; ++i) {
        std::this_thread::sleep_for(100ms);
        failed = sample(scrape(), "kxlb_config_reloads_total{result=\"failed\"}");
    }
    EXPECT_EQ(failed, 1) << (*agent)->output();
}

}  // namespace
}  // namespace kxlb
