// kxlbctl trace: one synthetic packet through a private instance of the datapath program
// (trace_program.hpp) with BPF_PROG_TEST_RUN. Before the run, the live conntrack / reverse-NAT
// entries the packet would meet are copied into the private maps, so an established flow's packet
// does what it would do live; afterwards the private maps tell which outcome, service, backend and
// SNAT port the datapath chose. Live maps are only read: no entry is created, no counter moves.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ctl/cli.hpp"
#include "ctl/pinned_maps.hpp"
#include "ctl/trace_program.hpp"
#include "ctl/views.hpp"
#include "lib/bpf_map.hpp"
#include "lib/test_run.hpp"

namespace kxlb::ctl {

struct Ingress {
    std::string ifname;  // empty: none
    std::uint32_t ifindex = 0;
};

// --ifname if given (must exist in this network namespace); otherwise the interface of the pinned
// XDP link if exactly one is pinned and its interface is here; otherwise none (next-hop lookups then
// fail with pass_fib_failed). Several pinned links without --ifname is an error.
Result<Ingress> resolve_ingress(const std::string& ifname, const PinnedMaps& maps);

class Tracer {
public:
    // Loads the private program instance; maps must outlive the Tracer.
    static Result<Tracer> create(const PinnedMaps& maps);
    Result<TraceResult> run(const TraceCmd& cmd, const Ingress& ingress);

private:
    using FlowMap = TypedMap<kxlb_flow_key, kxlb_ct_value>;
    using NatMap = TypedMap<kxlb_flow_key, kxlb_nat_value>;
    struct Maps {
        FlowMap live_ct, priv_ct;
        NatMap live_nat, priv_nat;
        TypedMap<std::uint32_t, kxlb_config> config;
        TypedMap<kxlb_vip_key, kxlb_service> services;
        TypedMap<std::uint32_t, kxlb_backend> backends;
        PerCpuArray<kxlb_counter> priv_reasons;
    };
    // What the private maps are seeded with before a run (copied from the live maps if present).
    struct Seeds {
        std::vector<kxlb_flow_key> ct, nat;
    };

    // The live entries the packet meets: its forward conntrack entry, or (a reply) its reverse NAT.
    struct Live {
        std::optional<kxlb_ct_value> ct;
        std::optional<kxlb_nat_value> reply;
    };
    // The last private run: its output, the forward entry it left, the reason it counted.
    struct Outcome {
        XdpRun run;
        std::optional<kxlb_ct_value> after;
        std::uint32_t reason = 0;
    };

    Tracer(TraceProgram prog, const Maps& maps) : prog_(std::move(prog)), m_(maps) {}
    Result<Live> live_entries(const kxlb_flow_key& fk) const;
    Seeds initial_seeds(const kxlb_flow_key& fk, const Live& live) const;
    // Runs the frame on freshly seeded private maps, again for each live-held SNAT port it picks.
    Result<Outcome> run_private(std::span<const std::uint8_t> frame, std::uint32_t ifindex, const kxlb_flow_key& fk,
                                const Live& live, Seeds seeds);
    TraceFlow classify(const Live& live, const kxlb_ct_value& after) const;
    std::uint32_t describe_flow(const kxlb_flow_key& fk, const Live& live, const Outcome& o, TraceResult& t) const;
    Status reset_private();
    Status seed(const Seeds& seeds);
    // The reason the last run counted.
    Result<std::uint32_t> counted_reason() const;
    // Key of the reverse-NAT entry of a forward flow toward backend_id with snat_port (nullopt if
    // the backend or the SNAT address is gone).
    std::optional<kxlb_flow_key> nat_key(const kxlb_flow_key& fk, std::uint32_t backend_id, __be16 snat_port) const;
    std::optional<Frontend> frontend_of(std::uint32_t svc_id) const;
    std::optional<Endpoint> backend_of(std::uint32_t backend_id, std::optional<std::uint32_t> gen) const;

    TraceProgram prog_;
    Maps m_;
};

}  // namespace kxlb::ctl
