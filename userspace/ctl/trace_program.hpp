// A second, private instance of the embedded XDP datapath program for kxlbctl trace: it reads the
// live state maps (configuration, services, backends, Maglev tables, frontend filter, TX ports)
// through their pinned fds, and writes only maps of its own (conntrack, reverse NAT, counters), so
// running it with BPF_PROG_TEST_RUN changes nothing the live datapath sees. The only translation
// unit of kxlbctl that includes the generated skeleton.
#pragma once

#include <memory>

#include "lib/lb_maps.hpp"
#include "lib/result.hpp"

namespace kxlb::ctl {

class TraceProgram {
public:
    // live: the pinned maps; config, services, vip_addrs, backends, maglev, frontend_filter and
    // tx_ports are shared (never written by the program), the rest is private.
    static Result<TraceProgram> load(const LbMapFds& live);
    ~TraceProgram();
    TraceProgram(TraceProgram&&) noexcept;
    TraceProgram& operator=(TraceProgram&&) noexcept;

    int prog_fd() const;
    // The private maps (ct, nat, reasons, svc_stats, backend_stats) plus the shared ones.
    LbMapFds fds() const;

private:
    struct Impl;
    explicit TraceProgram(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace kxlb::ctl
