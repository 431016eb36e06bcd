// Unit tier: Kubernetes Service + EndpointSlices -> agent ServiceConfigs (k8s/mapping.hpp), one test
// per rule, from realistic API JSON; plus the agent-side merge and bootstrap service (k8s_source.hpp).
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <nlohmann/json.hpp>

#include "agent/k8s_source.hpp"
#include "k8s/mapping.hpp"

namespace kxlb::k8s {
namespace {

using agent::BackendConfig;
using nlohmann::json;

json patched(json j, const json& patch) {
    j.merge_patch(patch);
    return j;
}

json service_json(const json& patch = json::object()) {
    return patched(json::parse(R"({
      "apiVersion": "v1", "kind": "Service",
      "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "5"},
      "spec": {"type": "ClusterIP", "selector": {"app": "web"},
               "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"],
               "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}
    })"),
                   patch);
}

json ep(const std::string& addr, const std::string& node = "node-a", bool ready = true, bool serving = true,
        bool terminating = false) {
    return {{"addresses", {addr}},
            {"nodeName", node},
            {"conditions", {{"ready", ready}, {"serving", serving}, {"terminating", terminating}}}};
}

json slice_json(const std::string& name, const std::string& type, json endpoints, json ports = nullptr) {
    if (ports.is_null()) ports = json::parse(R"([{"name": "http", "protocol": "TCP", "port": 8080}])");
    return {{"apiVersion", "discovery.k8s.io/v1"},
            {"kind", "EndpointSlice"},
            {"metadata", {{"name", name}, {"namespace", "shop"}, {"labels", {{"kubernetes.io/service-name", "web"}}}}},
            {"addressType", type},
            {"ports", ports},
            {"endpoints", endpoints}};
}

struct Case {
    json svc = service_json();
    std::vector<json> slices{slice_json("web-1", "IPv4", {ep("10.0.1.1"), ep("10.0.2.1", "node-b")})};
    NodeInfo node{"node-a", {IpAddr::v4(192, 168, 1, 5)}};

    ServiceMapping map() const {
        ServiceState st;
        auto s = parse_service(svc);
        EXPECT_TRUE(s) << (s ? "" : s.error().message);
        if (s) st.service = *s;
        for (const auto& j : slices) {
            auto sl = parse_endpoint_slice(j);
            EXPECT_TRUE(sl) << (sl ? "" : sl.error().message);
            if (sl) st.slices.push_back(*sl);
        }
        return map_service(st, node);
    }
};

IpAddr ip(const char* s) { return *IpAddr::parse(s); }

const agent::ServiceConfig* find(const ServiceMapping& m, const std::string& name) {
    for (const auto& s : m.services)
        if (s.name == name) return &s;
    return nullptr;
}

std::vector<std::string> names(const ServiceMapping& m) {
    std::vector<std::string> out;
    for (const auto& s : m.services) out.push_back(s.name);
    return out;
}

std::vector<std::string> backends(const agent::ServiceConfig* s) {
    std::vector<std::string> out;
    if (s)
        for (const auto& b : s->backends)
            out.push_back(BackendSpec{b.addr, b.port}.str() + (b.draining ? " draining" : ""));
    return out;
}

TEST(K8sMapping, ClusterIpIsASocketLbFrontendWithReadyEndpoints) {
    const auto m = Case{}.map();
    ASSERT_EQ(names(m), std::vector<std::string>{"k8s.shop.web.http.ipv4.cluster"});
    const auto& s = m.services[0];
    EXPECT_TRUE(s.socket_lb);
    EXPECT_EQ(s.frontends, (std::vector<Frontend>{{ip("10.96.0.10"), 80, IPPROTO_TCP}}));
    EXPECT_EQ(backends(&s), (std::vector<std::string>{"10.0.1.1:8080", "10.0.2.1:8080"}));
    EXPECT_FALSE(s.affinity_timeout);
    EXPECT_FALSE(s.health_check);
    EXPECT_TRUE(m.problems.empty());
}

TEST(K8sMapping, LoadBalancerExternalIpsAndNodePortsAreXdpFrontends) {
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"type": "LoadBalancer", "externalIPs": ["198.51.100.7"],
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}, {"hostname": "lb.example"}]}}})"));
    const auto m = c.map();
    ASSERT_EQ(names(m), (std::vector<std::string>{"k8s.shop.web.http.ipv4.cluster", "k8s.shop.web.http.ipv4.external",
                                                  "k8s.shop.web.http.ipv4.lb"}));
    const auto* lb = find(m, "k8s.shop.web.http.ipv4.lb");
    EXPECT_FALSE(lb->socket_lb);
    EXPECT_EQ(lb->frontends, (std::vector<Frontend>{{ip("203.0.113.10"), 80, IPPROTO_TCP}}));
    const auto* ext = find(m, "k8s.shop.web.http.ipv4.external");
    EXPECT_FALSE(ext->socket_lb);
    EXPECT_EQ(ext->frontends,
              (std::vector<Frontend>{{ip("192.168.1.5"), 30080, IPPROTO_TCP}, {ip("198.51.100.7"), 80, IPPROTO_TCP}}));
    EXPECT_EQ(backends(ext).size(), 2u);
}

