// Unit tier: the manifests in deploy/ parse, carry the RBAC, capabilities and probes
// docs/kubernetes.md promises, and the ConfigMap's agent.yaml passes the agent's own parser. When
// kubectl is installed, a client-side dry run validates them too (not required).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "agent/config.hpp"

namespace kxlb {
namespace {

const std::string kDir = KXLB_DEPLOY_DIR;

std::string read(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<YAML::Node> docs(const std::string& file) {
    std::vector<YAML::Node> out;
    for (auto& d : YAML::LoadAll(read(kDir + "/" + file)))
        if (d.IsMap()) out.push_back(d);
    return out;
}

YAML::Node kind(const std::vector<YAML::Node>& ds, const std::string& k) {
    for (const auto& d : ds)
        if (d["kind"].as<std::string>() == k) return d;
    return YAML::Node();
}

std::set<std::string> strings(const YAML::Node& seq) {
    std::set<std::string> out;
    for (const auto& n : seq) out.insert(n.as<std::string>());
    return out;
}

// The same minimal set everywhere (why: docs/kubernetes.md, proven by an e2e test).
const std::set<std::string> kCaps{"SYS_ADMIN"};

void check_container(const YAML::Node& c, int port) {
    const auto caps = c["securityContext"]["capabilities"];
    EXPECT_EQ(strings(caps["add"]), kCaps);
    EXPECT_EQ(strings(caps["drop"]), std::set<std::string>{"ALL"});
    EXPECT_FALSE(c["securityContext"]["privileged"] && c["securityContext"]["privileged"].as<bool>());
    EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"].as<std::string>(), "/healthz");
    EXPECT_EQ(c["livenessProbe"]["httpGet"]["port"].as<int>(), port);
    EXPECT_EQ(c["readinessProbe"]["httpGet"]["path"].as<std::string>(), "/readyz");
    EXPECT_EQ(c["readinessProbe"]["httpGet"]["port"].as<int>(), port);
    std::set<std::string> mounts;
    for (const auto& m : c["volumeMounts"]) mounts.insert(m["mountPath"].as<std::string>());
    EXPECT_TRUE(mounts.count("/sys/fs/bpf"));
    EXPECT_TRUE(mounts.count("/sys/fs/cgroup"));
    for (const auto& m : c["volumeMounts"]) {
        if (m["mountPath"].as<std::string>() == "/sys/fs/bpf") {
            EXPECT_EQ(m["mountPropagation"].as<std::string>(), "Bidirectional");
        }
    }
}

TEST(DeployManifests, EveryDocumentHasKindApiVersionAndName) {
    for (const char* f : {"kxlb-daemonset.yaml", "static-pod.yaml"}) {
        const auto ds = docs(f);
        ASSERT_FALSE(ds.empty()) << f;
        for (const auto& d : ds) {
            EXPECT_TRUE(d["apiVersion"] && d["kind"]) << f;
            EXPECT_TRUE(d["metadata"]["name"]) << f;
        }
    }
    std::set<std::string> kinds;
    for (const auto& d : docs("kxlb-daemonset.yaml")) kinds.insert(d["kind"].as<std::string>());
    EXPECT_EQ(kinds, (std::set<std::string>{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                            "ConfigMap", "DaemonSet"}));
}

TEST(DeployManifests, RbacIsReadOnlyOnServicesAndEndpointSlicesOnly) {
    const auto ds = docs("kxlb-daemonset.yaml");
    const auto role = kind(ds, "ClusterRole");
    std::set<std::string> resources;
    for (const auto& rule : role["rules"]) {
        for (const auto& v : strings(rule["verbs"])) EXPECT_TRUE(v == "get" || v == "list" || v == "watch") << v;
        for (const auto& r : strings(rule["resources"])) {
            const auto group = rule["apiGroups"][0].as<std::string>();
            resources.insert(group.empty() ? r : group + "/" + r);
        }
    }
    EXPECT_EQ(resources, (std::set<std::string>{"services", "discovery.k8s.io/endpointslices"}));
    const auto binding = kind(ds, "ClusterRoleBinding");
    EXPECT_EQ(binding["roleRef"]["name"].as<std::string>(), "kxlb-agent");
    EXPECT_EQ(binding["subjects"][0]["name"].as<std::string>(),
              kind(ds, "DaemonSet")["spec"]["template"]["spec"]["serviceAccountName"].as<std::string>());
}

TEST(DeployManifests, DaemonSetRunsOnTheHostNetworkWithTheDocumentedCapabilitiesAndProbes) {
    const auto ds = docs("kxlb-daemonset.yaml");
    const auto cm = kind(ds, "ConfigMap");
    auto cfg = agent::parse_config(cm["data"]["agent.yaml"].as<std::string>(), "configmap agent.yaml");
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_TRUE(cfg->kubernetes.enabled);
    const auto colon = cfg->metrics_address.rfind(':');
    const int port = std::stoi(cfg->metrics_address.substr(colon + 1));
    const auto spec = kind(ds, "DaemonSet")["spec"]["template"];
    EXPECT_TRUE(spec["spec"]["hostNetwork"].as<bool>());
    EXPECT_EQ(spec["metadata"]["annotations"]["prometheus.io/scrape"].as<std::string>(), "true");
    EXPECT_EQ(spec["metadata"]["annotations"]["prometheus.io/port"].as<int>(), port);
    ASSERT_EQ(spec["spec"]["containers"].size(), 1u);
    check_container(spec["spec"]["containers"][0], port);
}

TEST(DeployManifests, StaticPodMatchesTheDaemonSetsSecurity) {
    const auto pod = kind(docs("static-pod.yaml"), "Pod");
    EXPECT_TRUE(pod["spec"]["hostNetwork"].as<bool>());
    check_container(pod["spec"]["containers"][0], 9464);
}

TEST(DeployManifests, StaticPodExampleConfigWithBootstrapApiserversParses) {
    // The example in static-pod.yaml's comment, uncommented.
    const auto text = read(kDir + "/static-pod.yaml");
    const auto at = text.find("    #   socket_lb:");
    ASSERT_NE(at, std::string::npos);
    std::string yaml;
    std::istringstream in(text.substr(at));
    for (std::string line; std::getline(in, line) && line.starts_with("    #   ");) yaml += line.substr(8) + "\n";
    auto cfg = agent::parse_config(yaml, "static-pod example");
    ASSERT_TRUE(cfg) << cfg.error().message << "\n" << yaml;
    EXPECT_TRUE(cfg->kubernetes.enabled);
    EXPECT_EQ(cfg->kubernetes.bootstrap_apiservers.size(), 3u);
    ASSERT_TRUE(cfg->kubernetes.apiserver_service);
    EXPECT_EQ(cfg->kubernetes.apiserver_service->port, 443);
}

TEST(DeployManifests, KubernetesConfigProblemsAreReported) {
    auto bad = agent::parse_config("kubernetes:\n  enabled: true\n  bootstrap_apiservers: [\"10.0.0.1:6443\"]\n", "t");
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("apiserver_service"), std::string::npos) << bad.error().message;
    bad = agent::parse_config("kubernetes:\n  apiserver_service: \"10.96.0.1\"\n  kubeconfig: relative\n", "t");
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().message.find("IP:port"), std::string::npos) << bad.error().message;
    EXPECT_NE(bad.error().message.find("kubeconfig"), std::string::npos) << bad.error().message;
    auto good = agent::parse_config(
        "kubernetes:\n  enabled: true\n  node_name: w1\n  apiserver_service: \"[fd00::1]:443\"\n"
        "  bootstrap_apiservers: [\"[fd00::11]:6443\"]\n",
        "t");
    ASSERT_TRUE(good) << good.error().message;
    EXPECT_EQ(good->kubernetes.node_name, "w1");
    EXPECT_EQ(good->kubernetes.bootstrap_apiservers[0].addr.str(), "fd00::11");
}

TEST(DeployManifests, SystemdUnitAndDockerfileAreThere) {
    const auto unit = read(kDir + "/kxlb-agent.service");
    EXPECT_NE(unit.find("ExecStart=/usr/bin/kxlb-agent --config /etc/kxlb/agent.yaml"), std::string::npos);
    EXPECT_NE(unit.find("ExecReload=/bin/kill -HUP $MAINPID"), std::string::npos);
    std::string caps;
    for (const auto& c : kCaps) caps += (caps.empty() ? "CAP_" : " CAP_") + c;
    EXPECT_NE(unit.find("CapabilityBoundingSet=" + caps + "\n"), std::string::npos) << unit;
    EXPECT_NE(unit.find("AmbientCapabilities=" + caps + "\n"), std::string::npos) << unit;
    const auto docker = read(kDir + "/Dockerfile");
    EXPECT_NE(docker.find("FROM debian:12 AS build"), std::string::npos);
    EXPECT_NE(docker.find("COPY --from=build"), std::string::npos);
}

TEST(DeployManifests, KubectlClientDryRunAcceptsThemWhenAvailable) {
    if (std::system("command -v kubectl >/dev/null 2>&1") != 0) {
        std::cout << "kubectl not installed: dry run not counted\n";
        return;
    }
    for (const char* f : {"kxlb-daemonset.yaml", "static-pod.yaml"}) {
        const std::string cmd = "kubectl create --dry-run=client --validate=false -o yaml -f " + kDir + "/" + f +
                                " >/dev/null 2>/tmp/kxlb-kubectl-err.txt";
        const int rc = std::system(cmd.c_str());
        const auto err = read("/tmp/kxlb-kubectl-err.txt");
        // kubectl maps kinds through API discovery even for client dry runs: without a reachable
        // cluster it cannot validate anything, which says nothing about the manifests.
        if (rc != 0 && (err.find("connection refused") != std::string::npos ||
                        err.find("unable to recognize") != std::string::npos)) {
            std::cout << "kubectl has no cluster to discover kinds from: dry run not counted\n";
            return;
        }
        EXPECT_EQ(rc, 0) << f << ": " << err;
    }
}

}  // namespace
}  // namespace kxlb
