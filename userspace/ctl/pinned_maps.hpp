// The datapath maps as the agent pinned them (lib/pinning.hpp layout), opened with bpf_obj_get so
// kxlbctl works while the agent is down. Owns one fd per map; the LbMapFds it hands out borrow them.
#pragma once

#include <string>
#include <vector>

#include "lib/lb_maps.hpp"
#include "lib/pinning.hpp"
#include "lib/result.hpp"
#include "lib/unique_fd.hpp"

namespace kxlb::ctl {

// An XDP link pinned as <root>/links/xdp_<ifname>.
struct PinnedXdpLink {
    std::string ifname;  // from the pin's name
    std::uint32_t ifindex = 0;
};

class PinnedMaps {
public:
    // Opens the XDP datapath's maps under <pin_root>/maps (all required) and, when present, the
    // parser and socket-LB statistics maps. Errors: no pins at all -> "no pinned kxlb maps under
    // <root>: is kxlb-agent running? (--pin-path)"; some missing -> names the first missing pin.
    static Result<PinnedMaps> open(const std::string& pin_root);

    const PinLayout& layout() const { return layout_; }
    const LbMapFds& lb() const { return lb_; }
    // -1 when not pinned.
    int parse_stats() const { return parse_stats_; }
    int sock_reasons() const { return sock_reasons_; }
    int sock_svc_stats() const { return sock_svc_stats_; }
    int sock_backend_stats() const { return sock_backend_stats_; }

    // XDP links pinned under <root>/links (their interface index as the kernel reports it).
    Result<std::vector<PinnedXdpLink>> xdp_links() const;

private:
    explicit PinnedMaps(PinLayout layout) : layout_(std::move(layout)) {}
    // Opens <maps>/<name> into *fd; optional pins that do not exist leave *fd at -1.
    Status open_map(const char* name, int* fd, bool required);

    PinLayout layout_;
    std::vector<UniqueFd> owned_;
    LbMapFds lb_;
    int parse_stats_ = -1, sock_reasons_ = -1, sock_svc_stats_ = -1, sock_backend_stats_ = -1;
};

}  // namespace kxlb::ctl
