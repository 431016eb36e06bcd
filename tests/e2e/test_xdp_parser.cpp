// e2e tier: the XDP datapath attached in native mode to a veth in a lab namespace counts real
// traffic sent from another namespace, and the traffic still reaches its destination (XDP_PASS).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <optional>

#include "common/packet_builder.hpp"
#include "common/privileges.hpp"
#include "lab/lab.hpp"
#include "lib/libbpf_log.hpp"
#include "lib/xdp_programs.hpp"

namespace kxlb {
namespace {

constexpr int kDatagrams = 25;

lab::Topology two_hosts() {
    lab::Topology t;
    t.namespaces = {"client", "node"};
    t.veths.push_back(lab::VethPair{{"client", "eth0", {"10.71.0.1/24", "fd71::1/64"}},
                                    {"node", "eth0", {"10.71.0.2/24", "fd71::2/64"}},
                                    /*xdp_pass_on_a=*/true,
                                    /*xdp_pass_on_b=*/false,
                                    0});
    return t;
}

sockaddr_storage make_addr(int family, const char* ip, std::uint16_t port) {
    sockaddr_storage ss{};
    if (family == AF_INET) {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, ip, &a->sin_addr);
    } else {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, ip, &a->sin6_addr);
    }
    return ss;
}

socklen_t addr_len(int family) { return family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6); }

// Sends kDatagrams UDP datagrams from client to node and returns how many the node received.
int udp_exchange(lab::Lab& lab, int family, const char* dst_ip, std::uint16_t port) {
    auto rx = lab.socket("node", family, SOCK_DGRAM);
    auto tx = lab.socket("client", family, SOCK_DGRAM);
    if (!rx || !tx) return -1;
    auto dst = make_addr(family, dst_ip, port);
    auto any = make_addr(family, family == AF_INET ? "0.0.0.0" : "::", port);
    if (::bind(rx->get(), reinterpret_cast<sockaddr*>(&any), addr_len(family)) != 0) return -1;
    const char msg[] = "kxlb-e2e";
    for (int i = 0; i < kDatagrams; ++i)
        if (::sendto(tx->get(), msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&dst), addr_len(family)) < 0)
            return -1;
    int received = 0;
    char buf[64];
    pollfd pfd{rx->get(), POLLIN, 0};
    while ((received < kDatagrams) && (::poll(&pfd, 1, 2000) > 0))  // bounded: gives up after 2 s of silence
        if (::recv(rx->get(), buf, sizeof(buf), 0) > 0) ++received;
    return received;
}

class XdpParserE2E : public ::testing::Test {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        route_libbpf_log_to_spdlog();
        auto lab = lab::Lab::create(two_hosts());
        ASSERT_TRUE(lab) << lab.error().message;
        lab_ = std::move(lab).value();
        auto prog = XdpLbProgram::load();
        ASSERT_TRUE(prog) << prog.error().message;
        prog_.emplace(std::move(prog).value());
    }

    // Attaches the datapath natively to node/eth0 and checks the kernel reports native mode.
    void attach_native() {
        auto idx = lab_->ifindex("node", "eth0");
        ASSERT_TRUE(idx) << idx.error().message;
        auto link = lab_->in_ns("node", [&] { return prog_->attach(*idx, XdpMode::Native); });
        ASSERT_TRUE(link) << link.error().message;
        link_ = std::move(link).value();
        auto state = lab_->in_ns("node", [&] { return query_xdp(*idx); });
        ASSERT_TRUE(state) << state.error().message;
        EXPECT_TRUE(state->native) << "datapath must run in native (driver) mode on veth";
        EXPECT_FALSE(state->generic);
        ASSERT_TRUE(prog_->reset_parse_stats());
    }

    std::unique_ptr<lab::Lab> lab_;
    std::optional<XdpLbProgram> prog_;
    Link link_;
};

TEST_F(XdpParserE2E, CountsRealUdpTrafficAndPassesIt) {
    ASSERT_NO_FATAL_FAILURE(attach_native());
    EXPECT_EQ(udp_exchange(*lab_, AF_INET, "10.71.0.2", 7001), kDatagrams) << "XDP_PASS must deliver every datagram";
    EXPECT_EQ(udp_exchange(*lab_, AF_INET6, "fd71::2", 7002), kDatagrams);

    auto stats = prog_->parse_stats();
    ASSERT_TRUE(stats) << stats.error().message;
    // Nothing else in the lab sends UDP, so the count is exact.
    EXPECT_EQ(stats.value()[KXLB_PS_UDP].packets, 2u * kDatagrams);
    EXPECT_GE(stats.value()[KXLB_PS_IPV4].packets, static_cast<std::uint64_t>(kDatagrams));
    EXPECT_GE(stats.value()[KXLB_PS_IPV6].packets, static_cast<std::uint64_t>(kDatagrams));
    // Each datagram frame: 14 eth + 20/40 ip + 8 udp + 9 payload.
    EXPECT_GE(stats.value()[KXLB_PS_UDP].bytes, kDatagrams * (51u + 71u));
    for (std::size_t i = 0; i < kParseStatCount; ++i) {
        if (kParseStatNames[i].starts_with("err_")) {
            EXPECT_EQ(stats->by_id[i].packets, 0u) << kParseStatNames[i] << " on clean traffic";
        }
    }
}

