// Read side of the datapath: counters summed over CPUs, and conntrack listing/flushing. Works on
// any LbMapFds (a loaded program's maps now, pinned maps for kxlbctl later).
#pragma once

#include <array>
#include <optional>
#include <utility>
#include <vector>

#include "lib/abi.hpp"
#include "lib/bpf_map.hpp"
#include "lib/lb_maps.hpp"

namespace kxlb {

class LbCounters {
public:
    static Result<LbCounters> bind(const LbMapFds& fds);

    Result<std::array<kxlb_counter, kReasonCount>> reasons() const;
    Result<kxlb_lb_counter> service(std::uint32_t svc_id) const;
    Result<kxlb_lb_counter> backend(std::uint32_t backend_id) const;
    // The flow cache's hits, misses and fills; nullopt when the maps have no kxlb_fcache_stats
    // (pinned by an older agent).
    Result<std::optional<kxlb_flow_cache_counters>> flow_cache() const;

private:
    LbCounters(PerCpuArray<kxlb_counter> r, PerCpuArray<kxlb_lb_counter> s, PerCpuArray<kxlb_lb_counter> b,
               std::optional<PerCpuArray<kxlb_flow_cache_counters>> fc)
        : reasons_(r), svc_(s), backend_(b), flow_cache_(fc) {}
    PerCpuArray<kxlb_counter> reasons_;
    PerCpuArray<kxlb_lb_counter> svc_;
    PerCpuArray<kxlb_lb_counter> backend_;
    std::optional<PerCpuArray<kxlb_flow_cache_counters>> flow_cache_;
};

class Conntrack {
public:
    using Flow = std::pair<kxlb_flow_key, kxlb_ct_value>;
    using Nat = std::pair<kxlb_flow_key, kxlb_nat_value>;

    static Result<Conntrack> bind(const LbMapFds& fds);

    Result<std::vector<Flow>> flows() const;
    Result<std::vector<Nat>> nat_entries() const;
    // Deletes forward and reverse entries (of one service if svc_id is set), and empties the flow
    // cache. Flows that continue
    // afterwards are new flows again (a TCP ACK is recovered onto its Maglev backend and most
    // likely SNAT port; the backend resets it if that was not the connection's). Returns entries
    // removed.
    Result<std::size_t> flush(std::optional<std::uint32_t> svc_id = std::nullopt);

private:
    Conntrack(TypedMap<kxlb_flow_key, kxlb_ct_value> ct, TypedMap<kxlb_flow_key, kxlb_nat_value> nat, int flow_cache_fd)
        : ct_(ct), nat_(nat), flow_cache_fd_(flow_cache_fd) {}
    TypedMap<kxlb_flow_key, kxlb_ct_value> ct_;
    TypedMap<kxlb_flow_key, kxlb_nat_value> nat_;
    int flow_cache_fd_;  // -1: none
};

}  // namespace kxlb
