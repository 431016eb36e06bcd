// Common base of the e2e fixtures that run the real kxlb-agent in an LbScenario lab: the lab, a bpffs
// pin path and a temp directory of the test's own, all removed again after each test (also a failed one).
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "lab/lb_scenario.hpp"
#include "lib/pinning.hpp"
#include "lib/unique_fd.hpp"

namespace kxlb::test {

class AgentLabTest : public ::testing::Test {
protected:
    // Creates `backends` nginx backends behind `vip` (no datapath of the lab's own: the agent brings it),
    // the pin path /sys/fs/bpf/kxlb-e2e-<tag>-<pid> (emptied first) and the directory <tmp>/kxlb-<tag>-e2e-<pid>.
    // A failure is fatal: callers check HasFatalFailure() afterwards.
    void open_lab(const std::string& tag, int backends, const char* vip) {
        pin_ = "/sys/fs/bpf/kxlb-e2e-" + tag + "-" + std::to_string(::getpid());
        (void)remove_pinned(PinLayout{pin_});
        auto sc = lab::LbScenario::create(backends, {vip}, lab::LbScenario::Datapath::None);
        ASSERT_TRUE(sc) << sc.error().message;
        sc_ = std::move(sc).value();
        dir_ = std::filesystem::temp_directory_path() / ("kxlb-" + tag + "-e2e-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
    }
    // A keep-alive TCP connection from the lab's client to vip:80 (3 s receive timeout); invalid on failure.
    UniqueFd keepalive(const char* vip) {
        auto sock = sc_->lab().socket("client", AF_INET, SOCK_STREAM);
        if (!sock) return {};
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(80);
        ::inet_pton(AF_INET, vip, &sa.sin_addr);
        if (::connect(sock->get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) return {};
        timeval tv{3, 0};
        ::setsockopt(sock->get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return std::move(sock).value();
    }
    // One GET /readyz on a keepalive() connection: the answering backend's name ("be1"), "" on failure.
    static std::string request(const UniqueFd& fd) {
        const std::string req = "GET /readyz HTTP/1.1\r\nHost: vip\r\n\r\n";
        if (::send(fd.get(), req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return "";
        char buf[1024];
        const ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
        const std::string r = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
        if (r.find("200 OK") == std::string::npos || r.size() < 4) return "";
        return r.substr(r.size() - 4, 3);  // the body is "beN\n"
    }

    void TearDown() override {
        sc_.reset();  // kills the agent(s) and every other lab process, deletes the namespaces
        if (!pin_.empty()) (void)remove_pinned(PinLayout{pin_});
        if (!dir_.empty()) std::filesystem::remove_all(dir_);
    }

    std::string pin_;
    std::filesystem::path dir_;
    std::unique_ptr<lab::LbScenario> sc_;
};

}  // namespace kxlb::test
