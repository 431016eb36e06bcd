// BpfLbMaps: LbMaps over the real datapath maps.
#include "lib/lb_maps.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#include "lib/unique_fd.hpp"

namespace kxlb {

Result<BpfLbMaps> BpfLbMaps::bind(const LbMapFds& fds) {
    auto config = TypedMap<std::uint32_t, kxlb_config>::bind(fds.config);
    if (!config) return config.error();
    auto services = TypedMap<kxlb_vip_key, kxlb_service>::bind(fds.services);
    if (!services) return services.error();
    auto vips = TypedMap<kxlb_vip_addr_key, std::uint32_t>::bind(fds.vip_addrs);
    if (!vips) return vips.error();
    auto backends = TypedMap<std::uint32_t, kxlb_backend>::bind(fds.backends);
    if (!backends) return backends.error();
    auto filter = TypedMap<std::uint32_t, kxlb_frontend_filter>::bind(fds.frontend_filter);
    if (!filter) return filter.error();
    auto ranges = TypedMap<kxlb_src_range_key, std::uint32_t>::bind(fds.source_ranges);
    if (!ranges) return ranges.error();
    if (auto st = detail::check_map_layout(fds.maglev, sizeof(std::uint32_t), sizeof(std::uint32_t), false); !st)
        return st.error();
    if (fds.flow_cache >= 0)
        if (auto cache = PerCpuArray<kxlb_flow_cache_entry>::bind(fds.flow_cache); !cache) return cache.error();
    return BpfLbMaps(*config, *services, *vips, *backends, *filter, *ranges, fds.maglev, fds.tx_ports, fds.flow_cache);
}

Status BpfLbMaps::put_source_range(const kxlb_src_range_key& key) { return source_ranges_.update(key, 1); }

Status BpfLbMaps::delete_source_range(const kxlb_src_range_key& key) {
    auto r = source_ranges_.erase(key);
    if (!r) return r.error();
    return {};
}

Result<std::vector<kxlb_src_range_key>> BpfLbMaps::read_source_ranges() const {
    std::vector<kxlb_src_range_key> out;
    auto st = source_ranges_.for_each([&](const kxlb_src_range_key& k, std::uint32_t) { out.push_back(k); });
    if (!st) return st.error();
    return out;
}

Status clear_flow_cache(int fd) {
    if (fd < 0) return {};
    auto cache = PerCpuArray<kxlb_flow_cache_entry>::bind(fd);
    if (!cache) return cache.error();
    return cache->clear(KXLB_FLOW_CACHE_SLOTS);
}

Status BpfLbMaps::set_config(const kxlb_config& cfg) {
    auto cur = config_.lookup(0);
    if (cur && *cur && std::memcmp(&**cur, &cfg, sizeof(cfg)) == 0) return {};  // unchanged: keep the cache
    if (auto st = config_.update(0, cfg); !st) return st;
    return clear_flow_cache(flow_cache_fd_);
}

Status BpfLbMaps::put_service(const kxlb_vip_key& key, const kxlb_service& svc) { return services_.update(key, svc); }

Status BpfLbMaps::delete_service(const kxlb_vip_key& key) {
    auto r = services_.erase(key);
    if (!r) return r.error();
    return {};
}

Status BpfLbMaps::put_vip_addr(const kxlb_vip_addr_key& key, std::uint32_t frontends) {
    return vip_addrs_.update(key, frontends);
}

Status BpfLbMaps::delete_vip_addr(const kxlb_vip_addr_key& key) {
    auto r = vip_addrs_.erase(key);
    if (!r) return r.error();
    return {};
}

Status BpfLbMaps::put_backend(std::uint32_t id, const kxlb_backend& be) { return backends_.update(id, be); }

Status BpfLbMaps::clear_backend(std::uint32_t id) { return backends_.update(id, kxlb_backend{}); }

namespace {

// Start time of the latest RCU grace period known to have completed: a background thread keeps
// calling membarrier(MEMBARRIER_CMD_GLOBAL), i.e. synchronize_rcu(), while tables are changing.
class GracePeriods {
public:
    static GracePeriods& instance() {
        static GracePeriods* g = new GracePeriods();  // the thread lives for the process
        return *g;
    }
    // Asks for a grace period to be observed soon (a half just became inactive).
    void request() { want_.store(true, std::memory_order_relaxed); }
    // True if a grace period that began after t has completed.
    bool completed_after(std::chrono::steady_clock::time_point t) {
        request();
        if (!supported_) return std::chrono::steady_clock::now() - t >= BpfLbMaps::kHalfQuiesce;
        return std::chrono::steady_clock::time_point(
                   std::chrono::steady_clock::duration(last_start_.load(std::memory_order_acquire))) > t;
    }

private:
    GracePeriods() {
        supported_ = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) > 0 &&
                     (::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) & MEMBARRIER_CMD_GLOBAL);
        if (supported_) std::thread([this] { run(); }).detach();
    }
    void run() {
        for (;;) {
            if (!want_.exchange(false, std::memory_order_relaxed)) {
                std::this_thread::sleep_for(std::chrono::milliseconds(20));  // idle: nobody waits
                continue;
            }
            const auto start = std::chrono::steady_clock::now();
            if (::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) != 0) {
                supported_ = false;
                return;
            }
            last_start_.store(start.time_since_epoch().count(), std::memory_order_release);
        }
    }
    std::atomic<bool> supported_{false};
    std::atomic<bool> want_{false};
    std::atomic<std::chrono::steady_clock::rep> last_start_{0};
};

