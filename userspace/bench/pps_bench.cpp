// Part B of kxlb-bench: a three-namespace lab (gen -- node -- sink over veth pairs) driven by the live-frames
// generator (bpf/xdp_gen.bpf.c through BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES) from one or more
// pinned threads; frames are counted by bpf/xdp_sink.bpf.c where they end.
//
// veth quirk: a frame sent natively (XDP_TX, XDP_REDIRECT, ndo_xdp_xmit) into a veth is received by its peer
// only if the peer runs NAPI, i.e. has an XDP program (or GRO enabled). So the sink's eth0 and the generator's
// eth0 always carry xdp_sink, and the node's eth0 has GRO on for the iptables setup (no XDP on the node there).
#include "bench/pps_bench.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>

#include "bench/bench_programs.hpp"
#include "bench/bench_util.hpp"
#include "bench/frames.hpp"
#include "lab/lab.hpp"
#include "lab/netns.hpp"

namespace kxlb::bench {

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kGenMac = "02:81:00:00:00:02";
constexpr const char* kNodeMac0 = "02:81:00:00:00:01";
constexpr const char* kNodeMac1 = "02:82:00:00:00:01";
constexpr const char* kSinkMac = "02:82:00:00:00:02";
constexpr const char* kGen4 = "10.81.0.2";
constexpr const char* kNode4a = "10.81.0.1";
constexpr const char* kNode4b = "10.82.0.1";  // node eth1: kxlb's SNAT address, iptables' MASQUERADE source
constexpr const char* kSink4 = "10.82.0.2";   // the one backend
constexpr const char* kVip4 = "10.83.0.10";   // no route to it on the node: only translated frames get through
constexpr std::uint16_t kPort = 5201;
constexpr std::uint16_t kSportBase = 10000;
constexpr std::size_t kFrameBytes = 64;             // whole frame as handed to the veth (no FCS)
constexpr std::uint32_t kFramesPerCall = 1u << 16;  // live frames per BPF_PROG_TEST_RUN call
constexpr std::uint32_t kBatch = 64;                // frames per live-frames batch (the NAPI budget)

struct GenRun {
    std::uint64_t offered = 0;
    double seconds = 0;      // first thread start to last thread end
    double cpu_seconds = 0;  // sum of the threads' CPU time
};

// One way of forwarding, switched on and off between rounds.
struct Setup {
    std::string name;
    const SinkProgram* counter = nullptr;  // where its frames are counted
    std::function<Status()> enable;
    std::function<void()> disable;
    // proof(true, text) before a run, proof(false, text) after it: text gets the counter deltas.
    std::function<void(bool, std::string&)> proof;
    bool warmed = false;
};

IpAddr addr(const char* s) { return IpAddr::parse(s).value(); }

// CPU time of the calling thread. Softirq work (the node's and sink's NAPI polls) that runs when the live-frames
// test run re-enables bottom halves is charged to this thread (kernels without CONFIG_IRQ_TIME_ACCOUNTING).
double thread_cpu_seconds() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string mpps(double pps) {
    char b[32];
    std::snprintf(b, sizeof(b), "%.2f Mpps", pps / 1e6);
    return b;
}

class PpsBench {
public:
    explicit PpsBench(const PpsBenchOptions& o) : opts_(o) {}
    Result<PpsBenchReport> run();

private:
    Status build_lab();
    Result<GenRun> generate(int threads, double seconds);
    // One measured round of a setup (enabled before, disabled after) into its accumulated result.
    Status round(PpsBenchReport& rep, Setup& s, int threads, double seconds, PpsResult& acc);

