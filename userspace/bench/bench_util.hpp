// Shared helpers of kxlb-bench: a programmed kxlb datapath instance, lab commands that must succeed,
// counter deltas, CPU pinning.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lab/lab.hpp"
#include "lib/abi.hpp"
#include "lib/lb_inspect.hpp"
#include "lib/lb_maps.hpp"
#include "lib/lb_programmer.hpp"
#include "lib/lb_types.hpp"
#include "lib/result.hpp"
#include "lib/xdp_programs.hpp"

namespace kxlb::bench {

using Reasons = std::array<kxlb_counter, kReasonCount>;

// The datapath program with its maps programmed through the real LbProgrammer. Not movable (the
// programmer keeps a reference to the maps): held by unique_ptr.
class LbInstance {
public:
    // flow_cache: the datapath's per-CPU flow cache on (as deployed) or off (every frame via conntrack).
    static Result<std::unique_ptr<LbInstance>> create(const LbConfig& cfg, std::uint32_t ct_entries,
                                                      bool flow_cache = true);

    XdpLbProgram& program() { return *prog_; }
    BpfLbMaps& maps() { return *maps_; }
    LbProgrammer& programmer() { return *programmer_; }
    const LbCounters& counters() const { return *counters_; }
    const LbMapFds& fds() const { return fds_; }
    std::uint32_t ct_entries() const { return ct_entries_; }

    Result<Reasons> reasons() const { return counters_->reasons(); }
    Result<kxlb_lb_counter> service(std::uint32_t id) const { return counters_->service(id); }

private:
    LbInstance() = default;
    std::optional<XdpLbProgram> prog_;
    std::optional<BpfLbMaps> maps_;
    std::optional<LbProgrammer> programmer_;
    std::optional<LbCounters> counters_;
    LbMapFds fds_;
    std::uint32_t ct_entries_ = 0;
};

// "what: ok" summary of a reason-counter delta: every reason that moved, e.g. "fwd_tx +1000000".
std::string describe_delta(const Reasons& before, const Reasons& after);
// True if exactly `reason` moved by `n` packets and no other reason moved.
bool only_reason_moved(const Reasons& before, const Reasons& after, kxlb_reason reason, std::uint64_t n);

// Number of keys in a hash map (walks it with get_next_key; at most `limit` steps).
Result<std::uint64_t> count_keys(int map_fd, std::uint32_t key_size, std::uint64_t limit);

// Runs argv inside a lab namespace; a non-zero exit is an error carrying the command's stderr.
Status must_run(lab::Lab& lab, std::string_view ns, const std::vector<std::string>& argv);
Result<std::string> must_run_output(lab::Lab& lab, std::string_view ns, const std::vector<std::string>& argv);

// SIGINT/SIGTERM set a flag that every measurement loop checks, so an interrupted run unwinds normally and the
// lab (namespaces, XDP links, iptables rules inside them) is torn down by its destructors.
void install_stop_handlers();
bool stop_requested();

// Pins the calling thread to one CPU; returns its previous affinity mask (restore with restore_affinity).
Result<std::vector<int>> pin_thread(int cpu);
void restore_affinity(const std::vector<int>& cpus);
int online_cpus();

}  // namespace kxlb::bench
