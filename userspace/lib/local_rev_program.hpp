// The reply half of local backends (bpf/tc_local_rev.bpf.c): a tc egress program on the node NICs kxlb
// owns that gives replies of flows the XDP datapath DNATed to a pod on this node (BackendSpec::local,
// KXLB_BE_F_LOCAL) the frontend back as their source. It shares kxlb_ct / kxlb_nat with XdpLbProgram
// (fds or pinned maps) and owns only its outcome counters. docs/datapath.md "Local backends".
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "lib/abi.hpp"
#include "lib/lb_maps.hpp"
#include "lib/pinning.hpp"
#include "lib/result.hpp"

struct bpf_program;

namespace kxlb {

// Outcome counters summed over CPUs, indexed by enum kxlb_local_rev_reason.
using LocalRevReasons = std::array<kxlb_counter, kLocalRevReasonCount>;

// kxlb's filter on a NIC's clsact egress hook. Handle and priority are fixed, so attaching again (a
// restarted or upgraded agent) replaces the program of the existing filter in place, without a moment
// in which replies leave untranslated.
inline constexpr std::uint32_t kLocalRevTcHandle = 0x6b78;  // "kx"
inline constexpr std::uint32_t kLocalRevTcPriority = 0x6b78;

// One attached filter. Detaches when destroyed unless keep() was called: tc filters are not BPF links
// and outlive the process that attached them, which is what an agent restart wants (keep(), then the
// next agent's attach() replaces the program in place).
class TcFilter {
public:
    TcFilter() = default;
    TcFilter(int ifindex, std::uint32_t handle, std::uint32_t priority)
        : ifindex_(ifindex), handle_(handle), priority_(priority) {}
    ~TcFilter();
    TcFilter(TcFilter&& o) noexcept;
    TcFilter& operator=(TcFilter&& o) noexcept;
    TcFilter(const TcFilter&) = delete;
    TcFilter& operator=(const TcFilter&) = delete;

    int ifindex() const { return ifindex_; }
    bool attached() const { return ifindex_ > 0; }
    // Leaves the filter attached after this object is gone.
    void keep() { ifindex_ = 0; }
    // Detaches now (in the calling thread's network namespace). Not attached: no-op.
    Status detach();

private:
    int ifindex_ = 0;
    std::uint32_t handle_ = 0, priority_ = 0;
};

class LocalRevProgram {
public:
    // Loads the program on the flow maps of a loaded XdpLbProgram (XdpLbProgram::lb_map_fds(): ct and
    // nat are used). The fds must stay valid while this lives.
    static Result<LocalRevProgram> load(const LbMapFds& shared);
    // Loads on the maps pinned under layout (XdpLbProgram loaded with the same pin_root creates kxlb_ct
    // and kxlb_nat; their sizes are taken from the pinned maps), pinning its counters there too.
    static Result<LocalRevProgram> load_pinned(const PinLayout& layout);
    ~LocalRevProgram();
    LocalRevProgram(LocalRevProgram&&) noexcept;
    LocalRevProgram& operator=(LocalRevProgram&&) noexcept;

    int prog_fd() const;
    const bpf_program* program() const;

    // Attaches to ifindex's egress (in the calling thread's network namespace): creates the clsact
    // qdisc if missing (an existing one, e.g. a CNI's, is shared), then adds or replaces kxlb's filter
    // (kLocalRevTcHandle / kLocalRevTcPriority). Every NIC the XDP program is attached to needs it.
    Result<TcFilter> attach(int ifindex) const;
    Result<TcFilter> attach(const std::string& ifname) const;
    // Removes kxlb's filter from ifindex's egress (e.g. one a previous agent kept); Ok(false) if there
    // was none. The clsact qdisc stays (other programs may use it): see remove_clsact.
    static Result<bool> detach(int ifindex);
    // Deletes ifindex's clsact qdisc with every filter on it (ingress and egress, anyone's): only
    // for a qdisc kxlb created on an interface nobody else programs (tests, uninstall).
    static Status remove_clsact(int ifindex);

    Result<LocalRevReasons> reasons() const;
    Status reset_reasons();

private:
    struct Impl;
    explicit LocalRevProgram(std::unique_ptr<Impl> impl);
    static Result<LocalRevProgram> finish_load(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace kxlb
