// The agent's Kubernetes state source: ClusterWatch -> loop wake-up -> mapping -> merged services.
#include "agent/k8s_source.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
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

namespace {

// Full-NAT keeps the family: a backend no frontend of its service can use is never programmed.
bool usable(const ServiceConfig& s, const BackendConfig& b) {
    return std::any_of(s.frontends.begin(), s.frontends.end(),
                       [&](const Frontend& fe) { return fe.addr.family == b.addr.family; });
}

bool all_usable(const ServiceConfig& s) {
    return std::all_of(s.backends.begin(), s.backends.end(), [&](const BackendConfig& b) { return usable(s, b); });
}

}  // namespace

MergedServices merge_services(const std::vector<ServicePtr>& first, const std::vector<ServicePtr>& second) {
    MergedServices out;
    std::set<std::string> names;
    std::map<Frontend, std::string> owner;
    for (const auto& s : first) {
        names.insert(s->name);
        for (const auto& fe : s->frontends) owner.emplace(fe, s->name);
        out.services.push_back(s);
    }
    for (const auto& s : second) {
        if (names.count(s->name)) {
            out.conflicts.push_back("service " + s->name + " is defined already; the earlier definition wins");
            continue;
        }
        const bool clash = std::any_of(s->frontends.begin(), s->frontends.end(),
                                       [&](const Frontend& fe) { return owner.count(fe) != 0; });
        if (!clash && all_usable(*s)) {  // the common case: shared as is
            names.insert(s->name);
            for (const auto& fe : s->frontends) owner.emplace(fe, s->name);
            out.services.push_back(s);
            continue;
        }
        ServiceConfig c = *s;
        std::erase_if(c.frontends, [&](const Frontend& fe) {
            auto it = owner.find(fe);
            if (it == owner.end()) return false;
            out.conflicts.push_back("service " + s->name + ": frontend " + fe.str() + " belongs to " + it->second +
                                    "; not programmed for " + s->name);
            return true;
        });
        if (c.frontends.empty()) continue;
        std::erase_if(c.backends, [&](const BackendConfig& b) { return !usable(c, b); });
        names.insert(c.name);
        for (const auto& fe : c.frontends) owner.emplace(fe, c.name);
        out.services.push_back(std::make_shared<const ServiceConfig>(std::move(c)));
    }
    return out;
}

bool merges_cleanly(const std::vector<ServiceChange>& delta, const std::function<bool(const std::string&)>& in_first,
                    const std::function<const std::string*(const Frontend&)>& owner) {
    std::set<std::string> changed;
    for (const auto& ch : delta) changed.insert(ch.name);
    std::set<Frontend> claimed;
    for (const auto& ch : delta) {
        if (in_first(ch.name)) return false;  // also a removal: the name is the first list's service
        if (!ch.config) continue;
        if (!all_usable(*ch.config)) return false;
        for (const auto& fe : ch.config->frontends) {
            if (!claimed.insert(fe).second) return false;
            const std::string* o = owner(fe);
            if (o && *o != ch.name && !changed.count(*o)) return false;
        }
    }
    return true;
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
    if (auto boot = bootstrap_service(cfg)) s->boot_ = std::make_shared<const ServiceConfig>(std::move(*boot));
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

void KubernetesSource::remap(const std::string& key, std::set<std::string>& changed) {
    auto m = k8s::map_service(store_->get(key), node_);
    if (problems_[key] != m.problems) {
        for (const auto& p : m.problems) spdlog::warn("kubernetes: {}", p);
        problems_[key] = m.problems;
    }
    if (m.problems.empty()) problems_.erase(key);
    if (m.skipped_ports) skipped_[key] = m.skipped_ports;
    else skipped_.erase(key);

    std::vector<ServicePtr> next;
    next.reserve(m.services.size());
    for (auto& c : m.services) {
        auto it = by_name_.find(c.name);
        // An unchanged config keeps its object: whoever shares it sees no change.
        if (it != by_name_.end() && *it->second == c) next.push_back(it->second);
        else next.push_back(std::make_shared<const ServiceConfig>(std::move(c)));
    }
    auto old = mapped_.find(key);
    if (old != mapped_.end())
        for (const auto& s : old->second) {
            by_name_.erase(s->name);
            serving_apiserver_.erase(s->name);
            changed.insert(s->name);
        }
    const Frontend* api = boot_ ? &boot_->frontends.front() : nullptr;
    for (const auto& s : next) {
        by_name_[s->name] = s;
        if (old == mapped_.end() ||
            std::none_of(old->second.begin(), old->second.end(), [&](const ServicePtr& o) { return o == s; }))
            changed.insert(s->name);
        else changed.erase(s->name);
        if (api && std::find(s->frontends.begin(), s->frontends.end(), *api) != s->frontends.end() &&
            std::any_of(s->backends.begin(), s->backends.end(), [](const BackendConfig& b) { return !b.draining; }))
            serving_apiserver_.insert(s->name);
    }
    if (next.empty()) mapped_.erase(key);
    else mapped_[key] = std::move(next);
}

KubernetesChanges KubernetesSource::update() {
    const auto keys = store_->wait_changes(std::chrono::milliseconds(0));
    if (!store_->synced()) return {};
    KubernetesChanges out;
    if (!synced_) {
        synced_ = true;
        out.all = true;
        spdlog::info("kubernetes: initial lists complete ({} services)", store_->service_keys().size());
    }
    const bool boot_before = bootstrap_needed();
    std::set<std::string> changed;
    for (const auto& key : keys) remap(key, changed);
    if (bootstrap_needed() != boot_before) changed.insert(kBootstrapServiceName);
    out.names.assign(changed.begin(), changed.end());
    return out;
}

bool KubernetesSource::set_node_addresses(std::vector<IpAddr> addrs) {
    std::sort(addrs.begin(), addrs.end());
    if (addrs == node_.addresses) return false;
    node_.addresses = std::move(addrs);
    if (!synced_) return false;
    std::set<std::string> changed;
    for (const auto& key : store_->service_keys()) remap(key, changed);
    return !changed.empty();
}

std::vector<ServicePtr> KubernetesSource::services() const {
    std::vector<ServicePtr> k8s;
    k8s.reserve(by_name_.size());
    for (const auto& [name, s] : by_name_) k8s.push_back(s);  // sorted by name
    if (!bootstrap_needed()) return k8s;
    return merge_services({boot_}, k8s).services;
}

ServicePtr KubernetesSource::service(const std::string& name) const {
    if (name == kBootstrapServiceName) return bootstrap_needed() ? boot_ : nullptr;
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

KubernetesSourceStats KubernetesSource::stats() const {
    KubernetesSourceStats s;
    s.synced = synced_;
    for (const auto& w : {watch_->service_stats(), watch_->slice_stats()}) {
        s.watch_failures += w.failures;
        s.relists += w.lists > 0 ? w.lists - 1 : 0;
        s.events += w.events;
    }
    s.services = by_name_.size();
    for (const auto& [key, n] : skipped_) s.skipped_ports += n;
    return s;
}

}  // namespace kxlb::agent
