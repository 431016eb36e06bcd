// Kubernetes -> agent model: turns one Service and its EndpointSlices (a ClusterStore ServiceState)
// into the agent's ServiceConfigs for this node. Pure: no I/O, no clock; the rules are in
// docs/kubernetes.md ("Mapping").
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/config.hpp"
#include "k8s/cluster_store.hpp"
#include "lib/lb_types.hpp"

namespace kxlb::k8s {

// Annotations that opt a Service into health probing of its endpoints.
inline constexpr const char* kHealthCheckAnnotation = "kxlb.io/health-check";  // "tcp", "http:/readyz", "https:/x"
inline constexpr const char* kHealthCheckIntervalAnnotation = "kxlb.io/health-check-interval";  // "2s", "500ms"
inline constexpr const char* kHealthCheckTimeoutAnnotation = "kxlb.io/health-check-timeout";    // < interval
inline constexpr const char* kHealthCheckInsecureAnnotation =
    "kxlb.io/health-check-insecure";  // "true": https unverified

// The node the agent runs on: endpoints with nodeName == name are local (traffic policy Local);
// NodePorts are served on each address (at most one per family is typical, more are allowed).
struct NodeInfo {
    std::string name;
    std::vector<IpAddr> addresses;
};

// The outcome of mapping one service. `problems` are for the log: each names the service and what
// was skipped or refused; they never stop the rest of the service from being mapped, except an
// invalid loadBalancerSourceRanges entry, which refuses the whole service (never opened to all).
struct ServiceMapping {
    std::vector<agent::ServiceConfig> services;  // sorted by name; names unique (see service_config_name)
    std::vector<std::string> problems;
    std::size_t skipped_ports = 0;  // ports with a protocol other than TCP/UDP (SCTP)
};

// Name of one generated ServiceConfig: "k8s.<namespace>.<name>.<port name or number>.<ipv4|ipv6>.<role>",
// role "cluster" (ClusterIPs, socket-LB), "lb" (LoadBalancer ingress IPs, with source ranges) or
// "external" (externalIPs and NodePorts). Namespaces and names cannot contain '.', so names are unique
// and valid agent service names. Precondition: family is AF_INET or AF_INET6.
std::string service_config_name(const std::string& ns, const std::string& name, const ServicePort& port,
                                std::uint8_t family, const std::string& role);

// Maps one service for `node`. A state without a Service object, a headless or ExternalName service
// yields nothing. Frontends and backends are per address family (full-NAT keeps the family).
ServiceMapping map_service(const ServiceState& state, const NodeInfo& node);

// The health check a Service's annotations ask for: nullopt without kxlb.io/health-check. Error
// (EINVAL, naming the annotation) for an invalid value; the caller then programs without probing.
Result<std::optional<agent::HealthCheckSpec>> health_check_from_annotations(
    const std::map<std::string, std::string>& annotations);

// A Go-style duration as used in annotations: "<n>ms", "<n>s", "<n>m" (n a positive integer).
Result<std::chrono::milliseconds> parse_annotation_duration(std::string_view text);

}  // namespace kxlb::k8s