TEST(K8sMapping, HeadlessAndExternalNameServicesMapToNothing) {
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"clusterIP": "None", "clusterIPs": ["None"]}})"));
    EXPECT_TRUE(c.map().services.empty());
    c.svc = json::parse(R"({"metadata": {"name": "db", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}})");
    EXPECT_TRUE(c.map().services.empty());
    EXPECT_TRUE(map_service(ServiceState{}, NodeInfo{}).services.empty());  // slices without a Service
}

TEST(K8sMapping, SctpPortsAreSkippedAndCounted) {
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"ports": [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
        {"name": "dns", "protocol": "UDP", "port": 53},
        {"name": "sig", "protocol": "SCTP", "port": 3868}]}})"));
    c.slices = {slice_json("web-1", "IPv4", {ep("10.0.1.1")}, json::parse(R"([
        {"name": "http", "protocol": "TCP", "port": 8080}, {"name": "dns", "protocol": "UDP", "port": 5353},
        {"name": "sig", "protocol": "SCTP", "port": 3868}])"))};
    const auto m = c.map();
    EXPECT_EQ(names(m), (std::vector<std::string>{"k8s.shop.web.dns.ipv4.cluster", "k8s.shop.web.http.ipv4.cluster"}));
    EXPECT_EQ(m.skipped_ports, 1u);
    ASSERT_EQ(m.problems.size(), 1u);
    EXPECT_NE(m.problems[0].find("sig"), std::string::npos);
    EXPECT_EQ(backends(find(m, "k8s.shop.web.dns.ipv4.cluster")), std::vector<std::string>{"10.0.1.1:5353"});
    EXPECT_EQ(find(m, "k8s.shop.web.dns.ipv4.cluster")->frontends[0].proto, IPPROTO_UDP);
}

TEST(K8sMapping, NamedTargetPortsResolvePerSlice) {
    // Pods of two versions name "web" differently; the slice controller resolves per slice.
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"}]}})"));
    c.slices = {slice_json("web-a", "IPv4", {ep("10.0.1.1")}, json::parse(R"([{"name": "http", "port": 8080}])")),
                slice_json("web-b", "IPv4", {ep("10.0.1.2")}, json::parse(R"([{"name": "http", "port": 9090}])"))};
    EXPECT_EQ(backends(find(c.map(), "k8s.shop.web.http.ipv4.cluster")),
              (std::vector<std::string>{"10.0.1.1:8080", "10.0.1.2:9090"}));
}

TEST(K8sMapping, UnnamedPortUsesItsNumberInTheNameAndMatchesUnnamedSlicePorts) {
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"ports": [{"port": 6443, "targetPort": 6443}]}})"));
    c.slices = {slice_json("web-1", "IPv4", {ep("10.0.0.11")}, json::parse(R"([{"port": 6443}])"))};
    const auto m = c.map();
    EXPECT_EQ(names(m), std::vector<std::string>{"k8s.shop.web.6443.ipv4.cluster"});
    EXPECT_EQ(backends(&m.services[0]), std::vector<std::string>{"10.0.0.11:6443"});
}

TEST(K8sMapping, TerminatingServingEndpointsDrainAndNotServingOnesAreLeftOut) {
    Case c;
    c.slices = {
        slice_json("web-1", "IPv4",
                   {ep("10.0.1.1"), ep("10.0.1.2", "node-a", false, true, true),
                    ep("10.0.1.3", "node-a", false, false, true), ep("10.0.1.4", "node-a", false, false, false)})};
    EXPECT_EQ(backends(find(c.map(), "k8s.shop.web.http.ipv4.cluster")),
              (std::vector<std::string>{"10.0.1.1:8080", "10.0.1.2:8080 draining"}));
}

