// kxlb-agent's core: wires the configuration, the datapath, the reconciler, the health prober and
// netlink into one event loop. Every change (probe decision, config reload, link or address event)
// is applied to the BPF maps from the loop callback that observed it.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "agent/config.hpp"
#include "agent/datapath.hpp"
#include "agent/event_loop.hpp"
#include "agent/k8s_source.hpp"
#include "agent/metrics.hpp"
#include "agent/netlink.hpp"
#include "agent/prober.hpp"
#include "agent/reconciler.hpp"

namespace kxlb::agent {

// Counters the agent keeps about itself (exported as metrics).
struct AgentStats {
    std::uint64_t reloads_ok = 0;
    std::uint64_t reloads_failed = 0;
    std::uint64_t map_errors = 0;  // failed frontend applies (each is retried)
    std::uint64_t applies = 0;
};

// The datapath-wide settings for cfg, with node addresses from cfg or else auto-detected.
LbConfig lb_config(const AgentConfig& cfg, const std::vector<LinkInfo>& links, const std::vector<AddrInfo>& addrs);

class Agent final : public Prober::Observer {
public:
    // Loads/adopts the datapath, programs the configured services, attaches to the interfaces that
    // exist and starts probing. Fails (leaving what was pinned before untouched or consistent) on
    // any error; the caller exits non-zero.
    static Result<std::unique_ptr<Agent>> start(AgentConfig cfg, std::string config_path);
    ~Agent() override;

    // Serves until SIGINT/SIGTERM (which leave everything pinned and attached: the next agent adopts
    // it). SIGHUP or a change of the config file reloads.
    Status run();

    const AgentStats& stats() const { return stats_; }

private:
    Agent() = default;
    struct TargetKey {
        BackendRef ref;
        IpAddr addr;
        std::uint16_t port;
        HealthCheckSpec spec;
        bool operator<(const TargetKey& o) const;
    };

    Status init(AgentConfig cfg, std::string config_path);
    void on_transition(TargetId id, bool healthy) override;  // Prober::Observer
    void on_result(TargetId id, const ProbeResult& result) override;
    void update_readiness();
    // Applies every service, or only `services` (sorted; after a Kubernetes delta or a health change).
    void apply(const std::vector<std::string>* services = nullptr);
    void schedule_retry();
    void reload();
    // Probes (and health series) follow the configured backends: of every service, or only of
    // `services` (sorted).
    void sync_probes(const std::vector<std::string>* services = nullptr);
    void sync_interfaces();
    // Loads the DSR decapsulation program when dsr_decap gets interfaces, and keeps its address map
    // at dsr_decap.addresses (or the node addresses).
    void sync_decap();
    void sync_node_config();
    void on_netlink();
    void on_signal();
    Status watch_config_file();
    void on_config_file_event();
    // Programs the config file's services merged with the Kubernetes ones (the file wins on a clash).
    void rebuild_services();
    void on_k8s_change();
    // Programs a Kubernetes delta without a full merge; false (nothing done) when only a full merge
    // gives the right result (see merges_cleanly).
    bool apply_k8s_delta(const std::vector<std::string>& names);
    void refresh_k8s_metrics();
    std::vector<IpAddr> node_addresses() const;

    AgentConfig cfg_;
    std::string config_path_;
    std::unique_ptr<EventLoop> loop_;
    std::optional<NetlinkMonitor> netlink_;
    std::vector<LinkInfo> links_;
    std::vector<AddrInfo> addrs_;
    std::unique_ptr<NodeDatapath> datapath_;
    std::unique_ptr<DecapDatapath> decap_;  // null while dsr_decap has no interfaces
    Reconciler reconciler_;
    std::unique_ptr<Prober> prober_;
    std::unique_ptr<KubernetesSource> k8s_;        // null unless kubernetes.enabled
    std::vector<std::string> conflicts_;           // last logged merge conflicts
    std::optional<EventLoop::TimerId> k8s_timer_;  // periodic metrics refresh
    std::map<TargetKey, TargetId> targets_;
    std::map<TargetId, BackendRef> target_refs_;
    TargetId next_target_ = 1;
    std::optional<LbConfig> lb_config_;
    UniqueFd signal_fd_;
    UniqueFd inotify_fd_;
    std::optional<EventLoop::TimerId> retry_timer_;
    std::optional<EventLoop::TimerId> reload_timer_;
    std::chrono::milliseconds retry_delay_{250};
    AgentStats stats_;
    bool started_ = false;
    bool last_apply_ok_ = false;
    // Last: its HTTP connections live in loop_ and it reads datapath_, so it goes first.
    std::unique_ptr<AgentMetrics> metrics_ = std::make_unique<AgentMetrics>();
};

}  // namespace kxlb::agent
