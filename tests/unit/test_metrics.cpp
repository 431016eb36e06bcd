// Unit tests for the agent's metrics endpoint: the exposition text for a fake datapath (exact
// lines for several families, `promtool check metrics` on the whole text), the conntrack count
// cache, series lifecycle, the request-head parser and listen-address parser, and the HTTP server
// over real TCP connections on 127.0.0.1 (/healthz, /readyz before and after set_ready, /metrics,
// malformed, oversized, slow and surplus clients). No privileges needed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/event_loop.hpp"
#include "agent/metrics.hpp"
#include "lib/unique_fd.hpp"

namespace kxlb::agent {
namespace {

using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------
// A fake datapath.

class FakeView final : public DatapathView {
public:
    std::vector<ServiceView> svcs;
    std::map<std::uint32_t, kxlb_lb_counter> svc_counters;
    std::map<std::uint32_t, kxlb_lb_counter> be_counters;  // absent id: read error
    std::array<kxlb_counter, kReasonCount> reason_counters{};
    std::uint64_t ct_entries = 0;
    mutable int ct_counts = 0;  // calls of count_conntrack_entries
    std::uint64_t ct_capacity = 262144;
    bool sock = false;
    std::array<std::uint64_t, kSockReasonCount> sock_reasons{};
    std::map<std::uint32_t, std::uint64_t> sock_svc, sock_be;
    LocalRevReasons local_rev{};
    std::optional<kxlb_flow_cache_counters> flow_cache;
    bool flow_cache_error = false;

