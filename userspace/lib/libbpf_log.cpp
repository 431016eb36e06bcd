// libbpf print callback -> spdlog.
#include "lib/libbpf_log.hpp"

#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <cstdarg>
#include <cstdio>
#include <string_view>

namespace kxlb {
namespace {

int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
    char buf[1024];
    int n = std::vsnprintf(buf, sizeof(buf), fmt, args);
    if (n < 0) return n;
    std::string_view msg(buf,
                         static_cast<std::size_t>(n) < sizeof(buf) ? static_cast<std::size_t>(n) : sizeof(buf) - 1);
    while (!msg.empty() && msg.back() == '\n') msg.remove_suffix(1);
    switch (level) {
        case LIBBPF_WARN: spdlog::warn("libbpf: {}", msg); break;
        case LIBBPF_INFO: spdlog::debug("libbpf: {}", msg); break;  // chatty at info
        case LIBBPF_DEBUG: spdlog::trace("libbpf: {}", msg); break;
    }
    return n;
}

}  // namespace

void route_libbpf_log_to_spdlog() { libbpf_set_print(libbpf_print); }

}  // namespace kxlb
