// Part D of kxlb-bench: the real kxlb-agent with kubernetes.enabled, fed by the fake apiserver
// (tests/k8s/fake_apiserver.py): EndpointSlice change -> BPF maps latency at N services, and the
// agent's resident memory idle and with N services x 10 endpoints.
#pragma once

#include <string>

#include "lib/result.hpp"

namespace kxlb::bench {

struct K8sBenchOptions {
    int services = 10000;
    int endpoints = 10;  // per EndpointSlice (one slice per Service)
    int changes = 50;    // EndpointSlice changes timed
    std::string agent_bin;
    std::string fake_apiserver;  // tests/k8s/fake_apiserver.py
};

// Prints its report to stdout.
Status run_k8s_bench(const K8sBenchOptions& opts);

}  // namespace kxlb::bench