TEST_F(XdpParserE2E, CountsTcpIcmpAndVlanTraffic) {
    ASSERT_NO_FATAL_FAILURE(attach_native());
    // ICMP both families, via the real ping binary.
    auto p4 = lab_->run("client", {"ping", "-c", "3", "-i", "0.2", "-W", "1", "10.71.0.2"});
    ASSERT_TRUE(p4) << p4.error().message;
    EXPECT_EQ(p4->exit_code, 0) << p4->out << p4->err;
    auto p6 = lab_->run("client", {"ping", "-6", "-c", "3", "-i", "0.2", "-W", "1", "fd71::2"});
    ASSERT_TRUE(p6) << p6.error().message;
    EXPECT_EQ(p6->exit_code, 0) << p6->out << p6->err;

    // TCP: a real handshake + data through the XDP hook.
    auto srv = lab_->socket("node", AF_INET, SOCK_STREAM);
    auto cli = lab_->socket("client", AF_INET, SOCK_STREAM);
    ASSERT_TRUE(srv && cli);
    auto srv_addr = make_addr(AF_INET, "10.71.0.2", 7080);
    int one = 1;
    ::setsockopt(srv->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ASSERT_EQ(::bind(srv->get(), reinterpret_cast<sockaddr*>(&srv_addr), sizeof(sockaddr_in)), 0);
    ASSERT_EQ(::listen(srv->get(), 4), 0);
    ASSERT_EQ(::connect(cli->get(), reinterpret_cast<sockaddr*>(&srv_addr), sizeof(sockaddr_in)), 0)
        << std::strerror(errno);
    pollfd pfd{srv->get(), POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 2000), 1);
    UniqueFd conn(::accept(srv->get(), nullptr, nullptr));
    ASSERT_TRUE(conn.valid());
    ASSERT_EQ(::send(cli->get(), "hello", 5, 0), 5);
    char buf[8] = {};
    pfd = {conn.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 2000), 1);
    EXPECT_EQ(::recv(conn.get(), buf, sizeof(buf), 0), 5);

    // 802.1Q: this kernel has no VLAN devices, so the client puts tagged frames on the wire itself
    // through a packet socket; XDP on the node sees them tagged.
    auto before = prog_->parse_stats();
    ASSERT_TRUE(before);
    auto ifidx = lab_->ifindex("client", "eth0");
    ASSERT_TRUE(ifidx);
    auto raw = lab_->socket("client", AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    ASSERT_TRUE(raw) << raw.error().message;
    sockaddr_ll ll{};
    ll.sll_family = AF_PACKET;
    ll.sll_ifindex = *ifidx;
    ll.sll_halen = 6;
    std::memset(ll.sll_addr, 0xff, 6);
    const test::Packet tagged = test::PacketBuilder()
                                    .eth(test::Mac::parse("02:00:00:00:71:01"), test::Mac::parse("ff:ff:ff:ff:ff:ff"))
                                    .vlan(42)
                                    .ipv4("10.72.0.1", "10.72.0.2")
                                    .udp(4242, 4243)
                                    .payload("tagged")
                                    .build();
    for (int i = 0; i < kDatagrams; ++i)
        ASSERT_EQ(
            ::sendto(raw->get(), tagged.bytes.data(), tagged.size(), 0, reinterpret_cast<sockaddr*>(&ll), sizeof(ll)),
            static_cast<ssize_t>(tagged.size()))
            << std::strerror(errno);

    auto stats = prog_->parse_stats();
    ASSERT_TRUE(stats) << stats.error().message;
    EXPECT_GE(stats.value()[KXLB_PS_ICMP].packets, 3u);    // echo requests
    EXPECT_GE(stats.value()[KXLB_PS_ICMPV6].packets, 3u);  // echo requests (+ neighbour discovery)
    EXPECT_GE(stats.value()[KXLB_PS_TCP].packets, 3u);     // SYN, ACK, data (+ ACKs)
    // Only our tagged frames carry a VLAN tag, and all of them are UDP.
    EXPECT_EQ(stats.value()[KXLB_PS_VLAN].packets - before.value()[KXLB_PS_VLAN].packets,
              static_cast<std::uint64_t>(kDatagrams));
    EXPECT_EQ(stats.value()[KXLB_PS_UDP].packets - before.value()[KXLB_PS_UDP].packets,
              static_cast<std::uint64_t>(kDatagrams));
}

TEST_F(XdpParserE2E, DetachingStopsCounting) {
    ASSERT_NO_FATAL_FAILURE(attach_native());
    EXPECT_EQ(udp_exchange(*lab_, AF_INET, "10.71.0.2", 7004), kDatagrams);
    link_.reset();  // RAII detach
    auto idx = lab_->ifindex("node", "eth0");
    ASSERT_TRUE(idx);
    auto state = lab_->in_ns("node", [&] { return query_xdp(*idx); });
    ASSERT_TRUE(state);
    EXPECT_EQ(state->prog_id, 0u);
    EXPECT_EQ(udp_exchange(*lab_, AF_INET, "10.71.0.2", 7005), kDatagrams);
    auto stats = prog_->parse_stats();
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats.value()[KXLB_PS_UDP].packets, static_cast<std::uint64_t>(kDatagrams));
}

}  // namespace
}  // namespace kxlb
