// The agent's Kubernetes state source: ClusterWatch -> loop wake-up -> mapping -> merged services.
#include "agent/k8s_source.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "k8s/api_client.hpp"
#include "k8s/kube_config.hpp"

namespace kxlb::agent {

std::optional<ServiceConfig> bootstrap_service(const KubernetesConfig& cfg) {
    if (cfg.bootstrap_apiservers.empty() || !cfg.apiserver_service) return std::nullopt;
    ServiceConfig s;
    s.name = kBootstrapServiceName;
    s.socket_lb = true;
    s.frontends.push_back(Frontend{cfg.apiserver_service->addr, cfg.apiserver_service->port, IPPROTO_TCP});
    for (const auto& e : cfg.bootstrap_apiservers) s.backends.push_back(BackendConfig{e.addr, e.port});
    return s;
}

MergedServices merge_services(const std::vector<ServiceConfig>& first, const std::vector<ServiceConfig>& second) {
    MergedServices out;
    std::set<std::string> names;
    std::map<Frontend, std::string> owner;
    for (const auto& s : first) {
        names.insert(s.name);
        for (const auto& fe : s.frontends) owner.emplace(fe, s.name);
        out.services.push_back(s);
    }
    for (const auto& s : second) {
        if (names.count(s.name)) {
            out.conflicts.push_back("service " + s.name + " is defined already; the earlier definition wins");
            continue;
        }
        ServiceConfig c = s;
        std::erase_if(c.frontends, [&](const Frontend& fe) {
            auto it = owner.find(fe);
            if (it == owner.end()) return false;
            out.conflicts.push_back("service " + s.name + ": frontend " + fe.str() + " belongs to " + it->second +
                                    "; not programmed for " + s.name);
            return true;
        });
        if (c.frontends.empty()) continue;
        // Full-NAT keeps the family: drop backends no remaining frontend can use.
        std::erase_if(c.backends, [&](const BackendConfig& b) {
            return std::none_of(c.frontends.begin(), c.frontends.end(),
                                [&](const Frontend& fe) { return fe.addr.family == b.addr.family; });
        });
        names.insert(c.name);
        for (const auto& fe : c.frontends) owner.emplace(fe, c.name);
        out.services.push_back(std::move(c));
    }
    return out;
}

std::string resolve_node_name(const KubernetesConfig& cfg) {
    if (!cfg.node_name.empty()) return cfg.node_name;
    if (const char* n = std::getenv("NODE_NAME"); n && *n) return n;
    char host[256] = {};
    if (::gethostname(host, sizeof(host) - 1) == 0) return host;
    return "";
}

Result<std::unique_ptr<KubernetesSource>> KubernetesSource::create(const KubernetesConfig& cfg, EventLoop& loop,
                                                                   std::function<void()> on_change,
                                                                   k8s::ListWatchOptions opts) {
    auto kc = cfg.kubeconfig.empty() ? k8s::load_in_cluster() : k8s::load_kubeconfig(cfg.kubeconfig);
    if (!kc) return Error{kc.error().code, "kubernetes client configuration: " + kc.error().message};
    auto client = k8s::ApiClient::create(std::move(kc).value());
    if (!client) return Error{client.error().code, "kubernetes client: " + client.error().message};
    std::unique_ptr<KubernetesSource> s(new KubernetesSource(cfg, loop));
    s->node_.name = resolve_node_name(cfg);
    s->on_change_ = std::move(on_change);
    s->store_ = std::make_unique<k8s::ClusterStore>(
        [](const Error& e) { spdlog::warn("kubernetes: ignoring an invalid object: {}", e.message); });
    s->store_->set_notify([&loop, pending = s->pending_, alive = s->alive_, src = s.get()] {
        if (pending->exchange(true)) return;  // a wake-up is queued already
        loop.post([pending, alive, src] {
            pending->store(false);
            if (alive->load()) src->on_change_();
        });
    });
    s->watch_ = std::make_unique<k8s::ClusterWatch>(std::move(client).value(), *s->store_, opts, [](const Error& e) {
        spdlog::warn("kubernetes API: {} (retrying; the programmed state stays)", e.message);
    });
    return s;
}

KubernetesSource::~KubernetesSource() {
    alive_->store(false);
    if (watch_) watch_->stop();
}

void KubernetesSource::start() {
    spdlog::info("kubernetes: watching services and endpointslices as node {}", node_.name);
    watch_->start();
}

void KubernetesSource::remap(const std::string& key) {
    auto m = k8s::map_service(store_->get(key), node_);
    if (problems_[key] != m.problems) {
        for (const auto& p : m.problems) spdlog::warn("kubernetes: {}", p);
        problems_[key] = m.problems;
    }
    if (m.problems.empty()) problems_.erase(key);
    if (m.skipped_ports) skipped_[key] = m.skipped_ports;
    else skipped_.erase(key);
    if (m.services.empty()) mapped_.erase(key);
    else mapped_[key] = std::move(m.services);
}

bool KubernetesSource::update() {
    const auto keys = store_->wait_changes(std::chrono::milliseconds(0));
    if (!store_->synced()) return false;
    const bool first = !synced_;
    synced_ = true;
    if (first) spdlog::info("kubernetes: initial lists complete ({} services)", store_->service_keys().size());
    const auto before = services();
    for (const auto& key : keys) remap(key);
    return first || services() != before;
}

bool KubernetesSource::set_node_addresses(std::vector<IpAddr> addrs) {
    std::sort(addrs.begin(), addrs.end());
    if (addrs == node_.addresses) return false;
    node_.addresses = std::move(addrs);
    if (!synced_) return false;
    const auto before = services();
    mapped_.clear();
    for (const auto& key : store_->service_keys()) remap(key);
    return services() != before;
}

std::vector<ServiceConfig> KubernetesSource::services() const {
    std::vector<ServiceConfig> k8s;
    for (const auto& [key, v] : mapped_) k8s.insert(k8s.end(), v.begin(), v.end());
    std::sort(k8s.begin(), k8s.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    auto boot = bootstrap_service(cfg_);
    if (!boot) return k8s;
    const Frontend& fe = boot->frontends.front();
    const bool replaced = std::any_of(k8s.begin(), k8s.end(), [&](const ServiceConfig& s) {
        return std::find(s.frontends.begin(), s.frontends.end(), fe) != s.frontends.end() &&
               std::any_of(s.backends.begin(), s.backends.end(), [](const BackendConfig& b) { return !b.draining; });
    });
    if (replaced) return k8s;
    return merge_services({*boot}, k8s).services;
}

KubernetesSourceStats KubernetesSource::stats() const {
    KubernetesSourceStats s;
    s.synced = synced_;
    for (const auto& w : {watch_->service_stats(), watch_->slice_stats()}) {
        s.watch_failures += w.failures;
        s.relists += w.lists > 0 ? w.lists - 1 : 0;
        s.events += w.events;
    }
    for (const auto& [key, v] : mapped_) s.services += v.size();
    for (const auto& [key, n] : skipped_) s.skipped_ports += n;
    return s;
}

}  // namespace kxlb::agent
