// The seam between load-balancer logic and the kernel: every write the programmer makes to the
// datapath maps goes through LbMaps. BpfLbMaps is the real implementation; unit tests use a fake.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <span>
#include <utility>
#include <vector>

#include "lib/abi.hpp"
#include "lib/bpf_map.hpp"
#include "lib/result.hpp"
#include "lib/unique_fd.hpp"

namespace kxlb {

class LbMaps {
public:
    virtual ~LbMaps() = default;
    virtual Status set_config(const kxlb_config& cfg) = 0;
    virtual Status put_service(const kxlb_vip_key& key, const kxlb_service& svc) = 0;
    virtual Status delete_service(const kxlb_vip_key& key) = 0;
    virtual Status put_vip_addr(const kxlb_vip_addr_key& key, std::uint32_t frontends) = 0;
    virtual Status delete_vip_addr(const kxlb_vip_addr_key& key) = 0;
    virtual Status put_backend(std::uint32_t id, const kxlb_backend& be) = 0;
    virtual Status clear_backend(std::uint32_t id) = 0;
    // Replaces the service's Maglev table in one atomic step (table: backend id per slot, size
    // prime): a packet sees the old or the new table, never a mix. An empty table removes it (the
    // service then has no backend).
    virtual Status swap_maglev(std::uint32_t svc_id, std::span<const std::uint32_t> table) = 0;
    // swap_maglev for many services at once (for each, the same guarantee), paying the kernel's
    // RCU grace period for publishing new inner maps once instead of once per service. On error
    // some tables may have been replaced: the caller restores them.
    struct TableUpdate {
        std::uint32_t svc_id;
        std::span<const std::uint32_t> table;
    };
    virtual Status swap_maglev_many(std::span<const TableUpdate> updates) = 0;
    // Source ranges (kxlb_source_ranges LPM entries): a client prefix allowed into a service.
    virtual Status put_source_range(const kxlb_src_range_key& key) = 0;
    virtual Status delete_source_range(const kxlb_src_range_key& key) = 0;
    // Replaces the frontend filter (one 8 KiB write).
    virtual Status set_frontend_filter(const kxlb_frontend_filter& filter) = 0;
    // Allows XDP_REDIRECT to ifindex. The kernel resolves ifindex in the caller's network namespace:
    // call it from the namespace of the interface.
    virtual Status add_tx_port(std::uint32_t ifindex) = 0;

    // Read side, for adopting maps a previous agent programmed (see LbProgrammer::adopt).
    using ServiceEntry = std::pair<kxlb_vip_key, kxlb_service>;
    using BackendEntry = std::pair<std::uint32_t, kxlb_backend>;
    virtual Result<std::vector<ServiceEntry>> read_services() const = 0;
    // Only ids in use (family != 0).
    virtual Result<std::vector<BackendEntry>> read_backends() const = 0;
    virtual Result<std::vector<kxlb_src_range_key>> read_source_ranges() const = 0;
};

// File descriptors of the datapath maps (owned by the program's skeleton or by pinned-map fds).
struct LbMapFds {
    int config = -1, services = -1, vip_addrs = -1, backends = -1, maglev = -1, ct = -1, nat = -1, tx_ports = -1;
    int reasons = -1, svc_stats = -1, backend_stats = -1, frontend_filter = -1;
    int source_ranges = -1, affinity = -1;
    int flow_cache = -1;        // optional (-1: none, e.g. pinned by an older agent)
    int flow_cache_stats = -1;  // optional, as flow_cache
};

// Empties the datapath's per-CPU flow cache (kxlb_flow_cache) if fd is one (>= 0): needed after
// deleting conntrack entries or changing kxlb_config, whose effect a cached flow would otherwise
// miss for up to a second.
Status clear_flow_cache(int fd);

// The Maglev table of a service as the datapath reads it (its active half); empty if it has none.
// outer_fd: the kxlb_maglev map.
Result<std::vector<std::uint32_t>> read_maglev_table(int outer_fd, std::uint32_t svc_id);

class BpfLbMaps final : public LbMaps {
public:
    // A half of a double-buffered table is rewritten in place only once no reader can still be
    // using it: readers hold the active-half index for one packet, inside an RCU read-side section,
    // so a full RCU grace period after the half stopped being active is enough. A background thread
    // observes grace periods with membarrier(MEMBARRIER_CMD_GLOBAL) (which is synchronize_rcu());
    // where that is unavailable, kHalfQuiesce of wall time stands in. A change before that (or
    // the first one after a restart) publishes a fresh inner map instead, which waits for a grace
    // period inside the kernel (milliseconds).
    static constexpr std::chrono::seconds kHalfQuiesce{1};

