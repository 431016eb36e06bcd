// kxlbctl as a function: arguments in, output and exit code out, so the unit tier runs the real
// CLI without a process. Exit codes: 0 ok, 1 runtime error, 2 usage error. In JSON mode every
// error is {"error": "..."} on `out`; otherwise errors go to `err`.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace kxlb::ctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitUsage = 2;

// args: the command line without argv[0].
int run_kxlbctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace kxlb::ctl
