// kxlb-agent entry point. Current scope: load the embedded XDP datapath, attach it natively (or
// generic, only when asked) to the given interfaces, and log what the parser sees until signalled.
// Configuration, health probes, reconciling and pinning come with the agent issue.
#include <net/if.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <thread>
#include <vector>

#include "lib/libbpf_log.hpp"
#include "lib/xdp_programs.hpp"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

void log_stats(const kxlb::ParseStats& stats) {
    std::string line;
    for (std::size_t i = 0; i < kxlb::kParseStatCount; ++i) {
        if (stats.by_id[i].packets == 0) continue;
        line += fmt::format(" {}={}", kxlb::kParseStatNames[i], stats.by_id[i].packets);
    }
    spdlog::info("parser:{}", line.empty() ? " (no traffic)" : line);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"kxlb-agent: kernel-accelerated L4 load balancer node agent"};
    std::vector<std::string> interfaces;
    bool generic = false;
    double interval_s = 5.0;
    std::string level = "info";
    app.add_option("-i,--interface", interfaces, "Interface to attach the XDP datapath to")->required();
    app.add_flag("--xdp-generic", generic, "Attach in generic (skb) mode instead of native; slow, logs a warning");
    app.add_option("--stats-interval", interval_s, "Seconds between counter log lines")->check(CLI::Range(0.1, 3600.0));
    app.add_option("--log-level", level, "trace|debug|info|warn|error")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
    app.set_version_flag("--version", KXLB_VERSION);
    CLI11_PARSE(app, argc, argv);

    spdlog::set_level(spdlog::level::from_str(level));
    kxlb::route_libbpf_log_to_spdlog();
    const auto mode = generic ? kxlb::XdpMode::Generic : kxlb::XdpMode::Native;
    if (generic) spdlog::warn("XDP generic mode requested: packets take the slow skb path");

    auto prog = kxlb::XdpLbProgram::load();
    if (!prog) {
        spdlog::error("loading the datapath failed: {}", prog.error().message);
        return 1;
    }
    std::vector<kxlb::Link> links;
    for (const auto& name : interfaces) {
        unsigned idx = if_nametoindex(name.c_str());
        if (idx == 0) {
            spdlog::error("interface {}: not found", name);
            return 1;
        }
        auto link = prog->attach(static_cast<int>(idx), mode);
        if (!link) {
            spdlog::error("interface {}: {}", name, link.error().message);
            return 1;
        }
        spdlog::info("attached to {} (ifindex {}, {} mode)", name, idx, kxlb::to_string(mode));
        links.push_back(std::move(link).value());
    }

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    const auto interval = std::chrono::duration<double>(interval_s);
    auto next = std::chrono::steady_clock::now() + interval;
    while (!g_stop) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (std::chrono::steady_clock::now() < next) continue;
        next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval);
        if (auto stats = prog->parse_stats(); stats) log_stats(*stats);
        else spdlog::warn("reading counters: {}", stats.error().message);
    }
    if (auto stats = prog->parse_stats(); stats) log_stats(*stats);
    spdlog::info("detaching and exiting");
    return 0;
}
