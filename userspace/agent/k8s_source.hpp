// The agent's Kubernetes state source: watches Services and EndpointSlices (ClusterWatch on its own
// threads), maps changed services to ServiceConfigs on the agent's loop thread, programs the
// bootstrap apiserver service until default/kubernetes is known, and merges all of it with the
// config file's services (the file wins on a clash).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/config.hpp"
#include "agent/event_loop.hpp"
#include "agent/reconciler.hpp"
#include "k8s/cluster_store.hpp"
#include "k8s/mapping.hpp"

namespace kxlb::agent {

inline constexpr const char* kBootstrapServiceName = "kxlb-bootstrap-apiserver";

// The socket-LB service that reaches the apiservers before the API answers: apiserver_service (TCP)
// -> bootstrap_apiservers. nullopt when no bootstrap list is configured.
std::optional<ServiceConfig> bootstrap_service(const KubernetesConfig& cfg);

// The services to program: `first` in order, then `second`, where a service of `second` whose name is
// already taken is dropped and frontends already owned by an earlier service are removed from it (a
// service left without frontends is dropped). Every drop is described in `conflicts`.
struct MergedServices {
    std::vector<ServicePtr> services;
    std::vector<std::string> conflicts;
};
MergedServices merge_services(const std::vector<ServicePtr>& first, const std::vector<ServicePtr>& second);

// Whether a delta of `second`'s services, applied as is to a conflict-free merge result (one
// merge_services() without conflicts, then deltas that passed this check), gives exactly what a full
// merge_services() would. It does unless a changed (or removed) service clashes: its name is taken by a
// service of `first` (in_first), one of its frontends is held (owner) by a service outside the delta or claimed by
// another changed service, or it has backends of a family none of its frontends has. The caller
// falls back to a full merge then; conflicts are rare, deltas are the common case.
bool merges_cleanly(const std::vector<ServiceChange>& delta, const std::function<bool(const std::string&)>& in_first,
                    const std::function<const std::string*(const Frontend&)>& owner);

// The node name: cfg.node_name, else $NODE_NAME, else the host name.
std::string resolve_node_name(const KubernetesConfig& cfg);

struct KubernetesSourceStats {
    bool synced = false;
    std::uint64_t watch_failures = 0;  // failed lists/watches of both collections (each retried)
    std::uint64_t relists = 0;         // complete lists after the first ones (410 Gone, reconnects)
    std::uint64_t events = 0;
    std::size_t services = 0;  // mapped ServiceConfigs
    std::size_t skipped_ports = 0;
};

// What one KubernetesSource::update() changed in services().
struct KubernetesChanges {
    bool all = false;                // everything may have changed (first sync): rebuild
    std::vector<std::string> names;  // sorted: services added, changed or removed
    bool empty() const { return !all && names.empty(); }
};

// Threading: create(), start(), update(), set_node_addresses(), services() and the destructor run on
// the loop thread; the watch threads only feed the store and post a wake-up to the loop.
class KubernetesSource {
public:
    // Builds the API client (kubeconfig file, or in-cluster when cfg.kubeconfig is empty). on_change
    // runs on `loop`'s thread after the store has changes; it should call update(). `loop` must
    // outlive the source. Fails on an unusable client configuration.
    static Result<std::unique_ptr<KubernetesSource>> create(const KubernetesConfig& cfg, EventLoop& loop,
                                                            std::function<void()> on_change,
                                                            k8s::ListWatchOptions opts = {});
    ~KubernetesSource();  // stops the watchers (bounded: ~100 ms)
    KubernetesSource(const KubernetesSource&) = delete;
    KubernetesSource& operator=(const KubernetesSource&) = delete;

    void start();
    // Pulls the changed services from the store and re-maps them; the cost grows with the number of
    // changed Services, not with their total. Nothing is mapped before the store is synced.
    KubernetesChanges update();
    // The node's addresses (NodePort frontends) changed: re-maps everything. Returns true on change.
    bool set_node_addresses(std::vector<IpAddr> addrs);
    bool synced() const { return synced_; }
    // The bootstrap service while it is needed (no mapped service serves apiserver_service with a
    // backend that takes new flows yet), then the Kubernetes services, sorted by name.
    std::vector<ServicePtr> services() const;
    // One service as mapped (before the merge with the bootstrap service), the bootstrap service by
    // its name while needed; nullptr if there is no such service.
    ServicePtr service(const std::string& name) const;
    KubernetesSourceStats stats() const;
    const std::string& node_name() const { return node_.name; }

private:
    KubernetesSource(KubernetesConfig cfg, EventLoop& loop) : cfg_(std::move(cfg)), loop_(loop) {}
    // Re-maps one Service; adds the names of the configs that changed to `changed`.
    void remap(const std::string& key, std::set<std::string>& changed);
    bool bootstrap_needed() const { return boot_ && serving_apiserver_.empty(); }

    KubernetesConfig cfg_;
    EventLoop& loop_;
    k8s::NodeInfo node_;
    std::function<void()> on_change_;
    std::unique_ptr<k8s::ClusterStore> store_;
    std::unique_ptr<k8s::ClusterWatch> watch_;
    std::map<std::string, std::vector<ServicePtr>> mapped_;  // service key -> its configs
    std::map<std::string, ServicePtr> by_name_;              // every mapped config by name
    ServicePtr boot_;                                        // bootstrap_service(cfg_)
    // Mapped configs serving apiserver_service with a backend that takes new flows.
    std::set<std::string> serving_apiserver_;
    std::map<std::string, std::vector<std::string>> problems_;  // service key -> last logged problems
    std::map<std::string, std::size_t> skipped_;                // service key -> skipped ports
    bool synced_ = false;
    std::shared_ptr<std::atomic<bool>> pending_ = std::make_shared<std::atomic<bool>>(false);
    std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);
};

}  // namespace kxlb::agent