// The inner map currently published for svc_id, or an invalid fd if there is none.
Result<UniqueFd> current_inner(int outer_fd, std::uint32_t svc_id) {
    std::uint32_t inner_id = 0;
    if (bpf_map_lookup_elem(outer_fd, &svc_id, &inner_id) != 0) {
        if (errno == ENOENT) return UniqueFd();
        return Error::from_errno(errno, "look up Maglev table of service " + std::to_string(svc_id));
    }
    UniqueFd fd(bpf_map_get_fd_by_id(inner_id));
    if (!fd.valid()) return Error::from_errno(errno, "open Maglev table of service " + std::to_string(svc_id));
    return fd;
}

Result<std::uint32_t> read_slot(int fd, std::uint32_t key) {
    std::uint32_t v = 0;
    if (bpf_map_lookup_elem(fd, &key, &v) != 0) return Error::from_errno(errno, "read Maglev slot");
    return v;
}

// A Maglev inner map (BPF_F_MMAPABLE) mapped into this process: slots are written with plain
// stores instead of one syscall element per slot. Array maps lay elements out at 8-byte strides,
// so slot i is the 32-bit word 2 * i.
class MappedTable {
public:
    static constexpr std::size_t kStride = 8 / sizeof(std::uint32_t);
    static Result<MappedTable> map(int fd, std::uint32_t entries) {
        const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        const std::size_t len = (std::size_t{entries} * 8 + page - 1) / page * page;
        void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) return Error::from_errno(errno, "map Maglev table");
        return MappedTable(static_cast<std::uint32_t*>(p), len);
    }
    MappedTable(MappedTable&& o) noexcept : p_(std::exchange(o.p_, nullptr)), len_(o.len_) {}
    MappedTable& operator=(MappedTable&&) = delete;
    ~MappedTable() {
        if (p_) ::munmap(p_, len_);
    }
    std::uint32_t& slot(std::uint32_t i) const { return p_[i * kStride]; }
    void write(std::uint32_t first, std::span<const std::uint32_t> values) const {
        for (std::size_t i = 0; i < values.size(); ++i) p_[(first + i) * kStride] = values[i];
    }

private:
    MappedTable(std::uint32_t* p, std::size_t len) : p_(p), len_(len) {}
    std::uint32_t* p_;
    std::size_t len_;
};

}  // namespace

