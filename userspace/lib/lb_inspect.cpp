// Counter summing and conntrack walks over the datapath maps.
#include "lib/lb_inspect.hpp"

namespace kxlb {

namespace {

kxlb_lb_counter sum(const std::vector<kxlb_lb_counter>& per_cpu) {
    kxlb_lb_counter out{};
    for (const auto& c : per_cpu) {
        out.packets += c.packets;
        out.bytes += c.bytes;
        out.new_flows += c.new_flows;
    }
    return out;
}

}  // namespace

Result<LbCounters> LbCounters::bind(const LbMapFds& fds) {
    auto r = PerCpuArray<kxlb_counter>::bind(fds.reasons);
    if (!r) return r.error();
    auto s = PerCpuArray<kxlb_lb_counter>::bind(fds.svc_stats);
    if (!s) return s.error();
    auto b = PerCpuArray<kxlb_lb_counter>::bind(fds.backend_stats);
    if (!b) return b.error();
    std::optional<PerCpuArray<kxlb_flow_cache_counters>> fc;
    if (fds.flow_cache_stats >= 0) {
        auto f = PerCpuArray<kxlb_flow_cache_counters>::bind(fds.flow_cache_stats);
        if (!f) return f.error();
        fc = *f;
    }
    return LbCounters(*r, *s, *b, fc);
}

Result<std::optional<kxlb_flow_cache_counters>> LbCounters::flow_cache() const {
    if (!flow_cache_) return std::optional<kxlb_flow_cache_counters>();
    auto v = flow_cache_->lookup(0);
    if (!v) return v.error();
    kxlb_flow_cache_counters out{};
    for (const auto& c : *v) {
        out.hits += c.hits;
        out.misses += c.misses;
        out.fills += c.fills;
    }
    return std::optional<kxlb_flow_cache_counters>(out);
}

Result<std::array<kxlb_counter, kReasonCount>> LbCounters::reasons() const {
    std::array<kxlb_counter, kReasonCount> out{};
    for (std::uint32_t i = 0; i < kReasonCount; ++i) {
        auto v = reasons_.lookup(i);
        if (!v) return v.error();
        for (const auto& c : *v) {
            out[i].packets += c.packets;
            out[i].bytes += c.bytes;
        }
    }
    return out;
}

Result<kxlb_lb_counter> LbCounters::service(std::uint32_t svc_id) const {
    auto v = svc_.lookup(svc_id);
    if (!v) return v.error();
    return sum(*v);
}

Result<kxlb_lb_counter> LbCounters::backend(std::uint32_t backend_id) const {
    auto v = backend_.lookup(backend_id);
    if (!v) return v.error();
    return sum(*v);
}

Result<Conntrack> Conntrack::bind(const LbMapFds& fds) {
    auto ct = TypedMap<kxlb_flow_key, kxlb_ct_value>::bind(fds.ct);
    if (!ct) return ct.error();
    auto nat = TypedMap<kxlb_flow_key, kxlb_nat_value>::bind(fds.nat);
    if (!nat) return nat.error();
    return Conntrack(*ct, *nat, fds.flow_cache);
}

Result<std::vector<Conntrack::Flow>> Conntrack::flows() const {
    std::vector<Flow> out;
    if (auto st = ct_.for_each([&](const kxlb_flow_key& k, const kxlb_ct_value& v) { out.emplace_back(k, v); }); !st)
        return st.error();
    return out;
}

Result<std::vector<Conntrack::Nat>> Conntrack::nat_entries() const {
    std::vector<Nat> out;
    if (auto st = nat_.for_each([&](const kxlb_flow_key& k, const kxlb_nat_value& v) { out.emplace_back(k, v); }); !st)
        return st.error();
    return out;
}

Result<std::size_t> Conntrack::flush(std::optional<std::uint32_t> svc_id) {
    std::size_t removed = 0;
    auto f = flows();
    if (!f) return f.error();
    for (const auto& [k, v] : *f) {
        if (svc_id && v.svc_id != *svc_id) continue;
        auto r = ct_.erase(k);
        if (!r) return r.error();
        removed += *r;
    }
    auto n = nat_entries();
    if (!n) return n.error();
    for (const auto& [k, v] : *n) {
        if (svc_id && v.svc_id != *svc_id) continue;
        auto r = nat_.erase(k);
        if (!r) return r.error();
        removed += *r;
    }
    // Cached flows would keep their translation for up to a second without their entries.
    if (auto st = clear_flow_cache(flow_cache_fd_); !st) return st.error();
    return removed;
}

}  // namespace kxlb
