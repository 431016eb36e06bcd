// Part C: control-plane benchmarks, each figure next to a baseline measured in the same run.
#include "bench/agent_bench.hpp"

#include <bpf/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/reconciler.hpp"
#include "bench/bench_util.hpp"
#include "lab/lab.hpp"
#include "lab/temp_dir.hpp"
#include "lib/lb_maps.hpp"
#include "lib/pinning.hpp"
#include "lib/xdp_programs.hpp"

namespace kxlb::bench {

namespace {

using Clock = std::chrono::steady_clock;
using agent::BackendConfig;
using agent::ServiceConfig;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

IpAddr vip(int i) {
    return IpAddr::v4(10, static_cast<std::uint8_t>(96 + i / 65536), static_cast<std::uint8_t>(i / 256 % 256),
                      static_cast<std::uint8_t>(i % 256));
}
IpAddr backend(int i, int j) {
    const int n = i * 16 + j;
    return IpAddr::v4(10, static_cast<std::uint8_t>(128 + n / 65536), static_cast<std::uint8_t>(n / 256 % 256),
                      static_cast<std::uint8_t>(n % 256));
}

std::vector<ServiceConfig> services(int n, int backends, bool checked) {
    std::vector<ServiceConfig> out;
    out.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        ServiceConfig s;
        s.name = "svc-" + std::to_string(i);
        s.frontends = {Frontend{vip(i), 80, IPPROTO_TCP}};
        for (int j = 0; j < backends; ++j) s.backends.push_back(BackendConfig{backend(i, j), 8080, 1});
        if (checked) s.health_check = agent::HealthCheckSpec{};
        out.push_back(std::move(s));
    }
    return out;
}

struct Datapath {
    std::optional<XdpLbProgram> prog;
    std::optional<BpfLbMaps> maps;
    std::optional<LbProgrammer> lb;
};

Status make_datapath(Datapath& d, std::uint32_t maglev) {
    XdpLbLoadOptions o;
    o.ct_entries = 4096;
    auto p = XdpLbProgram::load(o);
    if (!p) return p.error();
    d.prog.emplace(std::move(p).value());
    auto m = BpfLbMaps::bind(d.prog->lb_map_fds());
    if (!m) return m.error();
    d.maps.emplace(std::move(m).value());
    auto lb = LbProgrammer::create(*d.maps, LbProgrammerOptions{maglev, 1});
    if (!lb) return lb.error();
    d.lb.emplace(std::move(lb).value());
    return {};
}

// C1: probe decision -> maps, with all services programmed.
Status health_latency(const AgentBenchOptions& o) {
    Datapath d;
    if (auto st = make_datapath(d, o.maglev_size); !st) return st;
    agent::Reconciler rec;
    rec.set_services(services(o.services, o.backends, true));
    if (auto r = rec.apply(*d.lb); !r.ok()) return Error::invalid("programming: " + r.failures.front());
    // Decisions come one per backend and service, as probes make them: first o.flips backends go
    // down (each in another service), then they come back in the same order. A service's second
    // change thus follows its first by a whole pass, like rise x interval after fall x interval.
    std::vector<double> flip;
    const int n = std::min(o.flips, o.services);
    for (bool healthy : {false, true})
        for (int k = 0; k < n && !stop_requested(); ++k) {
            const int i = (k * 7919) % o.services, j = k % o.backends;
            const agent::BackendRef ref{"svc-" + std::to_string(i), BackendSpec{backend(i, j), 8080}.identity()};
            const auto t0 = Clock::now();
            if (!rec.set_health(ref, healthy)) return Error::invalid("health flip changed nothing");
            auto r = rec.apply_services(*d.lb, {ref.service});
            flip.push_back(ms_since(t0));
            if (!r.ok() || r.upserted != 1) return Error::invalid("health flip did not write exactly one frontend");
        }
    // Baseline: one backend-map write, the smallest datapath change there is.
    std::vector<double> base;
    kxlb_backend be{};
    be.family = AF_INET;
    const std::uint32_t id = KXLB_MAX_BACKENDS - 1;
    for (int k = 0; k < 2 * o.flips; ++k) {
        const auto t0 = Clock::now();
        if (bpf_map_update_elem(d.prog->lb_map_fds().backends, &id, &be, BPF_ANY) != 0)
            return Error::from_errno(errno, "baseline map write");
        base.push_back(ms_since(t0));
    }
    const double p50 = percentile(flip, 0.5), p99 = percentile(flip, 0.99);
    const double b50 = percentile(base, 0.5), b99 = percentile(base, 0.99);
    std::printf("C1. health decision -> datapath (%d services x %d backends programmed, Maglev %u, %zu decisions)\n",
                o.services, o.backends, o.maglev_size, flip.size());
    std::printf("    reconcile + Maglev rebuild + atomic table swap: p50 %.3f ms  p99 %.3f ms   (target < 10 ms: %s)\n",
                p50, p99, p99 < 10 ? "ok" : "MISS");
    std::printf("    baseline, one bpf_map_update_elem:              p50 %.4f ms p99 %.4f ms   ratio p50 %.0fx\n", b50,
                b99, b50 > 0 ? p50 / b50 : 0);
    return {};
}

std::string kube_proxy_ruleset(int n, int backends) {
    std::ostringstream r;
    r << "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
      << ":KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n";
    for (int i = 0; i < n; ++i) {
        r << ":KUBE-SVC-" << i << " - [0:0]\n";
        for (int j = 0; j < backends; ++j) r << ":KUBE-SEP-" << i << "-" << j << " - [0:0]\n";
    }
    r << "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
      << "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
      << "-A POSTROUTING -j KUBE-POSTROUTING\n"
      << "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n"
      << "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
      << "-A KUBE-POSTROUTING -j MASQUERADE --random-fully\n";
    for (int i = 0; i < n; ++i) {
        r << "-A KUBE-SERVICES -d " << vip(i).str() << "/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-" << i << "\n";
        for (int j = 0; j < backends; ++j) {
            r << "-A KUBE-SVC-" << i;
            if (j + 1 < backends) r << " -m statistic --mode random --probability " << 1.0 / (backends - j);
            r << " -j KUBE-SEP-" << i << "-" << j << "\n";
            r << "-A KUBE-SEP-" << i << "-" << j << " -s " << backend(i, j).str() << "/32 -j KUBE-MARK-MASQ\n";
            r << "-A KUBE-SEP-" << i << "-" << j << " -p tcp -m tcp -j DNAT --to-destination " << backend(i, j).str()
              << ":8080\n";
        }
    }
    r << "COMMIT\n";
    return r.str();
}

// C2: 10k x 10 from empty vs iptables-restore of what kube-proxy would write.
Status full_programming(const AgentBenchOptions& o, lab::Lab& lab, const std::string& dir) {
    Datapath d;
    if (auto st = make_datapath(d, o.maglev_size); !st) return st;
    agent::Reconciler rec;
    auto t0 = Clock::now();
    rec.set_services(services(o.services, o.backends, false));
    auto r = rec.apply(*d.lb);
    const double kxlb_ms = ms_since(t0);
    if (!r.ok()) return Error::invalid("programming: " + r.failures.front());

    const std::string rules = dir + "/kube-proxy.rules";
    std::ofstream(rules) << kube_proxy_ruleset(o.services, o.backends);
    const auto rule_count = std::count(std::istreambuf_iterator<char>(std::ifstream(rules).rdbuf()),
                                       std::istreambuf_iterator<char>(), '\n');
    t0 = Clock::now();
    auto ipt = lab.run("ipt", {"sh", "-c", "iptables-restore < " + rules}, std::chrono::seconds(240));
    const double ipt_ms = ms_since(t0);
    if (!ipt) return ipt.error();
    if (ipt->exit_code != 0) return Error::invalid("iptables-restore failed: " + ipt->err);
    std::printf("\nC2. programming %d services x %d backends from empty\n", o.services, o.backends);
    std::printf("    kxlb (reconciler -> LbProgrammer -> BPF maps, Maglev %u): %9.1f ms (%d frontends, %d backends)\n",
                o.maglev_size, kxlb_ms, r.upserted, o.services * o.backends);
    std::printf("    iptables-restore, kube-proxy-equivalent ruleset:   %9.1f ms (%ld lines, same netns kind)\n",
                ipt_ms, static_cast<long>(rule_count));
    std::printf("    ratio iptables / kxlb: %.1fx (target >= 10x: %s)\n", ipt_ms / kxlb_ms,
                ipt_ms >= 10 * kxlb_ms ? "ok" : "MISS");
    return {};
}

std::string agent_yaml(const std::string& pin, int n, int backends, std::uint32_t maglev) {
    std::ostringstream y;
    y << "pin_path: " << pin << "\nsocket_lb: { cgroup: \"\" }\nmetrics: { address: \"\" }\n"
      << "datapath: { maglev_table_size: " << maglev << ", conntrack_entries: 262144 }\nservices:\n";
    for (int i = 0; i < n; ++i) {
        y << "  - name: svc-" << i << "\n    frontends: [{ address: " << vip(i).str() << ", port: 80 }]\n"
          << "    backends:\n";
        for (int j = 0; j < backends; ++j) y << "      - { address: " << backend(i, j).str() << ", port: 8080 }\n";
    }
    return y.str();
}

Result<long> agent_rss_kib(lab::Lab& lab, const std::string& bin, const std::string& config) {
    auto p = lab.spawn("ipt", {bin, "--config", config});
    if (!p) return p.error();
    for (int i = 0; i < 2400 && !stop_requested(); ++i) {  // up to 120 s
        if ((*p)->output().find("serving") != std::string::npos) break;
        if (!(*p)->running()) return Error::invalid("kxlb-agent exited: " + (*p)->output());
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    std::ifstream status("/proc/" + std::to_string((*p)->pid()) + "/status");
    long kib = -1;
    for (std::string line; std::getline(status, line);)
        if (line.rfind("VmRSS:", 0) == 0) kib = std::stol(line.substr(6));
    (*p)->kill(SIGTERM);
    (void)(*p)->wait(std::chrono::seconds(5));
    if (kib < 0) return Error::invalid("no VmRSS for kxlb-agent");
    return kib;
}

// C3: the agent's resident memory, idle (1 service) and with all services.
Status agent_memory(const AgentBenchOptions& o, lab::Lab& lab, const std::string& dir) {
    if (o.agent_bin.empty() || ::access(o.agent_bin.c_str(), X_OK) != 0)
        return Error::invalid("kxlb-agent binary not found at '" + o.agent_bin + "'");
    std::printf("\nC3. kxlb-agent resident memory (VmRSS after start-up, no health checks)\n");
    long idle = 0;
    for (int n : {1, o.services}) {
        const std::string pin = "/sys/fs/bpf/kxlb-bench-" + std::to_string(::getpid());
        const std::string cfg = dir + "/agent-" + std::to_string(n) + ".yaml";
        std::ofstream(cfg) << agent_yaml(pin, n, o.backends, o.maglev_size);
        auto rss = agent_rss_kib(lab, o.agent_bin, cfg);
        (void)remove_pinned(PinLayout{pin});
        if (!rss) return rss.error();
        if (n == 1) idle = *rss;
        std::printf("    %5d services x %d backends: %6.1f MiB%s\n", n, n == 1 ? 1 : o.backends, *rss / 1024.0,
                    n == 1 ? "  (idle baseline)"
                           : (std::string("  = ") + std::to_string(*rss / std::max(idle, 1L)) +
                              "x idle (target <= 128 MiB: " + (*rss <= 128 * 1024 ? "ok" : "MISS") + ")")
                                 .c_str());
    }
    return {};
}

}  // namespace

Status run_agent_bench(const AgentBenchOptions& opts) {
    AgentBenchOptions o = opts;
    if (o.quick) {
        o.services = std::min(o.services, 2000);
        o.flips = std::min(o.flips, 300);
    }
    lab::TempDir dir("agentbench");
    lab::Topology t;
    t.namespaces = {"ipt"};
    auto lab = lab::Lab::create(t);
    if (!lab) return lab.error();
    std::printf("\nC. control plane (agent): %d services x %d backends%s\n", o.services, o.backends,
                o.quick ? " (--quick)" : "");
    if (auto st = health_latency(o); !st) return st;
    if (auto st = full_programming(o, **lab, dir.path()); !st) return st;
    return agent_memory(o, **lab, dir.path());
}

}  // namespace kxlb::bench