Result<std::vector<std::uint32_t>> read_maglev_table(int outer_fd, std::uint32_t svc_id) {
    auto inner = current_inner(outer_fd, svc_id);
    if (!inner) return inner.error();
    if (!inner->valid()) return std::vector<std::uint32_t>{};
    auto size = read_slot(inner->get(), KXLB_MAGLEV_SIZE_SLOT);
    if (!size) return size.error();
    auto base = read_slot(inner->get(), KXLB_MAGLEV_ACTIVE_SLOT);
    if (!base) return base.error();
    std::vector<std::uint32_t> out(*size);
    for (std::uint32_t i = 0; i < *size; ++i) {
        auto v = read_slot(inner->get(), *base + i);
        if (!v) return v.error();
        out[i] = *v;
    }
    return out;
}

Status BpfLbMaps::swap_maglev(std::uint32_t svc_id, std::span<const std::uint32_t> table) {
    if (table.empty()) {
        half_free_since_.erase(svc_id);
        if (bpf_map_delete_elem(maglev_fd_, &svc_id) != 0 && errno != ENOENT)
            return Error::from_errno(errno, "remove Maglev table of service " + std::to_string(svc_id));
        return {};
    }
    if (table.size() > KXLB_MAX_MAGLEV_SIZE)
        return Error::invalid("Maglev table of " + std::to_string(table.size()) + " slots exceeds the maximum " +
                              std::to_string(KXLB_MAX_MAGLEV_SIZE));
    auto flipped = flip_in_place(svc_id, table);
    if (!flipped) return flipped.error();
    if (*flipped) return {};
    return publish_new_table(svc_id, table);
}

Result<bool> BpfLbMaps::flip_in_place(std::uint32_t svc_id, std::span<const std::uint32_t> table) {
    const auto now = std::chrono::steady_clock::now();
    auto quiet = half_free_since_.find(svc_id);
    if (quiet == half_free_since_.end()) return false;  // unknown (e.g. after a restart)
    const bool never_active = quiet->second == std::chrono::steady_clock::time_point{};
    if (!never_active && !GracePeriods::instance().completed_after(quiet->second)) return false;
    auto inner = current_inner(maglev_fd_, svc_id);
    if (!inner) return inner.error();
    if (!inner->valid()) return false;
    const auto size = static_cast<std::uint32_t>(table.size());
    auto cur_size = read_slot(inner->get(), KXLB_MAGLEV_SIZE_SLOT);
    if (!cur_size) return cur_size.error();
    if (*cur_size != size) return false;  // another size needs another inner map
    auto mapped = MappedTable::map(inner->get(), KXLB_MAGLEV_HEADER_SLOTS + 2 * size);
    if (!mapped) return mapped.error();
    std::atomic_ref<std::uint32_t> active(mapped->slot(KXLB_MAGLEV_ACTIVE_SLOT));
    const std::uint32_t base = active.load(std::memory_order_relaxed);
    const std::uint32_t inactive =
        base == KXLB_MAGLEV_HEADER_SLOTS ? KXLB_MAGLEV_HEADER_SLOTS + size : KXLB_MAGLEV_HEADER_SLOTS;
    mapped->write(inactive, table);
    // Release: the new half's slots are visible before the index that points at them.
    active.store(inactive, std::memory_order_release);
    quiet->second = now;  // the half that was active until now
    GracePeriods::instance().request();
    return true;
}

