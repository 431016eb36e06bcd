// Part A of kxlb-bench: ns/packet through BPF_PROG_TEST_RUN in a lab namespace whose routes and permanent
// neighbours let bpf_fib_lookup succeed (ingress_ifindex = the node's eth0), as in tests/bpf/lb_harness.
#include "bench/ns_bench.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <span>

#include "bench/bench_programs.hpp"
#include "bench/bench_util.hpp"
#include "bench/frames.hpp"
#include "bench/loop_bench.hpp"
#include "lab/lab.hpp"
#include "lib/lb_inspect.hpp"
#include "lib/test_run.hpp"
#include "lib/xdp_programs.hpp"

namespace kxlb::bench {

namespace {

// Addressing of the part A lab (inside its namespaces; nothing is ever transmitted).
constexpr const char* kNodeMac = "02:84:00:00:00:01";
constexpr const char* kClientMac = "02:84:00:00:00:64";
constexpr const char* kBackendMac = "02:84:00:00:00:0b";
constexpr const char* kNode4 = "10.84.0.1";  // node eth0, SNAT v4
constexpr const char* kNode6 = "fd84::1";
constexpr const char* kClient4 = "10.84.0.100";
constexpr const char* kClient6 = "fd84::100";
constexpr const char* kBackend4 = "10.84.0.11";  // every backend: one address, kBackends ports
constexpr const char* kBackend6 = "fd84::11";
constexpr const char* kVip4 = "10.87.0.10";
constexpr const char* kVip6 = "fd87::10";
constexpr const char* kOther4 = "10.84.0.200";  // on the node's subnet, no frontend: non-VIP traffic
constexpr std::uint16_t kVipPort = 80;
constexpr std::uint16_t kDsrPort = 81;  // DSR frontends on the same VIPs, same backends
// DSR outer source prefixes: every flow gets its own source (the spreading costs one hash per frame).
constexpr const char* kEncapSrc4 = "10.85.0.0";
constexpr const char* kEncapSrc6 = "fd85::";
constexpr std::uint16_t kBackendPortBase = 20000;
// Many backends and a wide SNAT range keep the SNAT port space of the 1M-new-flow runs nearly empty (~6%),
// so a new flow's first SNAT probe almost always succeeds, as on a real node with many endpoints.
constexpr int kBackends = 256;
constexpr std::uint16_t kSnatLo = 1024, kSnatHi = 65535;

// Kernel-reported durations of one program over a sequence of inputs, and the path checks' outcome.
struct Samples {
    std::vector<std::uint32_t> durations;
    std::uint64_t bad = 0;  // iterations whose verdict/output check failed
    std::string first_bad;
};

struct Stats {
    double mean = 0, p50 = 0, p99 = 0, min = 0, max = 0;
};

// A case's durations and those of the xdp_pass baseline run in blocks interleaved with it.
struct Timing {
    Stats run;
    Stats base;
    double wall_run = 0, wall_base = 0;  // loop method: userspace wall-clock ns per run
    std::uint64_t bad = 0;
    std::string first_bad;
};

Stats stats_of(std::vector<std::uint32_t>& d) {
    Stats st;
    if (d.empty()) return st;
    double sum = 0;
    for (auto v : d) sum += v;
    st.mean = sum / static_cast<double>(d.size());
    std::sort(d.begin(), d.end());
    st.p50 = d[(d.size() - 1) / 2];
    st.p99 = d[(d.size() - 1) * 99 / 100];
    st.min = d.front();
    st.max = d.back();
    return st;
}

IpAddr addr(const char* s) { return IpAddr::parse(s).value(); }
MacAddr mac(const char* s) { return parse_mac(s).value(); }

bool bytes_eq(std::span<const std::uint8_t> out, std::size_t off, const std::uint8_t* want, std::size_t n) {
    return out.size() >= off + n && std::memcmp(out.data() + off, want, n) == 0;
}

std::uint16_t be16_at(std::span<const std::uint8_t> out, std::size_t off) {
    if (out.size() < off + 2) return 0;
    return static_cast<std::uint16_t>(out[off] << 8 | out[off + 1]);
}

// Runs iterations [i0, i1) of one program, one BPF_PROG_TEST_RUN call each (repeat=1, so every run sees the
// intended input). make(i, frame) may rewrite the frame; check(i, verdict, output) returns "" or what was wrong.
// Must run inside the namespace of ingress_ifindex.
template <typename Make, typename Check>
Status run_block(int prog_fd, std::uint32_t ingress_ifindex, std::uint64_t i0, std::uint64_t i1,
                 std::vector<std::uint8_t>& frame, Make&& make, Check&& check, Samples& s) {
    std::vector<std::uint8_t> out(2048);
    if (stop_requested()) return Error{EINTR, "interrupted"};
    for (std::uint64_t i = i0; i < i1; ++i) {
        make(i, frame);
        auto o = run_xdp_into(prog_fd, frame, out, XdpRunOptions{1, ingress_ifindex});
        if (!o) return o.error();
        s.durations.push_back(o->duration_ns);
        std::string why = check(i, o->verdict, std::span<const std::uint8_t>(out.data(), o->out_bytes));
        if (!why.empty() && s.bad++ == 0) s.first_bad = "iteration " + std::to_string(i) + ": " + why;
    }
    return {};
}

std::string verdict_name(std::uint32_t v) {
    switch (v) {
        case XDP_ABORTED: return "XDP_ABORTED";
        case XDP_DROP: return "XDP_DROP";
        case XDP_PASS: return "XDP_PASS";
        case XDP_TX: return "XDP_TX";
        case XDP_REDIRECT: return "XDP_REDIRECT";
        default: return "verdict " + std::to_string(v);
    }
}

std::string expect_verdict(std::uint32_t got, std::uint32_t want) {
    return got == want ? "" : verdict_name(got) + " instead of " + verdict_name(want);
}

std::uint32_t next_pow2(std::uint64_t v) {
    std::uint64_t p = 1;
    while (p < v && p < (1ULL << 30)) p <<= 1;
    return static_cast<std::uint32_t>(p);
}

// The part A environment: lab, addresses, the kxlb instance used by the cheap cases.
class NsBench {
public:
    explicit NsBench(const NsBenchOptions& o) : opts_(o) {}
    Result<NsBenchReport> run();

private:
    Status build_lab();
    Result<std::unique_ptr<LbInstance>> make_lb(std::uint32_t ct_entries, std::uint32_t* svc4, std::uint32_t* svc6,
                                                bool flow_cache = true);
    // Runs the case and the xdp_pass baseline in kBlocks interleaved blocks (alternating which goes first), so the
    // baseline sees the same machine state; the verdict of every baseline run is checked too.
    // Method loop: the wrappers restore `vary` (if given) or the frame make(0) writes before every run.
    Result<Timing> timed(int prog_fd, const auto& make, const auto& check, const LoopTemplate* vary = nullptr) {
        if (loop_) return timed_loop(prog_fd, make, check, vary);
        const std::uint32_t ifindex = static_cast<std::uint32_t>(eth0_);
        const std::uint64_t n = opts_.iterations;
        Samples run, base;
        run.durations.reserve(n);
        base.durations.reserve(n);
        std::vector<std::uint8_t> frame, base_frame = pass_frame_;
        auto keep = [](std::uint64_t, std::vector<std::uint8_t>&) {};
        auto base_check = [](std::uint64_t, std::uint32_t v, std::span<const std::uint8_t>) {
            return v == XDP_PASS ? std::string() : "baseline verdict " + std::to_string(v);
        };
        auto st = lab_->in_ns("node", [&]() -> Status {
            for (std::uint64_t b = 0; b < kBlocks; ++b) {
                const std::uint64_t i0 = b * n / kBlocks, i1 = (b + 1) * n / kBlocks;
                for (std::uint64_t k = 0; k < 2; ++k) {
                    Status s = k == b % 2 ? run_block(prog_fd, ifindex, i0, i1, frame, make, check, run)
                                          : run_block(pass_fd_, ifindex, i0, i1, base_frame, keep, base_check, base);
                    if (!s) return s;
                }
            }
            return {};
        });
        if (!st) return st.error();
        Timing t;
        t.run = stats_of(run.durations);
        t.base = stats_of(base.durations);
        t.bad = run.bad + base.bad;
        t.first_bad = run.bad ? run.first_bad : base.first_bad;
        return t;
    }
    // Method loop: kBlocks calls of repeat_ runs each, interleaved with as many calls of bench_base (restore +
    // XDP_PASS, alternating which goes first). Each call's last run is checked (verdict and output frame).
    Result<Timing> timed_loop(int prog_fd, const auto& make, const auto& check, const LoopTemplate* vary) {
        LoopTemplate t;
        if (vary) {
            t = *vary;
        } else {
            std::vector<std::uint8_t> f;
            make(0, f);
            if (f.size() != LoopTemplate::kBytes)
                return Error::invalid("loop method: a frame of " + std::to_string(f.size()) + " bytes, not " +
                                      std::to_string(LoopTemplate::kBytes));
            std::memcpy(t.bytes.data(), f.data(), f.size());
        }
        loopp_->set_template(t);
        const std::uint32_t r = repeat_;
        std::vector<std::uint8_t> frame(t.bytes.begin(), t.bytes.end()), out(2048);
        std::vector<std::uint32_t> run_d, base_d;
        double run_wall = 0, base_wall = 0;
        std::uint64_t bad = 0;
        std::string first_bad;
        auto st = lab_->in_ns("node", [&]() -> Status {
            for (std::uint64_t b = 0; b < kBlocks; ++b) {
                for (std::uint64_t k = 0; k < 2; ++k) {
                    if (stop_requested()) return Error{EINTR, "interrupted"};
                    const bool is_case = k == b % 2;
                    timespec t0{}, t1{};
                    ::clock_gettime(CLOCK_MONOTONIC, &t0);
                    auto run =
                        run_xdp_into(is_case ? prog_fd : loopp_->base_fd(), frame, out,
                                     XdpRunOptions{static_cast<std::uint32_t>(r), static_cast<std::uint32_t>(eth0_)});
                    ::clock_gettime(CLOCK_MONOTONIC, &t1);
                    if (!run) return run.error();
                    const double wall =
                        static_cast<double>(t1.tv_sec - t0.tv_sec) * 1e9 + static_cast<double>(t1.tv_nsec - t0.tv_nsec);
                    const std::span<const std::uint8_t> got(out.data(), run->out_bytes);
                    std::string why;
                    if (is_case) {
                        run_d.push_back(run->duration_ns);
                        run_wall += wall;
                        why = check((b + 1) * r - 1, run->verdict, got);
                    } else {
                        base_d.push_back(run->duration_ns);
                        base_wall += wall;
                        if (run->verdict != XDP_PASS) why = "baseline " + verdict_name(run->verdict);
                        else if (!t.vary && (got.size() != t.bytes.size() ||
                                             std::memcmp(got.data(), t.bytes.data(), t.bytes.size()) != 0))
                            why = "baseline output is not the template";
                    }
                    if (!why.empty() && bad++ == 0) first_bad = "call " + std::to_string(b) + ": " + why;
                }
            }
            return {};
        });
        if (!st) return st.error();
        Timing tm;
        tm.run = stats_of(run_d);
        tm.base = stats_of(base_d);
        tm.wall_run = run_wall / static_cast<double>(kBlocks * r);
        tm.wall_base = base_wall / static_cast<double>(kBlocks * r);
        tm.bad = bad;
        tm.first_bad = first_bad;
        return tm;
    }
    // Method loop: loads the wrappers onto lb's maps.
    Status load_loop(LbInstance& lb, bool flow_cache = true) {
        loopp_.reset();
        auto lp = LoopPrograms::load(lb.program().prog_fd(), flow_cache);
        if (!lp) return lp.error();
        loopp_.emplace(std::move(lp).value());
        loop_reused_ = loopp_->reused();
        return {};
    }
    // Runs of the case program per case: each in one call (repeat1) or kBlocks calls of repeat_ (loop).
    std::string each() const { return loop_ ? "on the last run of every call" : "every iteration"; }
    std::uint64_t runs() const { return loop_ ? kBlocks * repeat_ : opts_.iterations; }
    std::vector<NsCaseResult>& cases_of(NsBenchReport& rep) const { return loop_ ? rep.loop_cases : rep.cases; }
    // Method loop: every frame is exactly LoopTemplate::kBytes long (zero TCP payload fills it up).
    void fit(FrameSpec& s) const {
        if (!loop_) return;
        s.payload = 0;
        s.payload = LoopTemplate::kBytes - layout_of(s).size;
    }
    Status all_cases(NsBenchReport& rep);

