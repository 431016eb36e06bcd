// Skeleton-backed owner of the local-backend reply program (tc egress) and its netlink (classic tc)
// attachment through libbpf's bpf_tc_* API. The skeleton header is included only here.
#include "lib/local_rev_program.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>

#include <cerrno>
#include <utility>

#include "lib/bpf_map.hpp"
#include "lib/skeleton.hpp"
#include "lib/unique_fd.hpp"
#include "tc_local_rev.skel.h"

namespace kxlb {

KXLB_SKELETON_OPS(tc_local_rev_bpf);

struct LocalRevProgram::Impl {
    Skeleton<tc_local_rev_bpf_ops> skel;
    std::optional<PerCpuArray<kxlb_counter>> reasons;
};

namespace {

bpf_tc_hook egress_hook(int ifindex) {
    bpf_tc_hook h{};
    h.sz = sizeof(h);
    h.ifindex = ifindex;
    h.attach_point = BPF_TC_EGRESS;
    return h;
}

bpf_tc_opts filter_opts(std::uint32_t handle, std::uint32_t priority, int prog_fd) {
    bpf_tc_opts o{};
    o.sz = sizeof(o);
    o.handle = handle;
    o.priority = priority;
    o.prog_fd = prog_fd;
    return o;
}

}  // namespace

// ---- TcFilter -----------------------------------------------------------------------------------

TcFilter::~TcFilter() { (void)detach(); }

TcFilter::TcFilter(TcFilter&& o) noexcept
    : ifindex_(std::exchange(o.ifindex_, 0)), handle_(o.handle_), priority_(o.priority_) {}

TcFilter& TcFilter::operator=(TcFilter&& o) noexcept {
    if (this != &o) {
        (void)detach();
        ifindex_ = std::exchange(o.ifindex_, 0);
        handle_ = o.handle_;
        priority_ = o.priority_;
    }
    return *this;
}

Status TcFilter::detach() {
    if (ifindex_ <= 0) return {};
    bpf_tc_hook h = egress_hook(ifindex_);
    bpf_tc_opts o = filter_opts(handle_, priority_, 0);
    const int ifindex = std::exchange(ifindex_, 0);
    if (int err = bpf_tc_detach(&h, &o); err != 0 && err != -ENOENT && err != -EINVAL && err != -ENODEV)
        return Error::from_errno(-err, "detach tc egress filter from ifindex " + std::to_string(ifindex));
    return {};
}

// ---- LocalRevProgram ----------------------------------------------------------------------------

Result<LocalRevProgram> LocalRevProgram::load(const LbMapFds& shared) {
    auto skel = Skeleton<tc_local_rev_bpf_ops>::open();
    if (!skel) return skel.error();
    auto& maps = skel.value()->maps;
    const std::pair<bpf_map*, int> reuse[] = {{maps.kxlb_ct, shared.ct}, {maps.kxlb_nat, shared.nat}};
    for (const auto& [map, fd] : reuse) {
        if (fd < 0)
            return Error::invalid(std::string("local reply program: shared map ") + bpf_map__name(map) + " missing");
        if (int err = bpf_map__reuse_fd(map, fd); err != 0)
            return Error::from_errno(-err, std::string("local reply program: reuse map ") + bpf_map__name(map));
    }
    return finish_load(std::make_unique<Impl>(Impl{std::move(skel).value(), std::nullopt}));
}

Result<LocalRevProgram> LocalRevProgram::load_pinned(const PinLayout& layout) {
    auto skel = Skeleton<tc_local_rev_bpf_ops>::open();
    if (!skel) return skel.error();
    // The conntrack size is the XDP loader's choice (XdpLbLoadOptions::ct_entries): take the pinned one.
    for (bpf_map* m : {skel.value()->maps.kxlb_ct, skel.value()->maps.kxlb_nat}) {
        const std::string path = layout.map(bpf_map__name(m));
        UniqueFd fd(bpf_obj_get(path.c_str()));
        if (!fd.valid()) continue;  // not pinned yet: created (and pinned) with the default size
        bpf_map_info info{};
        std::uint32_t len = sizeof(info);
        if (bpf_obj_get_info_by_fd(fd.get(), &info, &len) != 0) return Error::from_errno(errno, "info of " + path);
        if (int err = bpf_map__set_max_entries(m, info.max_entries); err != 0)
            return Error::from_errno(-err, "size " + path);
    }
    if (auto st = use_pinned_maps(skel.value()->obj, layout); !st) return st.error();
    return finish_load(std::make_unique<Impl>(Impl{std::move(skel).value(), std::nullopt}));
}

Result<LocalRevProgram> LocalRevProgram::finish_load(std::unique_ptr<Impl> impl) {
    if (auto st = impl->skel.load(); !st) return st.error();
    auto reasons = PerCpuArray<kxlb_counter>::bind(impl->skel->maps.kxlb_local_rev_reasons);
    if (!reasons) return reasons.error();
    impl->reasons.emplace(*reasons);
    return LocalRevProgram(std::move(impl));
}

LocalRevProgram::LocalRevProgram(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LocalRevProgram::~LocalRevProgram() = default;
LocalRevProgram::LocalRevProgram(LocalRevProgram&&) noexcept = default;
LocalRevProgram& LocalRevProgram::operator=(LocalRevProgram&&) noexcept = default;

int LocalRevProgram::prog_fd() const { return bpf_program__fd(impl_->skel->progs.kxlb_tc_local_rev); }
const bpf_program* LocalRevProgram::program() const { return impl_->skel->progs.kxlb_tc_local_rev; }

Result<TcFilter> LocalRevProgram::attach(int ifindex) const {
    bpf_tc_hook h = egress_hook(ifindex);
    if (int err = bpf_tc_hook_create(&h); err != 0 && err != -EEXIST)
        return Error::from_errno(-err, "create clsact qdisc on ifindex " + std::to_string(ifindex));
    bpf_tc_opts o = filter_opts(kLocalRevTcHandle, kLocalRevTcPriority, prog_fd());
    o.flags = BPF_TC_F_REPLACE;
    if (int err = bpf_tc_attach(&h, &o); err != 0)
        return Error::from_errno(-err, "attach tc egress filter to ifindex " + std::to_string(ifindex));
    return TcFilter(ifindex, kLocalRevTcHandle, kLocalRevTcPriority);
}

Result<TcFilter> LocalRevProgram::attach(const std::string& ifname) const {
    const unsigned idx = ::if_nametoindex(ifname.c_str());
    if (idx == 0) return Error::from_errno(errno, "interface " + ifname);
    return attach(static_cast<int>(idx));
}

Result<bool> LocalRevProgram::detach(int ifindex) {
    bpf_tc_hook h = egress_hook(ifindex);
    bpf_tc_opts o = filter_opts(kLocalRevTcHandle, kLocalRevTcPriority, 0);
    int err = bpf_tc_detach(&h, &o);
    if (err == 0) return true;
    if (err == -ENOENT || err == -EINVAL) return false;  // no filter (or no clsact qdisc at all)
    return Error::from_errno(-err, "detach tc egress filter from ifindex " + std::to_string(ifindex));
}

Status LocalRevProgram::remove_clsact(int ifindex) {
    bpf_tc_hook h = egress_hook(ifindex);
    h.attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);  // the qdisc itself
    if (int err = bpf_tc_hook_destroy(&h); err != 0 && err != -ENOENT && err != -EINVAL)
        return Error::from_errno(-err, "delete clsact qdisc on ifindex " + std::to_string(ifindex));
    return {};
}

Result<LocalRevReasons> LocalRevProgram::reasons() const {
    LocalRevReasons out{};
    for (std::uint32_t i = 0; i < kLocalRevReasonCount; ++i) {
        auto per_cpu = impl_->reasons->lookup(i);
        if (!per_cpu) return per_cpu.error();
        for (const auto& c : *per_cpu) {
            out[i].packets += c.packets;
            out[i].bytes += c.bytes;
        }
    }
    return out;
}

Status LocalRevProgram::reset_reasons() {
    for (std::uint32_t i = 0; i < kLocalRevReasonCount; ++i)
        if (auto st = impl_->reasons->fill(i, kxlb_counter{}); !st) return st;
    return {};
}

}  // namespace kxlb
