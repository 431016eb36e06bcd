// Socket helpers shared by the e2e tests: socket addresses from text, and UdpResponders, a thread
// answering UDP datagrams on sockets made elsewhere (e.g. inside lab namespaces).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lib/unique_fd.hpp"

namespace kxlb::test {

struct SockAddr {
    sockaddr_storage ss{};
    socklen_t len = 0;
    int family = 0;
    const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&ss); }
};

inline SockAddr make_sockaddr(const std::string& ip, std::uint16_t port) {
    SockAddr a;
    auto* s4 = reinterpret_cast<sockaddr_in*>(&a.ss);
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
    if (::inet_pton(AF_INET, ip.c_str(), &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        a.len = sizeof(sockaddr_in);
        a.family = AF_INET;
    } else if (::inet_pton(AF_INET6, ip.c_str(), &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        a.len = sizeof(sockaddr_in6);
        a.family = AF_INET6;
    }
    return a;
}

// Each datagram gets the socket's name back, sent to the datagram's source from the socket's own address.
class UdpResponders {
public:
    ~UdpResponders() { stop(); }
    void add(UniqueFd fd, std::string name) { socks_.emplace_back(std::move(fd), std::move(name)); }
    void start() {
        thread_ = std::thread([this] { loop(); });
    }
    void stop() {
        stop_ = true;
        if (thread_.joinable()) thread_.join();
    }

private:
    void loop() {
        std::vector<pollfd> pfds;
        for (const auto& s : socks_) pfds.push_back({s.first.get(), POLLIN, 0});
        while (!stop_) {
            if (::poll(pfds.data(), pfds.size(), 100) <= 0) continue;
            for (std::size_t i = 0; i < pfds.size(); ++i) {
                if (!(pfds[i].revents & POLLIN)) continue;
                char buf[512];
                sockaddr_storage from{};
                socklen_t fl = sizeof from;
                ssize_t n =
                    ::recvfrom(pfds[i].fd, buf, sizeof buf, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &fl);
                if (n < 0) continue;
                const auto& name = socks_[i].second;
                (void)::sendto(pfds[i].fd, name.data(), name.size(), 0, reinterpret_cast<sockaddr*>(&from), fl);
            }
        }
    }

    std::vector<std::pair<UniqueFd, std::string>> socks_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace kxlb::test
