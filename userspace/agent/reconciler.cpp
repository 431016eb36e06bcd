// Reconciler: configured services + health -> ServiceSpecs -> minimal LbProgrammer writes.
#include "agent/reconciler.hpp"

#include <algorithm>

namespace kxlb::agent {

namespace {

BackendIdentity identity_of(const BackendConfig& b) { return BackendSpec{b.addr, b.port}.identity(); }

}  // namespace

std::uint32_t service_flags(const ServiceConfig& svc) {
    std::uint32_t flags = 0;
    if (svc.socket_lb) flags |= KXLB_SVC_F_SOCKET_LB;
    if (svc.mode == ServiceMode::Dsr) flags |= KXLB_SVC_F_DSR;
    return flags;
}

void Reconciler::set_services(const std::vector<ServiceConfig>& services) {
    std::vector<ServicePtr> ptrs;
    ptrs.reserve(services.size());
    for (const auto& s : services) ptrs.push_back(std::make_shared<const ServiceConfig>(s));
    set_services(std::move(ptrs));
}

void Reconciler::set_services(std::vector<ServicePtr> services) {
    std::map<std::string, ServicePtr> next;
    for (auto& s : services) next.emplace(s->name, std::move(s));
    for (const auto& [name, svc] : services_)
        if (!next.count(name)) forget_backends(name, nullptr);
    services_ = std::move(next);
    owners_.clear();
    for (const auto& [name, svc] : services_) {
        forget_backends(name, svc.get());
        for (const auto& fe : svc->frontends) owners_[fe] = name;
        remember_healthy(*svc);
    }
    withdrawn_.clear();  // apply() diffs everything
}

void Reconciler::update_services(const std::vector<ServiceChange>& changes) {
    for (const auto& ch : changes) {
        auto it = services_.find(ch.name);
        if (it != services_.end()) {
            for (const auto& fe : it->second->frontends) {
                auto o = owners_.find(fe);
                if (o != owners_.end() && o->second == ch.name) {
                    owners_.erase(o);
                    withdrawn_.insert(fe);
                }
            }
        }
        forget_backends(ch.name, ch.config.get());
        if (!ch.config) {
            if (it != services_.end()) services_.erase(it);
            continue;
        }
        services_[ch.name] = ch.config;
        for (const auto& fe : ch.config->frontends) owners_[fe] = ch.name;
        remember_healthy(*ch.config);
    }
    // A frontend that moved to another service is rewritten, not withdrawn and re-added.
    std::erase_if(withdrawn_, [&](const Frontend& fe) { return owners_.count(fe) != 0; });
}

void Reconciler::forget_backends(const std::string& name, const ServiceConfig* svc) {
    std::set<BackendIdentity> live;
    if (svc)
        for (const auto& b : svc->backends) live.insert(identity_of(b));
    for (auto it = health_.lower_bound(BackendRef{name, BackendIdentity{}});
         it != health_.end() && it->first.service == name;)
        it = live.count(it->first.backend) ? std::next(it) : health_.erase(it);
    auto lh = last_healthy_.find(name);
    if (lh == last_healthy_.end()) return;
    std::erase_if(lh->second, [&](const BackendIdentity& id) { return !live.count(id); });
    if (lh->second.empty()) last_healthy_.erase(lh);
}

bool Reconciler::set_node_addressing(std::set<IpAddr> own, std::vector<Cidr> via_nics) {
    std::sort(via_nics.begin(), via_nics.end());
    if (own == local_addrs_ && via_nics == via_nics_) return false;
    local_addrs_ = std::move(own);
    via_nics_ = std::move(via_nics);
    return true;
}

bool Reconciler::is_local(const BackendConfig& b) const {
    if (local_addrs_.count(b.addr)) return true;
    if (!b.local) return false;
    return std::none_of(via_nics_.begin(), via_nics_.end(), [&](const Cidr& c) {
        return c.addr.family == b.addr.family && Cidr{b.addr, c.prefix_len}.network() == c.network();
    });
}

const std::string* Reconciler::owner(const Frontend& fe) const {
    auto it = owners_.find(fe);
    return it == owners_.end() ? nullptr : &it->second;
}

bool Reconciler::healthy(const BackendRef& ref) const {
    auto it = health_.find(ref);
    return it == health_.end() || it->second;
}

void Reconciler::remember_healthy(const ServiceConfig& svc) {
    std::set<BackendIdentity> up;
    for (const auto& b : svc.backends)
        if (!b.draining && healthy(BackendRef{svc.name, identity_of(b)})) up.insert(identity_of(b));
    if (!up.empty()) last_healthy_[svc.name] = std::move(up);
}

const ServiceConfig* Reconciler::find(const std::string& service) const {
    auto it = services_.find(service);
    return it == services_.end() ? nullptr : it->second.get();
}

bool Reconciler::set_health(const BackendRef& ref, bool healthy_now) {
    const auto before = desired(ref.service);
    health_[ref] = healthy_now;
    if (const auto* s = find(ref.service)) remember_healthy(*s);
    return desired(ref.service) != before;
}

std::vector<ServiceSpec> Reconciler::desired(const std::string& service) const {
    std::vector<ServiceSpec> out;
    if (const auto* s = find(service)) desired_of(*s, out);
    return out;
}

std::vector<ServiceSpec> Reconciler::desired() const {
    std::vector<ServiceSpec> out;
    for (const auto& [name, svc] : services_) desired_of(*svc, out);
    return out;
}

void Reconciler::desired_of(const ServiceConfig& svc, std::vector<ServiceSpec>& out) const {
    {
        // Which backends take new flows.
        std::set<BackendIdentity> serving;
        for (const auto& b : svc.backends)  // draining backends (terminating endpoints) never take new flows
            if (!b.draining && healthy(BackendRef{svc.name, identity_of(b)})) serving.insert(identity_of(b));
        if (serving.empty() && svc.all_down == AllDownPolicy::KeepLastHealthy) {
            auto it = last_healthy_.find(svc.name);
            if (it != last_healthy_.end()) serving = it->second;
        }
        for (const auto& fe : svc.frontends) {
            ServiceSpec spec;
            spec.frontend = fe;
            spec.flags = service_flags(svc);
            spec.affinity_timeout_s =
                svc.affinity_timeout ? static_cast<std::uint32_t>(svc.affinity_timeout->count()) : 0;
            spec.source_ranges = svc.source_ranges;
            std::sort(spec.source_ranges.begin(), spec.source_ranges.end());
            spec.source_ranges.erase(std::unique(spec.source_ranges.begin(), spec.source_ranges.end()),
                                     spec.source_ranges.end());
            for (const auto& b : svc.backends) {
                if (b.addr.family != fe.addr.family) continue;
                spec.backends.push_back(
                    BackendSpec{b.addr, b.port, b.weight, b.draining || !serving.count(identity_of(b)), is_local(b)});
            }
            // Config order carries no meaning: a reordered list must not look like a change.
            std::sort(spec.backends.begin(), spec.backends.end(),
                      [](const BackendSpec& a, const BackendSpec& b) { return a.identity() < b.identity(); });
            out.push_back(std::move(spec));
        }
    }
}

ApplyReport Reconciler::apply(LbProgrammer& programmer) {
    withdrawn_.clear();
    ApplyReport report;
    const auto want = desired();
    std::set<Frontend> wanted;
    for (const auto& s : want) wanted.insert(s.frontend);
    // Removals first: a frontend moving between services must be free before it is re-added.
    std::vector<Frontend> stale;
    for (const auto& [fe, st] : programmer.services())
        if (!wanted.count(fe)) stale.push_back(fe);
    for (const auto& fe : stale) {
        if (auto s = programmer.remove_service(fe); !s) report.failures.push_back(fe.str() + ": " + s.error().message);
        else ++report.removed;
    }
    upsert_changed(programmer, want, report);
    return report;
}

ApplyReport Reconciler::apply_services(LbProgrammer& programmer, const std::vector<std::string>& services) {
    ApplyReport report;
    for (auto it = withdrawn_.begin(); it != withdrawn_.end();) {
        if (!programmer.service(*it)) {
            it = withdrawn_.erase(it);
            continue;
        }
        if (auto s = programmer.remove_service(*it); !s) {
            report.failures.push_back(it->str() + ": " + s.error().message);
            ++it;
        } else {
            ++report.removed;
            it = withdrawn_.erase(it);
        }
    }
    std::vector<ServiceSpec> want;
    for (const auto& name : services)
        if (const auto* s = find(name)) desired_of(*s, want);
    upsert_changed(programmer, want, report);
    return report;
}

void Reconciler::upsert_changed(LbProgrammer& programmer, const std::vector<ServiceSpec>& want, ApplyReport& report) {
    std::vector<ServiceSpec> changed;
    for (const auto& spec : want) {
        const auto* cur = programmer.service(spec.frontend);
        if (!cur || !(cur->spec == spec)) changed.push_back(spec);
    }
    if (changed.size() == 1) {  // the common case after a health change: no batch bookkeeping
        if (auto r = programmer.upsert_service(changed[0]); !r)
            report.failures.push_back(changed[0].frontend.str() + ": " + r.error().message);
        else ++report.upserted;
        return;
    }
    // Batches bound the memory of inner maps created but not yet published.
    constexpr std::size_t kBatch = 1024;
    for (std::size_t i = 0; i < changed.size(); i += kBatch) {
        const std::span<const ServiceSpec> chunk(changed.data() + i, std::min(kBatch, changed.size() - i));
        const auto failed = programmer.upsert_services(chunk);
        for (const auto& f : failed) report.failures.push_back(f.frontend.str() + ": " + f.error.message);
        report.upserted += static_cast<int>(chunk.size() - failed.size());
    }
}

}  // namespace kxlb::agent
