// Opening kxlb's pinned maps and links.
#include "ctl/pinned_maps.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <utility>

namespace kxlb::ctl {

Result<PinnedMaps> PinnedMaps::open(const std::string& pin_root) {
    PinnedMaps m(PinLayout{pin_root});
    const std::string probe = m.layout_.map("kxlb_services");
    struct stat st {};
    if (::stat(probe.c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return Error{ENOENT, "no pinned kxlb maps under " + pin_root + ": is kxlb-agent running? (--pin-path)"};
        return Error::from_errno(errno, "open pinned map " + probe);
    }
    auto& f = m.lb_;
    const std::pair<const char*, int*> required[] = {
        {"kxlb_config", &f.config},
        {"kxlb_services", &f.services},
        {"kxlb_vip_addrs", &f.vip_addrs},
        {"kxlb_backends", &f.backends},
        {"kxlb_maglev", &f.maglev},
        {"kxlb_ct", &f.ct},
        {"kxlb_nat", &f.nat},
        {"kxlb_tx_ports", &f.tx_ports},
        {"kxlb_reasons", &f.reasons},
        {"kxlb_svc_stats", &f.svc_stats},
        {"kxlb_backend_stats", &f.backend_stats},
        {"kxlb_frontend_filter", &f.frontend_filter},
        {"kxlb_source_ranges", &f.source_ranges},
        {"kxlb_affinity", &f.affinity},
    };
    for (const auto& [name, fd] : required)
        if (auto st = m.open_map(name, fd, true); !st) return st.error();
    const std::pair<const char*, int*> optional[] = {
        {"kxlb_parse_stats", &m.parse_stats_},       {"kxlb_flow_cache", &f.flow_cache},
        {"kxlb_fcache_stats", &f.flow_cache_stats},  {"kxlb_sock_reasons", &m.sock_reasons_},
        {"kxlb_sock_svc_stats", &m.sock_svc_stats_}, {"kxlb_sock_backend_stats", &m.sock_backend_stats_},
    };
    for (const auto& [name, fd] : optional)
        if (auto st = m.open_map(name, fd, false); !st) return st.error();
    return m;
}

Status PinnedMaps::open_map(const char* name, int* fd, bool required) {
    const std::string path = layout_.map(name);
    UniqueFd owned(bpf_obj_get(path.c_str()));
    if (!owned.valid()) {
        if (errno == ENOENT && !required) return {};
        if (errno == ENOENT)
            return Error{ENOENT, "pinned map " + path + " is missing: the pins under " + layout_.root +
                                     " are incomplete (another kxlb version?)"};
        return Error::from_errno(errno, "open pinned map " + path);
    }
    *fd = owned.get();
    owned_.push_back(std::move(owned));
    return {};
}

Result<std::vector<PinnedXdpLink>> PinnedMaps::xdp_links() const {
    namespace fs = std::filesystem;
    std::vector<PinnedXdpLink> out;
    std::error_code ec;
    if (!fs::exists(layout_.links_dir(), ec)) return out;
    for (const auto& entry : fs::directory_iterator(layout_.links_dir(), ec)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind("xdp_", 0) != 0) continue;
        UniqueFd fd(bpf_obj_get(entry.path().c_str()));
        if (!fd.valid()) return Error::from_errno(errno, "open pinned link " + entry.path().string());
        bpf_link_info info{};
        std::uint32_t len = sizeof(info);
        if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0)
            return Error::from_errno(errno, "inspect pinned link " + entry.path().string());
        if (info.type != BPF_LINK_TYPE_XDP) continue;
        out.push_back(PinnedXdpLink{name.substr(4), info.xdp.ifindex});
    }
    if (ec) return Error{ec.value(), "list " + layout_.links_dir() + ": " + ec.message()};
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.ifname < b.ifname; });
    return out;
}

}  // namespace kxlb::ctl
