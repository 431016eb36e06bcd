// Agent logging through spdlog: level and format (human text, or one JSON object per line for log
// collectors) chosen by the configuration.
#pragma once

#include <string>

#include "lib/result.hpp"

namespace kxlb::agent {

// level: trace|debug|info|warn|error; format: text|json. Applies to the default logger (and so
// to libbpf's messages, which are routed into it).
Status configure_logging(const std::string& level, const std::string& format);

// The message escaped as the contents of a JSON string (quotes, backslash, control characters).
std::string json_escape(std::string_view s);

}  // namespace kxlb::agent
