// Helpers shared by the two halves of kxlb-bench (ns/packet and packets per second).
#include "bench/bench_util.hpp"

#include <bpf/bpf.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <csignal>

namespace kxlb::bench {

Result<std::unique_ptr<LbInstance>> LbInstance::create(const LbConfig& cfg, std::uint32_t ct_entries, bool flow_cache) {
    if (auto st = validate(cfg); !st) return st.error();
    std::unique_ptr<LbInstance> in(new LbInstance());
    XdpLbLoadOptions lo;
    lo.ct_entries = ct_entries;
    lo.flow_cache = flow_cache;
    auto prog = XdpLbProgram::load(lo);
    if (!prog) return prog.error();
    in->prog_.emplace(std::move(prog).value());
    in->ct_entries_ = ct_entries;
    in->fds_ = in->prog_->lb_map_fds();
    auto maps = BpfLbMaps::bind(in->fds_);
    if (!maps) return maps.error();
    in->maps_.emplace(std::move(maps).value());
    if (auto st = in->maps_->set_config(cfg.to_abi()); !st) return st.error();
    LbProgrammerOptions po;
    po.hash_seed = cfg.hash_seed;
    auto prg = LbProgrammer::create(*in->maps_, po);
    if (!prg) return prg.error();
    in->programmer_.emplace(std::move(prg).value());
    auto counters = LbCounters::bind(in->fds_);
    if (!counters) return counters.error();
    in->counters_.emplace(*counters);
    return in;
}

std::string describe_delta(const Reasons& before, const Reasons& after) {
    std::string out;
    for (std::size_t i = 0; i < kReasonCount; ++i) {
        const std::uint64_t d = after[i].packets - before[i].packets;
        if (d == 0) continue;
        if (!out.empty()) out += ", ";
        out += std::string(kReasonNames[i]) + " +" + std::to_string(d);
    }
    return out.empty() ? "no reason moved" : out;
}

bool only_reason_moved(const Reasons& before, const Reasons& after, kxlb_reason reason, std::uint64_t n) {
    for (std::size_t i = 0; i < kReasonCount; ++i) {
        const std::uint64_t d = after[i].packets - before[i].packets;
        if (d != (i == static_cast<std::size_t>(reason) ? n : 0)) return false;
    }
    return true;
}

Result<std::uint64_t> count_keys(int map_fd, std::uint32_t key_size, std::uint64_t limit) {
    std::vector<std::uint8_t> key(key_size), next(key_size);
    const void* cur = nullptr;
    std::uint64_t n = 0;
    while (n < limit) {
        if (bpf_map_get_next_key(map_fd, cur, next.data()) != 0) {
            if (errno == ENOENT) return n;
            return Error::from_errno(errno, "map walk");
        }
        ++n;
        key.swap(next);
        cur = key.data();
    }
    return n;
}

Result<std::string> must_run_output(lab::Lab& lab, std::string_view ns, const std::vector<std::string>& argv) {
    auto r = lab.run(ns, argv);
    if (!r) return r.error();
    if (r->exit_code != 0) {
        std::string err = r->err.empty() ? r->out : r->err;
        while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
        return Error{EIO, lab::format_argv(argv) + " in " + std::string(ns) + " failed (exit " +
                              std::to_string(r->exit_code) + "): " + err};
    }
    return r->out;
}

Status must_run(lab::Lab& lab, std::string_view ns, const std::vector<std::string>& argv) {
    auto r = must_run_output(lab, ns, argv);
    if (!r) return r.error();
    return {};
}

namespace {
std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);  // safe to set from a signal handler
extern "C" void on_stop_signal(int) { g_stop.store(true); }
}  // namespace

void install_stop_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() { return g_stop.load(); }

int online_cpus() {
    long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
}

Result<std::vector<int>> pin_thread(int cpu) {
    cpu_set_t old;
    CPU_ZERO(&old);
    if (int err = ::pthread_getaffinity_np(::pthread_self(), sizeof(old), &old); err != 0)
        return Error::from_errno(err, "get CPU affinity");
    std::vector<int> prev;
    for (int i = 0; i < CPU_SETSIZE; ++i)
        if (CPU_ISSET(i, &old)) prev.push_back(i);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (int err = ::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set); err != 0)
        return Error::from_errno(err, "pin thread to CPU " + std::to_string(cpu));
    return prev;
}

void restore_affinity(const std::vector<int>& cpus) {
    if (cpus.empty()) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c : cpus) CPU_SET(c, &set);
    (void)::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set);
}

}  // namespace kxlb::bench
