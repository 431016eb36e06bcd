// Skeleton-backed XDP program owners. The skeleton headers are included only here, so the rest of
// the code base sees typed C++ APIs, never raw skeleton structs or map names.
#include "lib/xdp_programs.hpp"

#include "lib/bpf_map.hpp"
#include "lib/pinning.hpp"
#include "lib/skeleton.hpp"
#include "xdp_lb.skel.h"
#include "xdp_pass.skel.h"

namespace kxlb {

KXLB_SKELETON_OPS(xdp_lb_bpf);
KXLB_SKELETON_OPS(xdp_pass_bpf);

// ---- XdpLbProgram --------------------------------------------------------------------------

struct XdpLbProgram::Impl {
    Skeleton<xdp_lb_bpf_ops> skel;
    PerCpuArray<kxlb_parse_counters> parse_stats;
};

Result<XdpLbProgram> XdpLbProgram::load(const XdpLbLoadOptions& opts) {
    if (opts.ct_entries < 1024) return Error::invalid("conntrack size must be at least 1024 entries");
    auto skel = Skeleton<xdp_lb_bpf_ops>::open();
    if (!skel) return skel.error();
    for (bpf_map* m : {skel.value()->maps.kxlb_ct, skel.value()->maps.kxlb_nat})
        if (int err = bpf_map__set_max_entries(m, opts.ct_entries); err != 0)
            return Error::from_errno(err, "size conntrack maps");
    skel.value()->rodata->kxlb_flow_cache_on = opts.flow_cache ? 1 : 0;
    if (!opts.pin_root.empty())
        if (auto st = use_pinned_maps(skel.value()->obj, PinLayout{opts.pin_root}); !st) return st.error();
    if (auto st = skel->load(); !st) return st.error();
    auto stats = PerCpuArray<kxlb_parse_counters>::bind(skel.value()->maps.kxlb_parse_stats);
    if (!stats) return stats.error();
    return XdpLbProgram(std::make_unique<Impl>(Impl{std::move(skel).value(), stats.value()}));
}

XdpLbProgram::XdpLbProgram(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
XdpLbProgram::~XdpLbProgram() = default;
XdpLbProgram::XdpLbProgram(XdpLbProgram&&) noexcept = default;
XdpLbProgram& XdpLbProgram::operator=(XdpLbProgram&&) noexcept = default;

int XdpLbProgram::prog_fd() const { return bpf_program__fd(impl_->skel->progs.kxlb_xdp_lb); }
const bpf_program* XdpLbProgram::program() const { return impl_->skel->progs.kxlb_xdp_lb; }

Result<Link> XdpLbProgram::attach_pinned(int ifindex, XdpMode mode, const std::string& link_path) const {
    return attach_xdp_pinned(program(), ifindex, mode, link_path);
}

LbMapFds lb_map_fds(const xdp_lb_bpf& skel) {
    const auto& m = skel.maps;
    LbMapFds f;
    f.config = bpf_map__fd(m.kxlb_config);
    f.services = bpf_map__fd(m.kxlb_services);
    f.vip_addrs = bpf_map__fd(m.kxlb_vip_addrs);
    f.backends = bpf_map__fd(m.kxlb_backends);
    f.maglev = bpf_map__fd(m.kxlb_maglev);
    f.ct = bpf_map__fd(m.kxlb_ct);
    f.nat = bpf_map__fd(m.kxlb_nat);
    f.tx_ports = bpf_map__fd(m.kxlb_tx_ports);
    f.reasons = bpf_map__fd(m.kxlb_reasons);
    f.svc_stats = bpf_map__fd(m.kxlb_svc_stats);
    f.backend_stats = bpf_map__fd(m.kxlb_backend_stats);
    f.frontend_filter = bpf_map__fd(m.kxlb_frontend_filter);
    f.source_ranges = bpf_map__fd(m.kxlb_source_ranges);
    f.affinity = bpf_map__fd(m.kxlb_affinity);
    f.flow_cache = bpf_map__fd(m.kxlb_flow_cache);
    f.flow_cache_stats = bpf_map__fd(m.kxlb_fcache_stats);
    return f;
}

LbMapFds XdpLbProgram::lb_map_fds() const { return kxlb::lb_map_fds(*impl_->skel.get()); }

Result<ParseStats> XdpLbProgram::parse_stats() const {
    auto per_cpu = impl_->parse_stats.lookup(0);
    if (!per_cpu) return per_cpu.error();
    ParseStats out;
    for (const auto& cpu : *per_cpu)
        for (std::size_t id = 0; id < kParseStatCount; ++id) {
            out.by_id[id].packets += cpu.by_id[id].packets;
            out.by_id[id].bytes += cpu.by_id[id].bytes;
        }
    return out;
}

Status XdpLbProgram::reset_parse_stats() { return impl_->parse_stats.fill(0, kxlb_parse_counters{}); }

// ---- XdpPassProgram ------------------------------------------------------------------------

struct XdpPassProgram::Impl {
    Skeleton<xdp_pass_bpf_ops> skel;
};

Result<XdpPassProgram> XdpPassProgram::load() {
    auto skel = open_and_load<xdp_pass_bpf_ops>();
    if (!skel) return skel.error();
    return XdpPassProgram(std::make_unique<Impl>(Impl{std::move(skel).value()}));
}

XdpPassProgram::XdpPassProgram(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
XdpPassProgram::~XdpPassProgram() = default;
XdpPassProgram::XdpPassProgram(XdpPassProgram&&) noexcept = default;
XdpPassProgram& XdpPassProgram::operator=(XdpPassProgram&&) noexcept = default;

int XdpPassProgram::prog_fd() const { return bpf_program__fd(impl_->skel->progs.kxlb_xdp_pass); }
const bpf_program* XdpPassProgram::program() const { return impl_->skel->progs.kxlb_xdp_pass; }

}  // namespace kxlb
