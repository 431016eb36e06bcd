// SockLbProgram: skeleton owner for the cgroup socket-LB hooks.
#include "lib/sock_lb_program.hpp"

#include <bpf/bpf.h>
#include <fcntl.h>

#include "lib/bpf_map.hpp"
#include "lib/pinning.hpp"
#include "lib/skeleton.hpp"
#include "lib/unique_fd.hpp"
#include "sock_lb.skel.h"

namespace kxlb {

KXLB_SKELETON_OPS(sock_lb_bpf);

struct SockLbProgram::Impl {
    Skeleton<sock_lb_bpf_ops> skel;
    PerCpuArray<std::uint64_t> reasons;
    PerCpuArray<std::uint64_t> svc;
    PerCpuArray<std::uint64_t> backend;
};

namespace {

std::uint64_t sum(const std::vector<std::uint64_t>& v) {
    std::uint64_t s = 0;
    for (auto x : v) s += x;
    return s;
}

}  // namespace

Result<SockLbProgram> SockLbProgram::load(const LbMapFds& shared) { return load_with(&shared, nullptr); }

Result<SockLbProgram> SockLbProgram::load_pinned(const PinLayout& layout) { return load_with(nullptr, &layout); }

Result<SockLbProgram> SockLbProgram::load_with(const LbMapFds* shared, const PinLayout* pin) {
    auto skel = Skeleton<sock_lb_bpf_ops>::open();
    if (!skel) return skel.error();
    auto& maps = skel.value()->maps;
    if (shared) {
        const std::pair<bpf_map*, int> reuse[] = {{maps.kxlb_config, shared->config},
                                                  {maps.kxlb_services, shared->services},
                                                  {maps.kxlb_vip_addrs, shared->vip_addrs},
                                                  {maps.kxlb_backends, shared->backends},
                                                  {maps.kxlb_maglev, shared->maglev}};
        for (const auto& [map, fd] : reuse) {
            if (fd < 0) return Error::invalid(std::string("socket LB: shared map ") + bpf_map__name(map) + " missing");
            if (int err = bpf_map__reuse_fd(map, fd); err != 0)
                return Error::from_errno(err, std::string("socket LB: reuse map ") + bpf_map__name(map));
        }
    } else if (auto st = use_pinned_maps(skel.value()->obj, *pin); !st) {
        return st.error();
    }
    if (auto st = skel->load(); !st) return st.error();
    auto reasons = PerCpuArray<std::uint64_t>::bind(maps.kxlb_sock_reasons);
    if (!reasons) return reasons.error();
    auto svc = PerCpuArray<std::uint64_t>::bind(maps.kxlb_sock_svc_stats);
    if (!svc) return svc.error();
    auto be = PerCpuArray<std::uint64_t>::bind(maps.kxlb_sock_backend_stats);
    if (!be) return be.error();
    return SockLbProgram(std::make_unique<Impl>(Impl{std::move(skel).value(), *reasons, *svc, *be}));
}

SockLbProgram::SockLbProgram(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SockLbProgram::~SockLbProgram() = default;
SockLbProgram::SockLbProgram(SockLbProgram&&) noexcept = default;
SockLbProgram& SockLbProgram::operator=(SockLbProgram&&) noexcept = default;

std::vector<std::pair<bpf_program*, bpf_attach_type>> SockLbProgram::hooks() const {
    const auto& p = impl_->skel->progs;
    return {
        {p.kxlb_connect4, BPF_CGROUP_INET4_CONNECT},         {p.kxlb_connect6, BPF_CGROUP_INET6_CONNECT},
        {p.kxlb_sendmsg4, BPF_CGROUP_UDP4_SENDMSG},          {p.kxlb_sendmsg6, BPF_CGROUP_UDP6_SENDMSG},
        {p.kxlb_recvmsg4, BPF_CGROUP_UDP4_RECVMSG},          {p.kxlb_recvmsg6, BPF_CGROUP_UDP6_RECVMSG},
        {p.kxlb_getpeername4, BPF_CGROUP_INET4_GETPEERNAME}, {p.kxlb_getpeername6, BPF_CGROUP_INET6_GETPEERNAME},
    };
}

Result<std::vector<Link>> SockLbProgram::attach(const std::string& cgroup_path) const {
    UniqueFd cg(::open(cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg.valid()) return Error::from_errno(errno, "open cgroup " + cgroup_path);
    std::vector<Link> links;
    for (const auto& [prog, type] : hooks()) {
        int fd = bpf_link_create(bpf_program__fd(prog), cg.get(), type, nullptr);
        if (fd < 0)
            return Error::from_errno(errno, std::string("attach ") + bpf_program__name(prog) + " to " + cgroup_path);
        links.emplace_back(UniqueFd(fd));
    }
    return links;
}

Result<std::vector<Link>> SockLbProgram::attach_pinned(const std::string& cgroup_path, const PinLayout& layout) const {
    UniqueFd cg(::open(cgroup_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!cg.valid()) return Error::from_errno(errno, "open cgroup " + cgroup_path);
    std::vector<Link> links;
    for (const auto& [prog, type] : hooks()) {
        auto link = attach_cgroup_pinned(prog, cg.get(), layout.cgroup_link(bpf_program__name(prog)));
        if (!link) return Error{link.error().code, link.error().message + " (" + cgroup_path + ")"};
        links.push_back(std::move(link).value());
    }
    return links;
}

Result<std::array<std::uint64_t, kSockReasonCount>> SockLbProgram::reasons() const {
    std::array<std::uint64_t, kSockReasonCount> out{};
    for (std::uint32_t i = 0; i < kSockReasonCount; ++i) {
        auto v = impl_->reasons.lookup(i);
        if (!v) return v.error();
        out[i] = sum(*v);
    }
    return out;
}

Result<std::uint64_t> SockLbProgram::service_connections(std::uint32_t svc_id) const {
    auto v = impl_->svc.lookup(svc_id);
    if (!v) return v.error();
    return sum(*v);
}

Result<std::uint64_t> SockLbProgram::backend_connections(std::uint32_t backend_id) const {
    auto v = impl_->backend.lookup(backend_id);
    if (!v) return v.error();
    return sum(*v);
}

}  // namespace kxlb
