// Unit tests for the typed Service / EndpointSlice model: realistic apiserver JSON maps to exact
// structs, absent fields take the Kubernetes defaults, and malformed objects are errors naming the
// field (never exceptions).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <nlohmann/json.hpp>
#include <string>

#include "k8s/objects.hpp"

namespace kxlb::k8s {
namespace {

using nlohmann::json;

IpAddr ip(std::string_view s) { return IpAddr::parse(s).value(); }

// As `kubectl get svc -o json` prints a dual-stack LoadBalancer service.
const json kLoadBalancer = json::parse(R"({
  "apiVersion": "v1", "kind": "Service",
  "metadata": {
    "name": "web", "namespace": "shop", "uid": "7d3c0f4e-1111-2222-3333-444455556666",
    "resourceVersion": "48213", "creationTimestamp": "2024-01-01T00:00:00Z",
    "labels": {"app": "web"},
    "annotations": {"kxlb.io/mode": "dsr"},
    "managedFields": [{"manager": "kubectl"}]
  },
  "spec": {
    "type": "LoadBalancer",
    "clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7", "fd00:96::c07"],
    "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "PreferDualStack",
    "ports": [
      {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http-web", "nodePort": 31080},
      {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353, "nodePort": 31053}
    ],
    "selector": {"app": "web"},
    "externalIPs": ["192.0.2.10"],
    "loadBalancerSourceRanges": ["10.0.0.0/8", " 192.168.0.0/16 "],
    "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
    "healthCheckNodePort": 32000,
    "sessionAffinity": "ClientIP",
    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
    "allocateLoadBalancerNodePorts": true
  },
  "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.5", "ipMode": "VIP"}, {"hostname": "lb.example.com"},
                                          {"ip": "2001:db8::5"}]}}
})");

TEST(K8sObjects, LoadBalancerService) {
    auto s = parse_service(kLoadBalancer);
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ(s->meta.key(), "shop/web");
    EXPECT_EQ(s->meta.uid, "7d3c0f4e-1111-2222-3333-444455556666");
    EXPECT_EQ(s->meta.resource_version, "48213");
    EXPECT_EQ(s->meta.labels, (std::map<std::string, std::string>{{"app", "web"}}));
    EXPECT_EQ(s->meta.annotations.at("kxlb.io/mode"), "dsr");
    EXPECT_EQ(s->type, ServiceType::LoadBalancer);
    EXPECT_FALSE(s->headless);
    EXPECT_EQ(s->cluster_ips, (std::vector<IpAddr>{ip("10.96.12.7"), ip("fd00:96::c07")}));
    EXPECT_EQ(s->ip_families, (std::vector<std::uint8_t>{AF_INET, AF_INET6}));
    ASSERT_EQ(s->ports.size(), 2u);
    EXPECT_EQ(s->ports[0], (ServicePort{"http", IPPROTO_TCP, 80, IntOrString{0, "http-web"}, 31080}));
    EXPECT_TRUE(s->ports[0].target_port.is_name());
    EXPECT_EQ(s->ports[1], (ServicePort{"dns", IPPROTO_UDP, 53, IntOrString{5353, ""}, 31053}));
    EXPECT_EQ(s->external_ips, std::vector<IpAddr>{ip("192.0.2.10")});
    EXPECT_EQ(s->load_balancer_ips, (std::vector<IpAddr>{ip("203.0.113.5"), ip("2001:db8::5")}));
    EXPECT_EQ(s->load_balancer_source_ranges, (std::vector<std::string>{"10.0.0.0/8", "192.168.0.0/16"}));
    EXPECT_EQ(s->external_traffic_policy, TrafficPolicy::Local);
    EXPECT_EQ(s->internal_traffic_policy, TrafficPolicy::Local);
    EXPECT_TRUE(s->session_affinity_client_ip);
    EXPECT_EQ(s->session_affinity_timeout_s, 600u);
    EXPECT_TRUE(s->has_selector);
}

TEST(K8sObjects, MinimalServiceTakesApiDefaults) {
    auto s = parse_service(json::parse(R"({"metadata": {"name": "a", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 8080}]}})"));
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ(s->type, ServiceType::ClusterIP);
    EXPECT_EQ(s->cluster_ips, std::vector<IpAddr>{ip("10.96.0.10")});
    ASSERT_EQ(s->ports.size(), 1u);
    EXPECT_EQ(s->ports[0], (ServicePort{"", IPPROTO_TCP, 8080, IntOrString{8080, ""}, 0}));  // targetPort = port
    EXPECT_EQ(s->external_traffic_policy, TrafficPolicy::Cluster);
    EXPECT_EQ(s->internal_traffic_policy, TrafficPolicy::Cluster);
    EXPECT_FALSE(s->session_affinity_client_ip);
    EXPECT_EQ(s->session_affinity_timeout_s, 10800u);
    EXPECT_FALSE(s->has_selector);
    EXPECT_TRUE(s->meta.uid.empty());
}

