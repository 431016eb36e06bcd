// BpfLbMaps: LbMaps over the real datapath maps.
#include "lib/lb_maps.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <numeric>
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
    if (auto st = detail::check_map_layout(fds.maglev, sizeof(std::uint32_t), sizeof(std::uint32_t), false); !st)
        return st.error();
    return BpfLbMaps(*config, *services, *vips, *backends, *filter, fds.maglev, fds.tx_ports);
}

Status BpfLbMaps::set_config(const kxlb_config& cfg) { return config_.update(0, cfg); }

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

Status BpfLbMaps::swap_maglev(std::uint32_t svc_id, std::span<const std::uint32_t> table) {
    if (table.empty()) {
        if (bpf_map_delete_elem(maglev_fd_, &svc_id) != 0 && errno != ENOENT)
            return Error::from_errno(errno, "remove Maglev table of service " + std::to_string(svc_id));
        return {};
    }
    if (table.size() > KXLB_MAX_MAGLEV_SIZE)
        return Error::invalid("Maglev table of " + std::to_string(table.size()) + " slots exceeds the maximum " +
                              std::to_string(KXLB_MAX_MAGLEV_SIZE));
    // Build the new inner table off to the side, then publish it with one outer-map update.
    LIBBPF_OPTS(bpf_map_create_opts, opts);
    opts.map_flags = BPF_F_INNER_MAP;
    const auto entries = static_cast<std::uint32_t>(table.size() + 1);
    UniqueFd inner(bpf_map_create(BPF_MAP_TYPE_ARRAY, "kxlb_maglev_t", sizeof(std::uint32_t), sizeof(std::uint32_t),
                                  entries, &opts));
    if (!inner.valid()) return Error::from_errno(errno, "create Maglev table");
    std::vector<std::uint32_t> keys(entries), values(entries);
    std::iota(keys.begin(), keys.end(), 0u);
    values[KXLB_MAGLEV_SIZE_SLOT] = static_cast<std::uint32_t>(table.size());
    std::copy(table.begin(), table.end(), values.begin() + 1);
    __u32 count = entries;
    LIBBPF_OPTS(bpf_map_batch_opts, bopts);
    if (bpf_map_update_batch(inner.get(), keys.data(), values.data(), &count, &bopts) != 0)
        return Error::from_errno(errno, "fill Maglev table");
    int fd = inner.get();
    if (bpf_map_update_elem(maglev_fd_, &svc_id, &fd, BPF_ANY) != 0)
        return Error::from_errno(errno, "publish Maglev table of service " + std::to_string(svc_id));
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
