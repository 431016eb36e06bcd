// Part B of kxlb-bench: packets per second forwarded through a netns lab (generator -> node -> sink over veth,
// native XDP everywhere it is used), comparing kxlb, the XDP_TX reflector and iptables DNAT+MASQUERADE in the
// same run and topology.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lib/result.hpp"

namespace kxlb::bench {

struct PpsResult {
    std::string setup;  // "reflector", "kxlb", "iptables"
    int threads = 0;
    int rounds = 0;                   // measured rounds, interleaved with the other setups
    double seconds = 0;               // wall time, summed over rounds
    double cpu_seconds = 0;           // CPU time of the generator threads, summed (includes the softirq work they ran)
    std::uint64_t offered = 0;        // frames the generator handed to the kernel
    std::uint64_t delivered = 0;      // frames counted where they end (sink or, for the reflector, the generator)
    double pps = 0;                   // delivered / seconds
    double pps_min = 0, pps_max = 0;  // spread over rounds
    double pps_per_cpu = 0;           // delivered / cpu_seconds: the chain's cost, insensitive to CPU contention
    std::string proof;                // counters that show the path
};

struct PpsBenchReport {
    std::vector<PpsResult> runs;
    std::string notes;
};

struct PpsBenchOptions {
    double seconds = 3.0;  // per setup and thread count, split into `rounds` interleaved rounds
    int rounds = 3;
    double warmup = 0.3;  // unmeasured run of each setup before its first round
    int max_threads = 2;
    std::uint16_t flows = 1024;  // source ports the generator cycles over
    std::string filter;          // only setups whose name contains this
};

Result<PpsBenchReport> run_pps_bench(const PpsBenchOptions& opts);

}  // namespace kxlb::bench
