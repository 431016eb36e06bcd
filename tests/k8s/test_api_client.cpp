// ApiClient against the fake apiserver: verified TLS (a wrong CA fails), client certificates,
// bearer-token rotation on 401, stall and cancellation bounds, and HTTP errors as responses.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "k8s/api_client.hpp"
#include "k8s/cluster_store.hpp"
#include "k8s/fake_apiserver.hpp"

namespace kxlb::k8s {
namespace {

using namespace std::chrono_literals;

using ApiClientTest = test::FakeApiServerTest;

TEST_F(ApiClientTest, GetsJsonWithToken) {
    auto r = client(server_->config())->get(kServicesPath);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body["kind"], "ServiceList");
    const auto log = server_->requests();
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0]["token"], "test-token");
}

TEST_F(ApiClientTest, HttpErrorsAreResponses) {
    auto r = client(server_->config("wrong"))->get(kServicesPath);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 401);
    EXPECT_EQ(r->describe(), "HTTP 401: Unauthorized");
    auto nf = client(server_->config())->get("/api/v1/nothing");
    ASSERT_TRUE(nf) << nf.error().message;
    EXPECT_EQ(nf->status, 404);
    EXPECT_EQ(nf->status_code(), 404);
}

TEST_F(ApiClientTest, WrongCaFailsVerification) {
    auto cfg = server_->config();
    cfg.ca_pem = test::read_text(server_->file("other-ca.crt"));
    auto r = client(cfg)->get(kServicesPath);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EPROTO) << r.error().message;
    EXPECT_NE(r.error().message.find("GET " + server_->server() + "/api/v1/services: "), std::string::npos);
    EXPECT_TRUE(server_->requests().empty());  // never reached HTTP
}

TEST_F(ApiClientTest, SystemTrustStoreDoesNotTrustTheTestCa) {
    auto cfg = server_->config();
    cfg.ca_pem.clear();
    auto r = client(cfg)->get(kServicesPath);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EPROTO) << r.error().message;
}

TEST_F(ApiClientTest, ClientCertificateAuthenticates) {
    auto cfg = server_->config("");
    cfg.client_cert_pem = test::read_text(server_->file("client.crt"));
    cfg.client_key_pem = test::read_text(server_->file("client.key"));
    auto r = client(cfg)->get(kServicesPath);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(server_->requests()[0]["client_cert"], true);
    EXPECT_EQ(server_->requests()[0]["token"], "");
}

TEST_F(ApiClientTest, RotatedTokenIsReReadOn401) {
    auto c = client(token_file_config("token-1"));
    ASSERT_EQ(c->get(kServicesPath)->status, 200);

    rotate_token("token-2");  // kubelet rotates; the server only accepts the new one
    auto r = c->get(kServicesPath);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 200);
    const auto log = server_->requests();
    ASSERT_EQ(log.size(), 3u);
    EXPECT_EQ(log[1]["token"], "token-1");  // cached token rejected ...
    EXPECT_EQ(log[2]["token"], "token-2");  // ... re-read and retried once

    server_->control({{"cmd", "set"}, {"tokens", {"token-3"}}});  // not in the file: no endless retry
    auto rejected = c->get(kServicesPath);
    ASSERT_TRUE(rejected);
    EXPECT_EQ(rejected->status, 401);
    EXPECT_EQ(server_->requests().size(), 4u);
}

TEST_F(ApiClientTest, StalledResponseTimesOut) {
    server_->control({{"cmd", "set"}, {"list_delay", {{kServicesPath, 3}}}});
    ApiClientOptions opts;
    opts.stall_timeout = 500ms;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = client(server_->config(), opts)->get(kServicesPath);
    const auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ETIMEDOUT) << r.error().message;
    EXPECT_GE(took, 450ms);
    EXPECT_LT(took, 2s);
}

TEST_F(ApiClientTest, CancelIsPrompt) {
    server_->control({{"cmd", "set"}, {"list_delay", {{kServicesPath, 5}}}});
    std::atomic<bool> stop{false};
    std::thread canceller([&] {
        std::this_thread::sleep_for(300ms);
        stop = true;
    });
    const auto t0 = std::chrono::steady_clock::now();
    auto r = client(server_->config())->get(kServicesPath, &stop);
    const auto took = std::chrono::steady_clock::now() - t0;
    canceller.join();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ECANCELED) << r.error().message;
    EXPECT_LT(took, 800ms);
}

TEST_F(ApiClientTest, StreamDeliversLinesUntilTheServerEnds) {
    server_->put(kServicesPath, {{"metadata", {{"name", "a"}, {"namespace", "n"}}}});
    server_->put(kServicesPath, {{"metadata", {{"name", "b"}, {"namespace", "n"}}}});
    std::vector<std::string> lines;
    auto r = client(server_->config())
                 ->stream(std::string(kServicesPath) + "?watch=1&resourceVersion=1000&timeoutSeconds=1",
                          [&](std::string_view l) {
                              lines.emplace_back(l);
                              return true;
                          });
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 200);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(nlohmann::json::parse(lines[1])["object"]["metadata"]["name"], "b");
    EXPECT_EQ(nlohmann::json::parse(lines[0])["type"], "ADDED");
}

TEST(ApiClient, ConnectionRefused) {
    KubeConfig cfg;
    cfg.server = "https://127.0.0.1:1";
    auto c = ApiClient::create(cfg);
    ASSERT_TRUE(c);
    auto r = (*c)->get("/api");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ECONNREFUSED) << r.error().message;
    EXPECT_EQ((*c)->get("api").error().message, "API path \"api\" does not start with '/'");
    EXPECT_FALSE(ApiClient::create(KubeConfig{}));
}

}  // namespace
}  // namespace kxlb::k8s

namespace kxlb::k8s {
namespace {

TEST(QueryEscape, KeepsUnreservedAndEncodesEverythingElse) {
    EXPECT_EQ(query_escape("aZ09-._~"), "aZ09-._~");
    EXPECT_EQ(query_escape("{\"a\": 1}"), "%7B%22a%22%3A%201%7D");
    EXPECT_EQ(query_escape("app=web,tier!=db"), "app%3Dweb%2Ctier%21%3Ddb");
    EXPECT_EQ(query_escape(std::string("\xff\n", 2)), "%FF%0A");
    EXPECT_EQ(query_escape(""), "");
}

}  // namespace
}  // namespace kxlb::k8s