    // Binds typed accessors (checking every map's layout against the ABI).
    static Result<BpfLbMaps> bind(const LbMapFds& fds);

    Status set_config(const kxlb_config& cfg) override;
    Status put_service(const kxlb_vip_key& key, const kxlb_service& svc) override;
    Status delete_service(const kxlb_vip_key& key) override;
    Status put_vip_addr(const kxlb_vip_addr_key& key, std::uint32_t frontends) override;
    Status delete_vip_addr(const kxlb_vip_addr_key& key) override;
    Status put_backend(std::uint32_t id, const kxlb_backend& be) override;
    Status clear_backend(std::uint32_t id) override;
    Status swap_maglev(std::uint32_t svc_id, std::span<const std::uint32_t> table) override;
    Status swap_maglev_many(std::span<const TableUpdate> updates) override;
    Status put_source_range(const kxlb_src_range_key& key) override;
    Status delete_source_range(const kxlb_src_range_key& key) override;
    Status set_frontend_filter(const kxlb_frontend_filter& filter) override;
    Status add_tx_port(std::uint32_t ifindex) override;
    Result<std::vector<ServiceEntry>> read_services() const override;
    Result<std::vector<BackendEntry>> read_backends() const override;
    Result<std::vector<kxlb_src_range_key>> read_source_ranges() const override;

private:
    BpfLbMaps(TypedMap<std::uint32_t, kxlb_config> config, TypedMap<kxlb_vip_key, kxlb_service> services,
              TypedMap<kxlb_vip_addr_key, std::uint32_t> vip_addrs, TypedMap<std::uint32_t, kxlb_backend> backends,
              TypedMap<std::uint32_t, kxlb_frontend_filter> filter,
              TypedMap<kxlb_src_range_key, std::uint32_t> source_ranges, int maglev_fd, int tx_ports_fd,
              int flow_cache_fd)
        : config_(config),
          services_(services),
          vip_addrs_(vip_addrs),
          backends_(backends),
          filter_(filter),
          source_ranges_(source_ranges),
          maglev_fd_(maglev_fd),
          tx_ports_fd_(tx_ports_fd),
          flow_cache_fd_(flow_cache_fd) {}

    TypedMap<std::uint32_t, kxlb_config> config_;
    TypedMap<kxlb_vip_key, kxlb_service> services_;
    TypedMap<kxlb_vip_addr_key, std::uint32_t> vip_addrs_;
    TypedMap<std::uint32_t, kxlb_backend> backends_;
    TypedMap<std::uint32_t, kxlb_frontend_filter> filter_;
    TypedMap<kxlb_src_range_key, std::uint32_t> source_ranges_;
    int maglev_fd_;
    int tx_ports_fd_;
    int flow_cache_fd_;
    // Per service: since when the inactive half of its table has been inactive (epoch: never was).
    std::map<std::uint32_t, std::chrono::steady_clock::time_point> half_free_since_;
    Status publish_new_table(std::uint32_t svc_id, std::span<const std::uint32_t> table);
    // A filled inner map for table, not yet published.
    Result<UniqueFd> new_table(std::span<const std::uint32_t> table);
    // Rewrites the inactive half and flips to it; false (nothing written) if not possible in place.
    Result<bool> flip_in_place(std::uint32_t svc_id, std::span<const std::uint32_t> table);
};

}  // namespace kxlb