    std::vector<ServiceView> services() const override { return svcs; }
    Result<std::array<kxlb_counter, kReasonCount>> reasons() const override { return reason_counters; }
    Result<kxlb_lb_counter> service_counters(std::uint32_t id) const override { return get(svc_counters, id); }
    Result<kxlb_lb_counter> backend_counters(std::uint32_t id) const override { return get(be_counters, id); }
    Result<std::uint64_t> count_conntrack_entries() const override {
        ++ct_counts;
        return ct_entries;
    }
    Result<std::uint64_t> conntrack_capacity() const override { return ct_capacity; }
    Result<std::optional<kxlb_flow_cache_counters>> flow_cache_counters() const override {
        if (flow_cache_error) return Error{EIO, "fake: flow cache read"};
        return flow_cache;
    }
    bool has_socket_lb() const override { return sock; }
    Result<std::array<std::uint64_t, kSockReasonCount>> socket_lb_reasons() const override { return sock_reasons; }
    Result<std::uint64_t> socket_lb_service_connections(std::uint32_t id) const override { return get(sock_svc, id); }
    Result<std::uint64_t> socket_lb_backend_connections(std::uint32_t id) const override { return get(sock_be, id); }
    Result<LocalRevReasons> local_rev_reasons() const override { return local_rev; }

private:
    template <typename M>
    static Result<typename M::mapped_type> get(const M& m, std::uint32_t id) {
        auto it = m.find(id);
        if (it == m.end()) return Error{ENOENT, "fake: no counter " + std::to_string(id)};
        return it->second;
    }
};

std::unique_ptr<FakeView> two_services() {
    auto v = std::make_unique<FakeView>();
    v->svcs = {ServiceView{"10.96.0.1:443/tcp", 3, false, {{"10.0.0.1:6443", 7}, {"10.0.0.2:6443", 8}}},
               ServiceView{"[fd00::53]:53/udp", 4, true, {{"[fd00::1]:5353", 9}}}};
    v->svc_counters = {{3, {120, 98765, 10}}, {4, {5, 400, 5}}};
    v->be_counters = {{7, {70, 50000, 6}}, {8, {50, 48765, 4}}, {9, {5, 400, 5}}};
    v->reason_counters[KXLB_R_FWD_TX] = {125, 99165};
    v->reason_counters[KXLB_R_PASS_NOT_VIP] = {1000, 64000};
    v->reason_counters[KXLB_R_DROP_TCP_NO_FLOW] = {2, 120};
    v->reason_counters[KXLB_R_TX_UNREACH_NO_BACKEND] = {1, 60};
    v->ct_entries = 42;
    v->flow_cache = kxlb_flow_cache_counters{900, 30, 25};
    return v;
}

BackendRef ref(const std::string& svc, const std::string& ip, std::uint16_t port) {
    auto addr = IpAddr::parse(ip);
    EXPECT_TRUE(addr);
    return BackendRef{svc, BackendSpec{*addr, port}.identity()};
}

// The lines of one metric family ("# HELP name" up to the next family), or "" if absent.
std::string block(const std::string& text, const std::string& name) {
    const auto start = text.find("# HELP " + name + " ");
    if (start == std::string::npos) return "";
    const auto end = text.find("# HELP ", start + 1);
    return text.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// Runs `promtool check metrics` on text. Returns {exit status, output}; fails the test if promtool
// is not installed.
std::pair<int, std::string> promtool_check(const std::string& text) {
    const char* promtool = "/usr/bin/promtool";
    if (::access(promtool, X_OK) != 0) {
        ADD_FAILURE() << promtool
                      << " is missing: install the Debian package 'prometheus' (scripts/install-deps.sh does)";
        return {-1, ""};
    }
    const auto out_file =
        std::filesystem::temp_directory_path() / ("kxlb-promtool-" + std::to_string(::getpid()) + ".out");
    const std::string cmd = std::string(promtool) + " check metrics >" + out_file.string() + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "w");
    if (!p) {
        ADD_FAILURE() << "popen(" << cmd << "): " << std::strerror(errno);
        return {-1, ""};
    }
    std::fwrite(text.data(), 1, text.size(), p);
    const int status = ::pclose(p);
    std::ifstream in(out_file);
    std::stringstream out;
    out << in.rdbuf();
    std::filesystem::remove(out_file);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out.str()};
}

// ---------------------------------------------------------------------------------------------
// Exposition.

TEST(MetricsExposition, DatapathFamiliesAreExact) {
    AgentMetrics m(MetricsOptions{.version = "1.2.3"});
    m.set_datapath(two_services());
    const auto text = m.render();

    EXPECT_EQ(block(text, "kxlb_service_packets_total"),
              "# HELP kxlb_service_packets_total Packets the XDP datapath translated for a frontend, both directions\n"
              "# TYPE kxlb_service_packets_total counter\n"
              "kxlb_service_packets_total{service=\"10.96.0.1:443/tcp\"} 120\n"
              "kxlb_service_packets_total{service=\"[fd00::53]:53/udp\"} 5\n")
        << text;
    EXPECT_EQ(block(text, "kxlb_service_new_flows_total"),
              "# HELP kxlb_service_new_flows_total New flows (connections) the XDP datapath balanced for a frontend\n"
              "# TYPE kxlb_service_new_flows_total counter\n"
              "kxlb_service_new_flows_total{service=\"10.96.0.1:443/tcp\"} 10\n"
              "kxlb_service_new_flows_total{service=\"[fd00::53]:53/udp\"} 5\n");
    EXPECT_EQ(block(text, "kxlb_backend_bytes_total"),
              "# HELP kxlb_backend_bytes_total Bytes the XDP datapath translated to and from a backend of a frontend\n"
              "# TYPE kxlb_backend_bytes_total counter\n"
              "kxlb_backend_bytes_total{backend=\"10.0.0.1:6443\",service=\"10.96.0.1:443/tcp\"} 50000\n"
              "kxlb_backend_bytes_total{backend=\"10.0.0.2:6443\",service=\"10.96.0.1:443/tcp\"} 48765\n"
              "kxlb_backend_bytes_total{backend=\"[fd00::1]:5353\",service=\"[fd00::53]:53/udp\"} 400\n");
    EXPECT_EQ(block(text, "kxlb_datapath_forwards_total"),
              "# HELP kxlb_datapath_forwards_total Frames the XDP datapath translated and transmitted, by reason\n"
              "# TYPE kxlb_datapath_forwards_total counter\n"
              "kxlb_datapath_forwards_total{reason=\"fwd_tx\"} 125\n"
              "kxlb_datapath_forwards_total{reason=\"fwd_redirect\"} 0\n"
              "kxlb_datapath_forwards_total{reason=\"fwd_encap_tx\"} 0\n"
              "kxlb_datapath_forwards_total{reason=\"fwd_encap_redirect\"} 0\n"
              "kxlb_datapath_forwards_total{reason=\"fwd_local\"} 0\n");
    EXPECT_EQ(block(text, "kxlb_datapath_drops_total"),
              "# HELP kxlb_datapath_drops_total Frames the XDP datapath dropped or rejected (ICMP unreachable), by "
              "reason\n"
              "# TYPE kxlb_datapath_drops_total counter\n"
              "kxlb_datapath_drops_total{reason=\"tx_unreach_no_backend\"} 1\n"
              "kxlb_datapath_drops_total{reason=\"drop_tcp_no_flow\"} 2\n"
              "kxlb_datapath_drops_total{reason=\"drop_snat_exhausted\"} 0\n"
              "kxlb_datapath_drops_total{reason=\"drop_backend_missing\"} 0\n"
              "kxlb_datapath_drops_total{reason=\"drop_no_backend\"} 0\n"
              "kxlb_datapath_drops_total{reason=\"drop_ct_full\"} 0\n"
              "kxlb_datapath_drops_total{reason=\"drop_source_range\"} 0\n"
              "kxlb_datapath_drops_total{reason=\"drop_icmp_malformed\"} 0\n"
              "kxlb_datapath_drops_total{reason=\"tx_icmp_too_big\"} 0\n"
              "kxlb_datapath_drops_total{reason=\"drop_too_big\"} 0\n"
              "kxlb_datapath_drops_total{reason=\"drop_encap_failed\"} 0\n"
              "kxlb_datapath_drops_total{reason=\"drop_local_node_src\"} 0\n"
              "kxlb_datapath_drops_total{reason=\"drop_local_tuple_busy\"} 0\n");
    EXPECT_NE(text.find("kxlb_datapath_passes_total{reason=\"pass_not_vip\"} 1000\n"), std::string::npos);
    EXPECT_EQ(block(text, "kxlb_conntrack_entries"),
              "# HELP kxlb_conntrack_entries Tracked flows in the conntrack map (counted at most every few seconds)\n"
              "# TYPE kxlb_conntrack_entries gauge\n"
              "kxlb_conntrack_entries 42\n");
    EXPECT_EQ(block(text, "kxlb_conntrack_capacity"),
              "# HELP kxlb_conntrack_capacity Size (max_entries) of the conntrack map\n"
              "# TYPE kxlb_conntrack_capacity gauge\n"
              "kxlb_conntrack_capacity 262144\n");
    EXPECT_EQ(block(text, "kxlb_flow_cache_hits_total"),
              "# HELP kxlb_flow_cache_hits_total Frames of established full-NAT flows the XDP datapath sent from its "
              "per-CPU flow cache, without a conntrack lookup\n"
              "# TYPE kxlb_flow_cache_hits_total counter\n"
              "kxlb_flow_cache_hits_total 900\n");
    EXPECT_NE(block(text, "kxlb_flow_cache_misses_total").find("\nkxlb_flow_cache_misses_total 30\n"),
              std::string::npos)
        << text;
    EXPECT_NE(block(text, "kxlb_flow_cache_fills_total").find("\nkxlb_flow_cache_fills_total 25\n"), std::string::npos)
        << text;
    EXPECT_EQ(block(text, "kxlb_build_info"),
              "# HELP kxlb_build_info Build of the running kxlb-agent (always 1)\n"
              "# TYPE kxlb_build_info gauge\n"
              "kxlb_build_info{version=\"1.2.3\"} 1\n");
    EXPECT_EQ(block(text, "kxlb_scrape_errors_total"),
              "# HELP kxlb_scrape_errors_total BPF map reads that failed while serving /metrics (the affected series "
              "were left out)\n"
              "# TYPE kxlb_scrape_errors_total counter\n"
              "kxlb_scrape_errors_total 0\n");
    // No socket-LB hooks loaded: no socket-LB families.
    EXPECT_EQ(text.find("kxlb_socket_lb_"), std::string::npos);

    const auto [status, out] = promtool_check(text);
    EXPECT_EQ(status, 0) << out << "\n" << text;
}

TEST(MetricsExposition, EveryReasonIsExportedInExactlyOneFamily) {
    AgentMetrics m;
    m.set_datapath(two_services());
    const auto text = m.render();
    for (std::size_t i = 0; i < kReasonCount; ++i) {
        const std::string label = "{reason=\"" + std::string(kReasonNames[i]) + "\"}";
        int found = 0;
        for (const char* fam :
             {"kxlb_datapath_forwards_total", "kxlb_datapath_passes_total", "kxlb_datapath_drops_total"})
            found += block(text, fam).find(fam + label) != std::string::npos;
        EXPECT_EQ(found, 1) << kReasonNames[i];
        const std::string_view name = kReasonNames[i];
        const auto kind = reason_kind(i);
        if (name.starts_with("fwd_")) EXPECT_EQ(kind, ReasonKind::Forward) << name;
        else if (name.starts_with("pass_")) EXPECT_EQ(kind, ReasonKind::Pass) << name;
        else EXPECT_EQ(kind, ReasonKind::Drop) << name;
    }
}

TEST(MetricsExposition, AgentFamiliesAreExactAndPassPromtool) {
    AgentMetrics m(MetricsOptions{.version = "0.1.0"});
    const auto be1 = ref("apiserver", "10.0.0.1", 6443);
    const auto be2 = ref("apiserver", "fd00::2", 6443);
    m.set_backend_health(be1, true);
    m.set_backend_health(be2, true);
    m.set_backend_health(be2, false);
    m.observe_probe(be1, ProbeResult{true, 3ms, ""});
    m.observe_probe(be2, ProbeResult{false, 1200ms, "timeout after 1000ms (connect)"});
    m.observe_probe(be2, ProbeResult{false, 20ms, "connect: Connection refused"});
    m.observe_reconcile(150us, 0);
    m.observe_reconcile(2ms, 3);
    m.config_reload(true);
    m.config_reload(false);
    m.config_reload(false);
    const auto text = m.render();

    EXPECT_EQ(block(text, "kxlb_backend_healthy"),
              "# HELP kxlb_backend_healthy 1 if the backend passes its service's health check, 0 if it is drained\n"
              "# TYPE kxlb_backend_healthy gauge\n"
              "kxlb_backend_healthy{backend=\"10.0.0.1:6443\",service=\"apiserver\"} 1\n"
              "kxlb_backend_healthy{backend=\"[fd00::2]:6443\",service=\"apiserver\"} 0\n")
        << text;
    EXPECT_EQ(block(text, "kxlb_probe_failures_total"),
              "# HELP kxlb_probe_failures_total Health probes that failed (refused, timed out, wrong status, TLS "
              "error)\n"
              "# TYPE kxlb_probe_failures_total counter\n"
              "kxlb_probe_failures_total{backend=\"10.0.0.1:6443\",service=\"apiserver\"} 0\n"
              "kxlb_probe_failures_total{backend=\"[fd00::2]:6443\",service=\"apiserver\"} 2\n");
    EXPECT_EQ(block(text, "kxlb_config_reloads_total"),
              "# HELP kxlb_config_reloads_total Configuration reload attempts (SIGHUP or a change of the file), by "
              "result\n"
              "# TYPE kxlb_config_reloads_total counter\n"
              "kxlb_config_reloads_total{result=\"failed\"} 2\n"
              "kxlb_config_reloads_total{result=\"ok\"} 1\n");
    EXPECT_NE(text.find("kxlb_map_operation_errors_total 3\n"), std::string::npos) << text;
    const auto probe = block(text, "kxlb_probe_duration_seconds");
    EXPECT_NE(probe.find("# TYPE kxlb_probe_duration_seconds histogram\n"), std::string::npos) << probe;
    EXPECT_NE(probe.find("kxlb_probe_duration_seconds_count{backend=\"[fd00::2]:6443\",service=\"apiserver\"} 2\n"),
              std::string::npos)
        << probe;
    EXPECT_NE(probe.find("kxlb_probe_duration_seconds_sum{backend=\"[fd00::2]:6443\",service=\"apiserver\"} 1.22\n"),
              std::string::npos)
        << probe;
    EXPECT_NE(probe.find("kxlb_probe_duration_seconds_bucket{backend=\"10.0.0.1:6443\",service=\"apiserver\",le="
                         "\"0.0025\"} 0\n"),
              std::string::npos);
    EXPECT_NE(probe.find("kxlb_probe_duration_seconds_bucket{backend=\"10.0.0.1:6443\",service=\"apiserver\",le="
                         "\"0.005\"} 1\n"),
              std::string::npos);
    const auto rec = block(text, "kxlb_reconcile_duration_seconds");
    EXPECT_NE(rec.find("kxlb_reconcile_duration_seconds_count 2\n"), std::string::npos) << rec;
    EXPECT_NE(rec.find("kxlb_reconcile_duration_seconds_bucket{le=\"0.00025\"} 1\n"), std::string::npos) << rec;
    EXPECT_NE(rec.find("kxlb_reconcile_duration_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos) << rec;
    // No datapath yet: no datapath families.
    EXPECT_EQ(text.find("kxlb_service_"), std::string::npos);
    EXPECT_EQ(text.find("kxlb_conntrack_"), std::string::npos);

    const auto [status, out] = promtool_check(text);
    EXPECT_EQ(status, 0) << out << "\n" << text;
}

TEST(MetricsExposition, WholeTextWithEveryFamilyPassesPromtool) {
    AgentMetrics m;
    auto v = two_services();
    v->sock = true;
    v->sock_reasons[KXLB_SR_CONNECT] = 11;
    v->sock_reasons[KXLB_SR_FAIL_NO_BACKEND] = 1;
    v->sock_svc = {{4, 11}};
    v->sock_be = {{9, 11}};
    v->local_rev[KXLB_LR_REV_LOCAL].packets = 5;
    m.set_datapath(std::move(v));
    m.set_decap([] {
        DecapReasons r{};
        r[KXLB_DR_DECAP_IPIP].packets = 7;
        r[KXLB_DR_PASS_NOT_DECAP_ADDR].packets = 2;
        return Result<DecapReasons>(r);
    });
    m.set_backend_health(ref("dns", "fd00::1", 5353), true);
    m.observe_probe(ref("dns", "fd00::1", 5353), ProbeResult{true, 1ms, ""});
    m.observe_reconcile(1ms, 0);
    m.config_reload(true);
    const auto text = m.render();

    // Local backends' reply translation and DSR decapsulation: every reason, by name.
    EXPECT_NE(text.find("kxlb_local_reply_packets_total{reason=\"rev_local\"} 5\n"), std::string::npos) << text;
    EXPECT_NE(text.find("kxlb_local_reply_packets_total{reason=\"pass_not_local_reply\"} 0\n"), std::string::npos);
    EXPECT_NE(text.find("kxlb_dsr_decap_packets_total{reason=\"decap_ipip\"} 7\n"), std::string::npos) << text;
    EXPECT_NE(text.find("kxlb_dsr_decap_packets_total{reason=\"pass_not_decap_addr\"} 2\n"), std::string::npos);
    EXPECT_NE(text.find("kxlb_dsr_decap_packets_total{reason=\"drop_inner_length\"} 0\n"), std::string::npos);

    // Socket-LB: only the service flagged for it (id 4) has connection series.
    EXPECT_EQ(block(text, "kxlb_socket_lb_service_connections_total"),
              "# HELP kxlb_socket_lb_service_connections_total Connections (and unconnected datagrams) socket-LB "
              "balanced for a frontend\n"
              "# TYPE kxlb_socket_lb_service_connections_total counter\n"
              "kxlb_socket_lb_service_connections_total{service=\"[fd00::53]:53/udp\"} 11\n")
        << text;
    EXPECT_NE(text.find("kxlb_socket_lb_backend_connections_total{backend=\"[fd00::1]:5353\",service=\"[fd00::53]:53/"
                        "udp\"} 11\n"),
              std::string::npos);
    EXPECT_NE(text.find("kxlb_socket_lb_operations_total{reason=\"connect_balanced\"} 11\n"), std::string::npos);
    EXPECT_NE(text.find("kxlb_socket_lb_operations_total{reason=\"fail_no_backend\"} 1\n"), std::string::npos);

    // Every family is documented in docs/agent.md and named by the conventions promtool lints.
    for (const char* fam : {"kxlb_service_packets_total",
                            "kxlb_service_bytes_total",
                            "kxlb_service_new_flows_total",
                            "kxlb_backend_packets_total",
                            "kxlb_backend_bytes_total",
                            "kxlb_backend_new_flows_total",
                            "kxlb_backend_healthy",
                            "kxlb_probe_duration_seconds",
                            "kxlb_probe_failures_total",
                            "kxlb_conntrack_entries",
                            "kxlb_conntrack_capacity",
                            "kxlb_flow_cache_hits_total",
                            "kxlb_flow_cache_misses_total",
                            "kxlb_flow_cache_fills_total",
                            "kxlb_datapath_forwards_total",
                            "kxlb_datapath_passes_total",
                            "kxlb_datapath_drops_total",
                            "kxlb_socket_lb_operations_total",
                            "kxlb_socket_lb_service_connections_total",
                            "kxlb_socket_lb_backend_connections_total",
                            "kxlb_dsr_decap_packets_total",
                            "kxlb_local_reply_packets_total",
                            "kxlb_map_operation_errors_total",
                            "kxlb_reconcile_duration_seconds",
                            "kxlb_config_reloads_total",
                            "kxlb_build_info",
                            "kxlb_scrape_errors_total"})
        EXPECT_NE(block(text, fam), "") << fam;
    const auto [status, out] = promtool_check(text);
    EXPECT_EQ(status, 0) << out << "\n" << text;
}

TEST(MetricsExposition, AFailingDecapReadIsAScrapeErrorNotAFamily) {
    AgentMetrics m;
    m.set_decap([] { return Result<DecapReasons>(Error::invalid("map gone")); });
    const auto text = m.render();
    EXPECT_EQ(block(text, "kxlb_dsr_decap_packets_total"), "") << text;
    EXPECT_NE(text.find("kxlb_scrape_errors_total 1\n"), std::string::npos) << text;
    m.set_decap({});
    EXPECT_NE(m.render().find("kxlb_scrape_errors_total 1\n"), std::string::npos);  // cleared reader: no new error
}

TEST(MetricsExposition, PromtoolCatchesABrokenExposition) {
    // The check above is only as good as promtool's verdict: prove it rejects bad text.
    const auto [status, out] = promtool_check("# TYPE x counter\nx{a=\"1\" 1\n");
    EXPECT_NE(status, 0) << out;
}

TEST(MetricsExposition, FailedReadsLeaveSeriesOutAndAreCounted) {
    AgentMetrics m;
    auto v = two_services();
    v->be_counters.erase(8);
    m.set_datapath(std::move(v));
    const auto text = m.render();
    EXPECT_EQ(text.find("10.0.0.2:6443"), std::string::npos) << text;
    EXPECT_NE(text.find("kxlb_backend_packets_total{backend=\"10.0.0.1:6443\",service=\"10.96.0.1:443/tcp\"} 70"),
              std::string::npos);
    EXPECT_NE(text.find("kxlb_scrape_errors_total 1\n"), std::string::npos);
    EXPECT_NE(m.render().find("kxlb_scrape_errors_total 2\n"), std::string::npos);
}

TEST(MetricsExposition, FlowCacheFamiliesOnlyWhenTheDatapathHasTheCounters) {
    {
        AgentMetrics m;
        auto v = two_services();
        v->flow_cache.reset();  // maps pinned by an agent without kxlb_fcache_stats
        m.set_datapath(std::move(v));
        const auto text = m.render();
        EXPECT_EQ(text.find("kxlb_flow_cache_"), std::string::npos) << text;
        EXPECT_NE(text.find("kxlb_scrape_errors_total 0\n"), std::string::npos) << text;
    }
    AgentMetrics m;
    auto v = two_services();
    v->flow_cache_error = true;
    m.set_datapath(std::move(v));
    const auto text = m.render();
    EXPECT_EQ(text.find("kxlb_flow_cache_"), std::string::npos) << text;
    EXPECT_NE(text.find("kxlb_scrape_errors_total 1\n"), std::string::npos) << text;
}

TEST(MetricsExposition, ConntrackCountIsCachedForTheTtl) {
    AgentMetrics m(MetricsOptions{.conntrack_cache_ttl = 1h});
    auto v = two_services();
    auto* fake = v.get();
    m.set_datapath(std::move(v));
    (void)m.render();
    fake->ct_entries = 99;
    const auto text = m.render();
    EXPECT_EQ(fake->ct_counts, 1);
    EXPECT_NE(text.find("kxlb_conntrack_entries 42\n"), std::string::npos);

    AgentMetrics fresh(MetricsOptions{.conntrack_cache_ttl = 0ms});
    auto v2 = two_services();
    auto* fake2 = v2.get();
    fresh.set_datapath(std::move(v2));
    (void)fresh.render();
    fake2->ct_entries = 99;
    EXPECT_NE(fresh.render().find("kxlb_conntrack_entries 99\n"), std::string::npos);
    EXPECT_EQ(fake2->ct_counts, 2);
}

TEST(MetricsExposition, RetainBackendsDropsTheSeriesOfRemovedBackends) {
    AgentMetrics m;
    const auto keep = ref("web", "10.0.0.1", 80);
    const auto gone = ref("web", "10.0.0.2", 80);
    for (const auto& r : {keep, gone}) {
        m.set_backend_health(r, true);
        m.observe_probe(r, ProbeResult{false, 5ms, "x"});
    }
    ASSERT_NE(m.render().find("10.0.0.2:80"), std::string::npos);
    m.retain_backends({keep});
    const auto text = m.render();
    EXPECT_EQ(text.find("10.0.0.2:80"), std::string::npos) << text;
    EXPECT_NE(text.find("kxlb_backend_healthy{backend=\"10.0.0.1:80\",service=\"web\"} 1"), std::string::npos);
    EXPECT_NE(text.find("kxlb_probe_failures_total{backend=\"10.0.0.1:80\",service=\"web\"} 1"), std::string::npos);
    // A backend that comes back starts new series.
    m.observe_probe(gone, ProbeResult{true, 5ms, ""});
    EXPECT_NE(m.render().find("kxlb_probe_failures_total{backend=\"10.0.0.2:80\",service=\"web\"} 0"),
              std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Parsers.

TEST(MetricsListenAddress, ParsesIpLiteralsWithPorts) {
    auto v4 = parse_listen_address("127.0.0.1:9464");
    ASSERT_TRUE(v4) << v4.error().message;
    EXPECT_EQ(v4->addr.ss_family, AF_INET);
    EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in*>(&v4->addr)->sin_port), 9464);
    auto v6 = parse_listen_address("[::1]:0");
    ASSERT_TRUE(v6) << v6.error().message;
    EXPECT_EQ(v6->addr.ss_family, AF_INET6);
    EXPECT_TRUE(parse_listen_address("0.0.0.0:1"));
    EXPECT_TRUE(parse_listen_address("[::]:65535"));
    for (const char* bad :
         {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:80x", "localhost:9464",
          "::1:9464", "[::1]", "[::1]9464", "[127.0.0.1]:80", "[::1:80", "1.2.3:80", ":9464"}) {
        auto r = parse_listen_address(bad);
        EXPECT_FALSE(r) << bad;
        if (!r) {
            EXPECT_EQ(r.error().code, EINVAL) << bad;
        }
    }
}

TEST(MetricsRequestHead, ParsesCompleteIncompleteAndBadHeads) {
    using State = HttpRequestHead::State;
    auto h = parse_request_head("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", 8192);
    EXPECT_EQ(h.state, State::Complete);
    EXPECT_EQ(h.method, "GET");
    EXPECT_EQ(h.path, "/metrics");
    h = parse_request_head("HEAD /readyz HTTP/1.0\n\n", 8192);  // bare LF, HTTP/1.0
    EXPECT_EQ(h.state, State::Complete);
    EXPECT_EQ(h.method, "HEAD");

    for (const char* partial : {"", "G", "GET /metr", "GET /metrics HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost: x\r\n",
                                "GET / HTTP/1.1\r\nHost: x\r"})
        EXPECT_EQ(parse_request_head(partial, 8192).state, State::Incomplete) << partial;

    for (const char* bad :
         {"\r\n", "GET\r\n", "GET /\r\n", "GET / HTTP/1.1 x\r\n", "GET  / HTTP/1.1\r\n", "GET metrics HTTP/1.1\r\n",
          "GET http://x/ HTTP/1.1\r\n", "GET / HTTP/2.0\r\n", "GET / HTTP/1.1\r\nno colon\r\n\r\n",
          "GET / HTTP/1.1\r\n: empty\r\n\r\n", "GET / HTTP/1.1\r\n folded\r\n\r\n", "G(T / HTTP/1.1\r\n",
          "GET /a\rb HTTP/1.1\r\n", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"}) {
        const auto r = parse_request_head(bad, 8192);
        EXPECT_EQ(r.state, State::Bad) << bad;
        EXPECT_FALSE(r.error.empty());
    }
    const std::string nul("GET /\0 HTTP/1.1\r\n\r\n", 20);
    EXPECT_EQ(parse_request_head(nul, 8192).state, State::Bad);

    // Size limit: the whole head counts, complete or not.
    const std::string big = "GET / HTTP/1.1\r\nX-Pad: " + std::string(200, 'a') + "\r\n\r\n";
    EXPECT_EQ(parse_request_head(big, big.size()).state, State::Complete);
    EXPECT_EQ(parse_request_head(big, big.size() - 1).state, State::Bad);
    EXPECT_EQ(parse_request_head(big.substr(0, 100), 64).state, State::Bad);
}

// ---------------------------------------------------------------------------------------------
// The HTTP server over real TCP connections.

struct HttpReply {
    int status = 0;  // 0: no response
    std::string head;
    std::string body;
    std::string raw;
};

HttpReply parse_reply(const std::string& raw) {
    HttpReply r;
    r.raw = raw;
    if (raw.rfind("HTTP/1.1 ", 0) != 0 || raw.size() < 12) return r;
    r.status = std::stoi(raw.substr(9, 3));
    const auto end = raw.find("\r\n\r\n");
    r.head = raw.substr(0, end);
    if (end != std::string::npos) r.body = raw.substr(end + 4);
    return r;
}

class MetricsServer : public ::testing::Test {
protected:
    void SetUp() override { start(MetricsOptions{}); }
    void TearDown() override { stop(); }

    void start(MetricsOptions opts) {
        auto loop = EventLoop::create();
        ASSERT_TRUE(loop) << loop.error().message;
        loop_ = std::move(loop).value();
        metrics_ = std::make_unique<AgentMetrics>(opts);
        metrics_->set_datapath(two_services());
        auto st = metrics_->serve(*loop_, "127.0.0.1:0");
        ASSERT_TRUE(st) << st.error().message;
        ASSERT_TRUE(metrics_->port());
        port_ = *metrics_->port();
        thread_ = std::thread([this] { (void)loop_->run(); });
    }
    void stop() {
        if (thread_.joinable()) {
            loop_->stop();
            thread_.join();
        }
        metrics_.reset();
        loop_.reset();
    }
    // Runs fn on the loop thread and waits for it (AgentMetrics is loop-thread only).
    void on_loop(std::function<void()> fn) {
        std::promise<void> done;
        loop_->post([&] {
            fn();
            done.set_value();
        });
        done.get_future().wait();
    }

    UniqueFd connect_client() {
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(port_);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)), 0) << std::strerror(errno);
        timeval tv{5, 0};
        ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        return fd;
    }
    static void send_all(int fd, std::string_view data) {
        while (!data.empty()) {
            const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
            if (n <= 0) return;  // the server may close early (that is what some tests check)
            data.remove_prefix(static_cast<std::size_t>(n));
        }
    }
    // Everything until EOF (or an error / the 5 s receive timeout).
    static std::string read_all(int fd) {
        std::string out;
        char buf[65536];
        for (;;) {
            const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
            if (n <= 0) return out;
            out.append(buf, static_cast<std::size_t>(n));
        }
    }
    HttpReply request(const std::string& raw) {
        auto fd = connect_client();
        send_all(fd.get(), raw);
        return parse_reply(read_all(fd.get()));
    }
    HttpReply get(const std::string& path) { return request("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"); }

    std::unique_ptr<EventLoop> loop_;
    std::unique_ptr<AgentMetrics> metrics_;
    std::thread thread_;
    std::uint16_t port_ = 0;
};

TEST_F(MetricsServer, HealthzAnswersOkWhileRunning) {
    const auto r = get("/healthz");
    EXPECT_EQ(r.status, 200) << r.raw;
    EXPECT_EQ(r.body, "ok\n");
    EXPECT_NE(r.head.find("Connection: close"), std::string::npos);
    EXPECT_NE(r.head.find("Content-Length: 3"), std::string::npos);
}

TEST_F(MetricsServer, ReadyzIs503UntilSetReadyThen200) {
    auto r = get("/readyz");
    EXPECT_EQ(r.status, 503) << r.raw;
    EXPECT_EQ(r.body, "not ready: starting\n");
    on_loop([&] { metrics_->set_ready(false, "first apply failed: 1 frontend"); });
    r = get("/readyz");
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body, "not ready: first apply failed: 1 frontend\n");
    on_loop([&] { metrics_->set_ready(true); });
    r = get("/readyz");
    EXPECT_EQ(r.status, 200) << r.raw;
    EXPECT_EQ(r.body, "ready\n");
}

