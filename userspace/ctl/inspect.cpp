// Inspector: views over the pinned datapath maps.
#include "ctl/inspect.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <numeric>
#include <tuple>
#include <type_traits>
#include <variant>

namespace kxlb::ctl {

namespace {

std::uint64_t sum(const std::vector<std::uint64_t>& per_cpu) {
    return std::accumulate(per_cpu.begin(), per_cpu.end(), std::uint64_t{0});
}

Traffic traffic(const kxlb_lb_counter& c) { return Traffic{c.packets, c.bytes, c.new_flows}; }

Endpoint backend_endpoint(const kxlb_backend& b) {
    return Endpoint{IpAddr::from_words(b.family, b.addr), ntohs(b.port)};
}

bool active(const kxlb_backend& b) { return !(b.flags & KXLB_BE_F_DRAINING) && b.weight > 0; }

// The datapath's clock (bpf_ktime_get_coarse_ns: CLOCK_MONOTONIC, coarse).
std::uint64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

Error no_service(const ServiceRef& ref) {
    if (std::holds_alternative<std::uint32_t>(ref.v)) return Error{ENOENT, "no service with id " + ref.str()};
    return Error{ENOENT, "no service " + ref.str()};
}

}  // namespace

Result<Inspector> Inspector::bind(const PinnedMaps& maps) {
    auto lb = BpfLbMaps::bind(maps.lb());
    if (!lb) return lb.error();
    auto counters = LbCounters::bind(maps.lb());
    if (!counters) return counters.error();
    auto ct = Conntrack::bind(maps.lb());
    if (!ct) return ct.error();
    Inspector in(std::move(lb).value(), *counters, *ct, maps.lb().maglev);
    if (maps.parse_stats() >= 0) {
        auto p = PerCpuArray<kxlb_parse_counters>::bind(maps.parse_stats());
        if (!p) return p.error();
        in.parse_.emplace(*p);
    }
    if (maps.sock_reasons() >= 0 && maps.sock_svc_stats() >= 0 && maps.sock_backend_stats() >= 0) {
        auto r = PerCpuArray<std::uint64_t>::bind(maps.sock_reasons());
        if (!r) return r.error();
        auto s = PerCpuArray<std::uint64_t>::bind(maps.sock_svc_stats());
        if (!s) return s.error();
        auto b = PerCpuArray<std::uint64_t>::bind(maps.sock_backend_stats());
        if (!b) return b.error();
        in.sock_.emplace(Sock{*r, *s, *b});
    }
    return in;
}

Result<LbMaps::ServiceEntry> Inspector::resolve(const ServiceRef& ref) const {
    auto svcs = maps_.read_services();
    if (!svcs) return svcs.error();
    for (const auto& e : *svcs) {
        const bool match = std::visit(
            [&](const auto& v) {
                if constexpr (std::is_same_v<std::decay_t<decltype(v)>, std::uint32_t>) return e.second.id == v;
                else return Frontend::from_key(e.first) == v;
            },
            ref.v);
        if (match) return e;
    }
    return no_service(ref);
}

Result<Inspector::Catalog> Inspector::catalog() const {
    Catalog c;
    auto svcs = maps_.read_services();
    if (!svcs) return svcs.error();
    c.services = std::move(svcs).value();
    for (const auto& [key, svc] : c.services) c.frontends[svc.id] = Frontend::from_key(key);
    auto bes = maps_.read_backends();
    if (!bes) return bes.error();
    for (const auto& [id, be] : *bes) {
        c.backends[id] = be;
        auto& [all, live] = c.counts[be.svc_id];
        ++all;
        live += active(be) ? 1 : 0;
    }
    return c;
}

Result<ServiceRow> Inspector::service_row(const LbMaps::ServiceEntry& s, const Catalog& c) const {
    ServiceRow row;
    row.id = s.second.id;
    row.frontend = Frontend::from_key(s.first);
    row.flags = s.second.flags;
    if (auto it = c.counts.find(row.id); it != c.counts.end())
        std::tie(row.backend_count, row.active_backends) = it->second;
    auto counters = counters_.service(row.id);
    if (!counters) return counters.error();
    row.traffic = traffic(*counters);
    if (sock_) {
        auto n = sock_->svc.lookup(row.id);
        if (!n) return n.error();
        row.sock_connections = sum(*n);
    }
    return row;
}

Result<BackendRow> Inspector::backend_row(std::uint32_t id, const kxlb_backend& b, const Catalog& c) const {
    BackendRow row;
    row.id = id;
    row.svc_id = b.svc_id;
    if (auto it = c.frontends.find(b.svc_id); it != c.frontends.end()) row.frontend = it->second;
    row.endpoint = backend_endpoint(b);
    row.weight = b.weight;
    row.draining = b.flags & KXLB_BE_F_DRAINING;
    row.gen = b.gen;
    auto counters = counters_.backend(id);
    if (!counters) return counters.error();
    row.traffic = traffic(*counters);
    if (sock_) {
        auto n = sock_->backend.lookup(id);
        if (!n) return n.error();
        row.sock_connections = sum(*n);
    }
    return row;
}

Result<std::vector<ServiceRow>> Inspector::services() const {
    auto c = catalog();
    if (!c) return c.error();
    std::vector<ServiceRow> out;
    for (const auto& s : c->services) {
        auto row = service_row(s, *c);
        if (!row) return row.error();
        out.push_back(*row);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return out;
}

Result<std::vector<BackendRow>> Inspector::backend_rows(const Catalog& c, std::optional<std::uint32_t> svc_id) const {
    std::vector<BackendRow> out;  // by id: the catalog's map is ordered
    for (const auto& [id, be] : c.backends) {
        if (svc_id && be.svc_id != *svc_id) continue;
        auto row = backend_row(id, be, c);
        if (!row) return row.error();
        out.push_back(*row);
    }
    return out;
}

Result<std::vector<BackendRow>> Inspector::backends(const std::optional<ServiceRef>& service) const {
    std::optional<std::uint32_t> svc_id;
    if (service) {
        auto s = resolve(*service);
        if (!s) return s.error();
        svc_id = s->second.id;
    }
    auto c = catalog();
    if (!c) return c.error();
    return backend_rows(*c, svc_id);
}

Result<ServiceDetail> Inspector::service(const ServiceRef& ref) const {
    auto s = resolve(ref);
    if (!s) return s.error();
    auto c = catalog();
    if (!c) return c.error();
    ServiceDetail d;
    auto row = service_row(*s, *c);
    if (!row) return row.error();
    d.service = *row;
    auto table = maglev_table(d.service.id);
    if (!table) return table.error();
    d.maglev_size = static_cast<std::uint32_t>(table->size());
    auto rows = backend_rows(*c, d.service.id);
    if (!rows) return rows.error();
    d.backends = std::move(rows).value();
    return d;
}

Result<std::vector<std::uint32_t>> Inspector::maglev_table(std::uint32_t svc_id) const {
    return read_maglev_table(maglev_fd_, svc_id);
}

Result<MaglevView> Inspector::maglev(const ServiceRef& ref, bool full) const {
    auto s = resolve(ref);
    if (!s) return s.error();
    MaglevView m;
    m.svc_id = s->second.id;
    m.frontend = Frontend::from_key(s->first);
    m.full = full;
    auto table = maglev_table(m.svc_id);
    if (!table) return table.error();
    m.size = static_cast<std::uint32_t>(table->size());
    std::map<std::uint32_t, std::uint32_t> slots;
    for (auto id : *table) ++slots[id];
    auto c = catalog();
    if (!c) return c.error();
    for (const auto& [id, n] : slots) {
        MaglevShare share{id, std::nullopt, n};
        if (auto it = c->backends.find(id); it != c->backends.end()) share.endpoint = backend_endpoint(it->second);
        m.shares.push_back(share);
    }
    if (full) m.table = std::move(table).value();
    return m;
}

Result<FlowList> Inspector::flows(const FlowFilter& filter) const {
    std::optional<std::uint32_t> svc_id;
    if (filter.service) {
        auto s = resolve(*filter.service);
        if (!s) return s.error();
        svc_id = s->second.id;
    }
    auto flows = ct_.flows();
    if (!flows) return flows.error();
    auto c = catalog();
    if (!c) return c.error();
    const auto& by_id = c->backends;
    const std::uint64_t now = monotonic_ns();
    FlowList out;
    for (const auto& [k, v] : *flows) {
        if (svc_id && v.svc_id != *svc_id) continue;
        if (filter.backend_id && v.backend_id != *filter.backend_id) continue;
        FlowRow f;
        f.client = Endpoint{IpAddr::from_words(k.family, k.saddr), ntohs(k.sport)};
        f.frontend = Frontend{IpAddr::from_words(k.family, k.daddr), ntohs(k.dport), k.proto};
        f.svc_id = v.svc_id;
        f.backend_id = v.backend_id;
        if (auto it = by_id.find(v.backend_id); it != by_id.end() && it->second.gen == v.backend_gen)
            f.backend = backend_endpoint(it->second);
        f.snat_port = ntohs(v.snat_port);
        f.flags = v.flags;
        f.age_ms = now > v.last_seen_ns ? (now - v.last_seen_ns) / 1'000'000 : 0;
        out.flows.push_back(f);
    }
    std::sort(out.flows.begin(), out.flows.end(), [](const FlowRow& a, const FlowRow& b) {
        return std::tie(a.svc_id, a.frontend, a.client.addr, a.client.port) <
               std::tie(b.svc_id, b.frontend, b.client.addr, b.client.port);
    });
    out.matched = out.flows.size();
    if (filter.limit && out.flows.size() > *filter.limit) out.flows.resize(*filter.limit);
    return out;
}

Result<FlushResult> Inspector::flush(const std::optional<ServiceRef>& service) {
    FlushResult r;
    if (service) {
        auto s = resolve(*service);
        if (!s) return s.error();
        r.svc_id = s->second.id;
    }
    auto n = ct_.flush(r.svc_id);
    if (!n) return n.error();
    r.removed = *n;
    return r;
}

Result<StatsView> Inspector::stats(bool all) const {
    StatsView s;
    s.all = all;
    auto reasons = counters_.reasons();
    if (!reasons) return reasons.error();
    s.reasons = *reasons;
    auto fc = counters_.flow_cache();
    if (!fc) return fc.error();
    s.flow_cache = *fc;
    if (parse_) {
        auto per_cpu = parse_->lookup(0);
        if (!per_cpu) return per_cpu.error();
        std::array<kxlb_counter, kParseStatCount> p{};
        for (const auto& cpu : *per_cpu)
            for (std::size_t i = 0; i < kParseStatCount; ++i) {
                p[i].packets += cpu.by_id[i].packets;
                p[i].bytes += cpu.by_id[i].bytes;
            }
        s.parse = p;
    }
    if (sock_) {
        std::array<std::uint64_t, kSockReasonCount> r{};
        for (std::uint32_t i = 0; i < kSockReasonCount; ++i) {
            auto v = sock_->reasons.lookup(i);
            if (!v) return v.error();
            r[i] = sum(*v);
        }
        s.sock = r;
    }
    return s;
}

}  // namespace kxlb::ctl