    PpsBenchOptions opts_;
    std::unique_ptr<lab::Lab> lab_;
    std::optional<GenProgram> gen_;
    std::optional<SinkProgram> sink_at_sink_, sink_at_gen_;
    std::vector<Link> sink_links_;
    std::vector<std::uint8_t> frame_;
    int gen_eth0_ = 0, node_eth0_ = 0, node_eth1_ = 0, sink_eth0_ = 0;
    int queues_ = 1;
};

Status PpsBench::build_lab() {
    lab::Topology t;
    t.namespaces = {"gen", "node", "sink"};
    t.veths.push_back({{"gen", "eth0", {"10.81.0.2/24"}}, {"node", "eth0", {"10.81.0.1/24"}}});
    t.veths.push_back({{"node", "eth1", {"10.82.0.1/24"}}, {"sink", "eth0", {"10.82.0.2/24"}}});
    t.ip_forwarding = {"node"};
    auto lab = lab::Lab::create(t);
    if (!lab) return lab.error();
    lab_ = std::move(lab).value();
    auto& l = *lab_;

    // No IPv6 at all: no router solicitations, MLD reports or ND in the counts.
    for (const char* ns : {"gen", "node", "sink"})
        for (const char* key : {"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"})
            if (auto st = l.sysctl(ns, key, "1"); !st && st.error().code != ENOENT) return st;

    queues_ = std::max(1, std::min(opts_.max_threads, online_cpus()));
    const std::string q = std::to_string(queues_);
    struct Cmd {
        const char* ns;
        std::vector<std::string> argv;
    };
    const std::vector<Cmd> cmds = {
        {"gen", {"ip", "link", "set", "dev", "eth0", "address", kGenMac}},
        {"node", {"ip", "link", "set", "dev", "eth0", "address", kNodeMac0}},
        {"node", {"ip", "link", "set", "dev", "eth1", "address", kNodeMac1}},
        {"sink", {"ip", "link", "set", "dev", "eth0", "address", kSinkMac}},
        // One veth queue per generator thread: frames sent on CPU c land in rx queue c % queues, whose NAPI runs on c.
        {"gen", {"ethtool", "-L", "eth0", "rx", q, "tx", q}},
        {"node", {"ethtool", "-L", "eth0", "rx", q, "tx", q}},
        {"node", {"ethtool", "-L", "eth1", "rx", q, "tx", q}},
        {"sink", {"ethtool", "-L", "eth0", "rx", q, "tx", q}},
        // NAPI on node eth0 without an XDP program (iptables setup): native xmit from the generator needs it.
        {"node", {"ethtool", "-K", "eth0", "gro", "on"}},
        {"gen", {"ip", "neigh", "replace", kNode4a, "lladdr", kNodeMac0, "dev", "eth0", "nud", "permanent"}},
        {"node", {"ip", "neigh", "replace", kGen4, "lladdr", kGenMac, "dev", "eth0", "nud", "permanent"}},
        {"node", {"ip", "neigh", "replace", kSink4, "lladdr", kSinkMac, "dev", "eth1", "nud", "permanent"}},
        {"sink", {"ip", "neigh", "replace", kNode4b, "lladdr", kNodeMac1, "dev", "eth0", "nud", "permanent"}},
    };
    if (queues_ > 1)
        for (const auto& c : cmds)
            if (auto st = must_run(l, c.ns, c.argv); !st) return st;
    if (queues_ == 1)
        for (const auto& c : cmds)
            if (c.argv[0] != "ethtool" || c.argv[1] == "-K")
                if (auto st = must_run(l, c.ns, c.argv); !st) return st;

    auto idx = [&](const char* ns, const char* dev, int* out) -> Status {
        auto i = l.ifindex(ns, dev);
        if (!i) return i.error();
        *out = *i;
        return {};
    };
    if (auto st = idx("gen", "eth0", &gen_eth0_); !st) return st;
    if (auto st = idx("node", "eth0", &node_eth0_); !st) return st;
    if (auto st = idx("node", "eth1", &node_eth1_); !st) return st;
    if (auto st = idx("sink", "eth0", &sink_eth0_); !st) return st;

    // Counters at both ends; they also give both generator-facing veths the NAPI native xmit needs.
    for (auto [ns, ifindex, slot] :
         {std::tuple{"sink", sink_eth0_, &sink_at_sink_}, std::tuple{"gen", gen_eth0_, &sink_at_gen_}}) {
        auto s = SinkProgram::load();
        if (!s) return s.error();
        slot->emplace(std::move(s).value());
        auto link = l.in_ns(ns, [&] { return (*slot)->attach(ifindex, XdpMode::Native); });
        if (!link) return link.error();
        sink_links_.push_back(std::move(link).value());
    }

    // The generator's frame: UDP gen:10000+i -> VIP:5201, 64 bytes, valid checksums.
    FrameSpec s;
    s.dst_mac = parse_mac(kNodeMac0).value();
    s.src_mac = parse_mac(kGenMac).value();
    s.saddr = addr(kGen4);
    s.daddr = addr(kVip4);
    s.proto = IPPROTO_UDP;
    s.sport = kSportBase;
    s.dport = kPort;
    s.payload = kFrameBytes - 42;
    write_frame(s, frame_);
    const FrameLayout fl = layout_of(s);
    GenTemplate tmpl;
    std::copy_n(frame_.begin(), GenTemplate::kBytes, tmpl.bytes.begin());
    tmpl.sport_off = static_cast<std::uint32_t>(fl.sport_off);
    tmpl.csum_off = static_cast<std::uint32_t>(fl.l4_csum_off);
    tmpl.sport_base = kSportBase;
    tmpl.nports = opts_.flows;
    auto gen = GenProgram::load(tmpl);
    if (!gen) return gen.error();
    gen_.emplace(std::move(gen).value());
    return {};
}

// Runs `threads` generator threads (thread t pinned to CPU t) for `seconds`, each calling the live-frames test run
// in a loop inside the generator namespace.
Result<GenRun> PpsBench::generate(int threads, double seconds) {
    auto ns_path = lab_->find_ns_path("gen");
    if (!ns_path) return ns_path.error();
    const int fd = gen_->prog_fd();
    const auto budget = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    // Hard bound on calls even if the clock misbehaves: 200 Mpps per thread is far above anything reachable.
    const std::uint64_t max_calls = static_cast<std::uint64_t>(seconds * 200e6 / kFramesPerCall) + 2;
    struct PerThread {
        std::uint64_t frames = 0;
        Clock::time_point start, end;
        double cpu = 0;
        std::string error;
    };
    std::vector<PerThread> out(static_cast<std::size_t>(threads));
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            PerThread& me = out[static_cast<std::size_t>(t)];
            // Thread t on CPU n-1-t: the single-thread run shares its CPU with part A's choice, not with CPU 0.
            const int n = online_cpus();
            auto pinned = pin_thread((n - 1 - t % n + n) % n);
            auto guard = lab::NetnsGuard::enter(*ns_path);
            ready.fetch_add(1);
            const auto wait_end = Clock::now() + std::chrono::seconds(5);
            while (!go.load() && Clock::now() < wait_end) std::this_thread::yield();
            if (!pinned) me.error = pinned.error().message;
            if (!guard) me.error = guard.error().message;
            if (!me.error.empty()) return;
            xdp_md ctx{};
            ctx.data_end = static_cast<__u32>(frame_.size());
            ctx.ingress_ifindex = static_cast<__u32>(gen_eth0_);
            LIBBPF_OPTS(bpf_test_run_opts, o);
            o.data_in = frame_.data();
            o.data_size_in = static_cast<__u32>(frame_.size());
            o.ctx_in = &ctx;
            o.ctx_size_in = sizeof(ctx);
            o.repeat = kFramesPerCall;
            o.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
            o.batch_size = kBatch;
            const double cpu0 = thread_cpu_seconds();
            me.start = Clock::now();
            const auto deadline = me.start + budget;
            for (std::uint64_t call = 0; call < max_calls && Clock::now() < deadline && !stop_requested(); ++call) {
                if (bpf_prog_test_run_opts(fd, &o) != 0) {
                    me.error = Error::from_errno(errno, "live-frames BPF_PROG_TEST_RUN").message;
                    break;
                }
                me.frames += kFramesPerCall;
            }
            me.end = Clock::now();
            me.cpu = thread_cpu_seconds() - cpu0;
        });
    }
    const auto wait_end = Clock::now() + std::chrono::seconds(5);
    while (ready.load() < threads && Clock::now() < wait_end) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    go.store(true);
    for (auto& th : pool) th.join();
    if (stop_requested()) return Error{EINTR, "interrupted"};
    GenRun r;
    Clock::time_point first = Clock::time_point::max(), last = Clock::time_point::min();
    for (const auto& p : out) {
        if (!p.error.empty()) return Error{EIO, "generator: " + p.error};
        r.offered += p.frames;
        r.cpu_seconds += p.cpu;
        first = std::min(first, p.start);
        last = std::max(last, p.end);
    }
    r.seconds = std::chrono::duration<double>(last - first).count();
    // Frames still in flight (softirq work not finished when the last call returned) settle here.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return r;
}