    // One SYN through the datapath (creates a flow); its verdict must be XDP_TX.
    Status open_flow(LbInstance& lb, const FrameSpec& syn);
    NsCaseResult finish(std::string name, const Result<Timing>& t, std::optional<double> target);

    FrameSpec spec(const char* src, const char* dst, std::uint16_t sport, std::uint16_t dport,
                   std::uint8_t flags) const {
        FrameSpec s;
        s.dst_mac = mac(kNodeMac);
        s.src_mac = mac(kClientMac);
        s.saddr = addr(src);
        s.daddr = addr(dst);
        s.proto = IPPROTO_TCP;
        s.sport = sport;
        s.dport = dport;
        s.tcp_flags = flags;
        fit(s);
        return s;
    }

    bool want(std::string_view name) const {
        return opts_.filter.empty() || name.find(opts_.filter) != std::string_view::npos;
    }
    Status case_reflect(NsBenchReport& rep);
    // flow_cache false: the established and reply cases again with the datapath's flow cache off
    // (", ct path": every frame through kxlb_ct / kxlb_nat, as the first frames of a flow and one frame
    // per flow and second are).
    Status cases_cheap(NsBenchReport& rep, bool flow_cache);
    Status case_new_flows(NsBenchReport& rep, bool v6, bool dsr);
    // Method loop, after a full-NAT new-flow case on the same instance: the conntrack lookup alone, with a
    // fresh 5-tuple per run (a miss among the live flows that case opened): the floor under a new flow.
    Status case_ct_probe(NsBenchReport& rep, bool v6, const LoopTemplate& vary, std::uint64_t flows,
                         std::uint32_t ct_size);
    Status cases_dsr_established(NsBenchReport& rep, LbInstance& lb, int fd);
    using EstablishedCheck =
        std::function<std::string(std::span<const std::uint8_t> out, const std::vector<std::uint8_t>& in)>;
    Status case_established(NsBenchReport& rep, LbInstance& lb, int fd, const char* name, std::uint32_t svc,
                            const FrameSpec& syn, kxlb_reason reason, const std::string& what,
                            const EstablishedCheck& check);

