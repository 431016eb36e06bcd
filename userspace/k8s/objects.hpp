// Typed Kubernetes objects kxlb programs from (core/v1 Service, discovery.k8s.io/v1 EndpointSlice)
// and their strict JSON parsers. Fields absent from the JSON take the Kubernetes API defaults.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "lib/lb_types.hpp"
#include "lib/result.hpp"

namespace kxlb::k8s {

struct ObjectMeta {
    std::string namespace_;  // "" for cluster-scoped objects
    std::string name;
    std::string uid;
    std::string resource_version;
    std::map<std::string, std::string> labels;
    std::map<std::string, std::string> annotations;
    std::string key() const { return namespace_.empty() ? name : namespace_ + "/" + name; }  // "ns/name"
    bool operator==(const ObjectMeta&) const = default;
};

// The metadata every list item and watch object must have (name; namespace, uid, resourceVersion
// and labels/annotations when present). Error: not an object, or no name.
Result<ObjectMeta> parse_meta(const nlohmann::json& obj);

// IntOrString (Service targetPort): a port number or the name of a container port.
struct IntOrString {
    std::int32_t number = 0;  // valid when name is empty
    std::string name;
    bool is_name() const { return !name.empty(); }
    bool operator==(const IntOrString&) const = default;
};

enum class ServiceType { ClusterIP, NodePort, LoadBalancer, ExternalName };
enum class TrafficPolicy { Cluster, Local };

struct ServicePort {
    std::string name;
    std::uint8_t protocol = 6;    // IPPROTO_TCP / IPPROTO_UDP / IPPROTO_SCTP; default TCP
    std::uint16_t port = 0;       // 1..65535
    IntOrString target_port;      // absent: the same number as `port`
    std::uint16_t node_port = 0;  // 0: none
    bool operator==(const ServicePort&) const = default;
};

struct Service {
    ObjectMeta meta;
    ServiceType type = ServiceType::ClusterIP;
    bool headless = false;                  // clusterIP "None"
    std::vector<IpAddr> cluster_ips;        // spec.clusterIPs (or spec.clusterIP); empty if headless/unset
    std::vector<std::uint8_t> ip_families;  // AF_INET / AF_INET6, in spec order
    std::vector<ServicePort> ports;
    std::vector<IpAddr> external_ips;
    std::vector<IpAddr> load_balancer_ips;  // status.loadBalancer.ingress[].ip (hostname-only entries skipped)
    std::vector<std::string> load_balancer_source_ranges;  // CIDR text as given (whitespace trimmed)
    TrafficPolicy external_traffic_policy = TrafficPolicy::Cluster;
    TrafficPolicy internal_traffic_policy = TrafficPolicy::Cluster;
    bool session_affinity_client_ip = false;
    std::uint32_t session_affinity_timeout_s = 10800;  // sessionAffinityConfig.clientIP.timeoutSeconds
    bool has_selector = false;  // spec.selector present and non-empty (endpoints are managed by k8s)
    std::string external_name;  // type ExternalName only
    bool operator==(const Service&) const = default;
};

enum class AddressType { IPv4, IPv6, FQDN };

struct EndpointPort {
    std::string name;
    std::uint8_t protocol = 6;          // default TCP
    std::optional<std::uint16_t> port;  // absent: "all ports" (Kubernetes semantics)
    bool operator==(const EndpointPort&) const = default;
};

// Absent conditions take the meaning the EndpointSlice API gives them (as kube-proxy does):
// ready/serving unknown = true, terminating unknown = false.
struct EndpointConditions {
    bool ready = true;
    bool serving = true;
    bool terminating = false;
    bool operator==(const EndpointConditions&) const = default;
};

struct Endpoint {
    std::vector<std::string> addresses;  // >= 1; IP literals for IPv4/IPv6 slices (checked), names for FQDN
    EndpointConditions conditions;
    std::string node_name;
    std::string zone;
    bool operator==(const Endpoint&) const = default;
};

struct EndpointSlice {
    ObjectMeta meta;
    std::string service_name;  // label kubernetes.io/service-name; "" if absent
    AddressType address_type = AddressType::IPv4;
    std::vector<EndpointPort> ports;
    std::vector<Endpoint> endpoints;
    // "ns/<service_name>", or "" when the slice names no service.
    std::string service_key() const { return service_name.empty() ? "" : meta.namespace_ + "/" + service_name; }
    bool operator==(const EndpointSlice&) const = default;
};

inline constexpr const char* kServiceNameLabel = "kubernetes.io/service-name";

// Strict parsers: a wrong type, an out-of-range number, an unknown enum word or a bad IP literal is an
// error naming the field ("spec.ports[1].port: expected an integer 1-65535, got \"http\""). JSON null
// counts as absent. Unknown fields are ignored (the API grows).
Result<Service> parse_service(const nlohmann::json& obj);
Result<EndpointSlice> parse_endpoint_slice(const nlohmann::json& obj);

}  // namespace kxlb::k8s
