// Loader of bpf/xdp_lb_bench.bpf.c: reuses the maps of a loaded kxlb_xdp_lb program, found through its prog info
// (map ids -> fds -> kernel names), so the wrappers see the very maps the programmer wrote and the counters read.
#include "bench/loop_bench.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstring>
#include <utility>
#include <vector>

#include "lib/skeleton.hpp"
#include "lib/unique_fd.hpp"
#include "xdp_lb_bench.skel.h"

namespace kxlb::bench {

KXLB_SKELETON_OPS(xdp_lb_bench_bpf);

namespace {

struct KernelMap {
    std::string name;  // as the kernel keeps it: at most BPF_OBJ_NAME_LEN - 1 characters
    UniqueFd fd;
};

Result<std::vector<KernelMap>> maps_of(int prog_fd) {
    bpf_prog_info info{};
    std::uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) return Error::from_errno(errno, "prog info");
    std::vector<std::uint32_t> ids(info.nr_map_ids);
    bpf_prog_info info2{};
    info2.nr_map_ids = static_cast<std::uint32_t>(ids.size());
    info2.map_ids = reinterpret_cast<std::uintptr_t>(ids.data());
    len = sizeof(info2);
    if (bpf_obj_get_info_by_fd(prog_fd, &info2, &len) != 0) return Error::from_errno(errno, "prog map ids");
    std::vector<KernelMap> out;
    for (std::uint32_t id : ids) {
        UniqueFd fd(bpf_map_get_fd_by_id(id));
        if (fd.get() < 0) return Error::from_errno(errno, "map fd by id");
        bpf_map_info mi{};
        std::uint32_t mlen = sizeof(mi);
        if (bpf_obj_get_info_by_fd(fd.get(), &mi, &mlen) != 0) return Error::from_errno(errno, "map info");
        out.push_back(KernelMap{mi.name, std::move(fd)});
    }
    return out;
}

// The kernel truncates map names to BPF_OBJ_NAME_LEN - 1 characters.
bool same_name(const std::string& kernel, const char* obj) {
    const std::string full(obj);
    return kernel == full.substr(0, BPF_OBJ_NAME_LEN - 1);
}

}  // namespace

struct LoopPrograms::Impl {
    Skeleton<xdp_lb_bench_bpf_ops> skel;
    std::string reused;
};

Result<LoopPrograms> LoopPrograms::load(int lb_prog_fd, bool flow_cache) {
    auto kmaps = maps_of(lb_prog_fd);
    if (!kmaps) return kmaps.error();
    auto skel = Skeleton<xdp_lb_bench_bpf_ops>::open();
    if (!skel) return skel.error();
    skel.value()->rodata->kxlb_flow_cache_on = flow_cache ? 1 : 0;
    std::string reused;
    int n = 0;
    bpf_map* map = nullptr;
    bpf_object__for_each_map (map, skel.value()->obj) {
        if (bpf_map__is_internal(map)) continue;       // the bench's own .bss (template)
        const std::string owned = bpf_map__name(map);  // bpf_map__reuse_fd replaces the map's name string
        const char* name = owned.c_str();
        const KernelMap* match = nullptr;
        for (const auto& km : *kmaps) {
            if (!same_name(km.name, name)) continue;
            if (match) return Error::invalid(std::string("bench loader: two datapath maps match ") + name);
            match = &km;
        }
        if (!match) {
            if (std::strncmp(name, "kxlb_", 5) == 0)
                return Error::invalid(std::string("bench loader: the datapath program has no map ") + name);
            continue;  // bench_iter, bench_table: the bench's own
        }
        if (int err = bpf_map__reuse_fd(map, match->fd.get()); err != 0)
            return Error::from_errno(-err, std::string("reuse map ") + name);
        reused += (n++ ? ", " : "") + std::string(name);
    }
    if (auto st = skel->load(); !st) return st.error();
    return LoopPrograms(std::make_unique<Impl>(
        Impl{std::move(skel).value(), std::to_string(n) + " maps reused from the datapath instance (" + reused + ")"}));
}

LoopPrograms::LoopPrograms(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LoopPrograms::~LoopPrograms() = default;
LoopPrograms::LoopPrograms(LoopPrograms&&) noexcept = default;
LoopPrograms& LoopPrograms::operator=(LoopPrograms&&) noexcept = default;

int LoopPrograms::lb_fd() const { return bpf_program__fd(impl_->skel->progs.bench_lb); }
int LoopPrograms::base_fd() const { return bpf_program__fd(impl_->skel->progs.bench_base); }
int LoopPrograms::reflect_fd() const { return bpf_program__fd(impl_->skel->progs.bench_reflect); }
int LoopPrograms::ct_probe_fd() const { return bpf_program__fd(impl_->skel->progs.bench_ct_probe); }
std::uint64_t LoopPrograms::probe_misses() const { return impl_->skel->bss->bench_probe_misses; }
std::uint64_t LoopPrograms::probe_hits() const { return impl_->skel->bss->bench_probe_hits; }
int LoopPrograms::table_read_fd() const { return bpf_program__fd(impl_->skel->progs.bench_table_read); }
void LoopPrograms::set_table_bits(std::uint32_t bits) { impl_->skel->bss->bench_table_bits = bits; }
std::uint64_t LoopPrograms::table_reads() const { return impl_->skel->bss->bench_table_reads; }
const std::string& LoopPrograms::reused() const { return impl_->reused; }

void LoopPrograms::set_template(const LoopTemplate& t) {
    auto* b = impl_->skel->bss;
    static_assert(sizeof(b->bench_frame) == LoopTemplate::kBytes);
    std::memcpy(static_cast<void*>(b->bench_frame), t.bytes.data(), LoopTemplate::kBytes);
    b->bench_sport_off = t.sport_off;
    b->bench_saddr_off = t.saddr_off;
    b->bench_saddr_base = t.saddr_base;
    b->bench_vary = t.vary ? 1 : 0;
}

}  // namespace kxlb::bench
