// Skeleton-backed owners of the benchmark XDP programs (reflector, sink, live-frames generator).
#include "bench/bench_programs.hpp"

#include <cstring>

#include "lib/bpf_map.hpp"
#include "lib/skeleton.hpp"
#include "xdp_gen.skel.h"
#include "xdp_reflect.skel.h"
#include "xdp_sink.skel.h"

namespace kxlb::bench {

KXLB_SKELETON_OPS(xdp_reflect_bpf);
KXLB_SKELETON_OPS(xdp_sink_bpf);
KXLB_SKELETON_OPS(xdp_gen_bpf);

// ---- ReflectProgram ------------------------------------------------------------------------

struct ReflectProgram::Impl {
    Skeleton<xdp_reflect_bpf_ops> skel;
};

Result<ReflectProgram> ReflectProgram::load() {
    auto skel = open_and_load<xdp_reflect_bpf_ops>();
    if (!skel) return skel.error();
    return ReflectProgram(std::make_unique<Impl>(Impl{std::move(skel).value()}));
}

ReflectProgram::ReflectProgram(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReflectProgram::~ReflectProgram() = default;
ReflectProgram::ReflectProgram(ReflectProgram&&) noexcept = default;
ReflectProgram& ReflectProgram::operator=(ReflectProgram&&) noexcept = default;

int ReflectProgram::prog_fd() const { return bpf_program__fd(impl_->skel->progs.kxlb_xdp_reflect); }
Result<Link> ReflectProgram::attach(int ifindex, XdpMode mode) const {
    return attach_xdp(impl_->skel->progs.kxlb_xdp_reflect, ifindex, mode);
}

// ---- SinkProgram ---------------------------------------------------------------------------

struct SinkProgram::Impl {
    Skeleton<xdp_sink_bpf_ops> skel;
    PerCpuArray<kxlb_counter> count;
};

Result<SinkProgram> SinkProgram::load() {
    auto skel = open_and_load<xdp_sink_bpf_ops>();
    if (!skel) return skel.error();
    auto count = PerCpuArray<kxlb_counter>::bind(skel.value()->maps.kxlb_sink_count);
    if (!count) return count.error();
    return SinkProgram(std::make_unique<Impl>(Impl{std::move(skel).value(), count.value()}));
}

SinkProgram::SinkProgram(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SinkProgram::~SinkProgram() = default;
SinkProgram::SinkProgram(SinkProgram&&) noexcept = default;
SinkProgram& SinkProgram::operator=(SinkProgram&&) noexcept = default;

Result<Link> SinkProgram::attach(int ifindex, XdpMode mode) const {
    return attach_xdp(impl_->skel->progs.kxlb_xdp_sink, ifindex, mode);
}

Result<kxlb_counter> SinkProgram::total() const {
    auto per_cpu = impl_->count.lookup(0);
    if (!per_cpu) return per_cpu.error();
    kxlb_counter sum{};
    for (const auto& c : *per_cpu) {
        sum.packets += c.packets;
        sum.bytes += c.bytes;
    }
    return sum;
}

// ---- GenProgram ----------------------------------------------------------------------------

struct GenProgram::Impl {
    Skeleton<xdp_gen_bpf_ops> skel;
};

Result<GenProgram> GenProgram::load(const GenTemplate& tmpl) {
    if (tmpl.nports == 0) return Error::invalid("generator: nports must be at least 1");
    if (tmpl.sport_off + 2 > GenTemplate::kBytes || tmpl.csum_off + 2 > GenTemplate::kBytes)
        return Error::invalid("generator: port or checksum offset outside the template");
    auto skel = Skeleton<xdp_gen_bpf_ops>::open();
    if (!skel) return skel.error();
    auto* ro = skel.value()->rodata;
    static_assert(sizeof(ro->tmpl) == GenTemplate::kBytes);
    std::memcpy(static_cast<void*>(ro->tmpl), tmpl.bytes.data(), GenTemplate::kBytes);
    ro->sport_off = tmpl.sport_off;
    ro->csum_off = tmpl.csum_off;
    ro->sport_base = tmpl.sport_base;
    ro->nports = tmpl.nports;
    if (auto st = skel->load(); !st) return st.error();
    return GenProgram(std::make_unique<Impl>(Impl{std::move(skel).value()}));
}

GenProgram::GenProgram(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GenProgram::~GenProgram() = default;
GenProgram::GenProgram(GenProgram&&) noexcept = default;
GenProgram& GenProgram::operator=(GenProgram&&) noexcept = default;

int GenProgram::prog_fd() const { return bpf_program__fd(impl_->skel->progs.kxlb_xdp_gen); }

}  // namespace kxlb::bench
