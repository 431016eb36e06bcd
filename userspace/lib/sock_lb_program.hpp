// The socket-level load balancer (bpf/sock_lb.bpf.c): eight cgroup sock_addr hooks sharing the
// service maps of the XDP datapath (one source of truth: a service marked KXLB_SVC_F_SOCKET_LB is
// balanced at connect() for every process in the attached cgroup).
#pragma once

#include <linux/bpf.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "lib/abi.hpp"
#include "lib/bpf_link.hpp"
#include "lib/lb_maps.hpp"
#include "lib/pinning.hpp"
#include "lib/result.hpp"

namespace kxlb {

inline constexpr std::size_t kSockReasonCount = KXLB_SOCK_REASON_MAX;

inline constexpr std::array<std::string_view, kSockReasonCount> kSockReasonNames = {
#define KXLB_NAME_ENTRY_(id, name) name,
    KXLB_SOCK_REASON_LIST(KXLB_NAME_ENTRY_)
#undef KXLB_NAME_ENTRY_
};

class SockLbProgram {
public:
    // Loads the hooks, reusing the service maps in `shared` (from XdpLbProgram::lb_map_fds() or
    // pinned maps) instead of creating its own.
    static Result<SockLbProgram> load(const LbMapFds& shared);
    // Loads the hooks on the maps pinned under layout (the XDP program, loaded pinned first,
    // created the shared ones, found here by name), pinning its own maps there too.
    static Result<SockLbProgram> load_pinned(const PinLayout& layout);
    ~SockLbProgram();
    SockLbProgram(SockLbProgram&&) noexcept;
    SockLbProgram& operator=(SockLbProgram&&) noexcept;

    // Attaches all hooks to a cgroup v2 directory (e.g. /sys/fs/cgroup/unified for the whole node).
    // All or nothing: on error, hooks attached so far are detached. Links detach when destroyed.
    Result<std::vector<Link>> attach(const std::string& cgroup_path) const;
    // Attaches through links pinned under layout (one per hook), replacing the programs of live
    // links in place, so a restarted agent never leaves sockets unbalanced.
    Result<std::vector<Link>> attach_pinned(const std::string& cgroup_path, const PinLayout& layout) const;

    Result<std::array<std::uint64_t, kSockReasonCount>> reasons() const;
    // Connections (and unconnected datagrams) balanced to a service / backend.
    Result<std::uint64_t> service_connections(std::uint32_t svc_id) const;
    Result<std::uint64_t> backend_connections(std::uint32_t backend_id) const;

private:
    struct Impl;
    explicit SockLbProgram(std::unique_ptr<Impl> impl);
    // Exactly one of shared / pin is set.
    static Result<SockLbProgram> load_with(const LbMapFds* shared, const PinLayout* pin);
    std::vector<std::pair<bpf_program*, bpf_attach_type>> hooks() const;
    std::unique_ptr<Impl> impl_;
};

}  // namespace kxlb
