// What kxlbctl shows: plain value types, one per object, read from the pinned maps (inspect.hpp)
// and rendered as tables or JSON (format.hpp). No BPF calls here, so renderers are unit-testable
// with hand-built values.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lib/abi.hpp"
#include "lib/lb_types.hpp"
#include "lib/sock_lb_program.hpp"

namespace kxlb::ctl {

// An address and a host-order port.
struct Endpoint {
    IpAddr addr;
    std::uint16_t port = 0;
    std::string str() const;  // "10.0.0.1:80", "[fd00::1]:80"
    bool operator==(const Endpoint&) const = default;
};

struct Traffic {
    std::uint64_t packets = 0;
    std::uint64_t bytes = 0;
    std::uint64_t new_flows = 0;
    bool operator==(const Traffic&) const = default;
};

struct ServiceRow {
    std::uint32_t id = 0;
    Frontend frontend;
    std::uint32_t flags = 0;            // KXLB_SVC_F_*
    std::uint32_t backend_count = 0;    // backend entries owned by the service
    std::uint32_t active_backends = 0;  // of those: not draining and weight > 0 (what Maglev uses)
    Traffic traffic;
    std::optional<std::uint64_t> sock_connections;  // socket-LB maps pinned: connections balanced
};

struct BackendRow {
    std::uint32_t id = 0;
    std::uint32_t svc_id = 0;
    std::optional<Frontend> frontend;  // of svc_id; nullopt when no frontend has that id
    Endpoint endpoint;
    std::uint32_t weight = 0;
    bool draining = false;
    std::uint32_t gen = 0;
    Traffic traffic;
    std::optional<std::uint64_t> sock_connections;
};

struct ServiceDetail {
    ServiceRow service;
    std::uint32_t maglev_size = 0;  // 0: no table (no usable backend)
    std::vector<BackendRow> backends;
};

struct MaglevShare {
    std::uint32_t backend_id = 0;
    std::optional<Endpoint> endpoint;  // nullopt: the slot names an id without a backend entry
    std::uint32_t slots = 0;
};

struct MaglevView {
    std::uint32_t svc_id = 0;
    Frontend frontend;
    std::uint32_t size = 0;            // prime table size; 0 when the service has no table
    std::vector<MaglevShare> shares;   // by backend id
    std::vector<std::uint32_t> table;  // every slot's backend id (only with --full)
    bool full = false;
};

struct FlowRow {
    Endpoint client;
    Frontend frontend;
    std::uint32_t svc_id = 0;
    std::uint32_t backend_id = 0;
    std::optional<Endpoint> backend;  // nullopt: id unused now, or reused (generation differs)
    std::uint16_t snat_port = 0;      // host order; 0: none
    std::uint32_t flags = 0;          // KXLB_CT_F_*
    std::uint64_t age_ms = 0;         // since the datapath last refreshed the entry
};

struct FlowList {
    std::vector<FlowRow> flows;  // after --limit
    std::size_t matched = 0;     // before --limit
};

struct FlushResult {
    std::optional<std::uint32_t> svc_id;
    std::size_t removed = 0;
};

struct StatsView {
    std::array<kxlb_counter, kReasonCount> reasons{};
    std::optional<std::array<kxlb_counter, kParseStatCount>> parse;   // kxlb_parse_stats pinned
    std::optional<std::array<std::uint64_t, kSockReasonCount>> sock;  // socket-LB maps pinned
    std::optional<kxlb_flow_cache_counters> flow_cache;               // kxlb_fcache_stats pinned
    bool all = false;                                                 // tables show zero counters too
};

// One synthetic packet through the datapath (kxlbctl trace).
struct TraceHeaders {
    IpAddr src, dst;
    std::uint8_t proto = 0;                     // IPPROTO_*
    std::optional<std::uint16_t> sport, dport;  // TCP/UDP only
    bool operator==(const TraceHeaders&) const = default;
};

enum class TraceFlow {
    None,         // the datapath kept no state for the packet
    New,          // a new flow (the live conntrack has no usable entry for it)
    Established,  // the live conntrack entry was used
    Rebalanced,   // a live entry existed but its backend is gone: a new backend was chosen
    Reply,        // a backend's reply, matched by the live reverse-NAT entry
};

struct TraceResult {
    TraceHeaders in;
    std::uint8_t tcp_flags = 0;
    std::string ifname;  // ingress; empty: none
    std::uint32_t ifindex = 0;
    std::uint32_t verdict = 0;  // XDP_*
    std::uint32_t reason = 0;   // enum kxlb_reason
    TraceFlow flow = TraceFlow::None;
    std::optional<std::uint32_t> svc_id;
    std::optional<Frontend> frontend;
    std::optional<std::uint32_t> backend_id;
    std::optional<Endpoint> backend;
    std::optional<std::uint16_t> snat_port;
    std::optional<TraceHeaders> out;  // headers of the frame the program emitted, if it changed them
    std::string egress;               // interface the frame leaves through (XDP_TX/REDIRECT)
};

}  // namespace kxlb::ctl
