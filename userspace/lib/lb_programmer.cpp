// LbProgrammer: ordered, rollback-safe programming of services and backends.
#include "lib/lb_programmer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <set>

namespace kxlb {

namespace {

kxlb_vip_addr_key vip_addr_key(const IpAddr& a) {
    kxlb_vip_addr_key k{};
    a.to_words(k.addr);
    k.family = a.family;
    return k;
}

kxlb_backend backend_value(const BackendSpec& be, std::uint32_t svc_id, std::uint32_t gen) {
    kxlb_backend v{};
    be.addr.to_words(v.addr);
    v.port = htons(be.port);
    v.family = be.addr.family;
    v.flags = static_cast<std::uint8_t>((be.draining ? KXLB_BE_F_DRAINING : 0) | (be.local ? KXLB_BE_F_LOCAL : 0));
    v.gen = gen;
    v.svc_id = svc_id;
    v.weight = be.weight;
    return v;
}

BackendSpec backend_spec(const kxlb_backend& v) {
    BackendSpec be;
    be.addr = IpAddr::from_words(v.family, v.addr);
    be.port = ntohs(v.port);
    be.weight = v.weight;
    be.draining = (v.flags & KXLB_BE_F_DRAINING) != 0;
    be.local = (v.flags & KXLB_BE_F_LOCAL) != 0;
    return be;
}

}  // namespace

Result<LbProgrammer> LbProgrammer::create(LbMaps& maps, LbProgrammerOptions opts) {
    if (!is_prime(opts.maglev_size) || opts.maglev_size > KXLB_MAX_MAGLEV_SIZE)
        return Error::invalid("maglev table size " + std::to_string(opts.maglev_size) +
                              " must be a prime <= " + std::to_string(KXLB_MAX_MAGLEV_SIZE));
    if (opts.max_services > KXLB_MAX_SERVICES || opts.max_backends > KXLB_MAX_BACKENDS)
        return Error::invalid("service/backend limits exceed the datapath's map sizes");
    return LbProgrammer(maps, opts);
}

Result<LbProgrammer> LbProgrammer::adopt(LbMaps& maps, LbProgrammerOptions opts) {
    auto created = create(maps, opts);
    if (!created) return created.error();
    LbProgrammer p = std::move(created).value();
    auto services = maps.read_services();
    if (!services) return Error{services.error().code, "adopt: " + services.error().message};
    auto backends = maps.read_backends();
    if (!backends) return Error{backends.error().code, "adopt: " + backends.error().message};

    std::map<std::uint32_t, Frontend> by_id;
    for (const auto& [key, svc] : *services) {
        const Frontend fe = Frontend::from_key(key);
        if (auto s = p.svc_ids_.reserve(svc.id); !s)
            return Error::invalid("adopt: service " + fe.str() + " has id " + std::to_string(svc.id) + ": " +
                                  s.error().message);
        by_id.emplace(svc.id, fe);
        ServiceSpec spec;
        spec.frontend = fe;
        spec.flags = svc.flags & ~static_cast<std::uint32_t>(KXLB_SVC_F_SOURCE_RANGES);
        spec.affinity_timeout_s = svc.affinity_timeout_s;
        p.services_.emplace(fe, ServiceState{svc.id, std::move(spec), {}, {}});
        ++p.vip_refs_[VipAddr{fe.addr.family, fe.addr.bytes}];
    }
    std::uint32_t max_gen = 0;
    std::vector<std::uint32_t> orphans;
    for (const auto& [id, be] : *backends) {
        if (auto s = p.backend_ids_.reserve(id); !s)
            return Error::invalid("adopt: backend id " + std::to_string(id) + ": " + s.error().message);
        max_gen = std::max(max_gen, be.gen);
        auto owner = by_id.find(be.svc_id);
        if (owner == by_id.end()) {
            orphans.push_back(id);
            continue;
        }
        auto& st = p.services_.at(owner->second);
        st.spec.backends.push_back(backend_spec(be));
        st.backend_ids.push_back(id);
        st.backend_gens.push_back(be.gen);
    }
    auto ranges = maps.read_source_ranges();
    if (!ranges) return Error{ranges.error().code, "adopt: " + ranges.error().message};
    for (const auto& key : *ranges) {
        auto r = source_range_from_key(key);
        auto owner = r ? by_id.find(r->first) : by_id.end();
        if (owner == by_id.end()) {
            // Not ours or its service is gone: it allows nobody into anything, remove it.
            (void)maps.delete_source_range(key);
            continue;
        }
        p.services_.at(owner->second).spec.source_ranges.push_back(r->second);
    }
    for (auto& [fe, st] : p.services_) std::sort(st.spec.source_ranges.begin(), st.spec.source_ranges.end());
    p.next_gen_ = max_gen + 1 == 0 ? 1 : max_gen + 1;
    // A backend whose service is gone is unreachable through any table; free its id.
    for (auto id : orphans) p.drop_backend(id);
    return p;
}

const LbProgrammer::ServiceState* LbProgrammer::service(const Frontend& fe) const {
    auto it = services_.find(fe);
    return it == services_.end() ? nullptr : &it->second;
}

std::optional<std::uint32_t> LbProgrammer::backend_id(const Frontend& fe, const BackendIdentity& id) const {
    const auto* st = service(fe);
    if (!st) return std::nullopt;
    for (std::size_t i = 0; i < st->spec.backends.size(); ++i)
        if (st->spec.backends[i].identity() == id) return st->backend_ids[i];
    return std::nullopt;
}

void LbProgrammer::drop_backend(std::uint32_t id) {
    if (auto s = maps_->clear_backend(id); !s)
        // The id stays reserved (never reused) so a stale entry cannot be mistaken for a new
        // backend; its flows still re-balance because no Maglev table names it any more.
        spdlog::warn("clearing backend id {}: {} (id kept reserved)", id, s.error().message);
    else backend_ids_.release(id);
}

Result<std::vector<std::uint32_t>> LbProgrammer::maglev_table(const ServiceSpec& spec,
                                                              const std::vector<std::uint32_t>& ids) const {
    std::vector<MaglevBackend> mb;
    for (std::size_t i = 0; i < spec.backends.size(); ++i) {
        const auto& be = spec.backends[i];
        if (be.draining || be.weight == 0) continue;
        mb.push_back(MaglevBackend{be.identity(), ids[i], be.weight});
    }
    return build_maglev_table(std::move(mb), opts_.maglev_size, opts_.hash_seed);
}

Status LbProgrammer::program_table(std::uint32_t svc_id, const ServiceSpec& spec,
                                   const std::vector<std::uint32_t>& ids) {
    auto table = maglev_table(spec, ids);
    if (!table) return table.error();
    return maps_->swap_maglev(svc_id, *table);
}

Status LbProgrammer::write_filter(const Frontend* extra, std::span<const Frontend> more) {
    kxlb_frontend_filter f{};
    auto set = [&f](const Frontend& fe) {
        const kxlb_vip_key k = fe.key();
        const std::uint32_t bit = kxlb_frontend_bit(k.addr, k.family, k.port, k.proto);
        f.words[bit / 64] |= 1ULL << (bit % 64);
    };
    for (const auto& [fe, st] : services_) set(fe);
    if (extra) set(*extra);
    for (const auto& fe : more) set(fe);
    return maps_->set_frontend_filter(f);
}

Status LbProgrammer::add_frontend(const ServiceSpec& spec, std::uint32_t svc_id, bool write_filter_now) {
    const auto& fe = spec.frontend;
    // The filter bit first: a frame must never find the frontend but miss its bit (a batch writes
    // the bits of all its new frontends before calling this with write_filter_now false).
    if (write_filter_now)
        if (auto s = write_filter(&fe); !s) return s;
    VipAddr va{fe.addr.family, fe.addr.bytes};
    const std::uint32_t refs = vip_refs_[va] + 1;
    if (auto s = maps_->put_vip_addr(vip_addr_key(fe.addr), refs); !s) {
        if (refs == 1) vip_refs_.erase(va);
        (void)write_filter(nullptr);
        return s;
    }
    if (auto s = maps_->put_service(fe.key(), service_value(svc_id, spec)); !s) {
        if (refs == 1) {
            (void)maps_->delete_vip_addr(vip_addr_key(fe.addr));
            vip_refs_.erase(va);
        } else {
            (void)maps_->put_vip_addr(vip_addr_key(fe.addr), refs - 1);
        }
        (void)write_filter(nullptr);
        return s;
    }
    vip_refs_[va] = refs;
    return {};
}

Result<LbProgrammer::Pending> LbProgrammer::prepare(const ServiceSpec& spec) {
    if (auto v = validate(spec); !v) return v.error();
    Pending p;
    p.spec = spec;
    auto existing = services_.find(spec.frontend);
    p.old = existing == services_.end() ? nullptr : &existing->second;
    if (p.old) {
        p.svc_id = p.old->id;
    } else {
        auto id = svc_ids_.allocate();
        if (!id) return Error{id.error().code, spec.frontend.str() + ": " + id.error().message};
        p.svc_id = *id;
    }
    // Backends first: a table must never name an id the datapath cannot resolve.
    for (const auto& be : spec.backends) {
        std::optional<std::size_t> prev;
        if (p.old)
            for (std::size_t i = 0; i < p.old->spec.backends.size(); ++i)
                if (p.old->spec.backends[i].identity() == be.identity()) prev = i;
        if (prev) {
            const auto id = p.old->backend_ids[*prev], gen = p.old->backend_gens[*prev];
            if (!(p.old->spec.backends[*prev] == be)) {
                if (auto s = maps_->put_backend(id, backend_value(be, p.svc_id, gen)); !s) {
                    rollback(p);
                    return s.error();
                }
                p.rewritten.emplace_back(id, backend_value(p.old->spec.backends[*prev], p.svc_id, gen));
            }
            p.ids.push_back(id);
            p.gens.push_back(gen);
            continue;
        }
        auto id = backend_ids_.allocate();
        if (!id) {
            rollback(p);
            return Error{id.error().code, "backend " + be.str() + ": " + id.error().message};
        }
        const std::uint32_t gen = next_gen_++;
        if (next_gen_ == 0) next_gen_ = 1;  // gen 0 never names a live backend
        if (auto s = maps_->put_backend(*id, backend_value(be, p.svc_id, gen)); !s) {
            backend_ids_.release(*id);
            rollback(p);
            return s.error();
        }
        p.created.push_back(*id);
        p.ids.push_back(*id);
        p.gens.push_back(gen);
    }
    // New source ranges before the service flag that makes the datapath consult them.
    for (const auto& r : spec.source_ranges) {
        if (p.old && std::binary_search(p.old->spec.source_ranges.begin(), p.old->spec.source_ranges.end(), r))
            continue;
        if (auto s = maps_->put_source_range(source_range_key(p.svc_id, r)); !s) {
            rollback(p);
            return Error{s.error().code, "source range " + r.str() + ": " + s.error().message};
        }
        p.added_ranges.push_back(r);
    }
    auto table = maglev_table(spec, p.ids);
    if (!table) {
        rollback(p);
        return table.error();
    }
    p.table = std::move(table).value();
    return p;
}

void LbProgrammer::rollback(Pending& p) {
    if (p.table_swapped) {
        if (p.old) (void)program_table(p.svc_id, p.old->spec, p.old->backend_ids);
        else (void)maps_->swap_maglev(p.svc_id, {});
    }
    if (p.service_rewritten && p.old)
        (void)maps_->put_service(p.spec.frontend.key(), service_value(p.svc_id, p.old->spec));
    for (const auto& r : p.deleted_ranges) (void)maps_->put_source_range(source_range_key(p.svc_id, r));
    for (const auto& r : p.added_ranges) (void)maps_->delete_source_range(source_range_key(p.svc_id, r));
    for (const auto& [id, value] : p.rewritten) (void)maps_->put_backend(id, value);
    for (auto id : p.created) drop_backend(id);
    if (!p.old) svc_ids_.release(p.svc_id);
}

Status LbProgrammer::finish(Pending& p, bool write_filter_now) {
    // New frontends become visible last.
    if (!p.old) {
        if (auto s = add_frontend(p.spec, p.svc_id, write_filter_now); !s) return s;
    } else if (const kxlb_service v = service_value(p.svc_id, p.spec), was = service_value(p.svc_id, p.old->spec);
               std::memcmp(&v, &was, sizeof(v)) != 0) {
        if (auto s = maps_->put_service(p.spec.frontend.key(), v); !s) return s;
        p.service_rewritten = true;
    }
    // Source ranges the service no longer has, once its flag no longer needs them.
    if (p.old)
        for (const auto& r : p.old->spec.source_ranges) {
            if (std::binary_search(p.spec.source_ranges.begin(), p.spec.source_ranges.end(), r)) continue;
            if (auto s = maps_->delete_source_range(source_range_key(p.svc_id, r)); !s)
                return Error{s.error().code, "removing source range " + r.str() + ": " + s.error().message};
            p.deleted_ranges.push_back(r);
        }
    // Commit: backends that left the service go away (their flows re-balance).
    if (p.old)
        for (std::size_t i = 0; i < p.old->backend_ids.size(); ++i)
            if (std::find(p.ids.begin(), p.ids.end(), p.old->backend_ids[i]) == p.ids.end())
                drop_backend(p.old->backend_ids[i]);
    services_[p.spec.frontend] = ServiceState{p.svc_id, p.spec, std::move(p.ids), std::move(p.gens)};
    return {};
}

Result<std::uint32_t> LbProgrammer::upsert_service(const ServiceSpec& spec) {
    if (const auto* cur = service(spec.frontend); cur && cur->spec == spec) return cur->id;
    auto p = prepare(spec);
    if (!p) return p.error();
    // The table, in one atomic swap.
    if (auto s = maps_->swap_maglev(p->svc_id, p->table); !s) {
        rollback(*p);
        return s.error();
    }
    p->table_swapped = true;
    if (auto s = finish(*p, true); !s) {
        rollback(*p);
        return s.error();
    }
    return p->svc_id;
}

std::vector<LbProgrammer::Failure> LbProgrammer::upsert_services(std::span<const ServiceSpec> specs) {
    std::vector<Failure> failures;
    std::vector<Pending> pending;
    std::set<Frontend> seen;
    for (const auto& spec : specs) {
        if (const auto* cur = service(spec.frontend); cur && cur->spec == spec) continue;
        if (!seen.insert(spec.frontend).second) {
            failures.push_back({spec.frontend, Error::invalid(spec.frontend.str() + " appears twice in one batch")});
            continue;
        }
        auto p = prepare(spec);
        if (!p) failures.push_back({spec.frontend, p.error()});
        else pending.push_back(std::move(p).value());
    }
    if (pending.empty()) return failures;
    std::vector<LbMaps::TableUpdate> updates;
    for (const auto& p : pending) updates.push_back({p.svc_id, p.table});
    if (auto s = maps_->swap_maglev_many(updates); !s) {
        // Isolate the failure: undo everything, then apply one by one.
        for (auto& p : pending) {
            p.table_swapped = true;
            rollback(p);
        }
        for (const auto& p : pending)
            if (auto r = upsert_service(p.spec); !r) failures.push_back({p.spec.frontend, r.error()});
        return failures;
    }
    // One filter write carrying every new frontend, before any of them becomes visible.
    std::vector<Frontend> added;
    for (const auto& p : pending)
        if (!p.old) added.push_back(p.spec.frontend);
    bool bits_written = added.empty() || static_cast<bool>(write_filter(nullptr, added));
    for (auto& p : pending) {
        p.table_swapped = true;
        if (auto s = finish(p, !bits_written); !s) {
            rollback(p);
            failures.push_back({p.spec.frontend, s.error()});
            bits_written = false;  // a failed frontend rewrote the filter without the batch's bits
        }
    }
    return failures;
}

Status LbProgrammer::remove_service(const Frontend& fe) {
    auto it = services_.find(fe);
    if (it == services_.end()) return Error{ENOENT, "service " + fe.str() + " is not programmed"};
    // Frontend first (no new lookups), then its table and backends.
    if (auto s = maps_->delete_service(fe.key()); !s) return s;
    VipAddr va{fe.addr.family, fe.addr.bytes};
    if (auto refs = --vip_refs_[va]; refs == 0) {
        vip_refs_.erase(va);
        if (auto s = maps_->delete_vip_addr(vip_addr_key(fe.addr)); !s)
            spdlog::warn("removing VIP address {}: {}", fe.addr.str(), s.error().message);
    } else if (auto s = maps_->put_vip_addr(vip_addr_key(fe.addr), refs); !s) {
        spdlog::warn("updating VIP address {}: {}", fe.addr.str(), s.error().message);
    }
    if (auto s = maps_->swap_maglev(it->second.id, {}); !s)
        spdlog::warn("removing Maglev table of {}: {}", fe.str(), s.error().message);
    for (const auto& r : it->second.spec.source_ranges)
        if (auto s = maps_->delete_source_range(source_range_key(it->second.id, r)); !s)
            spdlog::warn("removing source range {} of {}: {}", r.str(), fe.str(), s.error().message);
    for (auto id : it->second.backend_ids) drop_backend(id);
    svc_ids_.release(it->second.id);
    services_.erase(it);
    // A stale bit only costs a lookup, so failing to clear it is logged, not returned.
    if (auto s = write_filter(nullptr); !s) spdlog::warn("updating the frontend filter: {}", s.error().message);
    return {};
}

}  // namespace kxlb
