// Unit tests for KubeConfig loading: in-cluster service account (IPv4/IPv6 hosts, token rotation)
// and kubeconfig files (paths relative to the file, inline data), and the exact reason for each
// rejected input.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>

#include "k8s/fake_apiserver.hpp"
#include "k8s/kube_config.hpp"
#include "lab/temp_dir.hpp"

namespace kxlb::k8s {
namespace {

using test::write_text;

constexpr const char* kCa = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
constexpr const char* kCert = "-----BEGIN CERTIFICATE-----\nMIIBclient\n-----END CERTIFICATE-----\n";
constexpr const char* kKey = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQ\n-----END EC PRIVATE KEY-----\n";

std::string b64(const std::string& in) {
    static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < in.size(); i += 3) {
        std::uint32_t v = static_cast<unsigned char>(in[i]) << 16;
        if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
        if (i + 2 < in.size()) v |= static_cast<unsigned char>(in[i + 2]);
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
        out += i + 2 < in.size() ? kAlphabet[v & 63] : '=';
    }
    return out;
}

class InCluster : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(dir_.path().empty());
        sa_ = dir_.path() + "/var/run/secrets/kubernetes.io/serviceaccount";
        std::filesystem::create_directories(sa_);
        write_text(sa_ + "/token", "token-1\n");
        write_text(sa_ + "/ca.crt", kCa);
        env_ = {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}};
    }
    InClusterSource source(std::chrono::milliseconds refresh = std::chrono::seconds(60)) {
        InClusterSource s;
        s.root = dir_.path();
        s.getenv = [this](const std::string& k) -> std::optional<std::string> {
            auto it = env_.find(k);
            return it == env_.end() ? std::nullopt : std::optional<std::string>(it->second);
        };
        s.token_refresh = refresh;
        return s;
    }
    std::string error_of() {
        auto r = load_in_cluster(source());
        return r ? "OK" : r.error().message;
    }

    lab::TempDir dir_{"k8s-incluster"};
    std::string sa_;
    std::map<std::string, std::string> env_;
};

TEST_F(InCluster, LoadsServerCaAndToken) {
    auto cfg = load_in_cluster(source());
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_EQ(cfg->server, "https://10.96.0.1:443");
    EXPECT_EQ(cfg->ca_pem, kCa);
    ASSERT_TRUE(cfg->token_file);
    EXPECT_EQ(cfg->token_file->token().value(), "token-1");
    EXPECT_TRUE(cfg->token.empty());
    EXPECT_TRUE(cfg->client_cert_pem.empty());
}

TEST_F(InCluster, Ipv6HostIsBracketed) {
    env_["KUBERNETES_SERVICE_HOST"] = "fd00:96::1";
    env_["KUBERNETES_SERVICE_PORT"] = "6443";
    auto cfg = load_in_cluster(source());
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_EQ(cfg->server, "https://[fd00:96::1]:6443");
}

TEST_F(InCluster, TokenIsCachedUntilRefreshOrInvalidate) {
    auto cfg = load_in_cluster(source(std::chrono::hours(1)));
    ASSERT_TRUE(cfg) << cfg.error().message;
    write_text(sa_ + "/token", "token-2\n");
    EXPECT_EQ(cfg->token_file->token().value(), "token-1");  // within the refresh interval: cached
    EXPECT_TRUE(cfg->token_file->invalidate());              // a 401: re-read, and it changed
    EXPECT_EQ(cfg->token_file->token().value(), "token-2");
    EXPECT_FALSE(cfg->token_file->invalidate());  // unchanged: retrying would not help
}

TEST_F(InCluster, TokenIsReReadAfterTheRefreshInterval) {
    auto cfg = load_in_cluster(source(std::chrono::milliseconds(50)));
    ASSERT_TRUE(cfg) << cfg.error().message;
    write_text(sa_ + "/token", "token-2");
    EXPECT_TRUE(
        test::wait_until([&] { return cfg->token_file->token().value() == "token-2"; }, std::chrono::seconds(2)));
    std::filesystem::remove(sa_ + "/token");
    EXPECT_TRUE(test::wait_until([&] { return !cfg->token_file->token().ok(); }, std::chrono::seconds(2)));
    EXPECT_EQ(cfg->token_file->token().error().code, ENOENT);
}

