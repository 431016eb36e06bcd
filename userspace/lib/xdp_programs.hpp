// The XDP programs kxlb embeds (through bpftool skeletons), each owned by one small class.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "lib/abi.hpp"
#include "lib/bpf_link.hpp"
#include "lib/lb_maps.hpp"
#include "lib/result.hpp"

struct bpf_program;
struct xdp_lb_bpf;  // the bpftool skeleton of bpf/xdp_lb.bpf.c

namespace kxlb {

// Parser observation counters summed over CPUs, indexed by enum kxlb_parse_stat.
struct ParseStats {
    std::array<kxlb_counter, kParseStatCount> by_id{};
    const kxlb_counter& operator[](kxlb_parse_stat id) const { return by_id.at(id); }
};

struct XdpLbLoadOptions {
    std::uint32_t ct_entries = KXLB_DEFAULT_CT_ENTRIES;  // conntrack (and reverse NAT) capacity
    // The per-CPU flow cache of established flows (bpf/lib/flow_cache.h); off: every frame takes the
    // conntrack path (benchmarks measure that path this way).
    bool flow_cache = true;
    // Non-empty: reuse the maps pinned under this root (lib/pinning.hpp), pinning any that are
    // missing. Empty: private maps that die with the program.
    std::string pin_root;
};

// The load-balancer map fds of any loaded xdp_lb skeleton (this class's, or a second instance such
// as kxlbctl's side-effect-free trace copy).
LbMapFds lb_map_fds(const xdp_lb_bpf& skel);

// The node-NIC datapath program (bpf/xdp_lb.bpf.c) and its maps.
class XdpLbProgram {
public:
    // Opens and loads the embedded object (needs CAP_BPF/CAP_NET_ADMIN).
    static Result<XdpLbProgram> load(const XdpLbLoadOptions& opts = {});
    ~XdpLbProgram();
    XdpLbProgram(XdpLbProgram&&) noexcept;
    XdpLbProgram& operator=(XdpLbProgram&&) noexcept;

    int prog_fd() const;
    const bpf_program* program() const;
    Result<Link> attach(int ifindex, XdpMode mode) const { return attach_xdp(program(), ifindex, mode); }
    // Attaches through the link pinned at link_path, replacing the program of a live link in place.
    Result<Link> attach_pinned(int ifindex, XdpMode mode, const std::string& link_path) const;

    Result<ParseStats> parse_stats() const;
    Status reset_parse_stats();
    // The load-balancer maps, for BpfLbMaps / LbCounters / Conntrack. Valid while this lives.
    LbMapFds lb_map_fds() const;

private:
    struct Impl;
    explicit XdpLbProgram(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// A trivial XDP_PASS program (bpf/xdp_pass.bpf.c): for veth peers and as a benchmark baseline.
class XdpPassProgram {
public:
    static Result<XdpPassProgram> load();
    ~XdpPassProgram();
    XdpPassProgram(XdpPassProgram&&) noexcept;
    XdpPassProgram& operator=(XdpPassProgram&&) noexcept;

    int prog_fd() const;
    const bpf_program* program() const;
    Result<Link> attach(int ifindex, XdpMode mode) const { return attach_xdp(program(), ifindex, mode); }

private:
    struct Impl;
    explicit XdpPassProgram(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace kxlb