TEST(K8sMapping, ServingTerminatingEndpointsServeWhenNoneIsReady) {
    Case c;
    c.slices = {slice_json("web-1", "IPv4",
                           {ep("10.0.1.2", "node-a", false, true, true), ep("10.0.1.3", "node-a", false, true, true),
                            ep("10.0.1.4", "node-a", false, false, true)})};
    EXPECT_EQ(backends(find(c.map(), "k8s.shop.web.http.ipv4.cluster")),
              (std::vector<std::string>{"10.0.1.2:8080", "10.0.1.3:8080"}));
    // Per frontend: under externalTrafficPolicy: Local only this node's endpoints count.
    c.svc = service_json(json::parse(R"({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}})"));
    c.slices = {slice_json("web-1", "IPv4", {ep("10.0.1.1", "node-b"), ep("10.0.1.2", "node-a", false, true, true)})};
    const auto m = c.map();
    EXPECT_EQ(backends(find(m, "k8s.shop.web.http.ipv4.lb")), std::vector<std::string>{"10.0.1.2:8080"});
    EXPECT_EQ(backends(find(m, "k8s.shop.web.http.ipv4.cluster")),
              (std::vector<std::string>{"10.0.1.1:8080", "10.0.1.2:8080 draining"}));
}

TEST(K8sMapping, EndpointsOfThisNodeAreMarkedLocal) {
    Case c;
    c.slices = {slice_json("web-1", "IPv4", {ep("10.0.1.1", "node-a"), ep("10.0.1.2", "node-b")})};
    const auto m = c.map();
    const auto* s = find(m, "k8s.shop.web.http.ipv4.cluster");
    ASSERT_NE(s, nullptr);
    std::map<std::string, bool> local;
    for (const auto& b : s->backends) local[b.addr.str()] = b.local;
    EXPECT_EQ(local, (std::map<std::string, bool>{{"10.0.1.1", true}, {"10.0.1.2", false}}));
}

TEST(K8sMapping, AnAddressInTwoSlicesCountsOnceServingWinning) {
    Case c;
    c.slices = {slice_json("web-1", "IPv4", {ep("10.0.1.1", "node-a", false, true, true)}),
                slice_json("web-2", "IPv4", {ep("10.0.1.1")})};
    EXPECT_EQ(backends(find(c.map(), "k8s.shop.web.http.ipv4.cluster")), std::vector<std::string>{"10.0.1.1:8080"});
}

TEST(K8sMapping, ExternalTrafficPolicyLocalKeepsOnlyThisNodesEndpointsOnXdpFrontends) {
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}})"));
    const auto m = c.map();
    EXPECT_EQ(backends(find(m, "k8s.shop.web.http.ipv4.lb")), std::vector<std::string>{"10.0.1.1:8080"});
    EXPECT_EQ(backends(find(m, "k8s.shop.web.http.ipv4.external")), std::vector<std::string>{"10.0.1.1:8080"});
    EXPECT_EQ(backends(find(m, "k8s.shop.web.http.ipv4.cluster")).size(), 2u);  // ClusterIP is not affected
}

TEST(K8sMapping, InternalTrafficPolicyLocalKeepsOnlyThisNodesEndpointsOnClusterIps) {
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"internalTrafficPolicy": "Local"}})"));
    EXPECT_EQ(backends(find(c.map(), "k8s.shop.web.http.ipv4.cluster")), std::vector<std::string>{"10.0.1.1:8080"});
    c.node.name = "node-c";  // no local endpoint: the frontend stays, with no backends
    const auto m = c.map();
    ASSERT_NE(find(m, "k8s.shop.web.http.ipv4.cluster"), nullptr);
    EXPECT_TRUE(find(m, "k8s.shop.web.http.ipv4.cluster")->backends.empty());
}

TEST(K8sMapping, SessionAffinityClientIpSetsTheTimeout) {
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"sessionAffinity": "ClientIP"}})"));
    EXPECT_EQ(c.map().services[0].affinity_timeout, std::chrono::seconds(10800));
    c.svc = service_json(json::parse(
        R"({"spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}})"));
    EXPECT_EQ(c.map().services[0].affinity_timeout, std::chrono::seconds(60));
}

TEST(K8sMapping, SourceRangesGuardTheLoadBalancerIpsOnly) {
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"type": "LoadBalancer",
        "loadBalancerSourceRanges": ["203.0.113.0/24", " 10.1.2.3/8 "],
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}})"));
    const auto m = c.map();
    EXPECT_EQ(find(m, "k8s.shop.web.http.ipv4.lb")->source_ranges,
              (std::vector<Cidr>{{ip("10.0.0.0"), 8}, {ip("203.0.113.0"), 24}}));
    EXPECT_TRUE(find(m, "k8s.shop.web.http.ipv4.external")->source_ranges.empty());
    EXPECT_TRUE(find(m, "k8s.shop.web.http.ipv4.cluster")->source_ranges.empty());
}

