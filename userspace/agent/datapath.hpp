// The node's datapath as the agent owns it: the XDP and socket-LB programs loaded on pinned maps,
// their pinned links, and the LbProgrammer that adopted what a previous agent left in the maps.
// Restarting the agent re-opens all of this without a moment where a packet or a connect() finds
// no program or an empty map.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/config.hpp"
#include "lib/bpf_link.hpp"
#include "lib/decap_program.hpp"
#include "lib/lb_programmer.hpp"
#include "lib/local_rev_program.hpp"
#include "lib/pinning.hpp"
#include "lib/sock_lb_program.hpp"
#include "lib/xdp_programs.hpp"

namespace kxlb::agent {

struct DatapathOptions {
    std::string pin_root;
    std::uint32_t ct_entries = KXLB_DEFAULT_CT_ENTRIES;
    std::string socket_lb_cgroup;  // empty: no socket-LB hooks
    LbProgrammerOptions lb;
};

// Options derived from the agent configuration.
DatapathOptions datapath_options(const AgentConfig& cfg);

class NodeDatapath {
public:
    // Loads both programs on the maps pinned under opts.pin_root (creating and pinning missing ones),
    // adopts their contents, and attaches the socket-LB hooks through pinned links (replacing the
    // programs of live links atomically). Fails without touching live state if a pinned map has a
    // layout this build does not understand.
    static Result<std::unique_ptr<NodeDatapath>> open(const DatapathOptions& opts);

    // Attaches XDP to the interface through its pinned link: native, or generic if native fails and
    // iface.allow_generic (logged as a warning). Replaces the program of a live link in place. Also
    // attaches the local backends' reply translation to the interface's tc egress (a filter that
    // outlives the agent, replaced in place by the next one).
    Status attach(const InterfaceConfig& iface, int ifindex);
    // Forgets the interface's link and unpins it (detaching XDP from it), and removes the tc filter.
    void detach(const std::string& ifname);
    bool attached(const std::string& ifname) const { return xdp_links_.count(ifname) != 0; }
    std::optional<int> attached_ifindex(const std::string& ifname) const;
    std::vector<std::string> attached_interfaces() const;

    Status set_config(const LbConfig& cfg);
    LbProgrammer& programmer() { return *programmer_; }
    const XdpLbProgram& xdp() const { return xdp_; }
    const LocalRevProgram& local_rev() const { return rev_; }
    const SockLbProgram* sock() const { return sock_ ? &*sock_ : nullptr; }
    LbMapFds map_fds() const { return xdp_.lb_map_fds(); }
    const PinLayout& layout() const { return layout_; }

private:
    NodeDatapath(PinLayout layout, XdpLbProgram xdp, LocalRevProgram rev, std::optional<SockLbProgram> sock,
                 BpfLbMaps maps)
        : layout_(std::move(layout)),
          xdp_(std::move(xdp)),
          rev_(std::move(rev)),
          sock_(std::move(sock)),
          maps_(std::move(maps)) {}

    struct Attached {
        int ifindex;
        Link link;
    };
    PinLayout layout_;
    XdpLbProgram xdp_;
    LocalRevProgram rev_;
    std::optional<SockLbProgram> sock_;
    BpfLbMaps maps_;
    std::optional<LbProgrammer> programmer_;
    std::vector<Link> cgroup_links_;
    std::map<std::string, Attached> xdp_links_;
};

// Removes kxlb's tc egress filter (local backends' replies) from every interface that has a pinned
// XDP link under layout (uninstall: the filters are not pinned objects). Returns how many.
int remove_tc_filters(const PinLayout& layout);

// Unpins the decapsulation links a previous agent left (DSR decapsulation no longer configured);
// returns how many.
int remove_decap_links(const PinLayout& layout);

// The backend side of DSR: the decapsulation program on maps pinned under the same root, attached
// through pinned links (<root>/links/decap_<ifname>), so it keeps unwrapping while the agent restarts.
class DecapDatapath {
public:
    static Result<std::unique_ptr<DecapDatapath>> open(const PinLayout& layout);

    // Native XDP, or generic if native fails and iface.allow_generic (logged as a warning).
    Status attach(const InterfaceConfig& iface, int ifindex);
    void detach(const std::string& ifname);
    bool attached(const std::string& ifname) const { return links_.count(ifname) != 0; }
    std::optional<int> attached_ifindex(const std::string& ifname) const;
    std::vector<std::string> attached_interfaces() const;

    // Makes the decap address map hold exactly `addrs` (adds before removes: an address that stays
    // is never missing). Errors leave a mix of old and new that the next call repairs.
    Status set_addresses(const std::vector<IpAddr>& addrs);
    const XdpDecapProgram& program() const { return prog_; }

private:
    DecapDatapath(PinLayout layout, XdpDecapProgram prog) : layout_(std::move(layout)), prog_(std::move(prog)) {}
    struct Attached {
        int ifindex;
        Link link;
    };
    PinLayout layout_;
    XdpDecapProgram prog_;
    std::map<std::string, Attached> links_;
};

}  // namespace kxlb::agent
