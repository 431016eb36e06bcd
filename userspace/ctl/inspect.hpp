// Reads kxlbctl's views out of the pinned maps through the library's typed readers (BpfLbMaps,
// LbCounters, Conntrack): services with their backends and counters, Maglev tables, flows,
// statistics; and the one write kxlbctl makes, conntrack flush.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "ctl/args.hpp"
#include "ctl/pinned_maps.hpp"
#include "ctl/views.hpp"
#include "lib/bpf_map.hpp"
#include "lib/lb_inspect.hpp"
#include "lib/lb_maps.hpp"

namespace kxlb::ctl {

struct FlowFilter {
    std::optional<ServiceRef> service;
    std::optional<std::uint32_t> backend_id;
    std::optional<std::size_t> limit;
};

class Inspector {
public:
    // Binds the readers; fails if a pinned map's key/value layout differs from this build's ABI.
    // maps must outlive the Inspector.
    static Result<Inspector> bind(const PinnedMaps& maps);

    Result<std::vector<ServiceRow>> services() const;  // by id
    // Errors: "no service <ref>" when nothing matches.
    Result<ServiceDetail> service(const ServiceRef& ref) const;
    Result<std::vector<BackendRow>> backends(const std::optional<ServiceRef>& service) const;  // by id
    Result<MaglevView> maglev(const ServiceRef& ref, bool full) const;
    // By service id, frontend, client.
    Result<FlowList> flows(const FlowFilter& filter) const;
    Result<FlushResult> flush(const std::optional<ServiceRef>& service);
    Result<StatsView> stats(bool all) const;

    // The service a reference names: its frontend key and value.
    Result<LbMaps::ServiceEntry> resolve(const ServiceRef& ref) const;
    // A service's Maglev table as the datapath reads it, one backend id per slot (empty: none).
    Result<std::vector<std::uint32_t>> maglev_table(std::uint32_t svc_id) const;

private:
    struct Sock {
        PerCpuArray<std::uint64_t> reasons, svc, backend;
    };
    // One read of the service and backend maps, indexed for building rows.
    struct Catalog {
        std::vector<LbMaps::ServiceEntry> services;
        std::map<std::uint32_t, kxlb_backend> backends;                           // by id
        std::map<std::uint32_t, Frontend> frontends;                              // by service id
        std::map<std::uint32_t, std::pair<std::uint32_t, std::uint32_t>> counts;  // service id -> (all, active)
    };

    Inspector(BpfLbMaps maps, LbCounters counters, Conntrack ct, int maglev_fd)
        : maps_(std::move(maps)), counters_(counters), ct_(ct), maglev_fd_(maglev_fd) {}

    Result<Catalog> catalog() const;
    Result<ServiceRow> service_row(const LbMaps::ServiceEntry& s, const Catalog& c) const;
    Result<BackendRow> backend_row(std::uint32_t id, const kxlb_backend& b, const Catalog& c) const;
    Result<std::vector<BackendRow>> backend_rows(const Catalog& c, std::optional<std::uint32_t> svc_id) const;

    BpfLbMaps maps_;
    LbCounters counters_;
    Conntrack ct_;
    int maglev_fd_;
    std::optional<PerCpuArray<kxlb_parse_counters>> parse_;
    std::optional<Sock> sock_;
};

}  // namespace kxlb::ctl
