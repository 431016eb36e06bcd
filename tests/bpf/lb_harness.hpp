// Golden-packet harness for the load balancer: a lab namespace "node" with fixed MACs, routes and
// permanent neighbour entries (so bpf_fib_lookup answers deterministically), the loaded datapath,
// its programmer and readers, and a run() that feeds frames in through BPF_PROG_TEST_RUN with the
// node's eth0 (or eth1) as ingress device.
#pragma once

#include <netinet/in.h>

#include <array>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/packet_builder.hpp"
#include "lab/lab.hpp"
#include "lib/lb_inspect.hpp"
#include "lib/lb_maps.hpp"
#include "lib/lb_programmer.hpp"
#include "lib/test_run.hpp"
#include "lib/xdp_programs.hpp"

namespace kxlb::test {

// Fixed addressing of the harness (all inside the lab namespaces; nothing is ever sent).
struct LbNet {
    static constexpr const char* kNodeMac0 = "02:00:00:00:00:01";  // node eth0
    static constexpr const char* kNodeMac1 = "02:00:00:00:01:01";  // node eth1
    static constexpr const char* kNode4 = "10.0.0.1";              // node eth0 = SNAT v4
    static constexpr const char* kNode6 = "fd00::1";               // SNAT v6
    static constexpr const char* kClient4 = "10.0.0.100";
    static constexpr const char* kClient6 = "fd00::100";
    static constexpr const char* kClientMac = "02:00:00:00:00:64";
    static constexpr const char* kVip4 = "10.96.0.10";
    static constexpr const char* kVip6 = "fd96::10";
    // Backends on eth0 (on link, permanent neighbours): index i -> 10.0.0.1i / fd00::1i, MAC ..:0(b+i)
    static std::string backend4(int i) { return "10.0.0.1" + std::to_string(i); }
    static std::string backend6(int i) { return "fd00::1" + std::to_string(i); }
    static std::string backend_mac(int i) { return "02:00:00:00:00:1" + std::to_string(i); }
    static constexpr const char* kFar4 = "10.1.0.21";  // backend behind eth1
    static constexpr const char* kFar6 = "fd01::21";
    static constexpr const char* kFarMac = "02:00:00:00:01:15";
    static constexpr const char* kNoNeigh4 = "10.0.0.50";  // on link, no neighbour entry
    static constexpr const char* kNoNeigh6 = "fd00::50";
    static constexpr const char* kNoRoute4 = "10.99.0.5";  // no route at all
    static constexpr const char* kNoRoute6 = "fd99::5";
};

LbConfig default_lb_config();

// Small shared helpers of the golden-packet tests.
inline Mac mac(const std::string& s) { return Mac::parse(s); }
// Lines joined with "\n" after each (comparable problem lists in assertion messages).
inline std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& e : v) s += e + "\n";
    return s;
}
// The conntrack key of src:sport -> dst:dport (addresses as text, ports in host order).
inline kxlb_flow_key flow_key(const std::string& src, std::uint16_t sport, const std::string& dst, std::uint16_t dport,
                              std::uint8_t proto) {
    kxlb_flow_key k{};
    const IpAddr a = IpAddr::parse(src).value(), b = IpAddr::parse(dst).value();
    a.to_words(k.saddr);
    b.to_words(k.daddr);
    k.sport = htons(sport);
    k.dport = htons(dport);
    k.proto = proto;
    k.family = a.family;
    return k;
}
// The parameter of a test run for each family and L4 protocol; its gtest name ("v4_tcp").
struct Flow {
    bool v6 = false;
    std::uint8_t proto = IPPROTO_TCP;
};
template <typename ParamInfo>
std::string flow_name(const ParamInfo& i) {
    return std::string(i.param.v6 ? "v6" : "v4") + (i.param.proto == IPPROTO_TCP ? "_tcp" : "_udp");
}

class LbHarness {
public:
    static Result<std::unique_ptr<LbHarness>> create(const LbConfig& cfg = default_lb_config(),
                                                     const LbProgrammerOptions& opts = {},
                                                     const XdpLbLoadOptions& load_opts = {});

    // Runs one frame; ingress 0 = node eth0, 1 = node eth1.
    Result<XdpRun> run(const Packet& frame, int ingress = 0);
    Status set_config(const LbConfig& cfg) { return maps_->set_config(cfg.to_abi()); }
    // Devmap entries resolve the ifindex in the writer's network namespace: write from inside "node".
    Status add_tx_port_eth1() { return add_tx_port(eth1_); }
    // Additions: any node interface into / out of kxlb_tx_ports (removal writes the devmap directly, as an agent
    // would when a NIC goes away; LbMaps has no removal yet).
    Status add_tx_port(int ifindex) {
        return lab_->in_ns("node", [&] { return maps_->add_tx_port(static_cast<std::uint32_t>(ifindex)); });
    }
    Status remove_tx_port(int ifindex);

    // Addition: run() without the namespace switch, for callers already inside the node namespace (in_node):
    // the fuzz test runs hundreds of thousands of frames in one in_node() call.
    Result<XdpRun> run_in_node(std::span<const std::uint8_t> frame, int ingress = 0);
    // Runs fn() with the calling thread inside the node namespace (restored afterwards, also on throw).
    template <typename Fn>
    auto in_node(Fn&& fn) -> decltype(fn()) {
        return lab_->in_ns("node", std::forward<Fn>(fn));
    }

    LbProgrammer& lb() { return *programmer_; }
    LbCounters& counters() { return *counters_; }
    // The conntrack entry / reverse (nat) entry with exactly this key, and the number of reverse
    // entries; read failures are test failures.
    std::optional<kxlb_ct_value> ct_entry(const kxlb_flow_key& key);
    std::optional<kxlb_nat_value> nat_entry(const kxlb_flow_key& key);
    std::size_t nat_count();
    // Runs one frame and expects `verdict` (a test failure with a hex dump otherwise); the output frame.
    Bytes run_expect(const Packet& in, std::uint32_t verdict, int ingress = 0);
    // Counters of a programmed frontend, and of one of its backends; zero (and a test failure) when
    // there is no such frontend or backend or the read fails.
    kxlb_lb_counter service_counter(const Frontend& fe);
    kxlb_lb_counter backend_counter(const Frontend& fe, const BackendIdentity& backend);
    Conntrack& conntrack() { return *conntrack_; }
    XdpLbProgram& program() { return *prog_; }
    lab::Lab& lab() { return *lab_; }
    int eth0() const { return eth0_; }
    int eth1() const { return eth1_; }

    // Summed reason counters; reason(r) = packets counted under r.
    std::uint64_t reason(kxlb_reason r);
    // Additions: every reason's summed packet count (index = enum kxlb_reason), their total, and the parser's
    // observation counters. Throw std::runtime_error when a map read fails (like reason()).
    std::array<std::uint64_t, kReasonCount> reason_packets();
    std::uint64_t reasons_total();
    ParseStats parse_stats();

private:
    LbHarness() = default;
    std::unique_ptr<lab::Lab> lab_;
    std::optional<XdpLbProgram> prog_;
    std::optional<BpfLbMaps> maps_;
    std::optional<LbProgrammer> programmer_;
    std::optional<LbCounters> counters_;
    std::optional<Conntrack> conntrack_;
    int eth0_ = 0, eth1_ = 0;
};

// Service helpers: frontend VIP:port/proto with backends (addresses as strings), weight 1.
ServiceSpec make_service(const std::string& vip, std::uint16_t port, std::uint8_t proto,
                         const std::vector<std::string>& backends, std::uint16_t backend_port);

}  // namespace kxlb::test
