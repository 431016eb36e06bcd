// Part A of kxlb-bench: nanoseconds per packet of XDP programs measured with BPF_PROG_TEST_RUN, two ways:
//  - repeat1: one call (repeat=1) per packet so every iteration sees the intended input frame, the verdict and
//    output of every iteration checked;
//  - loop: repeat=R per call through wrappers (bpf/xdp_lb_bench.bpf.c) that restore the input before every run,
//    so the kernel's per-run duration is amortized over R runs; each call's (last run's) verdict/output checked.
// Either way each case's path is proven by exact counter deltas afterwards.
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
    // loop method only: per-call means (kernel duration / R, integer ns) min/max, and wall-clock time per run
    // (userspace clock around each call / R: sub-ns resolution, includes the per-call setup / R)
    double min_ns = 0, max_ns = 0, base_min_ns = 0;
    double wall_ns = 0, wall_base_ns = 0;
    std::optional<double> target_net_ns;
    bool is_floor = false;
    bool path_ok = false;  // every verdict/output check passed and the counter deltas are exact
    std::string proof;     // what was checked, or what went wrong
};

struct NsBenchReport {
    std::vector<NsCaseResult> cases;       // method repeat1
    std::vector<NsCaseResult> loop_cases;  // method loop
    double baseline_ns = 0;                // mean of the cases' base_ns, for the header
    double loop_baseline_ns = 0;
    std::uint32_t loop_repeat = 0;  // R: runs per BPF_PROG_TEST_RUN call
    std::uint32_t loop_calls = 0;   // calls per case (and as many of the baseline, interleaved)
    int cpu = 0;
    std::string notes;
};

struct NsBenchOptions {
    std::uint64_t iterations = 1'000'000;  // program runs per case
    int cpu = -1;                          // CPU to pin to (-1: the last online CPU)
    std::string filter;                    // run only cases whose name contains this (baselines always run)
    bool repeat1 = true;                   // method repeat1 (table A1)
    bool loop = true;                      // method loop (table A2)
};

Result<NsBenchReport> run_ns_bench(const NsBenchOptions& opts);

}  // namespace kxlb::bench
