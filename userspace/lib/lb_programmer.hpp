// Turns services (frontend + weighted backends) into datapath map contents: stable ids, Maglev
// tables swapped atomically, rollback so a failed update never leaves a service half-applied. The
// one writer of the LB maps; talks to the kernel only through LbMaps.
//
// Backend ids belong to one service (the same address:port behind two services has two ids), so
// removing a backend from a service invalidates exactly that service's flows to it, and per-backend
// counters are per service. An id that is reused gets a new generation, so conntrack entries that
// name the old owner re-balance instead of reaching the new one.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <vector>

#include "lib/id_allocator.hpp"
#include "lib/lb_maps.hpp"
#include "lib/lb_types.hpp"
#include "lib/maglev.hpp"

namespace kxlb {

struct LbProgrammerOptions {
    std::uint32_t maglev_size = kDefaultMaglevSize;  // prime; one size for every service
    std::uint64_t hash_seed = 0;                     // must match kxlb_config.hash_seed
    std::uint32_t max_services = KXLB_MAX_SERVICES;
    std::uint32_t max_backends = KXLB_MAX_BACKENDS;
};

class LbProgrammer {
public:
    struct ServiceState {
        std::uint32_t id = 0;
        ServiceSpec spec;
        std::vector<std::uint32_t> backend_ids;   // parallel to spec.backends
        std::vector<std::uint32_t> backend_gens;  // parallel to spec.backends
    };

    // Fails if options are invalid (e.g. maglev_size not prime).
    static Result<LbProgrammer> create(LbMaps& maps, LbProgrammerOptions opts);
    // Like create, but first takes over what a previous agent left in the (pinned) maps: its
    // services, backend ids, generations and weights, so that upserting the same specs again
    // writes nothing and established flows keep their backends. Backends whose service is gone
    // are cleared. Fails (writing nothing) if the maps hold something this programmer could not
    // have written (ids out of range, a backend claimed twice).
    static Result<LbProgrammer> adopt(LbMaps& maps, LbProgrammerOptions opts);

    // Adds the service or replaces its flags and backends. From the datapath's point of view the
    // change is atomic (new backends are written before the table that names them, old ones
    // cleared after). On error nothing changed. A spec equal to the programmed one writes nothing.
    // Returns the service id.
    Result<std::uint32_t> upsert_service(const ServiceSpec& spec);
    // upsert_service for many services, with the same per-service guarantees, but all their tables
    // published together (one kernel grace period instead of one per service) and the frontend
    // filter written once: what makes programming thousands of services fast. Returns one entry per
    // spec that failed (the others are applied).
    struct Failure {
        Frontend frontend;
        Error error;
    };
    std::vector<Failure> upsert_services(std::span<const ServiceSpec> specs);
    // Removes the service; its flows re-balance nowhere (they hit no frontend and pass).
    Status remove_service(const Frontend& fe);

    const ServiceState* service(const Frontend& fe) const;
    std::size_t service_count() const { return services_.size(); }
    const std::map<Frontend, ServiceState>& services() const { return services_; }
    std::optional<std::uint32_t> backend_id(const Frontend& fe, const BackendIdentity& id) const;
    // The Maglev table currently programmed for a service (empty: none).
    Result<std::vector<std::uint32_t>> maglev_table(const ServiceSpec& spec,
                                                    const std::vector<std::uint32_t>& backend_ids) const;

private:
    struct VipAddr {
        std::uint8_t family;
        std::array<std::uint8_t, 16> bytes;
        auto operator<=>(const VipAddr&) const = default;
    };

    LbProgrammer(LbMaps& maps, LbProgrammerOptions opts)
        : maps_(&maps), opts_(opts), svc_ids_(opts.max_services), backend_ids_(opts.max_backends) {}

    // One service's update between its phases (prepare -> table -> finish, or rollback).
    struct Pending {
        ServiceSpec spec;
        std::uint32_t svc_id = 0;
        const ServiceState* old = nullptr;  // null: a new service
        std::vector<std::uint32_t> ids, gens, created;
        std::vector<std::pair<std::uint32_t, kxlb_backend>> rewritten;  // (id, previous value)
        std::vector<std::uint32_t> table;
        bool table_swapped = false;
        std::vector<Cidr> added_ranges, deleted_ranges;  // source ranges written / removed so far
        bool service_rewritten = false;                  // the kxlb_services value was replaced
    };
    // Validates, allocates ids and writes the backends; computes the table. Undoes itself on error.
    Result<Pending> prepare(const ServiceSpec& spec);
    // Makes the frontend visible (or updates its flags) and commits. Undoes nothing on error.
    Status finish(Pending& p, bool write_filter_now);
    void rollback(Pending& p);
    Status program_table(std::uint32_t svc_id, const ServiceSpec& spec, const std::vector<std::uint32_t>& ids);
    // Clears a backend's map entry and frees its id (kept reserved if the clear fails).
    void drop_backend(std::uint32_t id);
    Status add_frontend(const ServiceSpec& spec, std::uint32_t svc_id, bool write_filter_now = true);
    // Writes the frontend filter for the committed services plus `extra` (a frontend being added).
    Status write_filter(const Frontend* extra, std::span<const Frontend> more = {});

    LbMaps* maps_;
    LbProgrammerOptions opts_;
    IdAllocator svc_ids_;
    IdAllocator backend_ids_;
    std::uint32_t next_gen_ = 1;
    std::map<Frontend, ServiceState> services_;
    std::map<VipAddr, std::uint32_t> vip_refs_;
};

}  // namespace kxlb
