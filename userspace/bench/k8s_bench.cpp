// Part D: EndpointSlice event -> BPF maps latency of the real kxlb-agent at N Kubernetes services, next to
// the fake apiserver's own request round trip and a direct map write, plus the agent's resident memory.
#include "bench/k8s_bench.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "bench/bench_util.hpp"
#include "k8s/api_client.hpp"
#include "lab/lab.hpp"
#include "lab/temp_dir.hpp"
#include "lib/abi.hpp"
#include "lib/pinning.hpp"
#include "lib/unique_fd.hpp"

namespace kxlb::bench {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
constexpr const char* kNs = "k8s";
constexpr const char* kMetrics = "127.0.0.1:19476";
constexpr const char* kServices = "/api/v1/services";
constexpr const char* kSlices = "/apis/discovery.k8s.io/v1/endpointslices";

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

std::string ip4(int n, int base) {
    return "10." + std::to_string(base + n / 65536) + "." + std::to_string(n / 256 % 256) + "." +
           std::to_string(n % 256);
}
std::string vip(int i) { return ip4(i, 96); }
std::string endpoint(int i, int j) { return ip4(i * 16 + j, 128); }

json service(int i) {
    // No cluster IP: each Service maps to one kxlb service (with it, 2 x 10,000 would exceed KXLB_MAX_SERVICES).
    return {{"metadata", {{"name", "svc-" + std::to_string(i)}, {"namespace", "bench"}}},
            {"spec",
             {{"type", "LoadBalancer"},
              {"ipFamilies", {"IPv4"}},
              {"ports", {{{"name", "http"}, {"protocol", "TCP"}, {"port", 80}, {"targetPort", 8080}}}}}},
            {"status", {{"loadBalancer", {{"ingress", {{{"ip", vip(i)}}}}}}}}};
}

json slice(int i, const std::vector<std::string>& addrs) {
    json eps = json::array();
    for (const auto& a : addrs)
        eps.push_back(
            {{"addresses", {a}}, {"conditions", {{"ready", true}, {"serving", true}, {"terminating", false}}}});
    return {{"metadata",
             {{"name", "svc-" + std::to_string(i) + "-x"},
              {"namespace", "bench"},
              {"labels", {{"kubernetes.io/service-name", "svc-" + std::to_string(i)}}}}},
            {"addressType", "IPv4"},
            {"ports", {{{"name", "http"}, {"protocol", "TCP"}, {"port", 8080}}}},
            {"endpoints", eps}};
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

long rss_kib(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

std::size_t count_keys(int fd) {
    std::vector<unsigned char> a(256), b(256);
    std::size_t n = 0;
    void* prev = nullptr;
    while (bpf_map_get_next_key(fd, prev, b.data()) == 0) {
        ++n;
        std::swap(a, b);
        prev = a.data();
    }
    return n;
}

struct Bench {
    const K8sBenchOptions& o;
    lab::Lab& lab;
    std::shared_ptr<k8s::ApiClient> control_client;

    // A control command to the fake apiserver (from the lab namespace); its JSON answer, null on failure.
    json control(const json& cmd) {
        const std::string q = k8s::query_escape(cmd.dump());
        auto r = control_client->get("/_control?c=" + q);
        return r && r->status == 200 ? r->body : json();
    }

    bool ready() {
        auto r = lab.run(kNs, {"curl", "-s", "--max-time", "2", std::string("http://") + kMetrics + "/readyz"});
        return r && r->exit_code == 0 && r->out.starts_with("ready");
    }
};

// Backend id -> IPv4 address (network order, 0 = unused id) of the whole kxlb_backends array.
std::vector<std::uint32_t> scan_backends(int fd) {
    std::vector<std::uint32_t> out(KXLB_MAX_BACKENDS, 0);
    for (std::uint32_t id = 0; id < KXLB_MAX_BACKENDS; ++id) {
        kxlb_backend be{};
        if (bpf_map_lookup_elem(fd, &id, &be) == 0 && be.family == AF_INET) out[id] = be.addr[0];
    }
    return out;
}

bool backend_is(int fd, std::uint32_t id, std::uint32_t addr) {
    kxlb_backend be{};
    return bpf_map_lookup_elem(fd, &id, &be) == 0 && be.family == AF_INET && be.addr[0] == addr;
}

}  // namespace

Status run_k8s_bench(const K8sBenchOptions& o) {
    if (o.agent_bin.empty() || ::access(o.agent_bin.c_str(), X_OK) != 0)
        return Error::invalid("kxlb-agent binary not found at '" + o.agent_bin + "'");
    lab::TempDir dir("k8sbench");
    const std::string d = dir.path();
    const std::string pin = "/sys/fs/bpf/kxlb-bench-k8s-" + std::to_string(::getpid());
    (void)remove_pinned(PinLayout{pin});
    struct PinCleanup {
        std::string p;
        ~PinCleanup() { (void)remove_pinned(PinLayout{p}); }
    } pin_cleanup{pin};
    lab::Topology t;
    t.namespaces = {kNs};
    auto labr = lab::Lab::create(t);
    if (!labr) return labr.error();
    lab::Lab& lab = **labr;  // ~Lab kills the agent and the fake apiserver, deletes the namespace

    auto api = lab.spawn(kNs, {"python3", o.fake_apiserver, "--dir", d});
    if (!api) return api.error();
    int port = 0;
    for (int k = 0; k < 300 && port == 0; ++k) {  // 15 s
        const auto out = (*api)->output();
        if (auto at = out.find("PORT "); at != std::string::npos && out.find('\n', at) != std::string::npos)
            port = std::stoi(out.substr(at + 5));
        else if (!(*api)->running()) break;
        else std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (port == 0) return Error::invalid("fake apiserver did not start: " + (*api)->output());
    k8s::KubeConfig kc;
    kc.server = "https://127.0.0.1:" + std::to_string(port);
    kc.ca_pem = read_text(d + "/ca.crt");
    kc.token = "test-token";
    auto client = k8s::ApiClient::create(kc);
    if (!client) return client.error();
    Bench b{o, lab, *client};

    std::ofstream(d + "/kubeconfig") << "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
                                     << "clusters:\n- name: fake\n  cluster:\n    server: " << kc.server
                                     << "\n    certificate-authority: " << d << "/ca.crt\n"
                                     << "users:\n- name: agent\n  user:\n    token: test-token\n"
                                     << "contexts:\n- name: fake\n  context: {cluster: fake, user: agent}\n";
    std::ofstream(d + "/agent.yaml") << "pin_path: " << pin << "\nsocket_lb: { cgroup: \"\" }\n"
                                     << "metrics: { address: \"" << kMetrics << "\" }\nlogging: { level: debug }\n"
                                     << "datapath: { maglev_table_size: 1021, conntrack_entries: 262144 }\n"
                                     << "kubernetes:\n  enabled: true\n  node_name: bench-node\n  kubeconfig: " << d
                                     << "/kubeconfig\n";
    auto agent = lab.spawn(kNs, {o.agent_bin, "--config", d + "/agent.yaml"});
    if (!agent) return agent.error();
    bool up = false;
    for (int k = 0; k < 300 && !up && !stop_requested(); ++k) {  // 30 s
        if (!(*agent)->running()) return Error::invalid("kxlb-agent exited: " + (*agent)->output());
        up = b.ready();
        if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!up) return Error::invalid("kxlb-agent not ready (synced) within 30 s: " + (*agent)->output());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const long idle_kib = rss_kib((*agent)->pid());

    UniqueFd svc_fd(bpf_obj_get(PinLayout{pin}.map("kxlb_services").c_str()));
    UniqueFd be_fd(bpf_obj_get(PinLayout{pin}.map("kxlb_backends").c_str()));
    if (svc_fd.get() < 0 || be_fd.get() < 0) return Error::from_errno(errno, "opening the agent's pinned maps");

    // Load: N Services, each with one EndpointSlice of `endpoints` addresses, in batches.
    std::vector<std::vector<std::string>> addrs(static_cast<std::size_t>(o.services));
    const auto t_load = Clock::now();
    const bool loaded = lab.in_ns(kNs, [&] {
        json items = json::array();
        for (int i = 0; i < o.services; ++i) {
            for (int j = 0; j < o.endpoints; ++j) addrs[static_cast<std::size_t>(i)].push_back(endpoint(i, j));
            items.push_back({{"path", kServices}, {"object", service(i)}});
            items.push_back({{"path", kSlices}, {"object", slice(i, addrs[static_cast<std::size_t>(i)])}});
            if (items.size() >= 40 || i + 1 == o.services) {
                if (b.control({{"cmd", "put_many"}, {"items", items}}).is_null()) return false;
                items = json::array();
            }
        }
        return true;
    });
    if (!loaded) return Error::invalid("loading the fake apiserver failed");
    const double load_ms = ms_since(t_load);
    std::size_t programmed = 0;
    for (int k = 0; k < 3000 && !stop_requested(); ++k) {  // 300 s
        programmed = count_keys(svc_fd.get());
        if (programmed >= static_cast<std::size_t>(o.services)) break;
        if (!(*agent)->running()) return Error::invalid("kxlb-agent exited: " + (*agent)->output());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const double programmed_ms = ms_since(t_load);
    if (programmed < static_cast<std::size_t>(o.services))
        return Error::invalid("only " + std::to_string(programmed) + " of " + std::to_string(o.services) +
                              " services programmed within 300 s");
    // The fake server rescans its whole event history on every wake-up: drop it (no watch is older).
    lab.in_ns(kNs, [&] { return b.control({{"cmd", "compact"}}); });
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const long full_kib = rss_kib((*agent)->pid());

    // Changes: one endpoint of one slice gets a new address; t1 when kxlb_backends holds it.
    std::vector<double> lat, rtt;
    int missed = 0;
    for (int k = 0; k < o.changes && !stop_requested(); ++k) {
        const int i = (k * 7919) % o.services;
        auto& a = addrs[static_cast<std::size_t>(i)];
        const std::string fresh = ip4(k, 200);
        std::uint32_t fresh_be = 0, old_be = 0;
        ::inet_pton(AF_INET, fresh.c_str(), &fresh_be);
        ::inet_pton(AF_INET, a[0].c_str(), &old_be);
        // Candidate ids (lowest free id first): the replaced backend's and the lowest free ones.
        const auto table = scan_backends(be_fd.get());
        std::vector<std::uint32_t> cand;
        for (std::uint32_t id = 0; id < KXLB_MAX_BACKENDS; ++id)
            if (table[id] == old_be && old_be != 0) cand.push_back(id);
        for (std::uint32_t id = 0, n = 0; id < KXLB_MAX_BACKENDS && n < 4; ++id)
            if (table[id] == 0) cand.push_back(id), ++n;
        a[0] = fresh;
        const json obj = slice(i, a);
        bool seen = false;
        double ctl_ms = 0;
        const auto t0 = Clock::now();
        std::thread ctl([&] {  // polling starts at t0, not when the server answers
            lab.in_ns(kNs, [&] {
                const bool ok = !b.control({{"cmd", "put"}, {"path", kSlices}, {"object", obj}}).is_null();
                ctl_ms = ms_since(t0);
                return ok;
            });
        });
        while (!seen && ms_since(t0) < 5000) {
            for (auto id : cand)
                if (backend_is(be_fd.get(), id, fresh_be)) seen = true;
            if (!seen && ms_since(t0) > 1000) {  // not where expected: look everywhere
                const auto all = scan_backends(be_fd.get());
                seen = std::find(all.begin(), all.end(), fresh_be) != all.end();
            }
            // 2 CPUs may be all there is: leave them to the agent and the server between looks.
            if (!seen) std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        const double ms = ms_since(t0);
        ctl.join();
        rtt.push_back(ctl_ms);
        if (seen) lat.push_back(ms);
        else ++missed;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // Baseline: a direct bpf_map_update_elem on an unused id, observed by the same polling (then cleared).
    std::vector<double> direct;
    const std::uint32_t spare = KXLB_MAX_BACKENDS - 1;
    for (int k = 0; k < o.changes; ++k) {
        kxlb_backend be{};
        be.family = AF_INET;
        be.addr[0] = htonl(0x0afe0000u + static_cast<std::uint32_t>(k));
        const auto t0 = Clock::now();
        if (bpf_map_update_elem(be_fd.get(), &spare, &be, BPF_ANY) != 0)
            return Error::from_errno(errno, "baseline map write");
        while (!backend_is(be_fd.get(), spare, be.addr[0]) && ms_since(t0) < 1000) {}
        direct.push_back(ms_since(t0));
    }
    kxlb_backend zero{};
    (void)bpf_map_update_elem(be_fd.get(), &spare, &zero, BPF_ANY);

    // The agent's own figure for the same changes: "kubernetes change programmed in N us" (debug log),
    // from its wake-up on the store change to the maps written.
    std::vector<double> inner;
    {
        const std::string out = (*agent)->output(), tag = "kubernetes change programmed in ";
        std::vector<double> all;
        for (auto at = out.find(tag); at != std::string::npos; at = out.find(tag, at + 1))
            all.push_back(std::stod(out.substr(at + tag.size())) / 1000.0);
        if (all.size() > lat.size() + static_cast<std::size_t>(missed))
            inner.assign(all.end() - static_cast<long>(lat.size()) - missed, all.end());
    }
    const double p50 = percentile(lat, 0.5), p99 = percentile(lat, 0.99), mx = percentile(lat, 1.0);
    const double r50 = percentile(rtt, 0.5), r99 = percentile(rtt, 0.99);
    const double d50 = percentile(direct, 0.5), d99 = percentile(direct, 0.99);
    std::printf("\nD. Kubernetes: kxlb-agent (kubernetes.enabled) fed by tests/k8s/fake_apiserver.py on loopback\n");
    std::printf(
        "   %d LoadBalancer Services x 1 EndpointSlice of %d endpoints: loaded in %.0f ms, all services\n"
        "   in kxlb_services %.0f ms after the first object was sent\n",
        o.services, o.endpoints, load_ms, programmed_ms);
    std::printf(
        "D1. EndpointSlice change (one endpoint address replaced) -> new backend in kxlb_backends, %zu changes"
        "%s\n",
        lat.size(), missed ? (" (" + std::to_string(missed) + " NOT SEEN within 5 s)").c_str() : "");
    std::printf("    event -> maps:                 p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms\n", p50, p99, mx);
    if (!inner.empty())
        std::printf("    agent's own (wake-up -> maps):  p50 %7.3f ms  p99 %7.3f ms  max %7.3f ms  (its debug log)\n",
                    percentile(inner, 0.5), percentile(inner, 0.99), percentile(inner, 1.0));
    std::printf("    baseline, control request RTT: p50 %7.3f ms  p99 %7.3f ms   ratio p50 %.1fx\n", r50, r99,
                r50 > 0 ? p50 / r50 : 0);
    std::printf("    baseline, map write -> seen:   p50 %7.4f ms p99 %7.4f ms   ratio p50 %.0fx\n", d50, d99,
                d50 > 0 ? p50 / d50 : 0);
    std::printf(
        "D2. kxlb-agent VmRSS: idle (synced, 0 services) %.1f MiB; %d services x %d endpoints %.1f MiB = %.1fx "
        "idle (target <= 128 MiB: %s)\n",
        idle_kib / 1024.0, o.services, o.endpoints, full_kib / 1024.0,
        idle_kib > 0 ? static_cast<double>(full_kib) / static_cast<double>(idle_kib) : 0.0,
        full_kib <= 128 * 1024 ? "ok" : "MISS");
    return {};
}

}  // namespace kxlb::bench
