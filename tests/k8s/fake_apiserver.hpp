// Test harness for tests/k8s/fake_apiserver.py: starts it on 127.0.0.1 (its own PKI in a temporary
// directory), builds client configurations for it and sends it control commands. RAII: the server
// process is killed when the object goes away, also when an assertion fails.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>

#include "k8s/api_client.hpp"
#include "k8s/kube_config.hpp"
#include "lab/process.hpp"
#include "lab/temp_dir.hpp"

namespace kxlb::k8s::test {

inline std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void write_text(const std::string& path, const std::string& text) {
    const auto tmp = path + ".tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path);  // atomic, like kubelet's token updates
}

// Polls `cond` every 10 ms until it holds or `timeout` passes; returns its last value.
inline bool wait_until(const std::function<bool()>& cond,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!cond()) {
        if (std::chrono::steady_clock::now() > deadline) return cond();
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
}

class FakeApiServer {
public:
    // Starts the server; Error with its output if it does not come up within 15 s.
    static Result<std::unique_ptr<FakeApiServer>> start() {
        std::unique_ptr<FakeApiServer> s(new FakeApiServer());
        if (s->dir_.path().empty()) return Error::invalid("cannot create a temporary directory");
        auto p = lab::spawn({"python3", KXLB_FAKE_APISERVER, "--dir", s->dir_.path()});
        if (!p) return p.error();
        s->proc_ = std::move(p).value();
        const bool up = wait_until(
            [&] {
                const auto out = s->proc_.output();
                const auto at = out.find("PORT ");
                if (at == std::string::npos || out.find('\n', at) == std::string::npos) return !s->proc_.running();
                s->port_ = std::stoi(out.substr(at + 5));
                return true;
            },
            std::chrono::seconds(15));
        if (!up || s->port_ == 0) return Error::invalid("fake apiserver did not start: " + s->proc_.output());
        auto client = ApiClient::create(s->config(""));
        if (!client) return client.error();
        s->control_ = std::move(client).value();
        return s;
    }

    int port() const { return port_; }
    std::string server() const { return "https://127.0.0.1:" + std::to_string(port_); }
    std::string file(const std::string& name) const { return dir_.path() + "/" + name; }
    const std::string& dir() const { return dir_.path(); }

    // A configuration that trusts the test CA, with a static token ("" = none).
    KubeConfig config(const std::string& token = "test-token") const {
        KubeConfig c;
        c.server = server();
        c.ca_pem = read_text(file("ca.crt"));
        c.token = token;
        c.origin = "fake";
        return c;
    }

    // Sends a control command (see fake_apiserver.py) and returns its JSON answer (null on failure).
    nlohmann::json control(const nlohmann::json& cmd) const {
        const std::string q = k8s::query_escape(cmd.dump());
        auto r = control_->get("/_control?c=" + q);
        return r && r->status == 200 ? r->body : nlohmann::json();
    }
    nlohmann::json put(const std::string& path, const nlohmann::json& obj) const {
        return control({{"cmd", "put"}, {"path", path}, {"object", obj}});
    }
    nlohmann::json remove(const std::string& path, const std::string& ns, const std::string& name) const {
        return control({{"cmd", "delete"}, {"path", path}, {"namespace", ns}, {"name", name}});
    }
    nlohmann::json requests(bool clear = false) const {
        return control({{"cmd", "requests"}, {"clear", clear}})["requests"];
    }
    int active_watches(const std::string& path) const {
        const auto w = control({{"cmd", "watches"}})["watches"];
        return w.contains(path) ? w[path].get<int>() : 0;
    }

private:
    FakeApiServer() : dir_("k8s-fake") {}
    lab::TempDir dir_;
    lab::Process proc_;  // declared after dir_: killed before the directory is removed
    int port_ = 0;
    std::shared_ptr<ApiClient> control_;
};

// A fixture with a fresh fake apiserver for every test.
class FakeApiServerTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto s = FakeApiServer::start();
        ASSERT_TRUE(s) << s.error().message;
        server_ = std::move(s).value();
    }
    // A client for `cfg` (the test fails if it cannot be created).
    std::shared_ptr<ApiClient> client(KubeConfig cfg, ApiClientOptions opts = {}) {
        auto c = ApiClient::create(std::move(cfg), opts);
        EXPECT_TRUE(c) << c.error().message;
        return c ? *c : nullptr;
    }

    // A configuration whose bearer token comes from a file (cached for an hour, so only a 401 makes it
    // re-read), holding `token`, which is the only one the server accepts.
    KubeConfig token_file_config(const std::string& token) {
        rotate_token(token);
        auto cfg = server_->config("");
        cfg.token_file = std::make_shared<TokenFile>(server_->file("token"), std::chrono::hours(1));
        return cfg;
    }
    // Rotates the token: the file gets `token` and the server accepts only it from now on.
    void rotate_token(const std::string& token) {
        write_text(server_->file("token"), token + "\n");
        server_->control({{"cmd", "set"}, {"tokens", {token}}});
    }

    std::unique_ptr<FakeApiServer> server_;
};

}  // namespace kxlb::k8s::test
