// kxlb-agent entry point: parse flags, load and validate the configuration, then either check it,
// uninstall the pinned datapath, or run the agent until SIGINT/SIGTERM (leaving the datapath pinned
// so the next agent adopts it without dropping a connection).
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include "agent/agent.hpp"
#include "agent/datapath.hpp"
#include "agent/logging.hpp"
#include "lib/libbpf_log.hpp"
#include "lib/pinning.hpp"

int main(int argc, char** argv) {
    CLI::App app{"kxlb-agent: kernel-accelerated L4 load balancer node agent"};
    std::string config_path;
    std::string pin_path;
    bool check = false;
    bool uninstall = false;
    app.add_option("-c,--config", config_path, "Agent configuration (YAML, see docs/agent.md)");
    app.add_flag("--check", check, "Validate the configuration and exit (0: valid)");
    app.add_flag("--uninstall", uninstall,
                 "Detach every kxlb program and remove all pinned maps and links (drops established flows)");
    app.add_option("--pin-path", pin_path, "With --uninstall and no --config: the pin path (default /sys/fs/bpf/kxlb)");
    app.set_version_flag("--version", KXLB_VERSION);
    CLI11_PARSE(app, argc, argv);

    kxlb::route_libbpf_log_to_spdlog();
    if (uninstall) {
        std::string root = pin_path.empty() ? kxlb::agent::AgentConfig{}.pin_path : pin_path;
        if (!config_path.empty() && pin_path.empty()) {
            auto cfg = kxlb::agent::load_config(config_path);
            if (!cfg) {
                spdlog::error("{}", cfg.error().message);
                return 2;
            }
            root = cfg->pin_path;
        }
        const int filters = kxlb::agent::remove_tc_filters(kxlb::PinLayout{root});
        if (filters) spdlog::info("uninstall: removed the tc egress filter from {} interfaces", filters);
        auto removed = kxlb::remove_pinned(kxlb::PinLayout{root});
        if (!removed) {
            spdlog::error("uninstall: {}", removed.error().message);
            return 1;
        }
        spdlog::info("uninstalled: removed {} pinned objects under {}", *removed, root);
        return 0;
    }
    if (config_path.empty()) {
        spdlog::error("--config is required (see kxlb-agent --help)");
        return 2;
    }
    auto cfg = kxlb::agent::load_config(config_path);
    if (!cfg) {
        spdlog::error("invalid configuration:\n{}", cfg.error().message);
        return 2;
    }
    if (check) {
        spdlog::info("{}: valid ({} services)", config_path, cfg->services.size());
        return 0;
    }
    if (auto st = kxlb::agent::configure_logging(cfg->log_level, cfg->log_format); !st) {
        spdlog::error("{}", st.error().message);
        return 2;
    }
    auto agent = kxlb::agent::Agent::start(std::move(cfg).value(), config_path);
    if (!agent) {
        spdlog::error("start-up failed: {}", agent.error().message);
        return 1;
    }
    if (auto st = (*agent)->run(); !st) {
        spdlog::error("event loop: {}", st.error().message);
        return 1;
    }
    return 0;
}
