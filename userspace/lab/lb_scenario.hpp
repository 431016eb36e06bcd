// A ready-made load-balancer lab: client, node and N backend namespaces on one switch, nginx in every
// backend, the kxlb XDP datapath attached natively to the node's NIC and programmed through the
// library. Used by the demo (and meant for e2e tests and benchmarks that need the same shape).
//
//   client 10.90.0.10 fd90::10 ─┐
//   node   10.90.0.1  fd90::1  ─┤ sw (bridge)    node: kxlb XDP on eth0, SNAT = its own address
//   beN    10.90.0.1N fd90::1N ─┘                beN: nginx :8080, GET /readyz -> "beN"
//
// What the datapath needs from a host, done here as an operator would: forwarding on the node, an
// XDP program on the veth peer it transmits into, neighbour entries for backends and clients (the
// agent's health probes keep them warm), and TX checksum offload off on veth senders (frames from a
// physical NIC always carry complete checksums; a veth sender's CHECKSUM_PARTIAL frames do not).
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lab/lab.hpp"
#include "lab/temp_dir.hpp"
#include "lib/lb_maps.hpp"
#include "lib/lb_programmer.hpp"
#include "lib/xdp_programs.hpp"

namespace kxlb::lab {

class LbScenario {
public:
    static constexpr const char* kClient4 = "10.90.0.10";
    static constexpr const char* kClient6 = "fd90::10";
    static constexpr const char* kNode4 = "10.90.0.1";
    static constexpr const char* kNode6 = "fd90::1";
    static constexpr std::uint16_t kHttpPort = 8080;
    static constexpr std::uint16_t kHttpsPort = 6443;  // same answers over TLS (self-signed, IP SANs)
    static std::string backend4(int i) { return "10.90.0.1" + std::to_string(i); }
    static std::string backend6(int i) { return "fd90::1" + std::to_string(i); }
    static std::string backend_ns(int i) { return "be" + std::to_string(i); }

    // Builds everything; backends are numbered 1..n (n <= 9). vips: addresses the client routes via
    // the node (IPv4 /32 or IPv6 /128).
    // datapath: Library loads and attaches XDP on node eth0 programmed through lb(); None leaves the
    // node bare for kxlb-agent to run there (program(), maps() and lb() must not be used then).
    enum class Datapath { Library, None };
    static Result<std::unique_ptr<LbScenario>> create(int backends, const std::vector<std::string>& vips,
                                                      Datapath datapath = Datapath::Library);
    ~LbScenario();

    Lab& lab() { return *lab_; }
    XdpLbProgram& program() { return *prog_; }
    BpfLbMaps& maps() { return *maps_; }
    LbProgrammer& lb() { return *programmer_; }
    int backends() const { return n_; }
    // The PEM certificate every backend serves on kHttpsPort; it is its own CA (verify with it). Its
    // SANs are the node, backend and VIP addresses.
    const std::string& ca_file() const { return cert_; }

    // Stops / (re)starts backend i's nginx; start waits until it accepts connections.
    void stop_backend(int i);
    Status start_backend(int i);

private:
    LbScenario() = default;
    Status warm_neighbours();

    TempDir dir_{"scenario"};
    int n_ = 0;
    std::unique_ptr<Lab> lab_;
    std::vector<Process*> nginx_;
    std::string cert_, key_;
    std::optional<XdpLbProgram> prog_;
    std::optional<BpfLbMaps> maps_;
    std::optional<LbProgrammer> programmer_;
    Link link_;
};

// A TCP connect to ip:port from inside a namespace; true if it was accepted within timeout_ms.
bool tcp_probe(Lab& lab, std::string_view ns, const std::string& ip, std::uint16_t port, int timeout_ms);

}  // namespace kxlb::lab
