// TraceProgram: the XDP datapath loaded on shared state maps and private write maps.
#include "ctl/trace_program.hpp"

#include <utility>

#include "lib/skeleton.hpp"
#include "lib/xdp_programs.hpp"
#include "xdp_lb.skel.h"

namespace kxlb::ctl {

KXLB_SKELETON_OPS(xdp_lb_bpf);

namespace {

// Capacity of the private conntrack maps: a trace inserts a handful of entries.
constexpr std::uint32_t kPrivateCtEntries = 1024;

}  // namespace

struct TraceProgram::Impl {
    Skeleton<xdp_lb_bpf_ops> skel;
};

Result<TraceProgram> TraceProgram::load(const LbMapFds& live) {
    auto skel = Skeleton<xdp_lb_bpf_ops>::open();
    if (!skel) return skel.error();
    auto& m = skel.value()->maps;
    const std::pair<bpf_map*, int> shared[] = {
        {m.kxlb_config, live.config},       {m.kxlb_services, live.services},
        {m.kxlb_vip_addrs, live.vip_addrs}, {m.kxlb_backends, live.backends},
        {m.kxlb_maglev, live.maglev},       {m.kxlb_frontend_filter, live.frontend_filter},
        {m.kxlb_tx_ports, live.tx_ports},   {m.kxlb_source_ranges, live.source_ranges},
    };
    for (const auto& [map, fd] : shared) {
        if (fd < 0) return Error::invalid(std::string("trace: live map ") + bpf_map__name(map) + " is not open");
        if (int err = bpf_map__reuse_fd(map, fd); err != 0)
            return Error::from_errno(err, std::string("trace: share map ") + bpf_map__name(map));
    }
    // Private maps: small where the content does not matter (per-service/backend counters are not
    // read back; out-of-range ids are simply not counted), full-size where it does (reasons).
    for (bpf_map* map : {m.kxlb_ct, m.kxlb_nat, m.kxlb_affinity})
        if (int err = bpf_map__set_max_entries(map, kPrivateCtEntries); err != 0)
            return Error::from_errno(err, "trace: size private conntrack");
    for (bpf_map* map : {m.kxlb_svc_stats, m.kxlb_backend_stats})
        if (int err = bpf_map__set_max_entries(map, 1); err != 0)
            return Error::from_errno(err, "trace: size private counters");
    if (auto st = skel->load(); !st) return st.error();
    return TraceProgram(std::make_unique<Impl>(Impl{std::move(skel).value()}));
}

TraceProgram::TraceProgram(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TraceProgram::~TraceProgram() = default;
TraceProgram::TraceProgram(TraceProgram&&) noexcept = default;
TraceProgram& TraceProgram::operator=(TraceProgram&&) noexcept = default;

int TraceProgram::prog_fd() const { return bpf_program__fd(impl_->skel->progs.kxlb_xdp_lb); }

LbMapFds TraceProgram::fds() const { return kxlb::lb_map_fds(*impl_->skel.get()); }

}  // namespace kxlb::ctl
