// Top level of kxlbctl: parse, execute, map outcomes to output streams and exit codes.
#include "ctl/app.hpp"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>

#include "ctl/cli.hpp"
#include "ctl/commands.hpp"
#include "ctl/format.hpp"

namespace kxlb::ctl {

namespace {

// libbpf warnings to stderr (stdout is reserved for the output, e.g. JSON); info/debug dropped.
int libbpf_warnings_only(enum libbpf_print_level level, const char* fmt, va_list args) {
    if (level != LIBBPF_WARN) return 0;
    return std::vfprintf(stderr, fmt, args);
}

void report(const std::string& message, bool json, bool usage, std::ostream& out, std::ostream& err) {
    if (json) {
        out << render_error(message, OutputMode::Json);
        return;
    }
    err << render_error(message, OutputMode::Table);
    if (usage) err << "Run 'kxlbctl --help' for usage.\n";
}

}  // namespace

int run_kxlbctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
    libbpf_set_print(libbpf_warnings_only);
    auto parsed = parse_command_line(args);
    if (auto* help = std::get_if<HelpRequest>(&parsed)) {
        out << help->text;
        return kExitOk;
    }
    if (auto* usage = std::get_if<UsageError>(&parsed)) {
        report(usage->message, usage->json, true, out, err);
        return kExitUsage;
    }
    const auto& inv = std::get<Invocation>(parsed);
    auto result = execute(inv);
    if (!result) {
        report(result.error().message, inv.global.json(), false, out, err);
        return kExitRuntime;
    }
    out << *result;
    return kExitOk;
}

}  // namespace kxlb::ctl