TEST_F(InCluster, BadInputs) {
    env_.erase("KUBERNETES_SERVICE_HOST");
    EXPECT_EQ(error_of(), "in-cluster config: KUBERNETES_SERVICE_HOST is not set (not running in a pod?)");
    env_["KUBERNETES_SERVICE_HOST"] = "10.96.0.1";
    env_.erase("KUBERNETES_SERVICE_PORT");
    EXPECT_EQ(error_of(), "in-cluster config: KUBERNETES_SERVICE_PORT is not set");
    for (const char* port : {"https", "0", "65536", "-1", "99999999999"}) {
        env_["KUBERNETES_SERVICE_PORT"] = port;
        EXPECT_EQ(error_of(),
                  std::string("in-cluster config: KUBERNETES_SERVICE_PORT \"") + port + "\" is not a port 1-65535");
    }
    env_["KUBERNETES_SERVICE_PORT"] = "443";
    write_text(sa_ + "/ca.crt", "garbage");
    EXPECT_EQ(error_of(), "in-cluster CA bundle " + sa_ +
                              "/ca.crt: not a PEM certificate (expected a '-----BEGIN CERTIFICATE-----' block)");
    std::filesystem::remove(sa_ + "/ca.crt");
    EXPECT_EQ(error_of(), "reading in-cluster CA bundle " + sa_ + "/ca.crt: No such file or directory");
    write_text(sa_ + "/ca.crt", kCa);
    write_text(sa_ + "/token", " \n");
    EXPECT_EQ(error_of(), "in-cluster config: token file " + sa_ + "/token is empty");
    std::filesystem::remove(sa_ + "/token");
    EXPECT_EQ(error_of(), "in-cluster config: reading token file " + sa_ + "/token: No such file or directory");
}

class Kubeconfig : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_FALSE(dir_.path().empty());
        write_text(dir_.path() + "/ca.crt", kCa);
        write_text(dir_.path() + "/token", "file-token\n");
    }
    std::string error_of(const std::string& yaml) {
        auto r = parse_kubeconfig(yaml, dir_.path(), "kc");
        return r ? "OK" : r.error().message;
    }
    lab::TempDir dir_{"k8s-kubeconfig"};
};

// A valid document; tests replace one part of it.
std::string doc(const std::string& cluster, const std::string& user = "    token: abc\n",
                const std::string& context = "    cluster: c1\n    user: u1\n", const std::string& current = "ctx") {
    return "apiVersion: v1\nkind: Config\ncurrent-context: " + current +
           "\nclusters:\n- name: c0\n  cluster:\n    server: https://other:1\n- name: c1\n  cluster:\n" + cluster +
           "contexts:\n- name: ctx\n  context:\n" + context + "users:\n- name: u1\n  user:\n" + user;
}

constexpr const char* kCluster = "    server: https://10.0.0.1:6443/\n    certificate-authority: ca.crt\n";

TEST_F(Kubeconfig, FileWithRelativePathsAndToken) {
    write_text(dir_.path() + "/config", doc(kCluster));
    auto cfg = load_kubeconfig(dir_.path() + "/config");
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_EQ(cfg->server, "https://10.0.0.1:6443");
    EXPECT_EQ(cfg->ca_pem, kCa);
    EXPECT_EQ(cfg->token, "abc");
    EXPECT_FALSE(cfg->token_file);
    EXPECT_EQ(cfg->origin, dir_.path() + "/config");
}

TEST_F(Kubeconfig, InlineDataAndClientCertificate) {
    auto cfg = parse_kubeconfig(
        doc("    server: \"https://[fd00::1]:6443\"\n    certificate-authority-data: " + b64(kCa) + "\n",
            "    client-certificate-data: " + b64(kCert) + "\n    client-key-data: " + b64(kKey) + "\n"),
        dir_.path(), "kc");
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_EQ(cfg->server, "https://[fd00::1]:6443");
    EXPECT_EQ(cfg->ca_pem, kCa);
    EXPECT_EQ(cfg->client_cert_pem, kCert);
    EXPECT_EQ(cfg->client_key_pem, kKey);
    EXPECT_TRUE(cfg->token.empty());
}

TEST_F(Kubeconfig, TokenFileAndCertificateFiles) {
    write_text(dir_.path() + "/c.crt", kCert);
    write_text(dir_.path() + "/c.key", kKey);
    auto cfg = parse_kubeconfig(doc(kCluster, "    tokenFile: token\n    client-certificate: c.crt\n    client-key: " +
                                                  dir_.path() + "/c.key\n"),
                                dir_.path(), "kc");
    ASSERT_TRUE(cfg) << cfg.error().message;
    ASSERT_TRUE(cfg->token_file);
    EXPECT_EQ(cfg->token_file->path(), dir_.path() + "/token");
    EXPECT_EQ(cfg->token_file->token().value(), "file-token");
    EXPECT_EQ(cfg->client_cert_pem, kCert);
    EXPECT_EQ(cfg->client_key_pem, kKey);
}

