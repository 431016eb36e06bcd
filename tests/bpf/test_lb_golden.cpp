// bpf tier: golden packets through the load balancer (full-NAT both directions, conntrack, Maglev,
// no-backend ICMP, pass-through of everything that is not a frontend). Every case asserts the
// verdict, the exact output bytes, independently validated checksums and the counters it moved.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <map>
#include <set>

#include "bpf/lb_harness.hpp"
#include "common/checksum.hpp"
#include "common/privileges.hpp"

namespace kxlb::test {
namespace {

constexpr std::uint16_t kBackendPort = 8080;

Mac mac(const std::string& s) { return Mac::parse(s); }

class LbGolden : public ::testing::Test {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        auto h = LbHarness::create();
        ASSERT_TRUE(h) << h.error().message;
        h_ = std::move(h).value();
        for (auto [vip, proto, port] : {std::tuple{LbNet::kVip4, IPPROTO_TCP, 80}, {LbNet::kVip4, IPPROTO_UDP, 53}}) {
            auto r = h_->lb().upsert_service(
                make_service(vip, static_cast<std::uint16_t>(port), static_cast<std::uint8_t>(proto),
                             {LbNet::backend4(1), LbNet::backend4(2), LbNet::backend4(3)}, kBackendPort));
            ASSERT_TRUE(r) << r.error().message;
        }
        for (auto [vip, proto, port] : {std::tuple{LbNet::kVip6, IPPROTO_TCP, 80}, {LbNet::kVip6, IPPROTO_UDP, 53}}) {
            auto r = h_->lb().upsert_service(
                make_service(vip, static_cast<std::uint16_t>(port), static_cast<std::uint8_t>(proto),
                             {LbNet::backend6(1), LbNet::backend6(2), LbNet::backend6(3)}, kBackendPort));
            ASSERT_TRUE(r) << r.error().message;
        }
        for (auto vip : {LbNet::kVip4, LbNet::kVip6}) {
            ASSERT_TRUE(h_->lb().upsert_service(make_service(vip, 81, IPPROTO_TCP, {}, kBackendPort)));
            ASSERT_TRUE(h_->lb().upsert_service(make_service(vip, 54, IPPROTO_UDP, {}, kBackendPort)));
        }
    }

    static bool v6(const std::string& a) { return a.find(':') != std::string::npos; }

    // A client frame as it arrives on node eth0.
    static PacketBuilder from_client(const std::string& src, const std::string& dst) {
        PacketBuilder b;
        b.eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0));
        if (v6(dst)) b.ipv6(src, dst);
        else b.ipv4(src, dst);
        return b;
    }

    // Runs and checks the things every forwarded frame must satisfy; returns the output.
    Bytes run_expect(const Packet& in, std::uint32_t verdict) {
        auto r = h_->run(in);
        EXPECT_TRUE(r) << r.error().message;
        if (!r) return {};
        EXPECT_EQ(r->verdict, verdict) << hexdump(r->data);
        return r->data;
    }

    std::unique_ptr<LbHarness> h_;
};

// Which backend (1..3) an output frame was sent to, from its destination MAC.
int backend_index(const Bytes& out) {
    for (int i = 1; i <= 4; ++i) {
        Mac m = Mac::parse(LbNet::backend_mac(i));
        if (std::equal(m.b.begin(), m.b.end(), out.begin())) return i;
    }
    return 0;
}

TEST_F(LbGolden, NewTcp4FlowIsFullNatted) {
    const Packet in = from_client(LbNet::kClient4, LbNet::kVip4).tcp(40000, 80, {TCP_SYN, 1000, 0, 64240}).build();
    Bytes out = run_expect(in, XDP_TX);
    ASSERT_EQ(out.size(), in.size());
    const int be = backend_index(out);
    ASSERT_GE(be, 1);
    const std::uint16_t snat_port = static_cast<std::uint16_t>(out[34] << 8 | out[35]);
    EXPECT_GE(snat_port, 61000);
    const Packet want = PacketBuilder()
                            .eth(mac(LbNet::kNodeMac0), mac(LbNet::backend_mac(be)))
                            .ipv4(LbNet::kNode4, LbNet::backend4(be))
                            .tcp(snat_port, kBackendPort, {TCP_SYN, 1000, 0, 64240})
                            .build();
    EXPECT_EQ(diff_frames(want.span(), out), "");
    EXPECT_TRUE(checksum_errors(out).empty());
    EXPECT_EQ(h_->reason(KXLB_R_FWD_TX), 1u);

    // Conntrack agrees with the wire.
    auto flows = h_->conntrack().flows();
    ASSERT_TRUE(flows);
    ASSERT_EQ(flows->size(), 1u);
    EXPECT_EQ(ntohs(flows->front().second.snat_port), snat_port);
    auto bid = h_->lb().backend_id(Frontend{IpAddr::parse(LbNet::kVip4).value(), 80, IPPROTO_TCP},
                                   BackendSpec{IpAddr::parse(LbNet::backend4(be)).value(), kBackendPort}.identity());
    ASSERT_TRUE(bid);
    EXPECT_EQ(flows->front().second.backend_id, *bid);
    auto bc = h_->counters().backend(*bid);
    ASSERT_TRUE(bc);
    EXPECT_EQ(bc->packets, 1u);
    EXPECT_EQ(bc->new_flows, 1u);
    EXPECT_EQ(bc->bytes, in.size());
}