TEST_F(MetricsServer, MetricsServesTheExposition) {
    const auto r = get("/metrics");
    ASSERT_EQ(r.status, 200) << r.raw;
    EXPECT_NE(r.head.find("Content-Type: text/plain; version=0.0.4; charset=utf-8"), std::string::npos) << r.head;
    EXPECT_NE(r.head.find("Content-Length: " + std::to_string(r.body.size())), std::string::npos) << r.head;
    EXPECT_NE(r.body.find("kxlb_service_packets_total{service=\"10.96.0.1:443/tcp\"} 120\n"), std::string::npos);
    EXPECT_NE(r.body.find("kxlb_build_info{version=\"" KXLB_VERSION "\"} 1\n"), std::string::npos);
    const auto [status, out] = promtool_check(r.body);
    EXPECT_EQ(status, 0) << out;

    // HEAD: same head, no body.
    const auto h = request("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(h.status, 200) << h.raw;
    EXPECT_EQ(h.body, "");
    // A query string is ignored (Prometheus may add one).
    EXPECT_EQ(get("/metrics?name[]=kxlb_build_info").status, 200);
}

TEST_F(MetricsServer, UnknownPathsAndMethods) {
    EXPECT_EQ(get("/").status, 404);
    EXPECT_EQ(get("/metricsx").status, 404);
    const auto r = request("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(r.status, 405) << r.raw;
    EXPECT_NE(r.head.find("Allow: GET, HEAD"), std::string::npos);
}

TEST_F(MetricsServer, MalformedRequestsGet400AndTheServerKeepsServing) {
    for (const std::string& bad : std::vector<std::string>{
             "GARBAGE\r\n\r\n", "GET /metrics HTTP/9.9\r\n\r\n", "GET metrics HTTP/1.1\r\n\r\n",
             "GET /metrics HTTP/1.1\r\nbad header\r\n\r\n", std::string("GET /\0 HTTP/1.1\r\n\r\n", 19),
             std::string("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11)}) {
        const auto r = request(bad);
        EXPECT_EQ(r.status, 400) << "request: " << bad << "\nreply: " << r.raw;
        EXPECT_NE(r.body.find("bad request"), std::string::npos);
    }
    EXPECT_EQ(get("/healthz").status, 200);
}

TEST_F(MetricsServer, OversizedRequestsGet400) {
    // A head just over the limit, sent completely: 400 and a clean close.
    std::string big = "GET /metrics HTTP/1.1\r\n";
    while (big.size() < 10000) big += "X-Pad: " + std::string(100, 'a') + "\r\n";
    big += "\r\n";
    const auto r = request(big);
    EXPECT_EQ(r.status, 400) << r.raw;
    EXPECT_NE(r.body.find("larger than 8192 bytes"), std::string::npos) << r.body;

    // A request line without end (1 MiB): the server answers, stops reading, and survives.
    auto fd = connect_client();
    send_all(fd.get(), "GET /" + std::string(1 << 20, 'a'));
    (void)read_all(fd.get());
    EXPECT_EQ(get("/healthz").status, 200);
}

TEST_F(MetricsServer, PipelinedExtraBytesDoNotLoseTheResponse) {
    // Two requests in one write: the first is answered, the rest discarded (Connection: close).
    const auto r = request("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n" +
                           std::string(20000, 'x'));
    EXPECT_EQ(r.status, 200) << r.raw;
    EXPECT_EQ(r.body, "ok\n");
}

TEST_F(MetricsServer, AStalledClientDoesNotBlockOthersAndIsClosedAtTheDeadline) {
    stop();
    start(MetricsOptions{.connection_timeout = 500ms});
    auto stalled = connect_client();
    send_all(stalled.get(), "GET /metr");
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(get("/healthz").status, 200);  // served while the other request is pending
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 400ms);
    // The stalled connection is closed without a response once its deadline passes.
    const auto rest = read_all(stalled.get());
    EXPECT_EQ(rest, "");
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 400ms);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
}

TEST_F(MetricsServer, ConnectionsBeyondTheLimitWaitUntilASlotFrees) {
    stop();
    start(MetricsOptions{.max_connections = 4, .connection_timeout = 10s});
    std::vector<UniqueFd> idle;
    for (int i = 0; i < 4; ++i) {
        idle.push_back(connect_client());
        send_all(idle.back().get(), "GET");  // incomplete: held open by the server
    }
    std::this_thread::sleep_for(200ms);  // the loop accepts all four
    auto extra = connect_client();       // completes in the kernel's accept queue
    send_all(extra.get(), "GET /healthz HTTP/1.1\r\n\r\n");
    pollfd pfd{extra.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 300), 0) << "answered although every slot is taken";
    idle.pop_back();  // one client gives up: its slot goes to the waiting one
    const auto r = parse_reply(read_all(extra.get()));
    EXPECT_EQ(r.status, 200) << r.raw;
    idle.clear();
    EXPECT_EQ(get("/healthz").status, 200);
}

TEST_F(MetricsServer, ClientsThatDisconnectEarlyDoNotHurt) {
    for (int i = 0; i < 20; ++i) {
        auto fd = connect_client();
        if (i % 3 == 1) send_all(fd.get(), "GET /metrics HTTP/1.1\r\n");
        if (i % 3 == 2) send_all(fd.get(), "GET /metrics HTTP/1.1\r\n\r\n");  // and leave before the answer
        if (i % 2) {
            linger lg{1, 0};  // close with RST
            ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
    }
    EXPECT_EQ(get("/metrics").status, 200);
}

TEST(MetricsServe, RefusesBadAddressesAndBusyPorts) {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop);
    AgentMetrics a;
    auto st = a.serve(**loop, "localhost:9464");
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, EINVAL);
    EXPECT_FALSE(a.port());
    ASSERT_TRUE(a.serve(**loop, "127.0.0.1:0"));
    EXPECT_EQ(a.serve(**loop, "127.0.0.1:0").error().code, EALREADY);
    AgentMetrics b;
    const auto busy = b.serve(**loop, "127.0.0.1:" + std::to_string(*a.port()));
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error().code, EADDRINUSE) << busy.error().message;
    // IPv6 loopback, where the host has it.
    AgentMetrics c;
    if (auto v6 = c.serve(**loop, "[::1]:0"); !v6) {
        EXPECT_EQ(v6.error().code, EADDRNOTAVAIL) << v6.error().message;
    } else {
        EXPECT_TRUE(c.port());
    }
}

}  // namespace
}  // namespace kxlb::agent