TEST_F(Kubeconfig, NoCaMeansSystemTrustStore) {
    auto cfg = parse_kubeconfig(doc("    server: https://api.example.com\n"), dir_.path(), "kc");
    ASSERT_TRUE(cfg) << cfg.error().message;
    EXPECT_TRUE(cfg->ca_pem.empty());
}

TEST_F(Kubeconfig, BadInputs) {
    const std::string d = dir_.path();
    const std::map<std::string, std::string> cases = {
        {"clusters: [", "kc:1:1: YAML syntax error: end of sequence flow not found"},
        {"- a\n- b\n", "kc: not a kubeconfig (the document is not a mapping)"},
        {doc(kCluster, "    token: abc\n", "    cluster: c1\n    user: u1\n", "\"\""),
         "kc: current-context is not set; set it to the context kxlb should use"},
        {doc(kCluster, "    token: abc\n", "    cluster: c1\n    user: u1\n", "nope"),
         "kc:13:1: contexts: no context named \"nope\""},
        {doc(kCluster, "    token: abc\n", "    user: u1\n"), "kc:15:5: context.cluster: missing"},
        {doc(kCluster, "    token: abc\n", "    cluster: c9\n    user: u1\n"),
         "kc:5:1: clusters: no cluster named \"c9\""},
        {doc(kCluster, "    token: abc\n", "    cluster: c1\n    user: u9\n"), "kc:18:1: users: no user named \"u9\""},
        {doc("    certificate-authority: ca.crt\n"), "kc:10:5: cluster.server: missing"},
        {doc("    server: http://10.0.0.1:8080\n"),
         "kc:10:13: cluster.server: server \"http://10.0.0.1:8080\" is not an https:// URL; kxlb only talks to the "
         "API over verified TLS"},
        {doc("    server: https://:6443\n"), "kc:10:13: cluster.server: server \"https://:6443\" has no valid host"},
        {doc("    server: https://a\n    insecure-skip-tls-verify: true\n"),
         "kc:11:31: cluster.insecure-skip-tls-verify: TLS verification cannot be turned off; give the cluster's CA "
         "(certificate-authority)"},
        {doc(std::string(kCluster) + "    certificate-authority-data: " + b64(kCa) + "\n"),
         "kc:12:33: cluster.certificate-authority-data: both certificate-authority and certificate-authority-data "
         "are set; keep only one"},
        {doc("    server: https://a\n    certificate-authority-data: 'abc!'\n"),
         "kc:11:33: cluster.certificate-authority-data: not valid base64 (character '!')"},
        {doc("    server: https://a\n    certificate-authority-data: " + b64("hello") + "\n"),
         "kc:10:5: cluster.certificate-authority: not a PEM certificate (expected a '-----BEGIN CERTIFICATE-----' "
         "block)"},
        {doc("    server: https://a\n    certificate-authority: missing.crt\n"),
         "reading cluster.certificate-authority " + d + "/missing.crt: No such file or directory"},
        {doc(kCluster, "    client-certificate-data: " + b64(kCert) + "\n"),
         "kc:20:5: user: client-certificate without client-key; give both or neither"},
        {doc(kCluster, "    client-certificate-data: " + b64(kCert) + "\n    client-key-data: " + b64(kCert) + "\n"),
         "kc:20:5: user.client-key: not a PEM private key (expected a '-----BEGIN ... PRIVATE KEY-----' block)"},
        {doc(kCluster, "    exec:\n      command: aws\n"),
         "kc:21:7: user.exec: not supported by kxlb; use a token, tokenFile or client certificate"},
        {doc(kCluster, "    token: abc\n    tokenFile: token\n"),
         "kc:21:16: user.tokenFile: both token and tokenFile are set; keep only one"},
        {doc(kCluster, "    tokenFile: nope\n"), "reading token file " + d + "/nope: No such file or directory"},
        {doc(kCluster, "    token: [a]\n"), "kc:20:12: user.token: expected a string"},
        {doc(kCluster) + "- name: u1\n  user:\n    token: x\n", "kc:21:3: users[1].name: \"u1\" is defined twice"},
    };
    for (const auto& [yaml, want] : cases) {
        const auto got = error_of(yaml);
        EXPECT_EQ(got.substr(0, want.size()), want) << yaml;
    }
    EXPECT_EQ(load_kubeconfig(d + "/none").error().message,
              "reading kubeconfig " + d + "/none: No such file or directory");
}

}  // namespace
}  // namespace kxlb::k8s
