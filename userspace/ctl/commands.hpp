// Executes a parsed kxlbctl command against the maps pinned under its --pin-path and renders the
// result (table or JSON).
#pragma once

#include <string>

#include "ctl/cli.hpp"
#include "lib/result.hpp"

namespace kxlb::ctl {

// The command's complete output (newline-terminated), or the error that stopped it.
Result<std::string> execute(const Invocation& inv);

}  // namespace kxlb::ctl
