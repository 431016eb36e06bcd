// Routes libbpf's diagnostics into spdlog (verifier logs, load errors) with matching levels.
#pragma once

namespace kxlb {

// Idempotent; call once at process start (agent, CLI, tests).
void route_libbpf_log_to_spdlog();

}  // namespace kxlb