TEST(K8sMapping, AnInvalidSourceRangeRefusesTheServiceRatherThanOpeningIt) {
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"type": "LoadBalancer",
        "loadBalancerSourceRanges": ["203.0.113.0/24", "not-a-cidr"]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}})"));
    const auto m = c.map();
    EXPECT_TRUE(m.services.empty());
    ASSERT_EQ(m.problems.size(), 1u);
    EXPECT_NE(m.problems[0].find("not-a-cidr"), std::string::npos);
}

TEST(K8sMapping, DualStackGivesEachFamilyItsOwnFrontendsAndBackends) {
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"type": "NodePort", "clusterIPs": ["10.96.0.10", "fd00:96::10"],
        "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}})"));
    c.slices = {slice_json("web-v4", "IPv4", {ep("10.0.1.1")}), slice_json("web-v6", "IPv6", {ep("fd00:1::1")})};
    c.node.addresses = {IpAddr::v4(192, 168, 1, 5), ip("fd00:168::5")};
    const auto m = c.map();
    EXPECT_EQ(names(m),
              (std::vector<std::string>{"k8s.shop.web.http.ipv4.cluster", "k8s.shop.web.http.ipv4.external",
                                        "k8s.shop.web.http.ipv6.cluster", "k8s.shop.web.http.ipv6.external"}));
    const auto* v6 = find(m, "k8s.shop.web.http.ipv6.cluster");
    EXPECT_EQ(v6->frontends, (std::vector<Frontend>{{ip("fd00:96::10"), 80, IPPROTO_TCP}}));
    EXPECT_EQ(backends(v6), std::vector<std::string>{"[fd00:1::1]:8080"});
    EXPECT_EQ(find(m, "k8s.shop.web.http.ipv6.external")->frontends,
              (std::vector<Frontend>{{ip("fd00:168::5"), 30080, IPPROTO_TCP}}));
    EXPECT_EQ(backends(find(m, "k8s.shop.web.http.ipv4.cluster")), std::vector<std::string>{"10.0.1.1:8080"});
}

TEST(K8sMapping, ServicesWithoutSelectorsUseTheirManualSlices) {
    Case c;
    c.svc = service_json();
    c.svc["spec"].erase("selector");
    c.slices = {slice_json("web-manual", "IPv4", {{{"addresses", {"192.0.2.50"}}}})};  // conditions absent: ready
    EXPECT_EQ(backends(find(c.map(), "k8s.shop.web.http.ipv4.cluster")), std::vector<std::string>{"192.0.2.50:8080"});
}

TEST(K8sMapping, HealthCheckAnnotationsProgramProbes) {
    Case c;
    c.svc = service_json(json::parse(R"({"metadata": {"annotations": {"kxlb.io/health-check": "http:/readyz",
        "kxlb.io/health-check-interval": "500ms", "kxlb.io/health-check-timeout": "200ms"}}})"));
    const auto m = c.map();
    ASSERT_TRUE(m.services[0].health_check);
    const auto& hc = *m.services[0].health_check;
    EXPECT_EQ(hc.type, agent::HealthCheckSpec::Type::Http);
    EXPECT_EQ(hc.path, "/readyz");
    EXPECT_EQ(hc.interval, std::chrono::milliseconds(500));
    EXPECT_EQ(hc.timeout, std::chrono::milliseconds(200));

    auto tcp = health_check_from_annotations({{"kxlb.io/health-check", "tcp"}});
    ASSERT_TRUE(tcp && *tcp);
    EXPECT_EQ((*tcp)->type, agent::HealthCheckSpec::Type::Tcp);
    auto https = health_check_from_annotations(
        {{"kxlb.io/health-check", "https:/healthz"}, {"kxlb.io/health-check-interval", "1s"}});
    ASSERT_TRUE(https && *https);
    EXPECT_EQ((*https)->type, agent::HealthCheckSpec::Type::Https);
    EXPECT_LT((*https)->timeout, (*https)->interval);
    auto none = health_check_from_annotations({});
    ASSERT_TRUE(none);
    EXPECT_FALSE(*none);
}

