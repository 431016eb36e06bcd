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

void Reconciler::set_services(std::vector<ServiceConfig> services) {
    services_ = std::move(services);
    index_.clear();
    for (std::size_t i = 0; i < services_.size(); ++i) index_.emplace(services_[i].name, i);
    // Forget health and history of backends (and services) that are gone.
    std::set<BackendRef> live;
    for (const auto& s : services_)
        for (const auto& b : s.backends) live.insert(BackendRef{s.name, identity_of(b)});
    std::erase_if(health_, [&](const auto& kv) { return !live.count(kv.first); });
    std::map<std::string, std::set<BackendIdentity>> kept;
    for (const auto& s : services_) {
        auto it = last_healthy_.find(s.name);
        if (it == last_healthy_.end()) continue;
        std::set<BackendIdentity> still;
        for (const auto& id : it->second)
            if (live.count(BackendRef{s.name, id})) still.insert(id);
        if (!still.empty()) kept.emplace(s.name, std::move(still));
    }
    last_healthy_ = std::move(kept);
    for (const auto& s : services_) remember_healthy(s);
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
    auto it = index_.find(service);
    return it == index_.end() ? nullptr : &services_[it->second];
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
    for (const auto& svc : services_) desired_of(svc, out);
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
                    BackendSpec{b.addr, b.port, b.weight, b.draining || !serving.count(identity_of(b))});
            }
            // Config order carries no meaning: a reordered list must not look like a change.
            std::sort(spec.backends.begin(), spec.backends.end(),
                      [](const BackendSpec& a, const BackendSpec& b) { return a.identity() < b.identity(); });
            out.push_back(std::move(spec));
        }
    }
}

ApplyReport Reconciler::apply(LbProgrammer& programmer) const {
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

ApplyReport Reconciler::apply_service(LbProgrammer& programmer, const std::string& service) const {
    ApplyReport report;
    upsert_changed(programmer, desired(service), report);
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
