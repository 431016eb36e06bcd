// kxlb-bench: datapath benchmarks that print every figure next to a baseline measured in the same run.
//   A. ns/packet of XDP programs (BPF_PROG_TEST_RUN: one run per call, and hot loops of R runs per call through
//      wrappers that restore the input) net of a trivial XDP_PASS, and as a ratio to a minimal reflector;
//   B. packets/s through a netns lab for kxlb vs an XDP_TX reflector vs iptables DNAT+MASQUERADE;
//   C. the agent control plane; D. EndpointSlice change -> maps with the real agent and a fake apiserver.
// Needs root (BPF, network namespaces). Not a test: it reports, it does not judge (exit 0 unless it cannot run).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <utility>

#include "bench/agent_bench.hpp"
#include "bench/bench_util.hpp"
#include "bench/k8s_bench.hpp"
#include "bench/ns_bench.hpp"
#include "bench/pps_bench.hpp"
#include "lib/libbpf_log.hpp"

namespace {

using namespace kxlb::bench;

struct Args {
    bool quick = false;
    bool run_ns = true;
    bool run_pps = true;
    bool run_agent = true;
    bool run_k8s = false;  // only with --only k8s (needs python3; over a minute at 10,000 services)
    NsBenchOptions ns;
    AgentBenchOptions agent;
    K8sBenchOptions k8s;
    PpsBenchOptions pps;
};

void usage(std::FILE* f) {
    std::fprintf(
        f,
        "usage: kxlb-bench [--quick] [--only ns|pps|agent|k8s] [--iterations N] [--seconds S] [--threads N] [--cpu N] "
        "...\n"
        "  --quick          short run: 200000 runs per ns case, 1 s (2 rounds) per pps setup and thread count\n"
        "  --only ns|pps|agent|k8s  run only part A (ns/packet), B (packets per second), C (agent control plane)\n"
        "                   or D (k8s: EndpointSlice change -> maps, real agent + fake apiserver; only run this way)\n"
        "  --services N     parts C and D: services to program (default 10000, 10 backends each)\n"
        "  --changes N      part D: EndpointSlice changes timed (default 50)\n"
        "  --iterations N   BPF_PROG_TEST_RUN calls per ns case (default 1000000, max 10000000)\n"
        "  --seconds S      pps time per setup and thread count (default 3, max 30)\n"
        "  --threads N      pps runs with 1..N generator threads (default 2)\n"
        "  --cpu N          CPU part A is pinned to (default: the last one)\n"
        "  --case TEXT      part A: only the cases whose name contains TEXT (and the baseline)\n"
        "  --method repeat1|loop|both  part A: one run per call (A1), hot loop of R = N/20 runs per call with\n"
        "                   the input restored by the program (A2), or both (default)\n"
        "  --setup TEXT     part B: only the setups whose name contains TEXT (reflector, kxlb, iptables)\n"
        "  --rounds N       part B: interleaved rounds per setup and thread count (default 3)\n");
}

bool parse_num(const char* s, double lo, double hi, double* out) {
    char* end = nullptr;
    double v = std::strtod(s, &end);
    if (!s[0] || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

// Returns 0 to go on, else the exit code.
int parse_args(int argc, char** argv, Args& a) {
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        auto value = [&](double lo, double hi, double* out) {
            if (i + 1 >= argc || !parse_num(argv[i + 1], lo, hi, out)) {
                std::fprintf(stderr, "kxlb-bench: %s needs a number in [%g, %g]\n", argv[i], lo, hi);
                return false;
            }
            ++i;
            return true;
        };
        double v = 0;
        if (arg == "--quick") {
            a.quick = true;
            a.ns.iterations = 200000;
            a.pps.seconds = 1.0;
            a.pps.rounds = 2;
            a.pps.warmup = 0.2;
            a.agent.quick = true;
        } else if (arg == "--only" && i + 1 < argc &&
                   (std::string_view(argv[i + 1]) == "ns" || std::string_view(argv[i + 1]) == "pps" ||
                    std::string_view(argv[i + 1]) == "agent" || std::string_view(argv[i + 1]) == "k8s")) {
            const std::string_view part = argv[++i];
            a.run_ns = part == "ns";
            a.run_pps = part == "pps";
            a.run_agent = part == "agent";
            a.run_k8s = part == "k8s";
        } else if (arg == "--services") {
            if (!value(1, 16000, &v)) return 2;
            a.agent.services = static_cast<int>(v);
            a.k8s.services = static_cast<int>(v);
        } else if (arg == "--changes") {
            if (!value(1, 10000, &v)) return 2;
            a.k8s.changes = static_cast<int>(v);
        } else if (arg == "--iterations") {
            if (!value(1000, 1e7, &v)) return 2;
            a.ns.iterations = static_cast<std::uint64_t>(v);
        } else if (arg == "--seconds") {
            if (!value(0.1, 30, &v)) return 2;
            a.pps.seconds = v;
        } else if (arg == "--threads") {
            if (!value(1, 64, &v)) return 2;
            a.pps.max_threads = static_cast<int>(v);
        } else if (arg == "--cpu") {
            if (!value(0, 4095, &v)) return 2;
            a.ns.cpu = static_cast<int>(v);
        } else if (arg == "--setup" && i + 1 < argc) {
            a.pps.filter = argv[++i];
        } else if (arg == "--rounds") {
            if (!value(1, 20, &v)) return 2;
            a.pps.rounds = static_cast<int>(v);
        } else if (arg == "--method" && i + 1 < argc &&
                   (std::string_view(argv[i + 1]) == "repeat1" || std::string_view(argv[i + 1]) == "loop" ||
                    std::string_view(argv[i + 1]) == "both")) {
            const std::string_view m = argv[++i];
            a.ns.repeat1 = m != "loop";
            a.ns.loop = m != "repeat1";
        } else if (arg == "--case" && i + 1 < argc) {
            a.ns.filter = argv[++i];
        } else if (arg == "-h" || arg == "--help") {
            usage(stdout);
            return 1;
        } else {
            std::fprintf(stderr, "kxlb-bench: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    return 0;
}

// Net of the reflector (the floor) among cases; 0 if it was not run.
double floor_net_ns(const std::vector<NsCaseResult>& cases) {
    for (const auto& c : cases)
        if (c.is_floor) return c.mean_ns - c.base_ns;
    return 0;
}

// The "x floor" and "target net" cells of a case row.
std::pair<std::string, std::string> floor_and_target(const NsCaseResult& c, double floor_net) {
    const double net = c.mean_ns - c.base_ns;
    char ratio[16] = "-";
    if (floor_net > 0.05) std::snprintf(ratio, sizeof(ratio), "%.2f", net / floor_net);
    char target[24] = "-";
    if (c.target_net_ns)
        std::snprintf(target, sizeof(target), "<=%.0f %s", *c.target_net_ns, net <= *c.target_net_ns ? "ok" : "MISS");
    return {ratio, target};
}

void print_ns(const NsBenchReport& rep) {
    const double floor_net = floor_net_ns(rep.cases);
    const std::uint64_t iters = rep.cases.empty() ? 0 : rep.cases.front().iterations;
    std::printf("\nA1. ns/packet: BPF_PROG_TEST_RUN with repeat=1, %llu runs per case, pinned to CPU %d\n",
                static_cast<unsigned long long>(iters), rep.cpu);
    std::printf(
        "   raw = mean kernel-reported duration; base = mean of as many xdp_pass runs interleaved with the case\n"
        "   (%.1f ns on average: timer and test-run overhead); net = raw - base; x floor = net / reflector net\n",
        rep.baseline_ns);
    std::printf("%-34s %7s %6s %6s %7s %7s %7s %11s %5s\n", "case", "raw ns", "p50", "p99", "base", "net ns", "x floor",
                "target net", "path");
    std::printf("%s\n", std::string(98, '-').c_str());
    for (const auto& c : rep.cases) {
        const auto [ratio, target] = floor_and_target(c, floor_net);
        std::printf("%-34s %7.1f %6.0f %6.0f %7.1f %7.1f %7s %11s %5s\n", c.name.c_str(), c.mean_ns, c.p50_ns, c.p99_ns,
                    c.base_ns, c.mean_ns - c.base_ns, ratio.c_str(), target.c_str(), c.path_ok ? "ok" : "FAIL");
    }
    std::printf("\n   path proof per case (verdict/output checked on every iteration, counter deltas after):\n");
    for (const auto& c : rep.cases) std::printf("   - %s: %s\n", c.name.c_str(), c.proof.c_str());
    std::printf("   setup: %s\n", rep.notes.c_str());
}

void print_loop(const NsBenchReport& rep) {
    const double floor_net = floor_net_ns(rep.loop_cases);
    std::printf(
        "\nA2. ns/packet, hot loop (repeat=%u, input restored by the program): %u calls per case, pinned to CPU %d\n",
        rep.loop_repeat, rep.loop_calls, rep.cpu);
    std::printf(
        "   bpf/xdp_lb_bench.bpf.c: each program first restores the 80-byte input frame from a template (new flows: a\n"
        "   fresh source port/address from a per-CPU run counter), then runs the datapath's entry body (on the maps "
        "of\n"
        "   a programmed instance) or the reflector's; base = restore + XDP_PASS (%.1f ns on average), as many calls\n"
        "   interleaved. raw/base = mean over calls of the kernel duration (total / R, integer ns); min/max over "
        "calls;\n"
        "   net = raw - base; net min = fastest case call - fastest base call (robust to preemption by other load);\n"
        "   x floor = net / reflector net\n",
        rep.loop_baseline_ns);
    std::printf("%-34s %7s %6s %6s %7s %7s %8s %7s %11s %5s\n", "case", "raw ns", "min", "max", "base", "net ns",
                "net min", "x floor", "target net", "path");
    std::printf("%s\n", std::string(107, '-').c_str());
    for (const auto& c : rep.loop_cases) {
        const auto [ratio, target] = floor_and_target(c, floor_net);
        std::printf("%-34s %7.1f %6.0f %6.0f %7.1f %7.1f %8.1f %7s %11s %5s\n", c.name.c_str(), c.mean_ns, c.min_ns,
                    c.max_ns, c.base_ns, c.mean_ns - c.base_ns, c.min_ns - c.base_min_ns, ratio.c_str(), target.c_str(),
                    c.path_ok ? "ok" : "FAIL");
    }
    std::printf("\n   path proof per case (verdict/output of every call's last run checked, counter deltas after):\n");
    for (const auto& c : rep.loop_cases) std::printf("   - %s: %s\n", c.name.c_str(), c.proof.c_str());
    std::printf("   setup: %s\n", rep.notes.c_str());
}

void print_pps(const PpsBenchReport& rep) {
    std::printf("\nB. packets/s: generator ns -> node ns (program under test) -> sink ns over veth, native XDP\n");
    std::printf(
        "   Mpps = delivered / wall time; per CPU-s = delivered / generator threads' CPU time (the whole chain runs\n"
        "   in their softirq context, so this is immune to other load); util = CPU-s / (wall s x threads)\n");
    std::printf("%-10s %3s %7s %13s %8s %8s %9s %5s %10s %10s\n", "setup", "thr", "Mpps", "rounds min-max", "offered",
                "deliv", "per CPU-s", "util", "kxlb/this", "this/refl");
    std::printf("%s\n", std::string(98, '-').c_str());
    auto find = [&](const std::string& setup, int threads) -> const PpsResult* {
        for (const auto& r : rep.runs)
            if (r.setup == setup && r.threads == threads) return &r;
        return nullptr;
    };
    auto ratio = [](double a, double b, char* buf, std::size_t n) {
        if (b > 0) std::snprintf(buf, n, "%.2f", a / b);
    };
    for (const auto& r : rep.runs) {
        const PpsResult* k = find("kxlb", r.threads);
        const PpsResult* f = find("reflector", r.threads);
        char vs_k[16] = "-", vs_f[16] = "-", spread[32];
        if (k && r.setup != "kxlb") ratio(k->pps, r.pps, vs_k, sizeof(vs_k));
        if (f && r.setup != "reflector") ratio(r.pps, f->pps, vs_f, sizeof(vs_f));
        std::snprintf(spread, sizeof(spread), "%.2f-%.2f", r.pps_min / 1e6, r.pps_max / 1e6);
        const double off_pps = r.seconds > 0 ? static_cast<double>(r.offered) / r.seconds : 0;
        const double util = r.seconds > 0 ? r.cpu_seconds / (r.seconds / r.rounds * r.rounds * r.threads) : 0;
        std::printf("%-10s %3d %7.2f %13s %8.2f %7.1f%% %9.2f %4.0f%% %10s %10s\n", r.setup.c_str(), r.threads,
                    r.pps / 1e6, spread, off_pps / 1e6,
                    r.offered ? 100.0 * static_cast<double>(r.delivered) / static_cast<double>(r.offered) : 0.0,
                    r.pps_per_cpu / 1e6, 100 * util, vs_k, vs_f);
    }
    std::printf("\n   summary (ratios of Mpps; in brackets the same ratio per CPU-s):\n");
    for (int t = 1; t <= 64; ++t) {
        const PpsResult* k = find("kxlb", t);
        if (!k) break;
        const PpsResult* ipt = find("iptables", t);
        const PpsResult* f = find("reflector", t);
        std::printf("   %d thread(s): kxlb %.2f Mpps", t, k->pps / 1e6);
        if (ipt && ipt->pps > 0 && ipt->pps_per_cpu > 0)
            std::printf(" = %.2fx iptables [%.2fx] (target >= 3x: %s in Mpps, %s per CPU-s)", k->pps / ipt->pps,
                        k->pps_per_cpu / ipt->pps_per_cpu, k->pps >= 3 * ipt->pps ? "ok" : "MISS",
                        k->pps_per_cpu >= 3 * ipt->pps_per_cpu ? "ok" : "MISS");
        if (f && f->pps > 0 && f->pps_per_cpu > 0)
            std::printf(", %.2fx reflector [%.2fx]", k->pps / f->pps, k->pps_per_cpu / f->pps_per_cpu);
        std::printf("\n");
    }
    std::printf("\n   path proof per setup and thread count (one entry per round):\n");
    for (const auto& r : rep.runs)
        std::printf("   - %s, %d thread(s): %s\n", r.setup.c_str(), r.threads, r.proof.c_str());
    std::printf("   notes:\n");
    const std::string& notes = rep.notes;
    std::size_t pos = 0;
    while (pos < notes.size()) {
        std::size_t nl = notes.find('\n', pos);
        if (nl == std::string::npos) nl = notes.size();
        std::printf("   - %s\n", notes.substr(pos, nl - pos).c_str());
        pos = nl + 1;
    }
}

int run(int argc, char** argv) {
    Args a;
    if (int rc = parse_args(argc, argv, a); rc != 0) return rc == 1 ? 0 : rc;
    if (::geteuid() != 0) {
        std::fprintf(stderr, "kxlb-bench: needs root (BPF programs, network namespaces)\n");
        return 2;
    }
    kxlb::route_libbpf_log_to_spdlog();
    install_stop_handlers();
    int rc = 0;
    if (a.run_ns) {
        std::fprintf(stderr, "kxlb-bench: part A (ns/packet), %llu runs per case...\n",
                     static_cast<unsigned long long>(a.ns.iterations));
        auto rep = run_ns_bench(a.ns);
        if (!rep) {
            std::fprintf(stderr, "kxlb-bench: part A failed: %s\n", rep.error().message.c_str());
            rc = 1;
        } else {
            if (a.ns.repeat1) print_ns(*rep);
            if (a.ns.loop) print_loop(*rep);
        }
        std::fflush(stdout);
    }
    if (a.run_pps && !stop_requested()) {
        std::fprintf(stderr, "kxlb-bench: part B (packets/s), %.1f s per run...\n", a.pps.seconds);
        auto rep = run_pps_bench(a.pps);
        if (!rep) {
            std::fprintf(stderr, "kxlb-bench: part B failed: %s\n", rep.error().message.c_str());
            rc = 1;
        } else {
            print_pps(*rep);
        }
    }
    if (a.run_agent && !stop_requested()) {
        std::fprintf(stderr, "kxlb-bench: part C (agent control plane)...\n");
        a.agent.agent_bin = KXLB_AGENT_BIN;
        if (auto st = run_agent_bench(a.agent); !st) {
            std::fprintf(stderr, "kxlb-bench: part C failed: %s\n", st.error().message.c_str());
            rc = 1;
        }
    }
    if (a.run_k8s && !stop_requested()) {
        std::fprintf(stderr, "kxlb-bench: part D (kubernetes: event -> maps), %d services...\n", a.k8s.services);
        a.k8s.agent_bin = KXLB_AGENT_BIN;
        a.k8s.fake_apiserver = KXLB_FAKE_APISERVER;
        if (auto st = run_k8s_bench(a.k8s); !st) {
            std::fprintf(stderr, "kxlb-bench: part D failed: %s\n", st.error().message.c_str());
            rc = 1;
        }
    }
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {  // Lab::in_ns throws if a namespace cannot be entered
        std::fprintf(stderr, "kxlb-bench: %s\n", e.what());
        return 1;
    }
}