TEST(K8sObjects, HeadlessAndExternalNameServices) {
    auto h = parse_service(json::parse(R"({"metadata": {"name": "db", "namespace": "x"},
        "spec": {"clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "db"}, "ports": null}})"));
    ASSERT_TRUE(h) << h.error().message;
    EXPECT_TRUE(h->headless);
    EXPECT_TRUE(h->cluster_ips.empty());
    EXPECT_TRUE(h->ports.empty());
    auto e = parse_service(json::parse(R"({"metadata": {"name": "ext", "namespace": "x"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}})"));
    ASSERT_TRUE(e) << e.error().message;
    EXPECT_EQ(e->type, ServiceType::ExternalName);
    EXPECT_EQ(e->external_name, "db.example.com");
}

TEST(K8sObjects, EndpointSliceWithConditions) {
    auto es = parse_endpoint_slice(json::parse(R"({
      "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
      "metadata": {"name": "web-abc12", "namespace": "shop", "uid": "u-1", "resourceVersion": "9",
                   "labels": {"kubernetes.io/service-name": "web",
                              "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                   "ownerReferences": [{"kind": "Service", "name": "web"}]},
      "addressType": "IPv4",
      "ports": [{"name": "http", "protocol": "TCP", "port": 8080}, {"name": "dns", "protocol": "UDP", "port": 5353},
                {"name": ""}],
      "endpoints": [
        {"addresses": ["10.244.1.5"], "conditions": {"ready": true, "serving": true, "terminating": false},
         "nodeName": "node-1", "zone": "eu-1a", "targetRef": {"kind": "Pod", "name": "web-1"}},
        {"addresses": ["10.244.2.7"], "conditions": {"ready": false, "serving": true, "terminating": true},
         "nodeName": "node-2"},
        {"addresses": ["10.244.3.9"]},
        {"addresses": ["10.244.3.10"], "conditions": {"ready": false}}
      ]})"));
    ASSERT_TRUE(es) << es.error().message;
    EXPECT_EQ(es->meta.key(), "shop/web-abc12");
    EXPECT_EQ(es->service_name, "web");
    EXPECT_EQ(es->service_key(), "shop/web");
    EXPECT_EQ(es->address_type, AddressType::IPv4);
    ASSERT_EQ(es->ports.size(), 3u);
    EXPECT_EQ(es->ports[0], (EndpointPort{"http", IPPROTO_TCP, 8080}));
    EXPECT_EQ(es->ports[1], (EndpointPort{"dns", IPPROTO_UDP, 5353}));
    EXPECT_EQ(es->ports[2], (EndpointPort{"", IPPROTO_TCP, std::nullopt}));
    ASSERT_EQ(es->endpoints.size(), 4u);
    EXPECT_EQ(es->endpoints[0], (Endpoint{{"10.244.1.5"}, {true, true, false}, "node-1", "eu-1a"}));
    EXPECT_EQ(es->endpoints[1], (Endpoint{{"10.244.2.7"}, {false, true, true}, "node-2", ""}));
    // Absent conditions: ready and serving unknown = true, terminating unknown = false.
    EXPECT_EQ(es->endpoints[2].conditions, (EndpointConditions{true, true, false}));
    EXPECT_EQ(es->endpoints[3].conditions, (EndpointConditions{false, true, false}));
}

TEST(K8sObjects, Ipv6AndFqdnSlices) {
    auto v6 = parse_endpoint_slice(json::parse(R"({"metadata": {"name": "s", "namespace": "n"},
        "addressType": "IPv6", "endpoints": [{"addresses": ["fd00::5"]}]})"));
    ASSERT_TRUE(v6) << v6.error().message;
    EXPECT_EQ(v6->address_type, AddressType::IPv6);
    EXPECT_EQ(v6->service_key(), "");  // no service-name label
    auto fqdn = parse_endpoint_slice(json::parse(R"({"metadata": {"name": "s", "namespace": "n"},
        "addressType": "FQDN", "endpoints": [{"addresses": ["db.example.com"]}]})"));
    ASSERT_TRUE(fqdn) << fqdn.error().message;
    EXPECT_EQ(fqdn->endpoints[0].addresses, std::vector<std::string>{"db.example.com"});
}

std::string service_error(const std::string& spec) {
    auto r = parse_service(json::parse(R"({"metadata": {"name": "a", "namespace": "n"}, "spec": )" + spec + "}"));
    return r ? "OK" : r.error().message;
}

std::string slice_error(const std::string& rest) {
    auto r = parse_endpoint_slice(json::parse(R"({"metadata": {"name": "s", "namespace": "n"}, )" + rest + "}"));
    return r ? "OK" : r.error().message;
}

TEST(K8sObjects, MalformedServices) {
    EXPECT_EQ(service_error(R"({"ports": [{"port": "http"}]})"),
              "Service n/a: spec.ports[0].port: expected an integer 1-65535, got \"http\"");
    EXPECT_EQ(service_error(R"({"ports": [{"port": 70000}]})"),
              "Service n/a: spec.ports[0].port: expected an integer 1-65535, got 70000");
    EXPECT_EQ(service_error(R"({"ports": [{"name": "x"}]})"), "Service n/a: spec.ports[0].port: missing");
    EXPECT_EQ(service_error(R"({"ports": [{"port": 80, "targetPort": 0}]})"),
              "Service n/a: spec.ports[0].targetPort: expected an integer 1-65535, got 0");
    EXPECT_EQ(service_error(R"({"ports": [{"port": 80, "targetPort": true}]})"),
              "Service n/a: spec.ports[0].targetPort: expected an integer 1-65535, got true");
    EXPECT_EQ(service_error(R"({"ports": [{"port": 80, "protocol": "ICMP"}]})"),
              "Service n/a: spec.ports[0].protocol: expected one of TCP, UDP, SCTP, got \"ICMP\"");
    EXPECT_EQ(service_error(R"({"ports": {"port": 80}})"),
              "Service n/a: spec.ports: expected a list, got {\"port\":80}");
    EXPECT_EQ(service_error(R"({"clusterIPs": ["10.96.0.300"]})"),
              "Service n/a: spec.clusterIPs[0]: \"10.96.0.300\" is not an IP address");
    EXPECT_EQ(service_error(R"({"clusterIP": 5})"), "Service n/a: spec.clusterIP: expected a string, got 5");
    EXPECT_EQ(service_error(R"({"type": "Magic"})"),
              "Service n/a: spec.type: expected one of ClusterIP, NodePort, LoadBalancer, ExternalName, got \"Magic\"");
    EXPECT_EQ(service_error(R"({"ipFamilies": ["IPv5"]})"),
              "Service n/a: spec.ipFamilies[0]: expected one of IPv4, IPv6, got \"IPv5\"");
    EXPECT_EQ(service_error(R"({"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}})"),
              "Service n/a: spec.sessionAffinityConfig.clientIP.timeoutSeconds: expected an integer 1-86400, got 0");
    EXPECT_EQ(service_error(R"({"selector": {"app": 1}})"), "Service n/a: spec.selector.app: expected a string, got 1");
    EXPECT_EQ(service_error(R"([])"), "Service n/a: spec: expected an object, got []");
    EXPECT_EQ(parse_service(json::parse(R"({"metadata": {"name": "a"}})")).error().message,
              "Service a: metadata.namespace: missing (a must be namespaced)");
    EXPECT_EQ(parse_service(json::parse(R"({"metadata": {"namespace": "n"}})")).error().message,
              "Service: metadata.name: missing");
    EXPECT_EQ(parse_service(json::parse("[1]")).error().message, "Service: (object): expected a JSON object, got [1]");
    EXPECT_EQ(parse_service(json::parse(R"({"metadata": {"name": "a", "namespace": "n"},
                                            "status": {"loadBalancer": {"ingress": [{"ip": "x"}]}}})"))
                  .error()
                  .message,
              "Service n/a: status.loadBalancer.ingress[0].ip: \"x\" is not an IP address");
}

TEST(K8sObjects, MalformedEndpointSlices) {
    EXPECT_EQ(slice_error(R"("endpoints": [])"), "EndpointSlice n/s: addressType: missing");
    EXPECT_EQ(slice_error(R"("addressType": "IPv7")"),
              "EndpointSlice n/s: addressType: expected one of IPv4, IPv6, FQDN, got \"IPv7\"");
    EXPECT_EQ(slice_error(R"("addressType": "IPv4", "endpoints": [{"addresses": []}])"),
              "EndpointSlice n/s: endpoints[0].addresses: missing (an endpoint has at least one address)");
    EXPECT_EQ(slice_error(R"("addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}])"),
              "EndpointSlice n/s: endpoints[0].addresses[0]: \"fd00::1\" is not an IPv4 address");
    EXPECT_EQ(slice_error(R"("addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"],
                             "conditions": {"ready": "yes"}}])"),
              "EndpointSlice n/s: endpoints[0].conditions.ready: expected true or false, got \"yes\"");
    EXPECT_EQ(slice_error(R"("addressType": "IPv4", "ports": [{"port": -1}])"),
              "EndpointSlice n/s: ports[0].port: expected an integer 1-65535, got -1");
    EXPECT_EQ(slice_error(R"("addressType": "IPv4", "endpoints": "x")"),
              "EndpointSlice n/s: endpoints: expected a list, got \"x\"");
    EXPECT_EQ(parse_endpoint_slice(json::parse(R"({"metadata": {"name": "s", "namespace": "n",
                                                   "labels": {"kubernetes.io/service-name": null}}})"))
                  .error()
                  .message,
              "EndpointSlice n/s: metadata.labels.kubernetes.io/service-name: expected a string, got null");
}

TEST(K8sObjects, MetaOfAnyObject) {
    auto m = parse_meta(json::parse(R"({"metadata": {"name": "node-1", "uid": "u", "resourceVersion": "5"}})"));
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(m->key(), "node-1");  // cluster-scoped
    EXPECT_EQ(parse_meta(json::parse(R"({"metadata": {"name": 3}})")).error().message,
              "object: metadata.name: expected a string, got 3");
}

}  // namespace
}  // namespace kxlb::k8s
