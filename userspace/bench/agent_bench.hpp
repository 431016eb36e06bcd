// Part C of kxlb-bench: the agent's control plane. How long a health decision takes to reach the
// BPF maps, how long programming 10,000 services x 10 backends takes compared with
// iptables-restore of the equivalent kube-proxy ruleset, and the agent's resident memory.
#pragma once

#include <string>

#include "lib/result.hpp"

namespace kxlb::bench {

struct AgentBenchOptions {
    int services = 10000;
    int backends = 10;                 // per service
    int flips = 2000;                  // health decisions timed
    std::uint32_t maglev_size = 1021;  // per-service table for the 10k-service runs (>= 100 x backends)
    std::string agent_bin;             // kxlb-agent, for the memory figures
    bool quick = false;
};

// Prints its report to stdout.
Status run_agent_bench(const AgentBenchOptions& opts);

}  // namespace kxlb::bench