TEST_F(LbGolden, EstablishedAndReplyTcp4) {
    const Packet syn = from_client(LbNet::kClient4, LbNet::kVip4).tcp(40001, 80, {TCP_SYN, 5, 0}).build();
    Bytes o1 = run_expect(syn, XDP_TX);
    ASSERT_FALSE(o1.empty());
    const int be = backend_index(o1);
    const std::uint16_t snat_port = static_cast<std::uint16_t>(o1[34] << 8 | o1[35]);

    // Reply from the backend to node:snat_port -> VIP:80 to the client.
    const Packet synack = PacketBuilder()
                              .eth(mac(LbNet::backend_mac(be)), mac(LbNet::kNodeMac0))
                              .ipv4(LbNet::backend4(be), LbNet::kNode4)
                              .tcp(kBackendPort, snat_port, {TCP_SYN | TCP_ACK, 900, 6})
                              .build();
    Bytes o2 = run_expect(synack, XDP_TX);
    const Packet want2 = PacketBuilder()
                             .eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac))
                             .ipv4(LbNet::kVip4, LbNet::kClient4)
                             .tcp(80, 40001, {TCP_SYN | TCP_ACK, 900, 6})
                             .build();
    EXPECT_EQ(diff_frames(want2.span(), o2), "");
    EXPECT_TRUE(checksum_errors(o2).empty());

    // Established: same backend, same port, with payload.
    const Packet ack = from_client(LbNet::kClient4, LbNet::kVip4)
                           .tcp(40001, 80, {TCP_ACK | TCP_PSH, 6, 901})
                           .payload("GET / HTTP/1.1\r\n\r\n")
                           .build();
    Bytes o3 = run_expect(ack, XDP_TX);
    const Packet want3 = PacketBuilder()
                             .eth(mac(LbNet::kNodeMac0), mac(LbNet::backend_mac(be)))
                             .ipv4(LbNet::kNode4, LbNet::backend4(be))
                             .tcp(snat_port, kBackendPort, {TCP_ACK | TCP_PSH, 6, 901})
                             .payload("GET / HTTP/1.1\r\n\r\n")
                             .build();
    EXPECT_EQ(diff_frames(want3.span(), o3), "");
    EXPECT_EQ(h_->reason(KXLB_R_FWD_TX), 3u);
    auto svc = h_->lb().service(Frontend{IpAddr::parse(LbNet::kVip4).value(), 80, IPPROTO_TCP});
    ASSERT_NE(svc, nullptr);
    auto sc = h_->counters().service(svc->id);
    ASSERT_TRUE(sc);
    EXPECT_EQ(sc->packets, 3u);
    EXPECT_EQ(sc->new_flows, 1u);
}

TEST_F(LbGolden, NewUdp6FlowAndReply) {
    const Packet q = from_client(LbNet::kClient6, LbNet::kVip6).udp(5000, 53).payload("query").build();
    Bytes o1 = run_expect(q, XDP_TX);
    const int be = backend_index(o1);
    ASSERT_GE(be, 1);
    const std::uint16_t snat_port = static_cast<std::uint16_t>(o1[54] << 8 | o1[55]);
    const Packet want = PacketBuilder()
                            .eth(mac(LbNet::kNodeMac0), mac(LbNet::backend_mac(be)))
                            .ipv6(LbNet::kNode6, LbNet::backend6(be))
                            .udp(snat_port, kBackendPort)
                            .payload("query")
                            .build();
    EXPECT_EQ(diff_frames(want.span(), o1), "");
    EXPECT_TRUE(checksum_errors(o1).empty());

    const Packet answer = PacketBuilder()
                              .eth(mac(LbNet::backend_mac(be)), mac(LbNet::kNodeMac0))
                              .ipv6(LbNet::backend6(be), LbNet::kNode6)
                              .udp(kBackendPort, snat_port)
                              .payload("answer!")
                              .build();
    Bytes o2 = run_expect(answer, XDP_TX);
    const Packet want2 = PacketBuilder()
                             .eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac))
                             .ipv6(LbNet::kVip6, LbNet::kClient6)
                             .udp(53, 5000)
                             .payload("answer!")
                             .build();
    EXPECT_EQ(diff_frames(want2.span(), o2), "");
    EXPECT_TRUE(checksum_errors(o2).empty());
}

