// Part A of kxlb-bench: nanoseconds per packet of XDP programs measured with BPF_PROG_TEST_RUN, one call
// (repeat=1) per packet so every iteration sees the intended input frame, with each case's path proven by
// its verdict and output on every iteration and by exact counter deltas afterwards.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/result.hpp"

namespace kxlb::bench {

struct NsCaseResult {
    std::string name;
    std::uint64_t iterations = 0;
    double mean_ns = 0;  // mean of the kernel-reported durations (one program run each)
    double p50_ns = 0;   // median and 99th percentile, for judging noise
    double p99_ns = 0;
    double base_ns = 0;  // mean of the xdp_pass runs interleaved with this case: what "net" subtracts
    std::optional<double> target_net_ns;
    bool is_floor = false;
    bool path_ok = false;  // every verdict/output check passed and the counter deltas are exact
    std::string proof;     // what was checked, or what went wrong
};

struct NsBenchReport {
    std::vector<NsCaseResult> cases;
    double baseline_ns = 0;  // mean of the cases' base_ns, for the header
    int cpu = 0;
    std::string notes;
};

struct NsBenchOptions {
    std::uint64_t iterations = 1'000'000;  // program runs per case
    int cpu = -1;                          // CPU to pin to (-1: the last online CPU)
    std::string filter;                    // run only cases whose name contains this (baselines always run)
};

Result<NsBenchReport> run_ns_bench(const NsBenchOptions& opts);

}  // namespace kxlb::bench