Status BpfLbMaps::swap_maglev_many(std::span<const TableUpdate> updates) {
    std::vector<std::uint32_t> keys;
    std::vector<UniqueFd> fresh;
    for (const auto& u : updates) {
        if (u.table.empty() || u.table.size() > KXLB_MAX_MAGLEV_SIZE) {
            if (auto st = swap_maglev(u.svc_id, u.table); !st) return st;
            continue;
        }
        auto flipped = flip_in_place(u.svc_id, u.table);
        if (!flipped) return flipped.error();
        if (*flipped) continue;
        auto inner = new_table(u.table);
        if (!inner) return inner.error();
        keys.push_back(u.svc_id);
        fresh.push_back(std::move(inner).value());
    }
    if (keys.empty()) return {};
    std::vector<std::uint32_t> fds;
    for (const auto& f : fresh) fds.push_back(static_cast<std::uint32_t>(f.get()));
    __u32 count = static_cast<__u32>(keys.size());
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    if (bpf_map_update_batch(maglev_fd_, keys.data(), fds.data(), &count, &opts) != 0)
        return Error::from_errno(errno, "publish " + std::to_string(keys.size()) + " Maglev tables");
    for (auto k : keys) half_free_since_[k] = {};  // their second halves were never active
    return {};
}

Result<UniqueFd> BpfLbMaps::new_table(std::span<const std::uint32_t> table) {
    LIBBPF_OPTS(bpf_map_create_opts, opts);
    opts.map_flags = BPF_F_INNER_MAP | BPF_F_MMAPABLE;
    const auto size = static_cast<std::uint32_t>(table.size());
    const std::uint32_t entries = KXLB_MAGLEV_HEADER_SLOTS + 2 * size;
    UniqueFd inner(bpf_map_create(BPF_MAP_TYPE_ARRAY, "kxlb_maglev_t", sizeof(std::uint32_t), sizeof(std::uint32_t),
                                  entries, &opts));
    if (!inner.valid()) return Error::from_errno(errno, "create Maglev table");
    auto mapped = MappedTable::map(inner.get(), entries);
    if (!mapped) return mapped.error();
    mapped->slot(KXLB_MAGLEV_SIZE_SLOT) = size;
    mapped->slot(KXLB_MAGLEV_ACTIVE_SLOT) = KXLB_MAGLEV_HEADER_SLOTS;
    mapped->write(KXLB_MAGLEV_HEADER_SLOTS, table);
    return inner;  // published later with an outer-map update (a full barrier)
}

Status BpfLbMaps::publish_new_table(std::uint32_t svc_id, std::span<const std::uint32_t> table) {
    // Build the new inner table off to the side, then publish it with one outer-map update.
    auto inner = new_table(table);
    if (!inner) return inner.error();
    int fd = inner->get();
    if (bpf_map_update_elem(maglev_fd_, &svc_id, &fd, BPF_ANY) != 0)
        return Error::from_errno(errno, "publish Maglev table of service " + std::to_string(svc_id));
    // The second half has never been active: the next change may write it at once.
    half_free_since_[svc_id] = {};
    return {};  // the outer map now holds the table; our fd closes
}

Status BpfLbMaps::set_frontend_filter(const kxlb_frontend_filter& filter) { return filter_.update(0, filter); }

Status BpfLbMaps::add_tx_port(std::uint32_t ifindex) {
    bpf_devmap_val val{};
    val.ifindex = ifindex;
    if (bpf_map_update_elem(tx_ports_fd_, &ifindex, &val, BPF_ANY) != 0)
        return Error::from_errno(errno, "add TX port ifindex " + std::to_string(ifindex));
    return {};
}

Result<std::vector<LbMaps::ServiceEntry>> BpfLbMaps::read_services() const {
    std::vector<ServiceEntry> out;
    auto st = services_.for_each([&](const kxlb_vip_key& k, const kxlb_service& v) { out.emplace_back(k, v); });
    if (!st) return st.error();
    return out;
}

Result<std::vector<LbMaps::BackendEntry>> BpfLbMaps::read_backends() const {
    std::vector<BackendEntry> out;
    auto st = backends_.for_each([&](std::uint32_t id, const kxlb_backend& v) {
        if (v.family != 0) out.emplace_back(id, v);
    });
    if (!st) return st.error();
    return out;
}

}  // namespace kxlb