Status PpsBench::round(PpsBenchReport& rep, Setup& s, int threads, double seconds, PpsResult& acc) {
    if (auto st = s.enable(); !st) return st;
    struct Off {
        Setup& s;
        ~Off() { s.disable(); }
    } off{s};
    if (!s.warmed) {  // flows get established (kxlb, conntrack), caches warm
        std::string text;
        s.proof(true, text);
        auto w = generate(1, opts_.warmup);
        if (!w) return w.error();
        s.proof(false, text);
        char head[64];
        std::snprintf(head, sizeof(head), " warm-up (%.2f s, 1 thread): ", opts_.warmup);
        rep.notes += s.name + head + text + "\n";
        s.warmed = true;
    }
    auto before = s.counter->total();
    if (!before) return before.error();
    std::string text;
    s.proof(true, text);
    auto g = generate(threads, seconds);
    if (!g) return g.error();
    auto after = s.counter->total();
    if (!after) return after.error();
    s.proof(false, text);
    const std::uint64_t delivered = after->packets - before->packets;
    const double pps = g->seconds > 0 ? static_cast<double>(delivered) / g->seconds : 0;
    acc.pps_min = acc.rounds == 0 ? pps : std::min(acc.pps_min, pps);
    acc.pps_max = acc.rounds == 0 ? pps : std::max(acc.pps_max, pps);
    acc.rounds++;
    acc.seconds += g->seconds;
    acc.cpu_seconds += g->cpu_seconds;
    acc.offered += g->offered;
    acc.delivered += delivered;
    acc.proof += (acc.proof.empty() ? "" : " | ") + text;
    std::fprintf(stderr, "  pps: %-9s %d thread(s) round %d: %s delivered (%.1f%% of offered), %.2f CPU-s\n",
                 s.name.c_str(), threads, acc.rounds, mpps(pps).c_str(),
                 g->offered ? 100.0 * static_cast<double>(delivered) / static_cast<double>(g->offered) : 0.0,
                 g->cpu_seconds);
    return {};
}