    NsBenchOptions opts_;
    std::unique_ptr<lab::Lab> lab_;
    int eth0_ = 0;
    int pass_fd_ = -1;                            // xdp_pass: the baseline
    static constexpr std::uint64_t kBlocks = 20;  // interleaved blocks (repeat1) or calls (loop) per case
    bool loop_ = false;                           // the method the case functions measure with
    std::uint32_t repeat_ = 1;                    // loop: runs per call
    std::optional<LoopPrograms> loopp_;           // loop: the wrappers, on the current instance's maps
    std::string loop_reused_;                     // loop: which maps the wrappers share with the instance
    std::vector<std::uint8_t> pass_frame_;        // what the baseline runs on
    std::uint32_t dsr_svc4_ = 0, dsr_svc6_ = 0;   // the DSR services of the last make_lb instance
};

Status NsBench::build_lab() {
    lab::Topology t;
    t.namespaces = {"node", "peer"};
    t.veths.push_back({{"node", "eth0", {"10.84.0.1/24", "fd84::1/64"}}, {"peer", "eth0", {"10.84.0.254/24"}}});
    t.ip_forwarding = {"node"};  // bpf_fib_lookup answers only for forwarding interfaces
    auto lab = lab::Lab::create(t);
    if (!lab) return lab.error();
    lab_ = std::move(lab).value();
    const std::vector<std::vector<std::string>> cmds = {
        {"ip", "link", "set", "dev", "eth0", "address", kNodeMac},
        {"ip", "neigh", "replace", kClient4, "lladdr", kClientMac, "dev", "eth0", "nud", "permanent"},
        {"ip", "neigh", "replace", kClient6, "lladdr", kClientMac, "dev", "eth0", "nud", "permanent"},
        {"ip", "neigh", "replace", kBackend4, "lladdr", kBackendMac, "dev", "eth0", "nud", "permanent"},
        {"ip", "neigh", "replace", kBackend6, "lladdr", kBackendMac, "dev", "eth0", "nud", "permanent"},
    };
    for (const auto& c : cmds)
        if (auto st = must_run(*lab_, "node", c); !st) return st;
    auto idx = lab_->ifindex("node", "eth0");
    if (!idx) return idx.error();
    eth0_ = *idx;
    return {};
}

Result<std::unique_ptr<LbInstance>> NsBench::make_lb(std::uint32_t ct_entries, std::uint32_t* svc4, std::uint32_t* svc6,
                                                     bool flow_cache) {
    LbConfig cfg;
    cfg.hash_seed = 0x6b786c62;
    cfg.snat_v4 = addr(kNode4);
    cfg.snat_v6 = addr(kNode6);
    cfg.snat_port_lo = kSnatLo;
    cfg.snat_port_hi = kSnatHi;
    cfg.encap_src_v4 = Cidr{addr(kEncapSrc4), 24};
    cfg.encap_src_v6 = Cidr{addr(kEncapSrc6), 64};
    auto lb = LbInstance::create(cfg, ct_entries, flow_cache);
    if (!lb) return lb.error();
    for (int fam = 0; fam < 2; ++fam) {
        ServiceSpec s;
        s.frontend.addr = addr(fam == 0 ? kVip4 : kVip6);
        s.frontend.port = kVipPort;
        s.frontend.proto = IPPROTO_TCP;
        for (int i = 0; i < kBackends; ++i)
            s.backends.push_back(BackendSpec{addr(fam == 0 ? kBackend4 : kBackend6),
                                             static_cast<std::uint16_t>(kBackendPortBase + i), 1, false});
        auto id = (*lb)->programmer().upsert_service(s);
        if (!id) return id.error();
        *(fam == 0 ? svc4 : svc6) = *id;
        s.frontend.port = kDsrPort;
        s.flags = KXLB_SVC_F_DSR;
        auto dsr = (*lb)->programmer().upsert_service(s);
        if (!dsr) return dsr.error();
        (fam == 0 ? dsr_svc4_ : dsr_svc6_) = *dsr;
    }
    return lb;
}

Status NsBench::open_flow(LbInstance& lb, const FrameSpec& syn) {
    std::vector<std::uint8_t> f;
    write_frame(syn, f);
    Samples s;
    auto st = lab_->in_ns("node", [&] {
        return run_block(
            lb.program().prog_fd(), static_cast<std::uint32_t>(eth0_), 0, 1, f, [](std::uint64_t, auto&) {},
            [](std::uint64_t, std::uint32_t v, std::span<const std::uint8_t>) { return expect_verdict(v, XDP_TX); }, s);
    });
    if (!st) return st;
    if (s.bad) return Error::invalid("opening a flow: " + s.first_bad);
    return {};
}

NsCaseResult NsBench::finish(std::string name, const Result<Timing>& t, std::optional<double> target) {
    NsCaseResult r;
    r.name = std::move(name);
    r.iterations = runs();
    r.target_net_ns = target;
    if (!t) {
        r.proof = "RUN FAILED: " + t.error().message + "; counters then: ";
        return r;
    }
    r.mean_ns = t->run.mean;
    r.p50_ns = t->run.p50;
    r.p99_ns = t->run.p99;
    r.base_ns = t->base.mean;
    r.min_ns = t->run.min;
    r.max_ns = t->run.max;
    r.base_min_ns = t->base.min;
    r.wall_ns = t->wall_run;
    r.wall_base_ns = t->wall_base;
    r.path_ok = t->bad == 0;
    if (t->bad) r.proof = std::to_string(t->bad) + " iterations off path, first: " + t->first_bad + "; ";
    return r;
}

Status NsBench::case_reflect(NsBenchReport& rep) {
    if (!want("reflector (floor)")) return {};
    auto prog = ReflectProgram::load();
    if (!prog) return prog.error();
    std::unique_ptr<LbInstance> lb;  // loop: the wrappers need a datapath instance's maps
    if (loop_) {
        std::uint32_t svc4 = 0, svc6 = 0;
        auto lbr = make_lb(KXLB_DEFAULT_CT_ENTRIES, &svc4, &svc6);
        if (!lbr) return lbr.error();
        lb = std::move(lbr).value();
        if (auto st = load_loop(*lb); !st) return st;
    }
    FrameSpec s = spec(kClient4, kVip4, 40000, kVipPort, kTcpAck);
    std::vector<std::uint8_t> f;
    write_frame(s, f);
    const MacAddr client = mac(kClientMac);
    const IpAddr client_ip = addr(kClient4);
    const FrameLayout l = layout_of(s);
    auto t = timed(
        loop_ ? loopp_->reflect_fd() : prog->prog_fd(),
        [&](std::uint64_t i, auto& fr) {
            if (i == 0) fr = f;
        },
        [&](std::uint64_t, std::uint32_t v, std::span<const std::uint8_t> out) -> std::string {
            if (auto e = expect_verdict(v, XDP_TX); !e.empty()) return e;
            if (!bytes_eq(out, 0, client.data(), 6)) return "destination MAC not swapped";
            if (!bytes_eq(out, l.daddr_off, client_ip.bytes.data(), 4)) return "addresses not swapped";
            if (be16_at(out, l.dport_off) != 40000) return "ports not swapped";
            return "";
        });
    auto r = finish("reflector (floor)", t, std::nullopt);
    r.is_floor = true;
    r.proof += "verdict XDP_TX, MACs/addresses/ports swapped " + each();
    cases_of(rep).push_back(std::move(r));
    return {};
}

// Non-VIP pass, established TCP v4/v6, reply reverse-NAT v4: one datapath instance (default conntrack size).
Status NsBench::cases_cheap(NsBenchReport& rep, bool flow_cache) {
    const std::string sfx = flow_cache ? "" : ", ct path";
    const std::string est4 = "kxlb established TCP v4" + sfx, est6 = "kxlb established TCP v6" + sfx;
    const std::string reply4 = "kxlb reply reverse-NAT v4" + sfx;
    if (!flow_cache && !want(est4) && !want(est6) && !want(reply4)) return {};
    std::uint32_t svc4 = 0, svc6 = 0;
    auto lbr = make_lb(KXLB_DEFAULT_CT_ENTRIES, &svc4, &svc6, flow_cache);
    if (!lbr) return lbr.error();
    LbInstance& lb = **lbr;
    if (loop_)
        if (auto st = load_loop(lb, flow_cache); !st) return st;
    const int fd = loop_ ? loopp_->lb_fd() : lb.program().prog_fd();
    const std::uint64_t n = runs();
    const IpAddr backend4 = addr(kBackend4), backend6 = addr(kBackend6), client4 = addr(kClient4);

    // --- non-VIP: TCP to an address with no frontend.
    if (flow_cache && want("kxlb non-VIP pass")) {
        FrameSpec s = spec(kClient4, kOther4, 40000, 443, kTcpAck);
        std::vector<std::uint8_t> f;
        write_frame(s, f);
        auto before = lb.reasons();
        if (!before) return before.error();
        auto t = timed(
            fd,
            [&](std::uint64_t i, auto& fr) {
                if (i == 0) fr = f;
            },
            [&](std::uint64_t, std::uint32_t v, std::span<const std::uint8_t> out) -> std::string {
                if (auto e = expect_verdict(v, XDP_PASS); !e.empty()) return e;
                if (out.size() != f.size() || std::memcmp(out.data(), f.data(), f.size()) != 0) return "frame modified";
                return "";
            });
        auto after = lb.reasons();
        if (!after) return after.error();
        auto r = finish("kxlb non-VIP pass", t, 15.0);
        const bool exact = only_reason_moved(*before, *after, KXLB_R_PASS_NOT_VIP, n);
        r.path_ok = r.path_ok && exact;
        r.proof += "XDP_PASS + frame untouched " + each() + "; reasons: " + describe_delta(*before, *after) +
                   (exact ? " (exact)" : " (EXPECTED pass_not_vip +" + std::to_string(n) + " only)");
        cases_of(rep).push_back(std::move(r));
    }

    // --- established TCP (ACK of a flow opened by a SYN), v4 and v6: full-NAT, then DSR.
    for (int fam = 0; fam < 2; ++fam) {
        const bool v6 = fam == 1;
        const IpAddr& be = v6 ? backend6 : backend4;
        const FrameSpec syn = spec(v6 ? kClient6 : kClient4, v6 ? kVip6 : kVip4, 40000, kVipPort, kTcpSyn);
        const FrameLayout l = layout_of(syn);
        auto st = case_established(rep, lb, fd, (v6 ? est6 : est4).c_str(), v6 ? svc6 : svc4, syn, KXLB_R_FWD_TX,
                                   "XDP_TX to the backend ",
                                   [&](std::span<const std::uint8_t> out, const std::vector<std::uint8_t>&) {
                                       return bytes_eq(out, l.daddr_off, be.bytes.data(), v6 ? 16 : 4)
                                                  ? std::string()
                                                  : std::string("not sent to the backend");
                                   });
        if (!st) return st;
    }
    if (flow_cache)
        if (auto st = cases_dsr_established(rep, lb, fd); !st) return st;

    // --- reply of a v4 flow: backend -> node SNAT address:port, reverse-translated back to the client.
    if (want(reply4)) {
        FrameSpec syn = spec(kClient4, kVip4, 40001, kVipPort, kTcpSyn);
        if (auto st = open_flow(lb, syn); !st) return st;
        auto conn = Conntrack::bind(lb.fds());
        if (!conn) return conn.error();
        auto nat = conn->nat_entries();
        if (!nat) return nat.error();
        const kxlb_flow_key* key = nullptr;
        for (const auto& [k, v] : *nat)
            if (v.client_port == htons(40001) && std::memcmp(v.client_addr, client4.bytes.data(), 4) == 0) key = &k;
        if (!key) return Error::invalid("reply case: no reverse-NAT entry for the opened flow");
        FrameSpec rep_spec;
        rep_spec.dst_mac = mac(kNodeMac);
        rep_spec.src_mac = mac(kBackendMac);
        rep_spec.saddr = IpAddr::from_words(AF_INET, key->saddr);
        rep_spec.daddr = IpAddr::from_words(AF_INET, key->daddr);
        rep_spec.proto = IPPROTO_TCP;
        rep_spec.sport = ntohs(key->sport);
        rep_spec.dport = ntohs(key->dport);
        rep_spec.tcp_flags = kTcpAck;
        fit(rep_spec);
        std::vector<std::uint8_t> f;
        write_frame(rep_spec, f);
        const FrameLayout l = layout_of(rep_spec);
        auto before = lb.reasons();
        auto svc_before = lb.service(svc4);
        if (!before || !svc_before) return Error::invalid("reading counters failed");
        auto t = timed(
            fd,
            [&](std::uint64_t i, auto& fr) {
                if (i == 0) fr = f;
            },
            [&](std::uint64_t, std::uint32_t v, std::span<const std::uint8_t> out) -> std::string {
                if (auto e = expect_verdict(v, XDP_TX); !e.empty()) return e;
                if (!bytes_eq(out, l.daddr_off, client4.bytes.data(), 4) || be16_at(out, l.dport_off) != 40001 ||
                    be16_at(out, l.sport_off) != kVipPort)
                    return "not reverse-translated to client:40001 from VIP:80";
                return "";
            });
        auto after = lb.reasons();
        auto svc_after = lb.service(svc4);
        if (!after || !svc_after) return Error::invalid("reading counters failed");
        auto r = finish(reply4, t, 50.0);
        const bool exact = only_reason_moved(*before, *after, KXLB_R_FWD_TX, n);
        const std::uint64_t nf = svc_after->new_flows - svc_before->new_flows;
        const std::uint64_t pk = svc_after->packets - svc_before->packets;
        r.path_ok = r.path_ok && exact && nf == 0 && pk == n;
        r.proof += "XDP_TX to client:40001 from VIP:80 " + each() + "; reasons: " + describe_delta(*before, *after) +
                   "; service new_flows +" + std::to_string(nf) + ", packets +" + std::to_string(pk);
        cases_of(rep).push_back(std::move(r));
    }
    return {};
}

// The outer header a DSR frame must carry toward the backend, and the client's frame unchanged behind it.
std::string check_encap(std::span<const std::uint8_t> out, std::span<const std::uint8_t> in, bool v6,
                        const IpAddr& backend) {
    const std::size_t oh = v6 ? 40 : 20;
    if (out.size() != in.size() + oh) return "not encapsulated (size " + std::to_string(out.size()) + ")";
    if (out[14 + (v6 ? 6 : 9)] != (v6 ? IPPROTO_IPV6 : IPPROTO_IPIP)) return "outer protocol";
    if (!bytes_eq(out, 14 + (v6 ? 24 : 16), backend.bytes.data(), v6 ? 16 : 4)) return "not sent to the backend";
    if (std::memcmp(out.data() + 14 + oh, in.data() + 14, in.size() - 14) != 0) return "inner packet modified";
    return "";
}

// --- One established-TCP case: the ACK of a flow `syn` opened, R times; check(out, in) says what is wrong
// with an output frame ("" if nothing). Proven by counters: only `reason` moved, by R; the service saw
// R packets and no new flow; conntrack did not grow.
Status NsBench::case_established(NsBenchReport& rep, LbInstance& lb, int fd, const char* name, std::uint32_t svc,
                                 const FrameSpec& syn, kxlb_reason reason, const std::string& what,
                                 const EstablishedCheck& check) {
    if (!want(name)) return {};
    const std::uint64_t n = runs();
    if (auto st = open_flow(lb, syn); !st) return st;
    FrameSpec ack = syn;
    ack.tcp_flags = kTcpAck;
    std::vector<std::uint8_t> f;
    write_frame(ack, f);
    auto before = lb.reasons();
    auto svc_before = lb.service(svc);
    auto ct_before = count_keys(lb.fds().ct, sizeof(kxlb_flow_key), 1u << 22);
    if (!before || !svc_before || !ct_before) return Error::invalid("reading counters failed");
    auto t = timed(
        fd,
        [&](std::uint64_t i, auto& fr) {
            if (i == 0) fr = f;
        },
        [&](std::uint64_t, std::uint32_t v, std::span<const std::uint8_t> out) -> std::string {
            if (auto e = expect_verdict(v, XDP_TX); !e.empty()) return e;
            return check(out, f);
        });
    auto after = lb.reasons();
    auto svc_after = lb.service(svc);
    auto ct_after = count_keys(lb.fds().ct, sizeof(kxlb_flow_key), 1u << 22);
    if (!after || !svc_after || !ct_after) return Error::invalid("reading counters failed");
    auto r = finish(name, t, 50.0);
    const bool exact = only_reason_moved(*before, *after, reason, n);
    const std::uint64_t nf = svc_after->new_flows - svc_before->new_flows;
    const std::uint64_t pk = svc_after->packets - svc_before->packets;
    r.path_ok = r.path_ok && exact && nf == 0 && pk == n && *ct_after == *ct_before;
    r.proof += what + each() + "; reasons: " + describe_delta(*before, *after) + "; service new_flows +" +
               std::to_string(nf) + ", packets +" + std::to_string(pk) + "; conntrack entries " +
               std::to_string(*ct_before) + " -> " + std::to_string(*ct_after);
    cases_of(rep).push_back(std::move(r));
    return {};
}

// --- DSR established TCP, v4 and v6: encapsulated toward the backend, the inner frame unchanged.
Status NsBench::cases_dsr_established(NsBenchReport& rep, LbInstance& lb, int fd) {
    for (int fam = 0; fam < 2; ++fam) {
        const bool v6 = fam == 1;
        const IpAddr be = addr(v6 ? kBackend6 : kBackend4);
        auto st = case_established(
            rep, lb, fd, v6 ? "kxlb DSR encap established v6" : "kxlb DSR encap established v4",
            v6 ? dsr_svc6_ : dsr_svc4_, spec(v6 ? kClient6 : kClient4, v6 ? kVip6 : kVip4, 40002, kDsrPort, kTcpSyn),
            KXLB_R_FWD_ENCAP_TX,
            std::string("XDP_TX, ") + (v6 ? "IP6IP6" : "IPIP") + " to the backend, inner frame unchanged ",
            [&](std::span<const std::uint8_t> out, const std::vector<std::uint8_t>& in) {
                return check_encap(out, in, v6, be);
            });
        if (!st) return st;
    }
    return {};
}

// New flows: a fresh instance (empty conntrack) sized to at least twice the flows, so no LRU eviction.
// dsr: to the DSR frontend (encapsulated, no SNAT port, no reverse entry).
Status NsBench::case_new_flows(NsBenchReport& rep, bool v6, bool dsr) {
    const char* name = dsr ? (v6 ? "kxlb DSR new flow v6 (TCP SYN)" : "kxlb DSR new flow v4 (TCP SYN)")
                           : (v6 ? "kxlb new flow v6 (TCP SYN)" : "kxlb new flow v4 (TCP SYN)");
    if (!want(name)) return {};
    const std::uint64_t n = runs();
    const std::uint32_t ct_size = std::max<std::uint32_t>(next_pow2(2 * n), 65536);
    std::uint32_t svc4 = 0, svc6 = 0;
    auto lbr = make_lb(ct_size, &svc4, &svc6);
    if (!lbr) return lbr.error();
    LbInstance& lb = **lbr;
    if (loop_)
        if (auto st = load_loop(lb); !st) return st;
    const std::uint32_t svc = dsr ? (v6 ? dsr_svc6_ : dsr_svc4_) : (v6 ? svc6 : svc4);
    FrameSpec s = spec(v6 ? kClient6 : kClient4, v6 ? kVip6 : kVip4, 0, dsr ? kDsrPort : kVipPort, kTcpSyn);
    const FrameLayout l = layout_of(s);
    const IpAddr be = addr(v6 ? kBackend6 : kBackend4);
    // Fresh 5-tuple per iteration: 50000 source ports per client address, addresses 10.86.x.y / fd86::x:y.
    auto make = [&](std::uint64_t i, std::vector<std::uint8_t>& fr) {
        const std::uint64_t hi = i / 50000;
        s.sport = static_cast<std::uint16_t>(10000 + i % 50000);
        if (v6) {
            s.saddr.bytes = {0xfd, 0x86};
            s.saddr.bytes[12] = static_cast<std::uint8_t>(hi >> 24);
            s.saddr.bytes[13] = static_cast<std::uint8_t>(hi >> 16);
            s.saddr.bytes[14] = static_cast<std::uint8_t>(hi >> 8);
            s.saddr.bytes[15] = static_cast<std::uint8_t>(hi + 1);
        } else {
            s.saddr = IpAddr::v4(10, 86, static_cast<std::uint8_t>(hi >> 8), static_cast<std::uint8_t>(hi + 1));
        }
        write_frame(s, fr);
    };
    // Loop: the wrappers derive the same kind of fresh 5-tuple from a per-CPU run counter (source port
    // 32768-65535, then the next source address 10.86.0.1+ / fd86::1+).
    LoopTemplate vary;
    if (loop_) {
        std::vector<std::uint8_t> f;
        FrameSpec first = s;
        first.sport = 0x8000;
        first.saddr = v6 ? addr("fd86::1") : addr("10.86.0.1");
        write_frame(first, f);
        if (f.size() != LoopTemplate::kBytes) return Error::invalid("loop method: new-flow frame size");
        std::memcpy(vary.bytes.data(), f.data(), f.size());
        vary.vary = true;
        vary.sport_off = static_cast<std::uint32_t>(l.sport_off);
        vary.saddr_off = static_cast<std::uint32_t>(l.saddr_off + (v6 ? 12 : 0));
        vary.saddr_base = v6 ? 1 : 0x0a560001;
    }
    auto before = lb.reasons();
    auto svc_before = lb.service(svc);
    if (!before || !svc_before) return Error::invalid("reading counters failed");
    auto t = timed(
        loop_ ? loopp_->lb_fd() : lb.program().prog_fd(), make,
        [&](std::uint64_t, std::uint32_t v, std::span<const std::uint8_t> out) {
            if (auto e = expect_verdict(v, XDP_TX); !e.empty()) return e;
            if (dsr) {  // the frame varies per iteration: check the outer header and the inner destination port
                const std::size_t oh = v6 ? 40 : 20;
                if (out.size() != l.size + oh || out[14 + (v6 ? 6 : 9)] != (v6 ? IPPROTO_IPV6 : IPPROTO_IPIP) ||
                    !bytes_eq(out, 14 + (v6 ? 24 : 16), be.bytes.data(), v6 ? 16 : 4) ||
                    be16_at(out, l.dport_off + oh) != kDsrPort)
                    return std::string("not encapsulated to the backend");
                return std::string();
            }
            const std::uint16_t bp = be16_at(out, l.dport_off);
            if (!bytes_eq(out, l.daddr_off, be.bytes.data(), v6 ? 16 : 4) || bp < kBackendPortBase ||
                bp >= kBackendPortBase + kBackends)
                return std::string("not sent to a backend");
            return std::string();
        },
        loop_ ? &vary : nullptr);
    auto after = lb.reasons();
    auto svc_after = lb.service(svc);
    auto ct = count_keys(lb.fds().ct, sizeof(kxlb_flow_key), 2ULL * ct_size);
    auto nat = count_keys(lb.fds().nat, sizeof(kxlb_flow_key), 2ULL * ct_size);
    if (!after || !svc_after || !ct || !nat) return Error::invalid("reading counters failed");
    auto r = finish(name, t, 120.0);
    const bool exact = only_reason_moved(*before, *after, dsr ? KXLB_R_FWD_ENCAP_TX : KXLB_R_FWD_TX, n);
    const std::uint64_t nf = svc_after->new_flows - svc_before->new_flows;
    r.path_ok = r.path_ok && exact && nf == n && *ct == n && *nat == (dsr ? 0 : n);
    char fill[160];
    std::snprintf(fill, sizeof(fill),
                  "conntrack %llu / reverse-NAT %llu entries of %u each (%.0f%% full: no LRU eviction)",
                  static_cast<unsigned long long>(*ct), static_cast<unsigned long long>(*nat), ct_size,
                  100.0 * static_cast<double>(*ct) / ct_size);
    r.proof += std::string(dsr ? "XDP_TX encapsulated to a backend " : "XDP_TX to a backend ") + each() +
               ", fresh 5-tuple each; reasons: " + describe_delta(*before, *after) + "; service new_flows +" +
               std::to_string(nf) + "; " + fill;
    cases_of(rep).push_back(std::move(r));
    if (loop_ && !dsr) return case_ct_probe(rep, v6, vary, n, ct_size);
    return {};
}

Status NsBench::case_ct_probe(NsBenchReport& rep, bool v6, const LoopTemplate& vary, std::uint64_t flows,
                              std::uint32_t ct_size) {
    // The wrappers' run counter goes on from where the new-flow case left it: every 5-tuple is fresh again.
    const std::string name = v6 ? "kxlb new flow v6, ct probe only" : "kxlb new flow v4, ct probe only";
    const std::uint64_t misses0 = loopp_->probe_misses(), hits0 = loopp_->probe_hits();
    auto none = [](std::uint64_t, std::vector<std::uint8_t>&) {};
    auto t = timed(
        loopp_->ct_probe_fd(), none,
        [](std::uint64_t, std::uint32_t v, std::span<const std::uint8_t>) {
            return v == XDP_PASS ? std::string() : "probe verdict " + verdict_name(v) + " (not a miss)";
        },
        &vary);
    auto r = finish(name, t, std::nullopt);
    const std::uint64_t misses = loopp_->probe_misses() - misses0, hits = loopp_->probe_hits() - hits0;
    r.path_ok = r.path_ok && misses == runs() && hits == 0;
    r.proof += "parse + one kxlb_ct lookup of a fresh 5-tuple among the " + std::to_string(flows) +
               " live flows above (table of " + std::to_string(ct_size) + "): " + std::to_string(misses) + " misses, " +
               std::to_string(hits) +
               " hits. Every new flow starts with this lookup (a retransmitted SYN must find its flow)";
    cases_of(rep).push_back(std::move(r));
    if (v6) return {};

    // The same floor for any design: one read of a random slot in a table of 64-byte slots as big as the flows above
    // (1M: 64 MiB) and as the default conntrack size (KXLB_DEFAULT_CT_ENTRIES: 16 MiB).
    for (const std::uint32_t bits : {20U, 18U}) {
        const std::uint64_t slots = 1ULL << bits, mib = (slots * 64) >> 20;
        loopp_->set_table_bits(bits);
        const std::uint64_t reads0 = loopp_->table_reads();
        auto tr = timed(
            loopp_->table_read_fd(), none,
            [](std::uint64_t, std::uint32_t v, std::span<const std::uint8_t>) {
                return v == XDP_PASS ? std::string() : "table read verdict " + verdict_name(v);
            },
            &vary);
        auto rr = finish("new flow floor: " + std::to_string(mib) + " MiB table read", tr, std::nullopt);
        const std::uint64_t reads = loopp_->table_reads() - reads0;
        rr.path_ok = rr.path_ok && reads == runs();
        rr.proof += std::to_string(reads) + " reads of one pseudo-random 64-byte slot of " + std::to_string(slots) +
                    " (" + std::to_string(mib) +
                    " MiB), each waiting for the one before: the memory latency a new flow pays at least once in any "
                    "flow table of that size";
        cases_of(rep).push_back(std::move(rr));
    }
    return {};
}

Status NsBench::all_cases(NsBenchReport& rep) {
    if (auto st = case_reflect(rep); !st) return st;
    if (auto st = cases_cheap(rep, true); !st) return st;
    if (auto st = cases_cheap(rep, false); !st) return st;
    for (bool dsr : {false, true})
        for (bool v6 : {false, true})
            if (auto st = case_new_flows(rep, v6, dsr); !st) return st;
    return {};
}

Result<NsBenchReport> NsBench::run() {
    NsBenchReport rep;
    rep.cpu = opts_.cpu >= 0 ? opts_.cpu : online_cpus() - 1;
    auto prev = pin_thread(rep.cpu);
    if (!prev) return prev.error();
    struct Restore {
        std::vector<int> cpus;
        ~Restore() { restore_affinity(cpus); }
    } restore{*prev};

    if (auto st = build_lab(); !st) return st.error();
    auto pass = XdpPassProgram::load();
    if (!pass) return pass.error();

    pass_fd_ = pass->prog_fd();
    write_frame(spec(kClient4, kVip4, 40000, kVipPort, kTcpAck), pass_frame_);
    if (opts_.repeat1)
        if (auto st = all_cases(rep); !st) return st.error();
    if (opts_.loop) {
        loop_ = true;
        repeat_ = static_cast<std::uint32_t>(std::max<std::uint64_t>(1, opts_.iterations / kBlocks));
        rep.loop_repeat = repeat_;
        rep.loop_calls = static_cast<std::uint32_t>(kBlocks);
        auto st = all_cases(rep);
        loopp_.reset();
        if (!st) return st.error();
    }

    auto mean_base = [](const std::vector<NsCaseResult>& cs) {
        double sum = 0;
        for (const auto& c : cs) sum += c.base_ns;
        return cs.empty() ? 0 : sum / static_cast<double>(cs.size());
    };
    rep.baseline_ns = mean_base(rep.cases);
    rep.loop_baseline_ns = mean_base(rep.loop_cases);
    rep.notes = std::to_string(kBackends) + " backends per service (one address, " + std::to_string(kBackends) +
                " ports), SNAT ports " + std::to_string(kSnatLo) + "-" + std::to_string(kSnatHi) +
                "; established/reply/non-VIP share one instance with the default conntrack size (" +
                std::to_string(KXLB_DEFAULT_CT_ENTRIES) +
                "); established and reply frames after a flow's second come from the per-CPU flow cache as deployed, "
                "\", ct path\" cases repeat them on an instance with the cache off (every frame through kxlb_ct / "
                "kxlb_nat: a flow's first frames, a frame per flow and second, flows beyond the cache); each new-flow "
                "case has a fresh instance";
    if (!loop_reused_.empty()) rep.notes += "; loop wrappers: " + loop_reused_;
    return rep;
}

}  // namespace

Result<NsBenchReport> run_ns_bench(const NsBenchOptions& opts) {
    NsBench b(opts);
    return b.run();
}

}  // namespace kxlb::bench