TEST_F(LbGolden, NoBackendAnswersIcmpPortUnreachable4) {
    const Packet syn = from_client(LbNet::kClient4, LbNet::kVip4).tcp(40002, 81).build();
    Bytes out = run_expect(syn, XDP_TX);
    Bytes quote(syn.bytes.begin() + 14, syn.bytes.begin() + 14 + 28);
    Ipv4Opts o;
    o.tos = 0xc0;
    const Packet want = PacketBuilder()
                            .eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac))
                            .ipv4(LbNet::kVip4, LbNet::kClient4, o)
                            .icmp(3, 3)
                            .payload(quote)
                            .build();
    EXPECT_EQ(diff_frames(want.span(), out), "");
    EXPECT_TRUE(checksum_errors(out).empty());
    EXPECT_EQ(h_->reason(KXLB_R_TX_UNREACH_NO_BACKEND), 1u);
}

TEST_F(LbGolden, NoBackendAnswersIcmp6PortUnreachable) {
    const Packet q = from_client(LbNet::kClient6, LbNet::kVip6).udp(5001, 54).payload("0123456789").build();
    Bytes out = run_expect(q, XDP_TX);
    Bytes quote(q.bytes.begin() + 14, q.bytes.begin() + 14 + 48);
    const Packet want = PacketBuilder()
                            .eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac))
                            .ipv6(LbNet::kVip6, LbNet::kClient6)
                            .icmp(1, 4)
                            .payload(quote)
                            .build();
    EXPECT_EQ(diff_frames(want.span(), out), "");
    EXPECT_TRUE(checksum_errors(out).empty());
}

TEST_F(LbGolden, NonVipTrafficPassesUntouched) {
    const std::vector<Packet> frames = {
        from_client(LbNet::kClient4, "10.0.0.1").tcp(1, 22).build(),
        from_client(LbNet::kClient6, "fd00::1").udp(1, 53).build(),
        from_client(LbNet::kClient4, LbNet::kVip4).tcp(1, 443).build(),  // VIP address, no such port
    };
    for (const auto& f : frames) {
        Bytes out = run_expect(f, XDP_PASS);
        EXPECT_EQ(diff_frames(f.span(), out), "");
    }
    EXPECT_EQ(h_->reason(KXLB_R_PASS_NOT_VIP), frames.size());
}

TEST_F(LbGolden, TcpWithoutSynAndWithoutFlowIsDropped) {
    const Packet ack = from_client(LbNet::kClient4, LbNet::kVip4).tcp(40003, 80, {TCP_ACK, 1, 1}).build();
    run_expect(ack, XDP_DROP);
    EXPECT_EQ(h_->reason(KXLB_R_DROP_TCP_NO_FLOW), 1u);
    auto flows = h_->conntrack().flows();
    ASSERT_TRUE(flows);
    EXPECT_TRUE(flows->empty());
}

TEST_F(LbGolden, FlowRebalancesWhenItsBackendIsRemoved) {
    const Packet q = from_client(LbNet::kClient4, LbNet::kVip4).udp(6000, 53).payload("a").build();
    Bytes o1 = run_expect(q, XDP_TX);
    const int first = backend_index(o1);
    ASSERT_GE(first, 1);
    std::vector<std::string> rest;
    for (int i = 1; i <= 3; ++i)
        if (i != first) rest.push_back(LbNet::backend4(i));
    ASSERT_TRUE(h_->lb().upsert_service(make_service(LbNet::kVip4, 53, IPPROTO_UDP, rest, kBackendPort)));
    Bytes o2 = run_expect(q, XDP_TX);
    const int second = backend_index(o2);
    EXPECT_GE(second, 1);
    EXPECT_NE(second, first) << "a flow whose backend was removed must move, not black-hole";
    EXPECT_TRUE(checksum_errors(o2).empty());
}

TEST_F(LbGolden, SameSeedSameBackendsSameChoiceOnEveryNode) {
    auto other = LbHarness::create();
    ASSERT_TRUE(other) << other.error().message;
    // Program the same backend set in a different order on the "other node".
    ASSERT_TRUE((*other)->lb().upsert_service(make_service(
        LbNet::kVip4, 53, IPPROTO_UDP, {LbNet::backend4(3), LbNet::backend4(1), LbNet::backend4(2)}, kBackendPort)));
    std::map<int, int> spread;
    for (std::uint16_t sport = 1000; sport < 1300; ++sport) {
        const Packet q = from_client(LbNet::kClient4, LbNet::kVip4).udp(sport, 53).build();
        auto a = h_->run(q);
        auto b = (*other)->run(q);
        ASSERT_TRUE(a && b);
        ASSERT_EQ(backend_index(a->data), backend_index(b->data)) << "sport " << sport;
        ++spread[backend_index(a->data)];
    }
    EXPECT_EQ(spread.size(), 3u);
    for (auto [be, n] : spread) EXPECT_NEAR(n, 100, 35) << "backend " << be;
}

}  // namespace
}  // namespace kxlb::test