Result<PpsBenchReport> PpsBench::run() {
    PpsBenchReport rep;
    if (auto st = build_lab(); !st) return st.error();
    auto& l = *lab_;
    auto attach_node = [&](auto& prog, std::optional<Link>& link) -> Status {
        auto r = l.in_ns("node", [&] { return prog.attach(node_eth0_, XdpMode::Native); });
        if (!r) return r.error();
        link.emplace(std::move(r).value());
        return {};
    };
    std::vector<Setup> setups;

    // (2) reflector on node eth0: XDP_TX back to the generator, counted on gen eth0.
    auto reflect = ReflectProgram::load();
    if (!reflect) return reflect.error();
    std::optional<Link> reflect_link;
    std::uint64_t sink_before = 0;
    setups.push_back(Setup{"reflector", &*sink_at_gen_, [&] { return attach_node(*reflect, reflect_link); },
                           [&] { reflect_link.reset(); },
                           [&](bool before, std::string& text) {
                               auto c = sink_at_sink_->total();
                               if (!c) return;
                               if (before) sink_before = c->packets;
                               else text = "frames reaching the sink +" + std::to_string(c->packets - sink_before);
                           }});

    // (1) kxlb on node eth0: UDP VIP with one backend (the sink), redirected eth0 -> eth1.
    LbConfig cfg;
    cfg.hash_seed = 0x6b786c62;
    cfg.snat_v4 = addr(kNode4b);
    auto lbr = LbInstance::create(cfg, KXLB_DEFAULT_CT_ENTRIES);
    if (!lbr) return lbr.error();
    LbInstance& lb = **lbr;
    ServiceSpec svc;
    svc.frontend.addr = addr(kVip4);
    svc.frontend.port = kPort;
    svc.frontend.proto = IPPROTO_UDP;
    svc.backends.push_back(BackendSpec{addr(kSink4), kPort, 1, false});
    auto svc_id = lb.programmer().upsert_service(svc);
    if (!svc_id) return svc_id.error();
    // A devmap resolves the ifindex in the netns of the thread that writes the entry: write it inside node.
    if (auto st = l.in_ns("node", [&] { return lb.maps().add_tx_port(static_cast<std::uint32_t>(node_eth1_)); }); !st)
        return st.error();
    std::optional<Link> lb_link;
    Reasons rb{};
    kxlb_lb_counter sb{};
    setups.push_back(
        Setup{"kxlb", &*sink_at_sink_, [&] { return attach_node(lb.program(), lb_link); }, [&] { lb_link.reset(); },
              [&](bool before, std::string& text) {
                  auto r = lb.reasons();
                  auto sc = lb.service(*svc_id);
                  if (!r || !sc) {
                      text = "counters unreadable";
                      return;
                  }
                  if (before) {
                      rb = *r;
                      sb = *sc;
                      return;
                  }
                  text = describe_delta(rb, *r) + ", new_flows +" + std::to_string(sc->new_flows - sb.new_flows);
              }});

    // (3) iptables DNAT + MASQUERADE in the node namespace (kube-proxy's iptables mode), no XDP on the node.
    const std::string to = std::string(kSink4) + ":" + std::to_string(kPort);
    const std::vector<std::vector<std::string>> rules = {
        {"-t", "nat", "PREROUTING", "-d", kVip4, "-p", "udp", "--dport", std::to_string(kPort), "-j", "DNAT",
         "--to-destination", to},
        {"-t", "nat", "POSTROUTING", "-j", "MASQUERADE"},
    };
    auto iptables = [&](const char* op, const std::vector<std::string>& rule) {
        std::vector<std::string> argv{"iptables", "-w", "5", rule[0], rule[1], op};
        argv.insert(argv.end(), rule.begin() + 2, rule.end());
        return must_run(l, "node", argv);
    };
    auto dnat_count = [&]() -> std::string {
        auto out =
            must_run_output(l, "node", {"iptables", "-w", "5", "-t", "nat", "-L", "PREROUTING", "-v", "-n", "-x"});
        if (!out) return "?";
        std::istringstream in(*out);
        std::string line, pkts;
        while (std::getline(in, line))
            if (line.find("DNAT") != std::string::npos) {
                std::istringstream w(line);
                w >> pkts;
                return pkts;
            }
        return "?";
    };
    std::string dnat_before;
    auto ipt_version = l.run("node", {"iptables", "--version"});
    const bool have_iptables = ipt_version && ipt_version->exit_code == 0;
    if (!have_iptables) rep.notes += "iptables is not installed: its setup was skipped (apt-get install iptables)\n";
    if (have_iptables)
        setups.push_back(
            Setup{"iptables", &*sink_at_sink_,
                  [&]() -> Status {
                      for (const auto& r : rules)
                          if (auto st = iptables("-A", r); !st)
                              return Error{st.error().code,
                                           st.error().message + " (is iptables installed? apt-get install iptables)"};
                      return {};
                  },
                  [&] {
                      for (const auto& r : rules) (void)iptables("-D", r);  // netns deletion removes them too
                  },
                  [&](bool before, std::string& text) {
                      // The rules are added anew each round, so their counters start at 0.
                      if (before) dnat_before = dnat_count();
                      else text = "new conntrack entries (DNAT rule hits) " + dnat_before + "->" + dnat_count();
                  }});

    std::vector<Setup*> chosen;
    for (auto& s : setups)
        if (opts_.filter.empty() || s.name.find(opts_.filter) != std::string::npos) chosen.push_back(&s);
    const int rounds = std::max(1, opts_.rounds);
    for (int threads = 1; threads <= opts_.max_threads; ++threads) {
        std::vector<PpsResult> acc(chosen.size());
        for (int r = 0; r < rounds; ++r)
            for (std::size_t i = 0; i < chosen.size(); ++i)
                if (auto st = round(rep, *chosen[i], threads, opts_.seconds / rounds, acc[i]); !st) return st.error();
        for (std::size_t i = 0; i < chosen.size(); ++i) {
            acc[i].setup = chosen[i]->name;
            acc[i].threads = threads;
            acc[i].pps = acc[i].seconds > 0 ? static_cast<double>(acc[i].delivered) / acc[i].seconds : 0;
            acc[i].pps_per_cpu =
                acc[i].cpu_seconds > 0 ? static_cast<double>(acc[i].delivered) / acc[i].cpu_seconds : 0;
            rep.runs.push_back(std::move(acc[i]));
        }
    }

    rep.notes +=
        "kxlb: flows = generator source ports; new_flows +0 in a round means every flow was established. "
        "iptables: DNAT rule hits count new conntrack entries (the nat table sees only a flow's first packet); "
        "the node has no route to the VIP, so only translated frames reach the sink\n";
    rep.notes += "frames: " + std::to_string(kFrameBytes) + " B UDP, source ports " + std::to_string(kSportBase) +
                 ".." + std::to_string(kSportBase + opts_.flows - 1) + " cycled per CPU; " + std::to_string(queues_) +
                 " queue(s) per veth; live frames " + std::to_string(kFramesPerCall) + " per call, batch " +
                 std::to_string(kBatch) + "; " + std::to_string(rounds) +
                 " rounds per setup and thread count, setups interleaved round by round\n";
    return rep;
}

}  // namespace

Result<PpsBenchReport> run_pps_bench(const PpsBenchOptions& opts) {
    PpsBench b(opts);
    return b.run();
}

}  // namespace kxlb::bench