TEST(K8sMapping, AnInvalidHealthCheckAnnotationProgramsWithoutProbing) {
    for (const auto& [key, value] :
         std::vector<std::pair<std::string, std::string>>{{"kxlb.io/health-check", "grpc"},
                                                          {"kxlb.io/health-check", "http:readyz"},
                                                          {"kxlb.io/health-check-interval", "fast"},
                                                          {"kxlb.io/health-check-timeout", "5s"}}) {
        Case c;
        c.svc = service_json({{"metadata", {{"annotations", {{"kxlb.io/health-check", "tcp"}, {key, value}}}}}});
        if (key == "kxlb.io/health-check") c.svc["metadata"]["annotations"][key] = value;
        const auto m = c.map();
        ASSERT_EQ(m.services.size(), 1u) << key << "=" << value;
        EXPECT_FALSE(m.services[0].health_check) << key << "=" << value;
        ASSERT_EQ(m.problems.size(), 1u);
        EXPECT_NE(m.problems[0].find(key), std::string::npos) << m.problems[0];
    }
}

TEST(K8sMapping, DurationsFollowTheAnnotationSyntax) {
    EXPECT_EQ(*parse_annotation_duration("250ms"), std::chrono::milliseconds(250));
    EXPECT_EQ(*parse_annotation_duration("3s"), std::chrono::milliseconds(3000));
    EXPECT_EQ(*parse_annotation_duration("1m"), std::chrono::milliseconds(60000));
    for (const char* bad : {"", "0s", "-1s", "1h", "s", "1.5s"}) EXPECT_FALSE(parse_annotation_duration(bad)) << bad;
}

TEST(K8sMapping, GeneratedConfigsPassTheAgentConfigRules) {
    // Names are valid agent names; no frontend is shared between the generated configs.
    Case c;
    c.svc = service_json(json::parse(R"({"spec": {"type": "LoadBalancer", "externalIPs": ["198.51.100.7"],
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}})"));
    std::set<Frontend> seen;
    for (const auto& s : c.map().services) {
        EXPECT_TRUE(std::all_of(s.name.begin(), s.name.end(), [](char ch) {
            return std::islower(ch) || std::isdigit(ch) || ch == '.' || ch == '-';
        })) << s.name;
        for (const auto& fe : s.frontends) EXPECT_TRUE(seen.insert(fe).second) << fe.str();
    }
}

TEST(K8sMerge, TheFirstListWinsOnNameAndFrontendClashes) {
    agent::ServiceConfig file{.name = "web"};
    file.frontends = {Frontend{ip("10.96.0.10"), 80, IPPROTO_TCP}};
    agent::ServiceConfig same_name{.name = "web"};
    same_name.frontends = {Frontend{ip("10.96.0.11"), 80, IPPROTO_TCP}};
    agent::ServiceConfig clash{.name = "k8s.shop.web.http.ipv4.cluster"};
    clash.frontends = {Frontend{ip("10.96.0.10"), 80, IPPROTO_TCP}, Frontend{ip("10.96.0.12"), 80, IPPROTO_TCP}};
    agent::ServiceConfig only_clash{.name = "k8s.x"};
    only_clash.frontends = {Frontend{ip("10.96.0.10"), 80, IPPROTO_TCP}};
    const auto ptr = [](const agent::ServiceConfig& c) { return std::make_shared<const agent::ServiceConfig>(c); };
    const auto m = agent::merge_services({ptr(file)}, {ptr(same_name), ptr(clash), ptr(only_clash)});
    ASSERT_EQ(m.services.size(), 2u);
    EXPECT_EQ(*m.services[0], file);
    EXPECT_EQ(m.services[1]->frontends, (std::vector<Frontend>{{ip("10.96.0.12"), 80, IPPROTO_TCP}}));
    EXPECT_EQ(m.conflicts.size(), 3u);
}

TEST(K8sMerge, BootstrapServiceProgramsTheApiserverList) {
    agent::KubernetesConfig k;
    EXPECT_FALSE(agent::bootstrap_service(k));
    k.bootstrap_apiservers = {{ip("10.0.0.11"), 6443}, {ip("10.0.0.12"), 6443}};
    k.apiserver_service = agent::EndpointConfig{ip("10.96.0.1"), 443};
    auto s = agent::bootstrap_service(k);
    ASSERT_TRUE(s);
    EXPECT_TRUE(s->socket_lb);
    EXPECT_EQ(s->frontends, (std::vector<Frontend>{{ip("10.96.0.1"), 443, IPPROTO_TCP}}));
    EXPECT_EQ(backends(&*s), (std::vector<std::string>{"10.0.0.11:6443", "10.0.0.12:6443"}));
}

}  // namespace
}  // namespace kxlb::k8s
