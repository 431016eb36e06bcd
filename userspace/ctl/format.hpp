// kxlbctl output: every view as an aligned table (human) or JSON (-j; -p pretty). JSON keys are
// stable and documented in docs/kxlbctl.md; numbers are JSON numbers; absent values are null.
// Every rendering ends with a newline.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ctl/cli.hpp"
#include "ctl/views.hpp"

namespace kxlb::ctl {

using Json = nlohmann::ordered_json;  // keys in the documented order

std::string render(const std::vector<ServiceRow>& services, OutputMode mode);
std::string render(const ServiceDetail& service, OutputMode mode);
std::string render(const std::vector<BackendRow>& backends, OutputMode mode);
std::string render(const MaglevView& maglev, OutputMode mode);
std::string render(const FlowList& flows, OutputMode mode);
std::string render(const FlushResult& flush, OutputMode mode);
std::string render(const StatsView& stats, OutputMode mode);
std::string render(const TraceResult& trace, OutputMode mode);
std::string render_version(OutputMode mode);
// Table mode: "kxlbctl: error: <message>" (for stderr); JSON: {"error": "<message>"} (for stdout).
std::string render_error(const std::string& message, OutputMode mode);

// The JSON objects behind render() (for embedding and tests).
Json to_json(const ServiceRow& s);
Json to_json(const BackendRow& b);
Json to_json(const FlowRow& f);
Json to_json(const TraceHeaders& h);

// Shared vocabulary.
std::string service_flags_str(std::uint32_t flags);  // "socket-lb,dsr", "-" for none
std::string flow_state_str(std::uint32_t ct_flags);  // "open", "fin-client", "fin-backend", "closed"
std::string verdict_name(std::uint32_t xdp_action);  // "XDP_TX", ...
std::string age_str(std::uint64_t ms);               // "0.4s", "12m05s", "3h07m"

}  // namespace kxlb::ctl
