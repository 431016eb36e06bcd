// The kxlb-agent configuration file: the typed model of docs/agent.md's YAML schema, and the parser
// that checks a document completely and reports every problem with its position and a fix.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/health_check.hpp"
#include "kxlb/abi.h"
#include "lib/lb_types.hpp"
#include "lib/maglev.hpp"
#include "lib/result.hpp"

namespace kxlb::agent {

// A NIC the XDP datapath is attached to.
struct InterfaceConfig {
    std::string name;            // kernel interface name, 1..15 characters
    bool allow_generic = false;  // opt-in fallback to generic XDP when native fails (agent logs a warning)
    bool operator==(const InterfaceConfig&) const = default;
};

enum class ServiceMode { FullNat, Dsr };
// What the datapath does when every backend of a service fails its health check.
enum class AllDownPolicy {
    KeepLastHealthy,  // keep sending to the backends that were healthy last (fail open)
    NoBackends,       // withdraw all backends: clients get ICMP unreachable (fail closed)
};

struct BackendConfig {
    IpAddr addr;  // not unspecified
    std::uint16_t port = 0;
    std::uint32_t weight = 1;  // 1..65535
    // Keeps its established flows, gets no new ones (a terminating Kubernetes endpoint). Not settable
    // in the config file: only the Kubernetes source produces draining backends.
    bool draining = false;
    // On this node (a local pod or process): the datapath hands its flows to the kernel with the
    // destination translated only, and translates the replies on their way out (docs/datapath.md,
    // "Local backends"). Kubernetes endpoints on this node get it automatically.
    bool local = false;
    bool operator==(const BackendConfig&) const = default;
};

struct ServiceConfig {
    std::string name;                 // unique; [a-z0-9]([-a-z0-9.]*[a-z0-9])?, <= 253 characters
    std::vector<Frontend> frontends;  // >= 1; a frontend belongs to one service only (across services too)
    ServiceMode mode = ServiceMode::FullNat;
    bool socket_lb = false;                                // node-local clients balanced at connect()
    std::optional<std::chrono::seconds> affinity_timeout;  // session affinity by client IP; 1s..86400s
    std::vector<Cidr> source_ranges;                       // clients allowed in; empty: all
    AllDownPolicy all_down = AllDownPolicy::KeepLastHealthy;
    // May be empty; no duplicate address:port; each backend's family is carried by some frontend, and
    // (when non-empty) every frontend's family has a backend: full-NAT keeps the address family.
    std::vector<BackendConfig> backends;
    std::optional<HealthCheckSpec> health_check;  // absent: backends are always considered healthy
    bool operator==(const ServiceConfig&) const = default;
};
// Services are shared, never copied, between the Kubernetes source, the merge and the reconciler: at
// 10,000 Kubernetes Services each copy would cost tens of MiB.
using ServicePtr = std::shared_ptr<const ServiceConfig>;

// An address and port the agent dials (an apiserver); "IP:port" or "[IPv6]:port" in the file.
struct EndpointConfig {
    IpAddr addr;
    std::uint16_t port = 0;  // 1..65535
    bool operator==(const EndpointConfig&) const = default;
};

// The Kubernetes state source (docs/kubernetes.md): Services and EndpointSlices from the API are
// programmed beside the file's services.
struct KubernetesConfig {
    bool enabled = false;
    std::string kubeconfig;  // absolute path; "": the in-cluster service account
    std::string node_name;   // "": $NODE_NAME, else the host name (resolved by the agent)
    // Apiservers programmed on apiserver_service (socket-LB) before the API answers; replaced by the
    // endpoints of default/kubernetes once known. Non-empty requires apiserver_service.
    std::vector<EndpointConfig> bootstrap_apiservers;
    std::optional<EndpointConfig> apiserver_service;  // the `kubernetes` Service address, e.g. 10.96.0.1:443
    bool operator==(const KubernetesConfig&) const = default;
};

// The backend side of DSR (docs/dsr-decap.md): the decapsulation program on NICs tunnels arrive on.
struct DsrDecapConfig {
    std::vector<InterfaceConfig> interfaces;  // empty: off; none of them in AgentConfig::interfaces
    std::vector<IpAddr> addresses;            // outer destinations to unwrap; empty: the node addresses
    bool operator==(const DsrDecapConfig&) const = default;
};

struct AgentConfig {
    std::vector<InterfaceConfig> interfaces;         // may be empty (socket-LB only node); unique names
    std::vector<IpAddr> node_addresses;              // empty: auto-detect; at most one per family
    std::uint32_t maglev_size = kDefaultMaglevSize;  // prime, 7..KXLB_MAX_MAGLEV_SIZE
    std::uint64_t hash_seed = 0;
    std::uint32_t conntrack_entries = KXLB_DEFAULT_CT_ENTRIES;  // 1024..16777216
    std::uint16_t snat_port_lo = 61000;                         // 1024 <= lo <= hi
    std::uint16_t snat_port_hi = 65535;
    std::chrono::seconds udp_timeout{30};       // 1s..24h
    std::vector<Cidr> dsr_source_prefixes;      // DSR outer sources: at most one per family; empty: node addresses
    std::string pin_path = "/sys/fs/bpf/kxlb";  // absolute
    std::string socket_lb_cgroup = "/sys/fs/cgroup/unified";  // absolute; "" disables the socket-LB hooks
    std::string metrics_address = "127.0.0.1:9464";           // IP:port or [IPv6]:port; "" disables
    std::string log_level = "info";                           // trace|debug|info|warn|error
    std::string log_format = "text";                          // text|json
    std::vector<ServiceConfig> services;
    KubernetesConfig kubernetes;
    DsrDecapConfig dsr_decap;
    bool operator==(const AgentConfig&) const = default;
};

inline constexpr std::uint32_t kMinMaglevSize = 7;
inline constexpr std::uint32_t kMinConntrackEntries = 1024;
inline constexpr std::uint32_t kMaxConntrackEntries = 16u << 20;

// Parses and validates one YAML document (schema: docs/agent.md). Never throws.
// On failure the Error (EINVAL) lists EVERY problem found, one per line, in document order, each as
//   "<source>:<line>:<col>: <yaml path>: <what is wrong>; <fix hint>"
// e.g. "agent.yaml:12:15: services[1].backends[0].port: 70000 is out of range 1-65535; use the backend's
// TCP/UDP port". line:col are 1-based; document-level problems (syntax, empty document) use the path
// "(document)". A YAML syntax error stops parsing, so it is the only problem reported.
Result<AgentConfig> parse_config(std::string_view yaml_text, std::string_view source_name);

// Reads the file at path and parses it with path as the source name. A file that cannot be read is an
// Error carrying the errno ("reading config file /etc/kxlb/agent.yaml: No such file or directory").
Result<AgentConfig> load_config(const std::string& path);

}  // namespace kxlb::agent
