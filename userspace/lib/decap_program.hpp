// The DSR backend-side decapsulation program (bpf/xdp_decap.bpf.c): strips the IPIP / IP6IP6 header a
// kxlb balancer added toward one of this node's decap addresses. Owns the skeleton, its address map
// and its outcome counters (docs/dsr-decap.md).
#pragma once

#include <kxlb/decap.h>

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lib/bpf_link.hpp"
#include "lib/lb_types.hpp"
#include "lib/result.hpp"

struct bpf_program;

namespace kxlb {

inline constexpr std::size_t kDecapReasonCount = KXLB_DECAP_REASON_MAX;

// Names of enum kxlb_decap_reason, in enum order, from the ABI's X-macro.
inline constexpr std::array<std::string_view, kDecapReasonCount> kDecapReasonNames = {
#define KXLB_NAME_ENTRY_(id, name) name,
    KXLB_DECAP_REASON_LIST(KXLB_NAME_ENTRY_)
#undef KXLB_NAME_ENTRY_
};

inline constexpr std::string_view decap_reason_name(kxlb_decap_reason id) {
    return static_cast<std::size_t>(id) < kDecapReasonCount ? kDecapReasonNames[id] : "unknown";
}

// Outcome counters summed over CPUs, indexed by enum kxlb_decap_reason.
using DecapReasons = std::array<kxlb_counter, kDecapReasonCount>;

// The ABI key of a decap address; Error for anything but an IPv4 or IPv6 address.
Result<kxlb_decap_addr_key> decap_addr_key(const IpAddr& addr);

class XdpDecapProgram {
public:
    // Opens and loads the embedded object (needs CAP_BPF/CAP_NET_ADMIN). The address map starts
    // empty: nothing is decapsulated until add_address(). With a pin_root, the maps are those pinned
    // under it (created and pinned when missing; see use_pinned_maps): a restarted agent keeps the
    // addresses and counters of its predecessor.
    static Result<XdpDecapProgram> load(const std::string& pin_root = "");
    ~XdpDecapProgram();
    XdpDecapProgram(XdpDecapProgram&&) noexcept;
    XdpDecapProgram& operator=(XdpDecapProgram&&) noexcept;

    int prog_fd() const;
    const bpf_program* program() const;
    // Attaches in exactly the requested mode (no fallback) in the caller's network namespace; the
    // program detaches when the Link is destroyed.
    Result<Link> attach(int ifindex, XdpMode mode) const { return attach_xdp(program(), ifindex, mode); }
    Result<Link> attach(const std::string& ifname, XdpMode mode) const;
    // Attaches through the link pinned at link_path (see attach_xdp_pinned): the program survives
    // its owner, and a live link is updated in place.
    Result<Link> attach_pinned(int ifindex, XdpMode mode, const std::string& link_path) const;

    // Outer destination addresses tunnelled packets are decapsulated for (the node's addresses
    // the balancers encapsulate toward). Adding a listed address again is not an error.
    Status add_address(const IpAddr& addr);
    // Ok(false) when the address was not listed.
    Result<bool> remove_address(const IpAddr& addr);
    Result<std::vector<IpAddr>> addresses() const;

    Result<DecapReasons> reasons() const;
    Status reset_reasons();

private:
    struct Impl;
    explicit XdpDecapProgram(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace kxlb
