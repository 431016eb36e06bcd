// NodeDatapath: pinned load, adoption and attachment of the node's BPF programs.
#include "agent/datapath.hpp"

#include <net/if.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

namespace kxlb::agent {

DatapathOptions datapath_options(const AgentConfig& cfg) {
    DatapathOptions o;
    o.pin_root = cfg.pin_path;
    o.ct_entries = cfg.conntrack_entries;
    o.socket_lb_cgroup = cfg.socket_lb_cgroup;
    o.lb.maglev_size = cfg.maglev_size;
    o.lb.hash_seed = cfg.hash_seed;
    return o;
}

Result<std::unique_ptr<NodeDatapath>> NodeDatapath::open(const DatapathOptions& opts) {
    PinLayout layout{opts.pin_root};
    if (auto st = prepare_pin_dirs(layout); !st) return st.error();
    XdpLbLoadOptions xo;
    xo.ct_entries = opts.ct_entries;
    xo.pin_root = layout.root;
    auto xdp = XdpLbProgram::load(xo);
    if (!xdp) return Error{xdp.error().code, "load XDP datapath: " + xdp.error().message};
    auto rev = LocalRevProgram::load_pinned(layout);
    if (!rev) return Error{rev.error().code, "load the local backends' reply translation: " + rev.error().message};
    std::optional<SockLbProgram> sock;
    if (!opts.socket_lb_cgroup.empty()) {
        auto s = SockLbProgram::load_pinned(layout);
        if (!s) return Error{s.error().code, "load socket-LB hooks: " + s.error().message};
        sock.emplace(std::move(s).value());
    }
    auto maps = BpfLbMaps::bind(xdp->lb_map_fds());
    if (!maps) return maps.error();
    std::unique_ptr<NodeDatapath> dp(new NodeDatapath(layout, std::move(xdp).value(), std::move(rev).value(),
                                                      std::move(sock), std::move(maps).value()));
    auto programmer = LbProgrammer::adopt(dp->maps_, opts.lb);
    if (!programmer) return programmer.error();
    dp->programmer_.emplace(std::move(programmer).value());
    if (dp->sock_) {
        auto links = dp->sock_->attach_pinned(opts.socket_lb_cgroup, layout);
        if (!links) return Error{links.error().code, "attach socket-LB hooks: " + links.error().message};
        dp->cgroup_links_ = std::move(links).value();
    }
    return dp;
}

namespace {

// Native XDP through the pinned link at path, or generic when native fails and the interface allows it.
Result<Link> attach_with_fallback(const bpf_program* prog, const InterfaceConfig& iface, int ifindex,
                                  const std::string& path) {
    auto link = attach_xdp_pinned(prog, ifindex, XdpMode::Native, path);
    if (!link && iface.allow_generic) {
        spdlog::warn(
            "interface {}: native XDP failed ({}); falling back to generic mode as configured: "
            "packets take the slow skb path",
            iface.name, link.error().message);
        link = attach_xdp_pinned(prog, ifindex, XdpMode::Generic, path);
    }
    if (!link) return Error{link.error().code, "interface " + iface.name + ": " + link.error().message};
    return link;
}

}  // namespace

Status NodeDatapath::attach(const InterfaceConfig& iface, int ifindex) {
    auto link = attach_with_fallback(xdp_.program(), iface, ifindex, layout_.xdp_link(iface.name));
    if (!link) return link.error();
    // XDP_REDIRECT toward this interface (next hop on another NIC) needs it in the devmap.
    if (auto st = maps_.add_tx_port(static_cast<std::uint32_t>(ifindex)); !st)
        spdlog::warn("interface {}: adding to the redirect map: {}", iface.name, st.error().message);
    xdp_links_.insert_or_assign(iface.name, Attached{ifindex, std::move(link).value()});
    auto filter = rev_.attach(ifindex);
    if (!filter)
        return Error{filter.error().code, "interface " + iface.name + ": tc egress: " + filter.error().message};
    filter->keep();  // stays for the next agent, like the pinned link
    return {};
}

void NodeDatapath::detach(const std::string& ifname) {
    if (auto it = xdp_links_.find(ifname); it != xdp_links_.end())
        if (auto r = LocalRevProgram::detach(it->second.ifindex); !r)
            spdlog::warn("interface {}: removing the tc egress filter: {}", ifname, r.error().message);
    ::unlink(layout_.xdp_link(ifname).c_str());
    xdp_links_.erase(ifname);  // closing the last fd of an unpinned link detaches it
}

int remove_tc_filters(const PinLayout& layout) {
    int n = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(layout.links_dir(), ec)) {
        const auto name = e.path().filename().string();
        if (!name.starts_with("xdp_")) continue;
        const unsigned ifindex = ::if_nametoindex(name.substr(4).c_str());
        if (ifindex == 0) continue;  // the interface is gone, and its filters with it
        if (auto r = LocalRevProgram::detach(static_cast<int>(ifindex)); r && *r) ++n;
    }
    return n;
}

std::optional<int> NodeDatapath::attached_ifindex(const std::string& ifname) const {
    auto it = xdp_links_.find(ifname);
    if (it == xdp_links_.end()) return std::nullopt;
    return it->second.ifindex;
}

std::vector<std::string> NodeDatapath::attached_interfaces() const {
    std::vector<std::string> out;
    for (const auto& [name, a] : xdp_links_) out.push_back(name);
    return out;
}

Status NodeDatapath::set_config(const LbConfig& cfg) {
    if (auto v = validate(cfg); !v) return v;
    return maps_.set_config(cfg.to_abi());
}

int remove_decap_links(const PinLayout& layout) {
    int n = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(layout.links_dir(), ec))
        if (e.path().filename().string().starts_with("decap_") && std::filesystem::remove(e.path(), ec)) ++n;
    return n;
}

Result<std::unique_ptr<DecapDatapath>> DecapDatapath::open(const PinLayout& layout) {
    if (auto st = prepare_pin_dirs(layout); !st) return st.error();
    auto prog = XdpDecapProgram::load(layout.root);
    if (!prog) return Error{prog.error().code, "DSR decapsulation program: " + prog.error().message};
    return std::unique_ptr<DecapDatapath>(new DecapDatapath(layout, std::move(prog).value()));
}

Status DecapDatapath::attach(const InterfaceConfig& iface, int ifindex) {
    auto link = attach_with_fallback(prog_.program(), iface, ifindex, layout_.decap_link(iface.name));
    if (!link) return link.error();
    links_.insert_or_assign(iface.name, Attached{ifindex, std::move(link).value()});
    return {};
}

void DecapDatapath::detach(const std::string& ifname) {
    ::unlink(layout_.decap_link(ifname).c_str());
    links_.erase(ifname);
}

std::optional<int> DecapDatapath::attached_ifindex(const std::string& ifname) const {
    auto it = links_.find(ifname);
    if (it == links_.end()) return std::nullopt;
    return it->second.ifindex;
}

std::vector<std::string> DecapDatapath::attached_interfaces() const {
    std::vector<std::string> out;
    for (const auto& [name, a] : links_) out.push_back(name);
    return out;
}

Status DecapDatapath::set_addresses(const std::vector<IpAddr>& addrs) {
    for (const auto& a : addrs)
        if (auto st = prog_.add_address(a); !st) return st;
    auto have = prog_.addresses();
    if (!have) return have.error();
    for (const auto& a : *have)
        if (std::find(addrs.begin(), addrs.end(), a) == addrs.end())
            if (auto r = prog_.remove_address(a); !r) return r.error();
    return {};
}

}  // namespace kxlb::agent
