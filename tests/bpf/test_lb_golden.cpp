// bpf tier: golden packets through the load balancer (full-NAT both directions, conntrack, Maglev,
// no-backend ICMP, pass-through of everything that is not a frontend). Every case asserts the
// verdict, the exact output bytes, independently validated checksums and the counters it moved.
// Where the datapath chooses (backend, SNAT port), the choice is read from the output and the whole
// expected frame is then rebuilt with PacketBuilder and compared byte for byte.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include "bpf/lb_harness.hpp"
#include "common/checksum.hpp"
#include "common/privileges.hpp"

namespace kxlb::test {
namespace {

constexpr std::uint16_t kBackendPort = 8080;
// Frontends programmed by every fixture: TCP 80 / UDP 53 with backends 1..3, TCP 81 / UDP 54 without any.
constexpr std::uint16_t kTcpPort = 80, kUdpPort = 53, kTcpNoBackend = 81, kUdpNoBackend = 54;
// Frontends a test adds for one special backend (no neighbour, no route, behind eth1, ...).
constexpr std::uint16_t kTcpSpecial = 8000, kUdpSpecial = 8053;
constexpr std::uint16_t kSnatLo = 61000;

std::uint16_t be16(const Bytes& b, std::size_t off) {
    return off + 1 < b.size() ? static_cast<std::uint16_t>(b[off] << 8 | b[off + 1]) : 0;
}

// Programs the fixture's standard services (see kTcpPort...).
::testing::AssertionResult program_default_services(LbHarness& h) {
    for (auto [vip, proto, port] : {std::tuple{LbNet::kVip4, IPPROTO_TCP, 80}, {LbNet::kVip4, IPPROTO_UDP, 53}}) {
        auto r = h.lb().upsert_service(
            make_service(vip, static_cast<std::uint16_t>(port), static_cast<std::uint8_t>(proto),
                         {LbNet::backend4(1), LbNet::backend4(2), LbNet::backend4(3)}, kBackendPort));
        if (!r) return ::testing::AssertionFailure() << r.error().message;
    }
    for (auto [vip, proto, port] : {std::tuple{LbNet::kVip6, IPPROTO_TCP, 80}, {LbNet::kVip6, IPPROTO_UDP, 53}}) {
        auto r = h.lb().upsert_service(
            make_service(vip, static_cast<std::uint16_t>(port), static_cast<std::uint8_t>(proto),
                         {LbNet::backend6(1), LbNet::backend6(2), LbNet::backend6(3)}, kBackendPort));
        if (!r) return ::testing::AssertionFailure() << r.error().message;
    }
    for (auto vip : {LbNet::kVip4, LbNet::kVip6}) {
        if (auto r = h.lb().upsert_service(make_service(vip, 81, IPPROTO_TCP, {}, kBackendPort)); !r)
            return ::testing::AssertionFailure() << r.error().message;
        if (auto r = h.lb().upsert_service(make_service(vip, 54, IPPROTO_UDP, {}, kBackendPort)); !r)
            return ::testing::AssertionFailure() << r.error().message;
    }
    return ::testing::AssertionSuccess();
}

// Which backend (1..4) an output frame was sent to, from its destination MAC.
int backend_index(const Bytes& out) {
    for (int i = 1; i <= 4; ++i) {
        Mac m = Mac::parse(LbNet::backend_mac(i));
        if (out.size() >= 6 && std::equal(m.b.begin(), m.b.end(), out.begin())) return i;
    }
    return 0;
}

// One TCP segment or UDP datagram's contents (flags/seq/ack only matter for TCP).
struct Seg {
    std::uint8_t flags = TCP_SYN;
    std::uint32_t seq = 1;
    std::uint32_t ack = 0;
    std::string payload;
};

// What a forwarded client frame turned into: the backend (index into LbNet::backend*) and SNAT port it carries.
struct Hop {
    int be = 0;
    std::uint16_t snat_port = 0;
    Bytes out;
};

class LbGolden : public ::testing::Test {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        auto h = LbHarness::create();
        ASSERT_TRUE(h) << h.error().message;
        h_ = std::move(h).value();
        ASSERT_TRUE(program_default_services(*h_));
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
    Bytes run_expect(const Packet& in, std::uint32_t verdict, int ingress = 0) {
        return h_->run_expect(in, verdict, ingress);
    }

    // Runs a frame that must leave the datapath untouched with verdict XDP_PASS.
    void expect_untouched_pass(const Packet& in, int ingress = 0) {
        Bytes out = run_expect(in, XDP_PASS, ingress);
        EXPECT_EQ(diff_frames(in.span(), out), "");
    }

    // ---- addressing per family ----
    static const char* vip(bool is6) { return is6 ? LbNet::kVip6 : LbNet::kVip4; }
    static const char* client(bool is6) { return is6 ? LbNet::kClient6 : LbNet::kClient4; }
    static const char* node(bool is6) { return is6 ? LbNet::kNode6 : LbNet::kNode4; }
    static std::string backend(bool is6, int i) { return is6 ? LbNet::backend6(i) : LbNet::backend4(i); }
    static const char* far(bool is6) { return is6 ? LbNet::kFar6 : LbNet::kFar4; }
    static std::size_t l4_off(bool is6) { return is6 ? 54 : 34; }
    static std::uint16_t svc_port(std::uint8_t proto) { return proto == IPPROTO_TCP ? kTcpPort : kUdpPort; }
    static std::uint16_t special_port(std::uint8_t proto) { return proto == IPPROTO_TCP ? kTcpSpecial : kUdpSpecial; }

    // Any frame: Ethernet, one IP header (family from dst), TCP or UDP with seg's contents.
    static Packet frame(const std::string& smac, const std::string& dmac, const std::string& src,
                        const std::string& dst, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport,
                        const Seg& s, std::optional<std::uint16_t> udp_csum = std::nullopt) {
        PacketBuilder b;
        b.eth(mac(smac), mac(dmac));
        if (v6(dst)) b.ipv6(src, dst);
        else b.ipv4(src, dst);
        if (proto == IPPROTO_TCP) b.tcp(sport, dport, TcpOpts{.flags = s.flags, .seq = s.seq, .ack = s.ack});
        else b.udp(sport, dport, UdpOpts{.length = std::nullopt, .checksum = udp_csum});
        if (!s.payload.empty()) b.payload(s.payload);
        return b.build();
    }
    // Client -> frontend (vip(is6):dport), as received on eth0.
    static Packet client_pkt(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport, const Seg& s) {
        return frame(LbNet::kClientMac, LbNet::kNodeMac0, client(is6), vip(is6), proto, sport, dport, s);
    }
    // Node -> eth0 backend i after full-NAT.
    static Packet to_backend(bool is6, std::uint8_t proto, int i, std::uint16_t snat_port, const Seg& s) {
        return frame(LbNet::kNodeMac0, LbNet::backend_mac(i), node(is6), backend(is6, i), proto, snat_port,
                     kBackendPort, s);
    }
    // Eth0 backend i -> node:snat_port (a reply as received).
    static Packet from_backend(bool is6, std::uint8_t proto, int i, std::uint16_t snat_port, const Seg& s) {
        return frame(LbNet::backend_mac(i), LbNet::kNodeMac0, backend(is6, i), node(is6), proto, kBackendPort,
                     snat_port, s);
    }
    // Frontend -> client after reverse translation, leaving eth0.
    static Packet to_client(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport, const Seg& s) {
        return frame(LbNet::kNodeMac0, LbNet::kClientMac, vip(is6), client(is6), proto, dport, sport, s);
    }

    // Sends client_pkt(...) which must be full-NATed to an eth0 backend with XDP_TX; rebuilds the expected frame
    // from the backend and SNAT port the output carries and compares every byte; validates checksums.
    Hop forward(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport, const Seg& s) {
        Hop hop;
        const Packet in = client_pkt(is6, proto, sport, dport, s);
        hop.out = run_expect(in, XDP_TX);
        hop.be = backend_index(hop.out);
        hop.snat_port = be16(hop.out, l4_off(is6));
        EXPECT_GE(hop.be, 1) << "not sent to an eth0 backend:\n" << hexdump(hop.out);
        if (hop.be < 1) return hop;
        EXPECT_GE(hop.snat_port, snat_lo_);
        const Packet want = to_backend(is6, proto, hop.be, hop.snat_port, s);
        EXPECT_EQ(diff_frames(want.span(), hop.out), "");
        EXPECT_TRUE(checksum_errors(hop.out).empty()) << join(checksum_errors(hop.out));
        return hop;
    }
    // forward() that must land on an already known backend and SNAT port (an established flow).
    void forward_to(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport, const Seg& s,
                    const Hop& flow) {
        const Packet in = client_pkt(is6, proto, sport, dport, s);
        Bytes out = run_expect(in, XDP_TX);
        const Packet want = to_backend(is6, proto, flow.be, flow.snat_port, s);
        EXPECT_EQ(diff_frames(want.span(), out), "");
        EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
    }
    // A reply from the flow's backend that must be reverse-translated to the client (XDP_TX on eth0).
    void reply(bool is6, std::uint8_t proto, const Hop& flow, std::uint16_t client_port, std::uint16_t vip_port,
               const Seg& s) {
        const Packet in = from_backend(is6, proto, flow.be, flow.snat_port, s);
        Bytes out = run_expect(in, XDP_TX);
        const Packet want = to_client(is6, proto, client_port, vip_port, s);
        EXPECT_EQ(diff_frames(want.span(), out), "");
        EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
    }

    // ---- programming ----
    static Frontend fe(bool is6, std::uint8_t proto, std::uint16_t port) {
        return Frontend{IpAddr::parse(vip(is6)).value(), port, proto};
    }
    // A frontend vip(is6):special_port(proto) with the single backend addr:kBackendPort.
    void add_special_service(bool is6, std::uint8_t proto, const std::string& addr) {
        auto r = h_->lb().upsert_service(make_service(vip(is6), special_port(proto), proto, {addr}, kBackendPort));
        ASSERT_TRUE(r) << r.error().message;
    }
    // Re-programs the standard service with backends 1..n; mutate may change weights/draining.
    void reprogram(bool is6, std::uint8_t proto, const std::vector<int>& backends,
                   const std::function<void(BackendSpec&, int)>& mutate = {}) {
        std::vector<std::string> addrs;
        for (int i : backends) addrs.push_back(backend(is6, i));
        ServiceSpec spec = make_service(vip(is6), svc_port(proto), proto, addrs, kBackendPort);
        if (mutate)
            for (std::size_t k = 0; k < backends.size(); ++k) mutate(spec.backends[k], backends[k]);
        auto r = h_->lb().upsert_service(spec);
        ASSERT_TRUE(r) << r.error().message;
    }

    // ---- readers ----
    kxlb_lb_counter svc_counter(const Frontend& f) { return h_->service_counter(f); }
    kxlb_lb_counter backend_counter(const Frontend& f, const std::string& addr) {
        return h_->backend_counter(f, BackendSpec{IpAddr::parse(addr).value(), kBackendPort}.identity());
    }
    std::optional<std::uint32_t> backend_id(const Frontend& f, const std::string& addr) {
        return h_->lb().backend_id(f, BackendSpec{IpAddr::parse(addr).value(), kBackendPort}.identity());
    }
    // Every reason counter equals want (0 when not listed).
    void expect_reasons(const std::map<kxlb_reason, std::uint64_t>& want) {
        const auto got = h_->reason_packets();
        for (std::size_t i = 0; i < kReasonCount; ++i) {
            const auto r = static_cast<kxlb_reason>(i);
            const auto it = want.find(r);
            EXPECT_EQ(got[i], it == want.end() ? 0u : it->second) << "reason " << reason_name(r);
        }
    }
    static bool addr_is(const __be32 w[4], const std::string& a) {
        const IpAddr ip = IpAddr::parse(a).value();
        __be32 x[4];
        ip.to_words(x);
        return std::memcmp(w, x, sizeof(x)) == 0;
    }
    // The forward conntrack entry of client(is6):sport -> vip(is6):dport.
    std::optional<kxlb_ct_value> flow(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport) {
        auto flows = h_->conntrack().flows();
        EXPECT_TRUE(flows) << flows.error().message;
        if (!flows) return std::nullopt;
        for (const auto& [k, v] : *flows)
            if (addr_is(k.saddr, client(is6)) && addr_is(k.daddr, vip(is6)) && ntohs(k.sport) == sport &&
                ntohs(k.dport) == dport && k.proto == proto)
                return v;
        return std::nullopt;
    }
    // The reverse entry of backend addr:kBackendPort -> node:snat_port.
    std::optional<kxlb_nat_value> nat(bool is6, std::uint8_t proto, const std::string& addr, std::uint16_t snat_port) {
        auto nats = h_->conntrack().nat_entries();
        EXPECT_TRUE(nats) << nats.error().message;
        if (!nats) return std::nullopt;
        for (const auto& [k, v] : *nats)
            if (addr_is(k.saddr, addr) && addr_is(k.daddr, node(is6)) && ntohs(k.sport) == kBackendPort &&
                ntohs(k.dport) == snat_port && k.proto == proto)
                return v;
        return std::nullopt;
    }
    std::size_t flow_count() {
        auto f = h_->conntrack().flows();
        return f ? f->size() : 0;
    }
    std::size_t nat_count() {
        auto n = h_->conntrack().nat_entries();
        return n ? n->size() : 0;
    }

    std::unique_ptr<LbHarness> h_;
    std::uint16_t snat_lo_ = kSnatLo;  // the harness config's SNAT range start
};

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

TEST_F(LbGolden, TcpResetWithoutFlowIsDropped) {
    const Packet ack = from_client(LbNet::kClient4, LbNet::kVip4).tcp(40003, 80, {TCP_RST | TCP_ACK, 1, 1}).build();
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

// ---- New/established/reply flows, per family and protocol ----

struct FlowParam {
    bool v6;
    std::uint8_t proto;
};

std::string flow_param_name(const ::testing::TestParamInfo<FlowParam>& i) {
    return std::string(i.param.v6 ? "v6_" : "v4_") + (i.param.proto == IPPROTO_TCP ? "tcp" : "udp");
}

class LbGoldenFlow : public LbGolden, public ::testing::WithParamInterface<FlowParam> {
protected:
    bool is6() const { return GetParam().v6; }
    std::uint8_t proto() const { return GetParam().proto; }
    bool tcp() const { return proto() == IPPROTO_TCP; }
    std::uint16_t port() const { return svc_port(proto()); }
    Frontend svc() const { return fe(is6(), proto(), port()); }
    // A first segment (SYN for TCP) and a follow-up (ACK+data for TCP), with payload.
    Seg first(std::string payload = "hello") const {
        return tcp() ? Seg{TCP_SYN, 1000, 0, {}} : Seg{0, 0, 0, std::move(payload)};
    }
    Seg next(std::string payload = "more data") const {
        return tcp() ? Seg{TCP_ACK | TCP_PSH, 1001, 7001, std::move(payload)} : Seg{0, 0, 0, std::move(payload)};
    }
};

TEST_P(LbGoldenFlow, NewFlowIsFullNatted) {
    const Packet in = client_pkt(is6(), proto(), 40000, port(), first());
    const Hop f = forward(is6(), proto(), 40000, port(), first());
    ASSERT_GE(f.be, 1);
    expect_reasons({{KXLB_R_FWD_TX, 1}});

    // Conntrack: one forward entry naming the chosen backend and port, one reverse entry back to the client.
    ASSERT_EQ(flow_count(), 1u);
    ASSERT_EQ(nat_count(), 1u);
    auto ct = flow(is6(), proto(), 40000, port());
    ASSERT_TRUE(ct);
    EXPECT_EQ(ntohs(ct->snat_port), f.snat_port);
    EXPECT_EQ(ct->backend_id, backend_id(svc(), backend(is6(), f.be)));
    EXPECT_EQ(ct->flags, 0);
    EXPECT_EQ(ct->nh.ifindex, static_cast<std::uint32_t>(h_->eth0()));
    auto rev = nat(is6(), proto(), backend(is6(), f.be), f.snat_port);
    ASSERT_TRUE(rev);
    EXPECT_TRUE(addr_is(rev->client_addr, client(is6())));
    EXPECT_TRUE(addr_is(rev->vip_addr, vip(is6())));
    EXPECT_EQ(ntohs(rev->client_port), 40000);
    EXPECT_EQ(ntohs(rev->vip_port), port());

    const auto sc = svc_counter(svc());
    EXPECT_EQ(sc.packets, 1u);
    EXPECT_EQ(sc.bytes, in.size());
    EXPECT_EQ(sc.new_flows, 1u);
    const auto bc = backend_counter(svc(), backend(is6(), f.be));
    EXPECT_EQ(bc.packets, 1u);
    EXPECT_EQ(bc.bytes, in.size());
    EXPECT_EQ(bc.new_flows, 1u);
}

TEST_P(LbGoldenFlow, EstablishedFlowKeepsBackendAndSnatPort) {
    const Hop f = forward(is6(), proto(), 40001, port(), first());
    ASSERT_GE(f.be, 1);
    std::size_t bytes = client_pkt(is6(), proto(), 40001, port(), first()).size();
    for (int i = 0; i < 3; ++i) {
        const Seg s = next("segment " + std::to_string(i));
        forward_to(is6(), proto(), 40001, port(), s, f);
        bytes += client_pkt(is6(), proto(), 40001, port(), s).size();
    }
    expect_reasons({{KXLB_R_FWD_TX, 4}});
    EXPECT_EQ(flow_count(), 1u);
    EXPECT_EQ(nat_count(), 1u);
    const auto sc = svc_counter(svc());
    EXPECT_EQ(sc.packets, 4u);
    EXPECT_EQ(sc.bytes, bytes);
    EXPECT_EQ(sc.new_flows, 1u);
    const auto bc = backend_counter(svc(), backend(is6(), f.be));
    EXPECT_EQ(bc.packets, 4u);
    EXPECT_EQ(bc.new_flows, 1u);
}

TEST_P(LbGoldenFlow, ReplyIsReverseNatted) {
    const Hop f = forward(is6(), proto(), 40002, port(), first());
    ASSERT_GE(f.be, 1);
    const Seg r1 = tcp() ? Seg{TCP_SYN | TCP_ACK, 7000, 1001, {}} : Seg{0, 0, 0, "answer"};
    const Seg r2 = tcp() ? Seg{TCP_ACK | TCP_PSH, 7001, 1001, "response body"} : Seg{0, 0, 0, "second answer"};
    reply(is6(), proto(), f, 40002, port(), r1);
    reply(is6(), proto(), f, 40002, port(), r2);
    expect_reasons({{KXLB_R_FWD_TX, 3}});
    // The reverse entry cached the next hop toward the client.
    auto rev = nat(is6(), proto(), backend(is6(), f.be), f.snat_port);
    ASSERT_TRUE(rev);
    EXPECT_EQ(rev->nh.ifindex, static_cast<std::uint32_t>(h_->eth0()));
    EXPECT_EQ(Mac{std::to_array(rev->nh.dmac)}, mac(LbNet::kClientMac));
    // Replies count toward the service and backend, never as new flows.
    const std::size_t bytes = client_pkt(is6(), proto(), 40002, port(), first()).size() +
                              from_backend(is6(), proto(), f.be, f.snat_port, r1).size() +
                              from_backend(is6(), proto(), f.be, f.snat_port, r2).size();
    const auto sc = svc_counter(svc());
    EXPECT_EQ(sc.packets, 3u);
    EXPECT_EQ(sc.bytes, bytes);
    EXPECT_EQ(sc.new_flows, 1u);
    const auto bc = backend_counter(svc(), backend(is6(), f.be));
    EXPECT_EQ(bc.packets, 3u);
    EXPECT_EQ(bc.bytes, bytes);
}

TEST_P(LbGoldenFlow, FlowRebalancesAfterItsBackendIsRemoved) {
    const Hop f = forward(is6(), proto(), 40003, port(), first());
    ASSERT_GE(f.be, 1);
    std::vector<int> rest;
    for (int i = 1; i <= 3; ++i)
        if (i != f.be) rest.push_back(i);
    reprogram(is6(), proto(), rest);
    // The next packet of the flow (TCP: a plain ACK, not a SYN) moves to a remaining backend as a new flow.
    const Hop g = forward(is6(), proto(), 40003, port(), next());
    ASSERT_GE(g.be, 1);
    EXPECT_NE(g.be, f.be) << "a flow whose backend was removed must move, not black-hole";
    expect_reasons({{KXLB_R_FWD_TX, 2}});
    auto ct = flow(is6(), proto(), 40003, port());
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->backend_id, backend_id(svc(), backend(is6(), g.be)));
    EXPECT_EQ(ntohs(ct->snat_port), g.snat_port);
    EXPECT_EQ(svc_counter(svc()).new_flows, 2u);
    EXPECT_EQ(backend_counter(svc(), backend(is6(), g.be)).new_flows, 1u);
    // And it stays there.
    forward_to(is6(), proto(), 40003, port(), next("again"), g);
    EXPECT_EQ(svc_counter(svc()).new_flows, 2u);
}

TEST_P(LbGoldenFlow, AddingBackendDoesNotMoveEstablishedFlows) {
    std::map<std::uint16_t, Hop> flows;
    for (std::uint16_t sport = 41000; sport < 41024; ++sport) {
        flows[sport] = forward(is6(), proto(), sport, port(), first());
        ASSERT_GE(flows[sport].be, 1);
    }
    ASSERT_TRUE(h_->lb().upsert_service(
        make_service(vip(is6()), port(), proto(),
                     {backend(is6(), 1), backend(is6(), 2), backend(is6(), 3), backend(is6(), 4)}, kBackendPort)));
    for (auto& [sport, f] : flows) forward_to(is6(), proto(), sport, port(), next(), f);
    EXPECT_EQ(svc_counter(svc()).new_flows, flows.size());
    EXPECT_EQ(backend_counter(svc(), backend(is6(), 4)).packets, 0u);
    expect_reasons({{KXLB_R_FWD_TX, 2 * flows.size()}});

    // Proof that conntrack (not luck) kept them: without it, some of these 5-tuples now pick backend 4.
    ASSERT_TRUE(h_->conntrack().flush());
    int moved_to_4 = 0;
    for (auto& [sport, f] : flows) moved_to_4 += forward(is6(), proto(), sport, port(), first()).be == 4;
    EXPECT_GT(moved_to_4, 0);
}

TEST_P(LbGoldenFlow, DrainingBackendKeepsItsFlowButGetsNoNewOnes) {
    const Hop f = forward(is6(), proto(), 40004, port(), first());
    ASSERT_GE(f.be, 1);
    reprogram(is6(), proto(), {1, 2, 3}, [&](BackendSpec& b, int i) { b.draining = i == f.be; });
    forward_to(is6(), proto(), 40004, port(), next(), f);
    for (std::uint16_t sport = 42000; sport < 42040; ++sport)
        EXPECT_NE(forward(is6(), proto(), sport, port(), first()).be, f.be) << "sport " << sport;
    const auto bc = backend_counter(svc(), backend(is6(), f.be));
    EXPECT_EQ(bc.new_flows, 1u);
    EXPECT_EQ(bc.packets, 2u);
    EXPECT_EQ(svc_counter(svc()).new_flows, 41u);
    expect_reasons({{KXLB_R_FWD_TX, 42}});
}

TEST_P(LbGoldenFlow, WeightZeroBackendGetsNoNewFlows) {
    const Hop f = forward(is6(), proto(), 40005, port(), first());
    ASSERT_GE(f.be, 1);
    reprogram(is6(), proto(), {1, 2, 3}, [&](BackendSpec& b, int i) { b.weight = i == f.be ? 0 : 1; });
    forward_to(is6(), proto(), 40005, port(), next(), f);  // its established flow is not cut
    std::map<int, int> spread;
    for (std::uint16_t sport = 43000; sport < 43040; ++sport)
        ++spread[forward(is6(), proto(), sport, port(), first()).be];
    EXPECT_EQ(spread.count(f.be), 0u);
    EXPECT_EQ(spread.size(), 2u);
    EXPECT_EQ(backend_counter(svc(), backend(is6(), f.be)).new_flows, 1u);
    expect_reasons({{KXLB_R_FWD_TX, 42}});
}

TEST_P(LbGoldenFlow, NoBackendAnswersPortUnreachableQuotingTrimmedDatagram) {
    const std::uint16_t dport = tcp() ? kTcpNoBackend : kUdpNoBackend;
    // With payload: the quote is trimmed to the IP header + the first 8 L4 bytes.
    const Seg s = tcp() ? Seg{TCP_SYN, 77, 0, "0123456789abcdefghij"} : Seg{0, 0, 0, std::string(100, 'q')};
    const Packet in = client_pkt(is6(), proto(), 40006, dport, s);
    Bytes out = run_expect(in, XDP_TX);
    const std::size_t ip_len = is6() ? 40 : 20;
    const Bytes quote(in.bytes.begin() + 14, in.bytes.begin() + 14 + static_cast<std::ptrdiff_t>(ip_len) + 8);
    PacketBuilder b;
    b.eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac));
    if (is6()) {
        b.ipv6(vip(true), client(true)).icmp(1, 4);
    } else {
        Ipv4Opts o;
        o.tos = 0xc0;
        b.ipv4(vip(false), client(false), o).icmp(3, 3);
    }
    const Packet want = b.payload(quote).build();
    EXPECT_EQ(diff_frames(want.span(), out), "");
    EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
    // Independently of the builder: the quote is the original IP header + 8 bytes of its TCP/UDP header.
    ASSERT_EQ(out.size(), 14 + ip_len + 8 + ip_len + 8);
    EXPECT_TRUE(
        std::equal(out.begin() + 14 + static_cast<std::ptrdiff_t>(ip_len) + 8, out.end(), in.bytes.begin() + 14));
    EXPECT_EQ(be16(out, 14 + 2 * ip_len + 8), 40006);  // quoted source port
    EXPECT_EQ(be16(out, 14 + 2 * ip_len + 8 + 2), dport);
    expect_reasons({{KXLB_R_TX_UNREACH_NO_BACKEND, 1}});
    EXPECT_EQ(flow_count(), 0u);
    EXPECT_EQ(nat_count(), 0u);
}

TEST_P(LbGoldenFlow, RedirectToBackendBehindEth1AndReplyFromEth1) {
    add_special_service(is6(), proto(), far(is6()));
    ASSERT_TRUE(h_->add_tx_port_eth1());
    ASSERT_TRUE(h_->add_tx_port(h_->eth0()));  // the reply leaves through eth0 after arriving on eth1
    const std::uint16_t dport = special_port(proto());
    const Packet in = client_pkt(is6(), proto(), 40007, dport, first());
    Bytes out = run_expect(in, XDP_REDIRECT);
    const std::uint16_t snat_port = be16(out, l4_off(is6()));
    EXPECT_GE(snat_port, kSnatLo);
    const Packet want =
        frame(LbNet::kNodeMac1, LbNet::kFarMac, node(is6()), far(is6()), proto(), snat_port, kBackendPort, first());
    EXPECT_EQ(diff_frames(want.span(), out), "");
    EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
    auto ct = flow(is6(), proto(), 40007, dport);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->nh.ifindex, static_cast<std::uint32_t>(h_->eth1()));

    const Seg r = tcp() ? Seg{TCP_SYN | TCP_ACK, 9, 1001, {}} : Seg{0, 0, 0, "from far"};
    const Packet rep =
        frame(LbNet::kFarMac, LbNet::kNodeMac1, far(is6()), node(is6()), proto(), kBackendPort, snat_port, r);
    Bytes rout = run_expect(rep, XDP_REDIRECT, 1);
    const Packet rwant = to_client(is6(), proto(), 40007, dport, r);
    EXPECT_EQ(diff_frames(rwant.span(), rout), "");
    EXPECT_TRUE(checksum_errors(rout).empty()) << join(checksum_errors(rout));
    expect_reasons({{KXLB_R_FWD_REDIRECT, 2}});
    const auto sc = svc_counter(fe(is6(), proto(), dport));
    EXPECT_EQ(sc.packets, 2u);
    EXPECT_EQ(sc.bytes, in.size() + rep.size());
}

// ---- Per-CPU flow cache (bpf/lib/flow_cache.h) ----
// An established flow's frames after its second one are translated from the cache, not from kxlb_ct /
// kxlb_nat. These tests prove a hit by deleting the flow's map entries behind the cache's back (as an LRU
// eviction would): a frame still translated exactly as before can only have come from the cache.

// The forward entry's key / the reverse entry's key of a flow of this fixture.
kxlb_flow_key client_key(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport) {
    return flow_key(is6 ? LbNet::kClient6 : LbNet::kClient4, sport, is6 ? LbNet::kVip6 : LbNet::kVip4, dport, proto);
}

class LbFlowCache : public LbGoldenFlow {
protected:
    // Opens a flow on sport and sends `more` follow-ups (the first of them fills the cache); the hop.
    Hop open_flow(std::uint16_t sport, int more) {
        Hop f = forward(is6(), proto(), sport, port(), first());
        for (int i = 0; i < more; ++i) forward_to(is6(), proto(), sport, port(), next(), f);
        return f;
    }
    // Deletes the flow's forward entry, and its reverse entry unless keep_nat, directly (the cache is not told).
    void evict(std::uint16_t sport, const Hop& f, bool keep_nat = false) {
        const auto fds = h_->program().lb_map_fds();
        const kxlb_flow_key k = client_key(is6(), proto(), sport, port());
        const kxlb_flow_key r = flow_key(backend(is6(), f.be), kBackendPort, node(is6()), f.snat_port, proto());
        ASSERT_EQ(bpf_map_delete_elem(fds.ct, &k), 0);
        if (!keep_nat) {
            ASSERT_EQ(bpf_map_delete_elem(fds.nat, &r), 0);
        }
    }
    std::uint64_t new_flows() { return svc_counter(svc()).new_flows; }
    // kxlb_fcache_stats summed over CPUs, as the agent and kxlbctl read it.
    kxlb_flow_cache_counters cache_counters() {
        auto fc = h_->counters().flow_cache();
        EXPECT_TRUE(fc && *fc);
        return fc && *fc ? **fc : kxlb_flow_cache_counters{};
    }
    void expect_cache_counters(std::uint64_t hits, std::uint64_t misses, std::uint64_t fills) {
        const auto c = cache_counters();
        EXPECT_EQ(c.hits, hits);
        EXPECT_EQ(c.misses, misses);
        EXPECT_EQ(c.fills, fills);
    }
};

TEST_P(LbFlowCache, EstablishedFramesComeFromTheCacheByteForByte) {
    const Hop f = open_flow(43000, 1);
    reply(is6(), proto(), f, 43000, port(), next("reply 1"));  // fills the reverse entry
    evict(43000, f);
    // Both directions keep exactly the translation of the conntrack path: only the cache still knows it.
    for (int i = 0; i < 3; ++i) {
        forward_to(is6(), proto(), 43000, port(), next(), f);
        reply(is6(), proto(), f, 43000, port(), next("reply " + std::to_string(i + 2)));
    }
    EXPECT_EQ(flow_count(), 0u);
    EXPECT_EQ(nat_count(), 0u);
    const auto sc = svc_counter(svc());
    EXPECT_EQ(sc.new_flows, 1u);
    EXPECT_EQ(sc.packets, 2u + 1u + 6u);
    EXPECT_EQ(backend_counter(svc(), backend(is6(), f.be)).packets, 9u);
    expect_reasons({{KXLB_R_FWD_TX, 9}});
    // The follow-up and the first reply missed and filled; the six frames after them hit.
    expect_cache_counters(6, 2, 2);

    // Emptied (as conntrack flush does), the next frame takes the conntrack path: UDP opens a new flow, a TCP
    // ACK is recovered onto the backend Maglev gives it. Either way a new flow is counted and tracked again.
    ASSERT_TRUE(clear_flow_cache(h_->program().lb_map_fds().flow_cache));
    run_expect(client_pkt(is6(), proto(), 43000, port(), next()), XDP_TX);
    EXPECT_EQ(new_flows(), 2u);
    EXPECT_EQ(flow_count(), 1u);
}

TEST_P(LbFlowCache, SecondFrameFillsNotTheFirst) {
    // After the first frame only (SYN / first datagram), nothing is cached: a flood of new flows cannot churn it.
    const Hop f = open_flow(43100, 0);
    expect_cache_counters(0, 0, 0);  // a first frame is neither a miss nor a fill
    evict(43100, f);
    run_expect(client_pkt(is6(), proto(), 43100, port(), next()), XDP_TX);
    EXPECT_EQ(new_flows(), 2u) << "the follow-up after an evicted first frame is a new (or recovered) flow";
    expect_cache_counters(0, 0, 0);  // nor is a new (or recovered) flow's
}

TEST_P(LbFlowCache, EntriesLastUntilTheFlowsRefreshIsDue) {
    const Hop f = open_flow(43200, 1);
    evict(43200, f);
    forward_to(is6(), proto(), 43200, port(), next(), f);  // served from the cache
    EXPECT_EQ(new_flows(), 1u);
    expect_cache_counters(1, 1, 1);
    // The conntrack path refreshes an entry once a second; a cached copy never outlives that.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    run_expect(client_pkt(is6(), proto(), 43200, port(), next()), XDP_TX);
    EXPECT_EQ(new_flows(), 2u);
}

TEST_P(LbFlowCache, RemovedBackendIsNotServedFromTheCache) {
    const Hop f = open_flow(43300, 2);
    std::vector<int> others;
    for (int i = 1; i <= 3; ++i)
        if (i != f.be) others.push_back(i);
    reprogram(is6(), proto(), others);
    const Hop g = forward(is6(), proto(), 43300, port(), next());  // re-balanced (TCP: recovered) by conntrack
    EXPECT_NE(g.be, f.be);
    EXPECT_EQ(new_flows(), 2u);
}

TEST_P(LbFlowCache, BackendIdOfANewGenerationIsNotServedFromTheCache) {
    // The id handed to another backend (what the programmer does on reuse: a new generation).
    const Hop f = open_flow(43350, 2);
    const auto id = backend_id(svc(), backend(is6(), f.be));
    ASSERT_TRUE(id);
    const int fd = h_->program().lb_map_fds().backends;
    kxlb_backend be{};
    ASSERT_EQ(bpf_map_lookup_elem(fd, &*id, &be), 0);
    be.gen += 1;
    ASSERT_EQ(bpf_map_update_elem(fd, &*id, &be, BPF_EXIST), 0);
    run_expect(client_pkt(is6(), proto(), 43350, port(), next()), XDP_TX);  // re-balanced by conntrack
    EXPECT_EQ(new_flows(), 2u);
    auto ct = flow(is6(), proto(), 43350, port());
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->backend_gen, be.gen);
}

TEST_P(LbFlowCache, ConfigChangeEmptiesTheCacheAndSameConfigKeepsIt) {
    const Hop f = open_flow(43400, 1);
    evict(43400, f);
    LbConfig cfg = default_lb_config();
    ASSERT_TRUE(h_->set_config(cfg));  // unchanged: the cache stays
    forward_to(is6(), proto(), 43400, port(), next(), f);
    EXPECT_EQ(new_flows(), 1u);
    cfg.udp_timeout_s += 1;
    ASSERT_TRUE(h_->set_config(cfg));
    run_expect(client_pkt(is6(), proto(), 43400, port(), next()), XDP_TX);
    EXPECT_EQ(new_flows(), 2u);
}

INSTANTIATE_TEST_SUITE_P(LbGolden, LbFlowCache,
                         ::testing::Values(FlowParam{false, IPPROTO_TCP}, FlowParam{false, IPPROTO_UDP},
                                           FlowParam{true, IPPROTO_TCP}, FlowParam{true, IPPROTO_UDP}),
                         flow_param_name);

// TCP segments that change or check flow state (SYN, FIN, RST) always take the conntrack path, and a closing
// flow leaves the cache; with TIME_WAIT shorter than the cache's lifetime, TCP flows are not cached at all.
class LbFlowCacheTcp : public LbFlowCache {};

TEST_P(LbFlowCacheTcp, SynFinAndRstTakeTheConntrackPath) {
    const Hop f = open_flow(43500, 2);
    // A SYN on the cached 5-tuple: conntrack sees it (an open flow's SYN is forwarded as before).
    forward_to(is6(), proto(), 43500, port(), Seg{TCP_SYN, 1000, 0, {}}, f);
    // FIN both ways: recorded in the flow entry (the cache would have hidden them).
    forward_to(is6(), proto(), 43500, port(), Seg{TCP_FIN | TCP_ACK, 1010, 7001, {}}, f);
    reply(is6(), proto(), f, 43500, port(), Seg{TCP_FIN | TCP_ACK, 7001, 1011, {}});
    auto ct = flow(is6(), proto(), 43500, port());
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags & KXLB_CT_F_CLOSED, KXLB_CT_F_CLOSED);
    // Closed: its last ACK is not served from the cache (the FIN dropped the entry, a closed flow is never
    // cached again): with the forward entry gone, conntrack will not recover a closed flow and drops it.
    evict(43500, f, true);
    run_expect(client_pkt(is6(), proto(), 43500, port(), Seg{TCP_ACK, 1011, 7002, {}}), XDP_DROP);
    EXPECT_EQ(h_->reason(KXLB_R_DROP_TCP_NO_FLOW), 1u);
}

TEST_P(LbFlowCacheTcp, ZeroTimeWaitDisablesCachingOfTcp) {
    LbConfig cfg = default_lb_config();
    cfg.tcp_timewait_s = 0;  // a port may change hands the moment its flow closes: no cached copy may outlive it
    ASSERT_TRUE(h_->set_config(cfg));
    const Hop f = open_flow(43600, 2);
    evict(43600, f);
    run_expect(client_pkt(is6(), proto(), 43600, port(), next()), XDP_TX);  // recovered by conntrack
    EXPECT_EQ(new_flows(), 2u);
}

INSTANTIATE_TEST_SUITE_P(LbGolden, LbFlowCacheTcp,
                         ::testing::Values(FlowParam{false, IPPROTO_TCP}, FlowParam{true, IPPROTO_TCP}),
                         flow_param_name);

INSTANTIATE_TEST_SUITE_P(LbGolden, LbGoldenFlow,
                         ::testing::Values(FlowParam{false, IPPROTO_TCP}, FlowParam{false, IPPROTO_UDP},
                                           FlowParam{true, IPPROTO_TCP}, FlowParam{true, IPPROTO_UDP}),
                         flow_param_name);

// ---- Per-family cases (IPv4 and IPv6) ----

class LbGoldenFamily : public LbGolden, public ::testing::WithParamInterface<bool> {
protected:
    bool is6() const { return GetParam(); }
    Frontend tcp_svc() const { return fe(is6(), IPPROTO_TCP, kTcpPort); }
};

TEST_P(LbGoldenFamily, TcpConversationExactBytesEveryStep) {
    const std::uint8_t T = IPPROTO_TCP;
    std::size_t bytes = 0;
    auto sent = [&](const Packet& p) { bytes += p.size(); };
    // 1. SYN
    const Seg syn{TCP_SYN, 1000, 0, {}};
    const Hop f = forward(is6(), T, 45000, kTcpPort, syn);
    ASSERT_GE(f.be, 1);
    sent(client_pkt(is6(), T, 45000, kTcpPort, syn));
    // 2. SYN-ACK
    const Seg synack{TCP_SYN | TCP_ACK, 5000, 1001, {}};
    reply(is6(), T, f, 45000, kTcpPort, synack);
    sent(from_backend(is6(), T, f.be, f.snat_port, synack));
    // 3. ACK, 4. request
    const Seg ack{TCP_ACK, 1001, 5001, {}};
    const Seg req{TCP_ACK | TCP_PSH, 1001, 5001, "GET /index.html HTTP/1.1\r\nHost: vip\r\n\r\n"};
    for (const Seg& s : {ack, req}) {
        forward_to(is6(), T, 45000, kTcpPort, s, f);
        sent(client_pkt(is6(), T, 45000, kTcpPort, s));
    }
    // 5. response (odd length: the checksum's padding byte is exercised)
    const Seg resp{TCP_ACK | TCP_PSH, 5001, 1040, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi!"};
    reply(is6(), T, f, 45000, kTcpPort, resp);
    sent(from_backend(is6(), T, f.be, f.snat_port, resp));
    // 6. FIN from the client
    const Seg cfin{TCP_FIN | TCP_ACK, 1040, 5040, {}};
    forward_to(is6(), T, 45000, kTcpPort, cfin, f);
    sent(client_pkt(is6(), T, 45000, kTcpPort, cfin));
    auto ct = flow(is6(), T, 45000, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, KXLB_CT_F_FIN_CLIENT);
    // 7. FIN from the backend closes the flow (both directions' entries agree)
    const Seg bfin{TCP_FIN | TCP_ACK, 5040, 1041, {}};
    reply(is6(), T, f, 45000, kTcpPort, bfin);
    sent(from_backend(is6(), T, f.be, f.snat_port, bfin));
    const std::uint8_t closed = KXLB_CT_F_FIN_CLIENT | KXLB_CT_F_FIN_BACKEND | KXLB_CT_F_CLOSED;
    ct = flow(is6(), T, 45000, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, closed);
    auto rev = nat(is6(), T, backend(is6(), f.be), f.snat_port);
    ASSERT_TRUE(rev);
    EXPECT_EQ(rev->flags, closed);
    // 8. the last ACK of a closed flow still reaches the backend
    const Seg last{TCP_ACK, 1041, 5041, {}};
    forward_to(is6(), T, 45000, kTcpPort, last, f);
    sent(client_pkt(is6(), T, 45000, kTcpPort, last));

    expect_reasons({{KXLB_R_FWD_TX, 8}});
    const auto sc = svc_counter(tcp_svc());
    EXPECT_EQ(sc.packets, 8u);
    EXPECT_EQ(sc.bytes, bytes);
    EXPECT_EQ(sc.new_flows, 1u);
    const auto bc = backend_counter(tcp_svc(), backend(is6(), f.be));
    EXPECT_EQ(bc.packets, 8u);
    EXPECT_EQ(bc.bytes, bytes);
}

TEST_P(LbGoldenFamily, UdpChecksumComputingToZeroIsSentAsFfff) {
    const std::uint8_t U = IPPROTO_UDP;
    const Hop f = forward(is6(), U, 46000, kUdpPort, Seg{0, 0, 0, "learn"});
    ASSERT_GE(f.be, 1);
    const std::size_t l4 = l4_off(is6());

    // Chooses the first two payload bytes so that the UDP checksum of `target` (the frame as it will leave)
    // computes to 0; the datapath must then send 0xffff (RFC 768).
    auto zero_sum_payload = [&](const std::function<Packet(const std::string&)>& target) {
        std::string payload = std::string(2, '\0') + "tail";
        const Packet t = target(payload);
        Bytes seg(t.bytes.begin() + static_cast<std::ptrdiff_t>(l4), t.bytes.end());
        seg[6] = seg[7] = 0;
        Bytes pseudo;
        const std::size_t alen = is6() ? 16 : 4, src = is6() ? 22 : 26;
        pseudo.insert(pseudo.end(), t.bytes.begin() + static_cast<std::ptrdiff_t>(src),
                      t.bytes.begin() + static_cast<std::ptrdiff_t>(src + 2 * alen));
        pseudo.insert(pseudo.end(),
                      {0, 17, static_cast<std::uint8_t>(seg.size() >> 8), static_cast<std::uint8_t>(seg.size())});
        const std::uint16_t s = ones_complement_sum(seg, ones_complement_sum(pseudo));
        const auto w = static_cast<std::uint16_t>(0xffff - s);
        payload[0] = static_cast<char>(w >> 8);
        payload[1] = static_cast<char>(w & 0xff);
        // Verify independently that the checksum of the target really computes to 0 (sum of all words 0xffff).
        seg[8] = static_cast<std::uint8_t>(w >> 8);
        seg[9] = static_cast<std::uint8_t>(w);
        EXPECT_EQ(ones_complement_sum(seg, ones_complement_sum(pseudo)), 0xffff);
        return payload;
    };

    // Forward direction.
    const std::string p1 = zero_sum_payload([&](const std::string& p) {
        return to_backend(is6(), U, f.be, f.snat_port, Seg{0, 0, 0, p});
    });
    const Packet in = client_pkt(is6(), U, 46000, kUdpPort, Seg{0, 0, 0, p1});
    EXPECT_NE(be16(in.bytes, l4 + 6), 0xffff);
    Bytes out = run_expect(in, XDP_TX);
    EXPECT_EQ(be16(out, l4 + 6), 0xffff) << hexdump(out);
    EXPECT_EQ(diff_frames(to_backend(is6(), U, f.be, f.snat_port, Seg{0, 0, 0, p1}).span(), out), "");
    EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));

    // Reply direction.
    const std::string p2 = zero_sum_payload([&](const std::string& p) {
        return to_client(is6(), U, 46000, kUdpPort, Seg{0, 0, 0, p});
    });
    const Packet rin = from_backend(is6(), U, f.be, f.snat_port, Seg{0, 0, 0, p2});
    EXPECT_NE(be16(rin.bytes, l4 + 6), 0xffff);
    Bytes rout = run_expect(rin, XDP_TX);
    EXPECT_EQ(be16(rout, l4 + 6), 0xffff) << hexdump(rout);
    EXPECT_EQ(diff_frames(to_client(is6(), U, 46000, kUdpPort, Seg{0, 0, 0, p2}).span(), rout), "");
    EXPECT_TRUE(checksum_errors(rout).empty()) << join(checksum_errors(rout));
    expect_reasons({{KXLB_R_FWD_TX, 3}});
}

TEST_P(LbGoldenFamily, TcpWithoutSynOrAckAndWithoutFlowIsDropped) {
    // A bare SYN opens a flow and an ACK segment recovers one; nothing else (SYN+ACK, resets, no ACK) does.
    for (std::uint8_t flags : {std::uint8_t(TCP_SYN | TCP_ACK), std::uint8_t(TCP_RST | TCP_ACK), TCP_RST,
                               std::uint8_t(TCP_FIN), std::uint8_t(0)})
        run_expect(client_pkt(is6(), IPPROTO_TCP, 47000, kTcpPort, Seg{flags, 1, 1, "x"}), XDP_DROP);
    expect_reasons({{KXLB_R_DROP_TCP_NO_FLOW, 5}});
    EXPECT_EQ(flow_count(), 0u);
    EXPECT_EQ(nat_count(), 0u);
    EXPECT_EQ(svc_counter(tcp_svc()).packets, 0u);
}

TEST_P(LbGoldenFamily, ClientRstClosesFlowAndNewSynGetsAnotherSnatPort) {
    const Hop f = forward(is6(), IPPROTO_TCP, 47001, kTcpPort, Seg{TCP_SYN, 10, 0, {}});
    ASSERT_GE(f.be, 1);
    reply(is6(), IPPROTO_TCP, f, 47001, kTcpPort, Seg{TCP_SYN | TCP_ACK, 20, 11, {}});
    forward_to(is6(), IPPROTO_TCP, 47001, kTcpPort, Seg{TCP_RST, 11, 0, {}}, f);
    auto ct = flow(is6(), IPPROTO_TCP, 47001, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, KXLB_CT_F_CLOSED);
    auto rev = nat(is6(), IPPROTO_TCP, backend(is6(), f.be), f.snat_port);
    ASSERT_TRUE(rev);
    EXPECT_EQ(rev->flags, KXLB_CT_F_CLOSED);

    // Same 5-tuple again: a new flow (same Maglev choice) on a different port: the old one is in TIME_WAIT.
    const Hop g = forward(is6(), IPPROTO_TCP, 47001, kTcpPort, Seg{TCP_SYN, 99, 0, {}});
    EXPECT_EQ(g.be, f.be);
    EXPECT_NE(g.snat_port, f.snat_port);
    ct = flow(is6(), IPPROTO_TCP, 47001, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, 0);
    EXPECT_EQ(ntohs(ct->snat_port), g.snat_port);
    EXPECT_EQ(nat_count(), 2u);  // the old reservation stays
    EXPECT_EQ(svc_counter(tcp_svc()).new_flows, 2u);
    expect_reasons({{KXLB_R_FWD_TX, 4}});
}

TEST_P(LbGoldenFamily, FinBothWaysClosesAndNewSynGetsAnotherSnatPort) {
    const Hop f = forward(is6(), IPPROTO_TCP, 47002, kTcpPort, Seg{TCP_SYN, 10, 0, {}});
    ASSERT_GE(f.be, 1);
    reply(is6(), IPPROTO_TCP, f, 47002, kTcpPort, Seg{TCP_FIN | TCP_ACK, 20, 11, {}});  // backend closes first
    auto ct = flow(is6(), IPPROTO_TCP, 47002, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, KXLB_CT_F_FIN_BACKEND);
    forward_to(is6(), IPPROTO_TCP, 47002, kTcpPort, Seg{TCP_FIN | TCP_ACK, 11, 21, {}}, f);
    ct = flow(is6(), IPPROTO_TCP, 47002, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, KXLB_CT_F_FIN_CLIENT | KXLB_CT_F_FIN_BACKEND | KXLB_CT_F_CLOSED);

    const Hop g = forward(is6(), IPPROTO_TCP, 47002, kTcpPort, Seg{TCP_SYN, 500, 0, {}});
    EXPECT_EQ(g.be, f.be);
    EXPECT_NE(g.snat_port, f.snat_port);
    // The new connection's replies use the new port; the old port still maps back to the client (TIME_WAIT).
    reply(is6(), IPPROTO_TCP, g, 47002, kTcpPort, Seg{TCP_SYN | TCP_ACK, 800, 501, {}});
    expect_reasons({{KXLB_R_FWD_TX, 5}});
}

TEST_P(LbGoldenFamily, BackendRstClosesFlow) {
    const Hop f = forward(is6(), IPPROTO_TCP, 47003, kTcpPort, Seg{TCP_SYN, 10, 0, {}});
    ASSERT_GE(f.be, 1);
    reply(is6(), IPPROTO_TCP, f, 47003, kTcpPort, Seg{TCP_RST | TCP_ACK, 0, 11, {}});
    auto ct = flow(is6(), IPPROTO_TCP, 47003, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, KXLB_CT_F_CLOSED);
    auto rev = nat(is6(), IPPROTO_TCP, backend(is6(), f.be), f.snat_port);
    ASSERT_TRUE(rev);
    EXPECT_EQ(rev->flags, KXLB_CT_F_CLOSED);
    expect_reasons({{KXLB_R_FWD_TX, 2}});
}

TEST_P(LbGoldenFamily, NoSnatAddressForFamilyPassesUntouched) {
    LbConfig cfg = default_lb_config();
    (is6() ? cfg.snat_v6 : cfg.snat_v4) = IpAddr{};
    ASSERT_TRUE(h_->set_config(cfg));
    expect_untouched_pass(client_pkt(is6(), IPPROTO_TCP, 47004, kTcpPort, Seg{TCP_SYN, 1, 0, {}}));
    expect_untouched_pass(client_pkt(is6(), IPPROTO_UDP, 47004, kUdpPort, Seg{0, 0, 0, "q"}));
    expect_reasons({{KXLB_R_PASS_NO_SNAT_ADDR, 2}});
    EXPECT_EQ(flow_count(), 0u);
    // The other family is unaffected.
    const Hop f = forward(!is6(), IPPROTO_UDP, 47004, kUdpPort, Seg{0, 0, 0, "q"});
    EXPECT_GE(f.be, 1);
}

TEST_P(LbGoldenFamily, BackendWithoutNeighbourPassesWithoutConntrack) {
    add_special_service(is6(), IPPROTO_TCP, is6() ? LbNet::kNoNeigh6 : LbNet::kNoNeigh4);
    add_special_service(is6(), IPPROTO_UDP, is6() ? LbNet::kNoNeigh6 : LbNet::kNoNeigh4);
    expect_untouched_pass(client_pkt(is6(), IPPROTO_TCP, 47005, kTcpSpecial, Seg{TCP_SYN, 1, 0, {}}));
    expect_untouched_pass(client_pkt(is6(), IPPROTO_UDP, 47005, kUdpSpecial, Seg{0, 0, 0, "q"}));
    expect_reasons({{KXLB_R_PASS_NO_NEIGH, 2}});
    EXPECT_EQ(flow_count(), 0u);
    EXPECT_EQ(nat_count(), 0u);  // no SNAT port was reserved either
    EXPECT_EQ(svc_counter(fe(is6(), IPPROTO_TCP, kTcpSpecial)).packets, 0u);
}

TEST_P(LbGoldenFamily, BackendWithoutRoutePassesFibFailed) {
    add_special_service(is6(), IPPROTO_TCP, is6() ? LbNet::kNoRoute6 : LbNet::kNoRoute4);
    add_special_service(is6(), IPPROTO_UDP, is6() ? LbNet::kNoRoute6 : LbNet::kNoRoute4);
    expect_untouched_pass(client_pkt(is6(), IPPROTO_TCP, 47006, kTcpSpecial, Seg{TCP_SYN, 1, 0, {}}));
    expect_untouched_pass(client_pkt(is6(), IPPROTO_UDP, 47006, kUdpSpecial, Seg{0, 0, 0, "q"}));
    expect_reasons({{KXLB_R_PASS_FIB_FAILED, 2}});
    EXPECT_EQ(flow_count(), 0u);
    EXPECT_EQ(nat_count(), 0u);
}

TEST_P(LbGoldenFamily, BackendBehindNicWithoutTxPortPassesUntouched) {
    add_special_service(is6(), IPPROTO_TCP, far(is6()));
    add_special_service(is6(), IPPROTO_UDP, far(is6()));
    expect_untouched_pass(client_pkt(is6(), IPPROTO_TCP, 47007, kTcpSpecial, Seg{TCP_SYN, 1, 0, {}}));
    expect_untouched_pass(client_pkt(is6(), IPPROTO_UDP, 47007, kUdpSpecial, Seg{0, 0, 0, "q"}));
    expect_reasons({{KXLB_R_PASS_NO_TX_PORT, 2}});
    EXPECT_EQ(flow_count(), 0u);
    EXPECT_EQ(nat_count(), 0u);
}

// DATAPATH BUG (see the report): the next hop cached in a flow is reused for frames of the flow that arrive on
// another NIC, and fib_xmit() then redirects to an ifindex that is not in kxlb_tx_ports: bpf_redirect_map(..., 0)
// fails and returns XDP_ABORTED (counted as fwd_redirect). A new flow arriving the same way passes with
// pass_no_tx_port; an established one must not do worse than that.
TEST_P(LbGoldenFamily, EstablishedFlowArrivingOnOtherNicIsNeverAborted) {
    ASSERT_TRUE(h_->add_tx_port_eth1());  // eth1 is a kxlb port; eth0 only ever uses XDP_TX
    const Hop f = forward(is6(), IPPROTO_TCP, 47008, kTcpPort, Seg{TCP_SYN, 1, 0, {}});
    ASSERT_GE(f.be, 1);
    // A new flow arriving on eth1 for a backend on eth0: not ours to redirect.
    Packet n = client_pkt(is6(), IPPROTO_TCP, 47009, kTcpPort, Seg{TCP_SYN, 1, 0, {}});
    expect_untouched_pass(n, 1);
    // The established flow's next segment arriving on eth1 (asymmetric path).
    const Packet in = client_pkt(is6(), IPPROTO_TCP, 47008, kTcpPort, Seg{TCP_ACK, 2, 2, "data"});
    auto r = h_->run(in, 1);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_NE(r->verdict, static_cast<std::uint32_t>(XDP_ABORTED)) << "XDP_ABORTED for an established flow";
    EXPECT_EQ(r->verdict, static_cast<std::uint32_t>(XDP_PASS));
    EXPECT_EQ(diff_frames(in.span(), r->data), "");
    expect_reasons({{KXLB_R_FWD_TX, 1}, {KXLB_R_PASS_NO_TX_PORT, 2}});
}

// DATAPATH BUG (see the report): same root cause when the agent removes a NIC from kxlb_tx_ports: flows whose
// cached next hop names it are redirected into a devmap slot that no longer exists -> XDP_ABORTED, and the
// once-a-second refresh keeps the stale next hop ("keep the last good next hop") when the lookup now fails.
TEST_P(LbGoldenFamily, FlowsThroughRemovedTxPortAreNeverAborted) {
    add_special_service(is6(), IPPROTO_UDP, far(is6()));
    ASSERT_TRUE(h_->add_tx_port_eth1());
    const Packet q = client_pkt(is6(), IPPROTO_UDP, 47010, kUdpSpecial, Seg{0, 0, 0, "q"});
    run_expect(q, XDP_REDIRECT);
    ASSERT_TRUE(h_->remove_tx_port(h_->eth1()));
    auto r = h_->run(q);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_NE(r->verdict, static_cast<std::uint32_t>(XDP_ABORTED)) << "XDP_ABORTED after the TX port went away";
    EXPECT_EQ(r->verdict, static_cast<std::uint32_t>(XDP_PASS));
    EXPECT_EQ(diff_frames(q.span(), r->data), "");
    expect_reasons({{KXLB_R_FWD_REDIRECT, 1}, {KXLB_R_PASS_NO_TX_PORT, 1}});
}

// ---- Issue 5: recovery of evicted flows, source ranges, session affinity ----

// A flow whose conntrack and reverse-NAT entries are both gone (flush, LRU eviction) continues on the same backend
// and SNAT port: the backend sees the same 4-tuple, so the connection survives.
TEST_P(LbGoldenFamily, FlushedFlowIsRecoveredOntoItsBackendAndSnatPort) {
    const std::uint8_t T = IPPROTO_TCP;
    const Hop f = forward(is6(), T, 47100, kTcpPort, Seg{TCP_SYN, 10, 0, {}});
    ASSERT_GE(f.be, 1);
    auto removed = h_->conntrack().flush();
    ASSERT_TRUE(removed);
    EXPECT_EQ(*removed, 2u);
    forward_to(is6(), T, 47100, kTcpPort, Seg{TCP_ACK | TCP_PSH, 11, 21, "data"}, f);
    auto ct = flow(is6(), T, 47100, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ntohs(ct->snat_port), f.snat_port);
    reply(is6(), T, f, 47100, kTcpPort, Seg{TCP_ACK, 21, 15, "answer"});
    expect_reasons({{KXLB_R_FWD_TX, 3}});
    EXPECT_EQ(svc_counter(tcp_svc()).new_flows, 2u);
}

// Only the forward entry evicted: its reverse entry still names this flow and is reused.
TEST_P(LbGoldenFamily, EvictedForwardEntryReusesItsReverseEntry) {
    const std::uint8_t T = IPPROTO_TCP;
    const Hop f = forward(is6(), T, 47101, kTcpPort, Seg{TCP_SYN, 10, 0, {}});
    ASSERT_GE(f.be, 1);
    const LbMapFds fds = h_->program().lb_map_fds();
    auto flows = h_->conntrack().flows();
    ASSERT_TRUE(flows);
    ASSERT_EQ(flows->size(), 1u);
    ASSERT_EQ(bpf_map_delete_elem(fds.ct, &flows->front().first), 0);
    forward_to(is6(), T, 47101, kTcpPort, Seg{TCP_ACK, 11, 21, {}}, f);
    EXPECT_EQ(flow_count(), 1u);
    EXPECT_EQ(nat_count(), 1u);
    expect_reasons({{KXLB_R_FWD_TX, 2}});
}

// The port the flow most likely had now belongs to another flow: the segment is dropped, the owner is untouched.
TEST_P(LbGoldenFamily, RecoveryNeverTakesAnotherFlowsPort) {
    const std::uint8_t T = IPPROTO_TCP;
    const Hop f = forward(is6(), T, 47102, kTcpPort, Seg{TCP_SYN, 10, 0, {}});
    ASSERT_GE(f.be, 1);
    const LbMapFds fds = h_->program().lb_map_fds();
    auto flows = h_->conntrack().flows();
    auto nats = h_->conntrack().nat_entries();
    ASSERT_TRUE(flows && nats);
    ASSERT_EQ(flows->size(), 1u);
    ASSERT_EQ(nats->size(), 1u);
    ASSERT_EQ(bpf_map_delete_elem(fds.ct, &flows->front().first), 0);
    kxlb_nat_value other = nats->front().second;
    other.client_port = htons(9);  // as if another client connection held the port
    ASSERT_EQ(bpf_map_update_elem(fds.nat, &nats->front().first, &other, BPF_EXIST), 0);
    const Packet ack = client_pkt(is6(), T, 47102, kTcpPort, Seg{TCP_ACK, 11, 21, {}});
    run_expect(ack, XDP_DROP);
    expect_reasons({{KXLB_R_FWD_TX, 1}, {KXLB_R_DROP_TCP_NO_FLOW, 1}});
    auto after = nat(is6(), T, backend(is6(), f.be), f.snat_port);
    ASSERT_TRUE(after);
    EXPECT_EQ(after->client_port, htons(9));
    EXPECT_EQ(flow_count(), 0u);
}

// loadBalancerSourceRanges: clients inside a range open flows, others are dropped and counted, nothing tracked.
TEST_P(LbGoldenFamily, SourceRangesAllowAndDeny) {
    const std::uint8_t T = IPPROTO_TCP;
    ServiceSpec spec = make_service(vip(is6()), kTcpPort, T, {backend(is6(), 1), backend(is6(), 2)}, kBackendPort);
    const char* inside = is6() ? "fd00::/112" : "10.0.0.0/25";  // holds the client (…100)
    const char* outside = is6() ? "fd07::/16" : "192.168.0.0/16";
    const char* other_family = is6() ? "10.0.0.0/8" : "fd00::/8";
    auto cidr = [](const std::string& t) {
        const auto slash = t.find('/');
        return Cidr{IpAddr::parse(t.substr(0, slash)).value(),
                    static_cast<std::uint8_t>(std::stoi(t.substr(slash + 1)))};
    };
    spec.source_ranges = {cidr(outside), cidr(other_family)};
    std::sort(spec.source_ranges.begin(), spec.source_ranges.end());
    ASSERT_TRUE(h_->lb().upsert_service(spec));
    const Packet syn = client_pkt(is6(), T, 47200, kTcpPort, Seg{TCP_SYN, 1, 0, {}});
    Bytes out = run_expect(syn, XDP_DROP);
    EXPECT_EQ(diff_frames(syn.span(), out), "") << "a denied frame is dropped as it came";
    expect_reasons({{KXLB_R_DROP_SOURCE_RANGE, 1}});
    EXPECT_EQ(flow_count(), 0u);
    EXPECT_EQ(nat_count(), 0u);
    // Also for a mid-connection segment (no recovery around the allow-list).
    run_expect(client_pkt(is6(), T, 47200, kTcpPort, Seg{TCP_ACK, 2, 2, {}}), XDP_DROP);
    expect_reasons({{KXLB_R_DROP_SOURCE_RANGE, 2}});

    spec.source_ranges.push_back(cidr(inside));
    std::sort(spec.source_ranges.begin(), spec.source_ranges.end());
    ASSERT_TRUE(h_->lb().upsert_service(spec));
    const Hop f = forward(is6(), T, 47200, kTcpPort, Seg{TCP_SYN, 1, 0, {}});
    EXPECT_GE(f.be, 1);
    expect_reasons({{KXLB_R_DROP_SOURCE_RANGE, 2}, {KXLB_R_FWD_TX, 1}});

    // Ranges removed: everyone is allowed again, and no LPM entry is left behind.
    spec.source_ranges.clear();
    ASSERT_TRUE(h_->lb().upsert_service(spec));
    forward(is6(), T, 47201, kTcpPort, Seg{TCP_SYN, 1, 0, {}});
    kxlb_src_range_key k{};
    const LbMapFds fds = h_->program().lb_map_fds();
    EXPECT_NE(bpf_map_get_next_key(fds.source_ranges, nullptr, &k), 0) << "stale source range entries";
}

// sessionAffinity: ClientIP — every new connection of a client lands on one backend, across Maglev table changes,
// until that backend drains.
TEST_P(LbGoldenFamily, SessionAffinityKeepsTheClientOnOneBackend) {
    const std::uint8_t T = IPPROTO_TCP;
    ServiceSpec spec =
        make_service(vip(is6()), kTcpPort, T, {backend(is6(), 1), backend(is6(), 2), backend(is6(), 3)}, kBackendPort);
    spec.affinity_timeout_s = 3600;
    ASSERT_TRUE(h_->lb().upsert_service(spec));
    const Hop first = forward(is6(), T, 47300, kTcpPort, Seg{TCP_SYN, 1, 0, {}});
    ASSERT_GE(first.be, 1);
    for (std::uint16_t sport = 47301; sport < 47321; ++sport)
        EXPECT_EQ(forward(is6(), T, sport, kTcpPort, Seg{TCP_SYN, 1, 0, {}}).be, first.be) << sport;
    // Another backend leaves and a new one arrives: the table changes, the client's backend does not.
    std::vector<std::string> addrs{backend(is6(), first.be)};
    for (int i = 1; i <= 3; ++i)
        if (i != first.be && addrs.size() < 2) addrs.push_back(backend(is6(), i));
    spec.backends = make_service(vip(is6()), kTcpPort, T, addrs, kBackendPort).backends;
    spec.backends.push_back(make_service(vip(is6()), kTcpPort, T, {backend(is6(), 4)}, kBackendPort).backends[0]);
    ASSERT_TRUE(h_->lb().upsert_service(spec));
    for (std::uint16_t sport = 47330; sport < 47340; ++sport)
        EXPECT_EQ(forward(is6(), T, sport, kTcpPort, Seg{TCP_SYN, 1, 0, {}}).be, first.be) << sport;
    // Its backend drains: new connections go elsewhere (and stick there), the old flow stays.
    for (auto& b : spec.backends)
        if (b.addr == IpAddr::parse(backend(is6(), first.be)).value()) b.draining = true;
    ASSERT_TRUE(h_->lb().upsert_service(spec));
    const Hop moved = forward(is6(), T, 47350, kTcpPort, Seg{TCP_SYN, 1, 0, {}});
    EXPECT_NE(moved.be, first.be);
    for (std::uint16_t sport = 47351; sport < 47356; ++sport)
        EXPECT_EQ(forward(is6(), T, sport, kTcpPort, Seg{TCP_SYN, 1, 0, {}}).be, moved.be) << sport;
    forward_to(is6(), T, 47300, kTcpPort, Seg{TCP_ACK, 2, 2, {}}, first);

    // Without affinity the same 20 connections spread over the backends.
    spec.affinity_timeout_s = 0;
    for (auto& b : spec.backends) b.draining = false;
    ASSERT_TRUE(h_->lb().upsert_service(spec));
    std::set<int> seen;
    for (std::uint16_t sport = 47400; sport < 47420; ++sport)
        seen.insert(forward(is6(), T, sport, kTcpPort, Seg{TCP_SYN, 1, 0, {}}).be);
    EXPECT_GE(seen.size(), 2u) << "control: without affinity flows must spread";
}

// The affinity entry expires after the timeout without new connections; the next one is hashed again and
// remembered anew.
TEST_P(LbGoldenFamily, SessionAffinityExpires) {
    const std::uint8_t T = IPPROTO_TCP;
    ServiceSpec spec =
        make_service(vip(is6()), kTcpPort, T, {backend(is6(), 1), backend(is6(), 2), backend(is6(), 3)}, kBackendPort);
    spec.affinity_timeout_s = 1;
    ASSERT_TRUE(h_->lb().upsert_service(spec));
    const Hop first = forward(is6(), T, 47500, kTcpPort, Seg{TCP_SYN, 1, 0, {}});
    ASSERT_GE(first.be, 1);
    const LbMapFds fds = h_->program().lb_map_fds();
    kxlb_affinity_key k{};
    kxlb_affinity_value v{};
    ASSERT_EQ(bpf_map_get_next_key(fds.affinity, nullptr, &k), 0);
    ASSERT_EQ(bpf_map_lookup_elem(fds.affinity, &k, &v), 0);
    const std::uint64_t stamp = v.last_seen_ns;
    EXPECT_EQ(v.backend_id, *backend_id(tcp_svc(), backend(is6(), first.be)));
    // Expired: pretend the last connection was 2 s ago. The next connection is hashed (a fresh 5-tuple may pick any
    // backend) and the entry is rewritten with a fresh time.
    v.last_seen_ns = stamp - 2'000'000'000ULL;
    ASSERT_EQ(bpf_map_update_elem(fds.affinity, &k, &v, BPF_EXIST), 0);
    const Hop next = forward(is6(), T, 47501, kTcpPort, Seg{TCP_SYN, 1, 0, {}});
    ASSERT_GE(next.be, 1);
    kxlb_affinity_value after{};
    ASSERT_EQ(bpf_map_lookup_elem(fds.affinity, &k, &after), 0);
    EXPECT_GE(after.last_seen_ns, stamp);
    EXPECT_EQ(after.backend_id, *backend_id(tcp_svc(), backend(is6(), next.be)));
    // Fresh again: sticks to the new pick.
    EXPECT_EQ(forward(is6(), T, 47502, kTcpPort, Seg{TCP_SYN, 1, 0, {}}).be, next.be);
}

INSTANTIATE_TEST_SUITE_P(LbGolden, LbGoldenFamily, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "v6" : "v4"; });

// ---- New-connection flood ----

// Conntrack holds kFloodCt flows; the datapath evicts the least recently used entries (LRU maps) rather than
// refusing new flows. A flood of 100,000 SYNs from distinct sources must not disturb established flows: an
// active one keeps its backend and SNAT port both ways, and an idle one that was evicted is recovered onto its
// backend and SNAT port by its next ACK.
class LbFlood : public LbGolden {
protected:
    static constexpr std::uint32_t kFloodCt = 16384;
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        LbConfig cfg = default_lb_config();
        cfg.snat_port_lo = 1024;  // 3 backends x 64,512 ports: the LRU, not the port space, bounds the flood
        cfg.snat_port_hi = 65535;
        snat_lo_ = cfg.snat_port_lo;
        XdpLbLoadOptions load;
        load.ct_entries = kFloodCt;
        auto h = LbHarness::create(cfg, {}, load);
        ASSERT_TRUE(h) << h.error().message;
        h_ = std::move(h).value();
        ASSERT_TRUE(program_default_services(*h_));
    }
};

TEST_F(LbFlood, HundredThousandSynSourcesDoNotDisturbEstablishedFlows) {
    const std::uint8_t T = IPPROTO_TCP;
    for (bool is6 : {false, true}) {
        SCOPED_TRACE(is6 ? "v6" : "v4");
        const Hop active = forward(is6, T, 47600, kTcpPort, Seg{TCP_SYN, 1, 0, {}});
        std::vector<Hop> idle;
        for (std::uint16_t sport = 47700; sport < 47750; ++sport)
            idle.push_back(forward(is6, T, sport, kTcpPort, Seg{TCP_SYN, 1, 0, {}}));
        ASSERT_GE(active.be, 1);
        const auto before = h_->reason_packets();
        constexpr std::uint32_t kSyns = 100000, kEvery = 1000;
        std::uint64_t wrong = 0, active_ok = 0;
        std::string first_wrong;
        const Packet act_fwd = client_pkt(is6, T, 47600, kTcpPort, Seg{TCP_ACK, 2, 2, "x"});
        const Packet act_want = to_backend(is6, T, active.be, active.snat_port, Seg{TCP_ACK, 2, 2, "x"});
        const Packet act_rep = from_backend(is6, T, active.be, active.snat_port, Seg{TCP_ACK, 2, 3, "y"});
        const Packet rep_want = to_client(is6, T, 47600, kTcpPort, Seg{TCP_ACK, 2, 3, "y"});
        h_->in_node([&] {
            for (std::uint32_t i = 0; i < kSyns; ++i) {
                char v6src[40];
                std::snprintf(v6src, sizeof(v6src), "fd50::%x:%x", i / 65536, i % 65536);
                const std::string src = is6 ? std::string(v6src)
                                            : "10." + std::to_string(50 + i / 62500) + "." +
                                                  std::to_string(i / 250 % 250) + "." + std::to_string(i % 250 + 1);
                const Packet syn =
                    frame(LbNet::kClientMac, LbNet::kNodeMac0, src, vip(is6), T,
                          static_cast<std::uint16_t>(1024 + i % 60000), kTcpPort, Seg{TCP_SYN, 1, 0, {}});
                auto r = h_->run_in_node(syn.span());
                if (!r || r->verdict != XDP_TX) {
                    if (wrong++ == 0) first_wrong = "SYN #" + std::to_string(i) + " from " + src;
                }
                if (i % kEvery != kEvery - 1) continue;
                auto f = h_->run_in_node(act_fwd.span());
                auto b = h_->run_in_node(act_rep.span());
                if (f && b && f->verdict == XDP_TX && b->verdict == XDP_TX &&
                    diff_frames(act_want.span(), f->data) == "" && diff_frames(rep_want.span(), b->data) == "")
                    ++active_ok;
            }
        });
        EXPECT_EQ(wrong, 0u) << first_wrong;
        EXPECT_EQ(active_ok, kSyns / kEvery) << "the active flow left its backend or SNAT port during the flood";
        const auto after = h_->reason_packets();
        EXPECT_EQ(after[KXLB_R_FWD_TX] - before[KXLB_R_FWD_TX], kSyns + 2 * (kSyns / kEvery));
        for (std::size_t r = 0; r < kReasonCount; ++r)
            if (r != KXLB_R_FWD_TX) {
                EXPECT_EQ(after[r], before[r]) << reason_name(static_cast<kxlb_reason>(r));
            }
        EXPECT_LE(flow_count(), kFloodCt);
        EXPECT_LE(nat_count(), kFloodCt);
        // Idle flows' next segments: each is recovered onto its backend and SNAT port (and its replies translate
        // again), unless that port now belongs to a flood flow toward the same backend (~1 in 12 here): then it is
        // dropped, never sent elsewhere. Deterministic for these addresses and the harness's hash seed.
        int recovered = 0;
        for (std::size_t k = 0; k < idle.size(); ++k) {
            const auto sport = static_cast<std::uint16_t>(47700 + k);
            EXPECT_FALSE(flow(is6, T, sport, kTcpPort)) << "control: idle flows should have been evicted";
            const Seg late{TCP_ACK, 2, 2, "late"};
            auto r = h_->run(client_pkt(is6, T, sport, kTcpPort, late));
            ASSERT_TRUE(r);
            if (r->verdict == XDP_DROP) continue;
            EXPECT_EQ(r->verdict, static_cast<std::uint32_t>(XDP_TX));
            EXPECT_EQ(diff_frames(to_backend(is6, T, idle[k].be, idle[k].snat_port, late).span(), r->data), "");
            reply(is6, T, idle[k], sport, kTcpPort, Seg{TCP_ACK, 2, 6, "ok"});
            ++recovered;
        }
        EXPECT_GE(recovered, 40) << "of " << idle.size() << " idle flows";
        std::printf("[ flood    ] %s: active flow kept its backend and SNAT port; %d of %zu idle flows recovered\n",
                    is6 ? "v6" : "v4", recovered, idle.size());
    }
}

// ---- Single cases ----

TEST_F(LbGolden, Udp4ZeroChecksumStaysZeroBothWays) {
    const Seg q{0, 0, 0, "no checksum please"};
    const Packet in =
        frame(LbNet::kClientMac, LbNet::kNodeMac0, LbNet::kClient4, LbNet::kVip4, IPPROTO_UDP, 48000, kUdpPort, q, 0);
    ASSERT_EQ(be16(in.bytes, 40), 0);
    Bytes out = run_expect(in, XDP_TX);
    const int be = backend_index(out);
    ASSERT_GE(be, 1);
    const std::uint16_t snat_port = be16(out, 34);
    const Packet want = frame(LbNet::kNodeMac0, LbNet::backend_mac(be), LbNet::kNode4, LbNet::backend4(be), IPPROTO_UDP,
                              snat_port, kBackendPort, q, 0);
    EXPECT_EQ(diff_frames(want.span(), out), "");
    EXPECT_EQ(be16(out, 40), 0);
    EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));

    const Seg a{0, 0, 0, "none here either"};
    const Packet rin = frame(LbNet::backend_mac(be), LbNet::kNodeMac0, LbNet::backend4(be), LbNet::kNode4, IPPROTO_UDP,
                             kBackendPort, snat_port, a, 0);
    Bytes rout = run_expect(rin, XDP_TX);
    const Packet rwant =
        frame(LbNet::kNodeMac0, LbNet::kClientMac, LbNet::kVip4, LbNet::kClient4, IPPROTO_UDP, kUdpPort, 48000, a, 0);
    EXPECT_EQ(diff_frames(rwant.span(), rout), "");
    EXPECT_EQ(be16(rout, 40), 0);
    EXPECT_TRUE(checksum_errors(rout).empty()) << join(checksum_errors(rout));
    expect_reasons({{KXLB_R_FWD_TX, 2}});
}

TEST_F(LbGolden, OnePortSnatRangeIsExhaustedDuringTimeWaitThenReusable) {
    LbConfig cfg = default_lb_config();
    cfg.snat_port_lo = cfg.snat_port_hi = 61500;
    cfg.tcp_timewait_s = 1;
    ASSERT_TRUE(h_->set_config(cfg));
    // One backend, so every flow goes to the same backend and competes for the one port.
    ASSERT_TRUE(
        h_->lb().upsert_service(make_service(LbNet::kVip4, 90, IPPROTO_TCP, {LbNet::backend4(2)}, kBackendPort)));
    const Frontend svc = fe(false, IPPROTO_TCP, 90);
    const Hop a = forward(false, IPPROTO_TCP, 49000, 90, Seg{TCP_SYN, 1, 0, {}});
    EXPECT_EQ(a.be, 2);
    EXPECT_EQ(a.snat_port, 61500);
    // While flow A is open, and then while its port sits in TIME_WAIT, flow B gets no port.
    const Packet b_syn = client_pkt(false, IPPROTO_TCP, 49001, 90, Seg{TCP_SYN, 1, 0, {}});
    run_expect(b_syn, XDP_DROP);
    forward_to(false, IPPROTO_TCP, 49000, 90, Seg{TCP_RST, 2, 0, {}}, a);
    const auto closed_at = std::chrono::steady_clock::now();
    run_expect(b_syn, XDP_DROP);
    expect_reasons({{KXLB_R_FWD_TX, 2}, {KXLB_R_DROP_SNAT_EXHAUSTED, 2}});
    EXPECT_FALSE(flow(false, IPPROTO_TCP, 49001, 90).has_value());
    EXPECT_EQ(svc_counter(svc).new_flows, 1u);

    // After tcp_timewait_s the reservation lapses and B gets the port.
    std::this_thread::sleep_until(closed_at + std::chrono::milliseconds(1200));
    const Hop b = forward(false, IPPROTO_TCP, 49001, 90, Seg{TCP_SYN, 1, 0, {}});
    EXPECT_EQ(b.be, 2);
    EXPECT_EQ(b.snat_port, 61500);
    auto rev = nat(false, IPPROTO_TCP, LbNet::backend4(2), 61500);
    ASSERT_TRUE(rev);
    EXPECT_EQ(ntohs(rev->client_port), 49001);
    EXPECT_EQ(rev->flags, 0);
    EXPECT_EQ(svc_counter(svc).new_flows, 2u);
    expect_reasons({{KXLB_R_FWD_TX, 3}, {KXLB_R_DROP_SNAT_EXHAUSTED, 2}});
}

// DATAPATH BUG (see the report): when a closed flow's SNAT port is given to another client after TIME_WAIT, the
// old client's forward entry still names that port, so its late segments are translated onto the new
// connection's 5-tuple toward the backend.
TEST_F(LbGolden, ClosedFlowDoesNotUseItsSnatPortOnceReassigned) {
    LbConfig cfg = default_lb_config();
    cfg.snat_port_lo = cfg.snat_port_hi = 61500;
    cfg.tcp_timewait_s = 1;
    ASSERT_TRUE(h_->set_config(cfg));
    ASSERT_TRUE(
        h_->lb().upsert_service(make_service(LbNet::kVip4, 90, IPPROTO_TCP, {LbNet::backend4(2)}, kBackendPort)));
    const Hop a = forward(false, IPPROTO_TCP, 49100, 90, Seg{TCP_SYN, 1, 0, {}});
    forward_to(false, IPPROTO_TCP, 49100, 90, Seg{TCP_RST, 2, 0, {}}, a);
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    const Hop b = forward(false, IPPROTO_TCP, 49101, 90, Seg{TCP_SYN, 1, 0, {}});
    ASSERT_EQ(b.snat_port, a.snat_port);
    // A late segment of the old connection: it must not reach the backend as node:61500 (B's connection).
    const Packet late = client_pkt(false, IPPROTO_TCP, 49100, 90, Seg{TCP_ACK, 2, 2, "late"});
    auto r = h_->run(late);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_NE(r->verdict, static_cast<std::uint32_t>(XDP_TX))
        << "client 49100's segment was translated onto the SNAT port now owned by client 49101:\n"
        << hexdump(r->data);
    // B's reservation is untouched.
    auto rev = nat(false, IPPROTO_TCP, LbNet::backend4(2), 61500);
    ASSERT_TRUE(rev);
    EXPECT_EQ(ntohs(rev->client_port), 49101);
}

// DATAPATH BUG (see the report): lb_reverse() mirrors FIN/RST flags from a reverse entry into the forward entry
// of the client 5-tuple without checking that the forward entry still belongs to it. A stray FIN from the old
// connection of a reused 5-tuple marks the new, live flow closed (a retransmitted SYN then moves it to yet
// another SNAT port).
TEST_F(LbGolden, StrayFinOfOldConnectionDoesNotCloseTheNewFlow) {
    const Hop a = forward(false, IPPROTO_TCP, 49200, kTcpPort, Seg{TCP_SYN, 1, 0, {}});
    ASSERT_GE(a.be, 1);
    forward_to(false, IPPROTO_TCP, 49200, kTcpPort, Seg{TCP_RST, 2, 0, {}}, a);
    const Hop b = forward(false, IPPROTO_TCP, 49200, kTcpPort, Seg{TCP_SYN, 100, 0, {}});
    ASSERT_NE(b.snat_port, a.snat_port);
    // The backend's old connection (to the old port) sends a FIN: translated for the client, fine...
    reply(false, IPPROTO_TCP, a, 49200, kTcpPort, Seg{TCP_FIN | TCP_ACK, 50, 2, {}});
    // ...but the new flow must stay open.
    auto ct = flow(false, IPPROTO_TCP, 49200, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ntohs(ct->snat_port), b.snat_port);
    EXPECT_EQ(ct->flags, 0) << "the new flow was marked closed by the old connection's FIN";
    // A retransmitted SYN of the new connection keeps its port.
    forward_to(false, IPPROTO_TCP, 49200, kTcpPort, Seg{TCP_SYN, 100, 0, {}}, b);
}

TEST_F(LbGolden, UdpFlowIdleLongerThanTimeoutIsNewFlow) {
    LbConfig cfg = default_lb_config();
    cfg.udp_timeout_s = 1;
    ASSERT_TRUE(h_->set_config(cfg));
    const Frontend svc = fe(false, IPPROTO_UDP, kUdpPort);
    const Hop f = forward(false, IPPROTO_UDP, 48100, kUdpPort, Seg{0, 0, 0, "one"});
    ASSERT_GE(f.be, 1);
    const auto t0 = std::chrono::steady_clock::now();
    forward_to(false, IPPROTO_UDP, 48100, kUdpPort, Seg{0, 0, 0, "two"}, f);
    EXPECT_EQ(svc_counter(svc).new_flows, 1u);
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(1200));
    // Same Maglev choice; the expired reservation of the old port is taken over again.
    const Hop g = forward(false, IPPROTO_UDP, 48100, kUdpPort, Seg{0, 0, 0, "three"});
    EXPECT_EQ(g.be, f.be);
    EXPECT_EQ(g.snat_port, f.snat_port);
    EXPECT_EQ(svc_counter(svc).new_flows, 2u);
    EXPECT_EQ(backend_counter(svc, LbNet::backend4(f.be)).new_flows, 2u);
    EXPECT_EQ(svc_counter(svc).packets, 3u);
    expect_reasons({{KXLB_R_FWD_TX, 3}});
}

TEST_F(LbGolden, AllBackendsDrainingKeepFlowsAndAnswerNewOnesUnreachable) {
    const Hop f = forward(true, IPPROTO_UDP, 48200, kUdpPort, Seg{0, 0, 0, "q"});
    ASSERT_GE(f.be, 1);
    auto spec = make_service(LbNet::kVip6, kUdpPort, IPPROTO_UDP,
                             {LbNet::backend6(1), LbNet::backend6(2), LbNet::backend6(3)}, kBackendPort);
    for (auto& b : spec.backends) b.draining = true;
    ASSERT_TRUE(h_->lb().upsert_service(spec));
    forward_to(true, IPPROTO_UDP, 48200, kUdpPort, Seg{0, 0, 0, "still here"}, f);
    const Packet n = client_pkt(true, IPPROTO_UDP, 48201, kUdpPort, Seg{0, 0, 0, "new"});
    Bytes out = run_expect(n, XDP_TX);
    const Packet want = PacketBuilder()
                            .eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac))
                            .ipv6(LbNet::kVip6, LbNet::kClient6)
                            .icmp(1, 4)
                            .payload(n.span_from(14).subspan(0, 48))
                            .build();
    EXPECT_EQ(diff_frames(want.span(), out), "");
    EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
    expect_reasons({{KXLB_R_FWD_TX, 2}, {KXLB_R_TX_UNREACH_NO_BACKEND, 1}});
}

// DATAPATH BUG (see the report): only client -> frontend packets keep a UDP flow alive (kxlb_ct.last_seen), while
// the backend's replies refresh only the reverse entry. A flow whose traffic is mostly replies looks idle, its
// next client datagram is a "new flow", and as the reverse entry is still live the new flow gets another SNAT
// port: the backend now sees the client from a second node port while it still sends to the first.
TEST_F(LbGolden, UdpFlowWithLiveRepliesIsNotIdle) {
    LbConfig cfg = default_lb_config();
    cfg.udp_timeout_s = 1;
    ASSERT_TRUE(h_->set_config(cfg));
    const Frontend svc = fe(false, IPPROTO_UDP, kUdpPort);
    const auto t0 = std::chrono::steady_clock::now();
    const Hop f = forward(false, IPPROTO_UDP, 48400, kUdpPort, Seg{0, 0, 0, "subscribe"});
    ASSERT_GE(f.be, 1);
    // The backend streams: replies well inside the timeout of each other, the last one just now.
    for (int i = 1; i <= 3; ++i) {
        std::this_thread::sleep_until(t0 + std::chrono::milliseconds(400 * i));
        reply(false, IPPROTO_UDP, f, 48400, kUdpPort, Seg{0, 0, 0, "update " + std::to_string(i)});
    }
    std::this_thread::sleep_until(t0 + std::chrono::milliseconds(1300));
    forward_to(false, IPPROTO_UDP, 48400, kUdpPort, Seg{0, 0, 0, "ack"}, f);
    EXPECT_EQ(svc_counter(svc).new_flows, 1u) << "a flow with replies 100 ms ago was treated as idle";
    EXPECT_EQ(nat_count(), 1u);
}

// A Maglev slot naming a backend whose entry is gone (the agent's ordering prevents it; a corrupted or
// half-restored map does not) drops new flows that land on it instead of sending them anywhere.
TEST_F(LbGolden, TableSlotNamingMissingBackendIsDropped) {
    const Frontend svc = fe(false, IPPROTO_UDP, kUdpPort);
    auto gone = backend_id(svc, LbNet::backend4(2));
    ASSERT_TRUE(gone.has_value());
    const kxlb_backend empty{};
    ASSERT_EQ(bpf_map_update_elem(h_->program().lb_map_fds().backends, &*gone, &empty, BPF_ANY), 0);
    std::uint64_t dropped = 0, sent = 0;
    for (std::uint16_t sport = 30000; sport < 30060; ++sport) {
        const Packet q = client_pkt(false, IPPROTO_UDP, sport, kUdpPort, Seg{0, 0, 0, "q"});
        auto r = h_->run(q);
        ASSERT_TRUE(r);
        if (r->verdict == XDP_DROP) {
            ++dropped;
            continue;
        }
        ASSERT_EQ(r->verdict, static_cast<std::uint32_t>(XDP_TX));
        const int be = backend_index(r->data);
        EXPECT_TRUE(be == 1 || be == 3) << "sent to backend " << be;
        EXPECT_EQ(diff_frames(to_backend(false, IPPROTO_UDP, be, be16(r->data, 34), Seg{0, 0, 0, "q"}).span(), r->data),
                  "");
        ++sent;
    }
    EXPECT_GT(dropped, 0u);
    EXPECT_GT(sent, 0u);
    expect_reasons({{KXLB_R_FWD_TX, sent}, {KXLB_R_DROP_BACKEND_MISSING, dropped}});
    EXPECT_EQ(flow_count(), sent);
    EXPECT_EQ(nat_count(), sent);
}

TEST_F(LbGolden, CountersAddUpAfterMixedBatch) {
    std::vector<Packet> sent;
    std::map<kxlb_reason, std::uint64_t> want;
    auto run = [&](const Packet& p, std::uint32_t verdict, kxlb_reason r) {
        Bytes out = run_expect(p, verdict);
        sent.push_back(p);
        ++want[r];
        return out;
    };
    const Seg syn{TCP_SYN, 1, 0, {}}, ack{TCP_ACK, 2, 2, "payload"};
    // v4 TCP: SYN, data, reply.
    Bytes o = run(client_pkt(false, IPPROTO_TCP, 50000, kTcpPort, syn), XDP_TX, KXLB_R_FWD_TX);
    const Hop t4{backend_index(o), be16(o, 34), o};
    ASSERT_GE(t4.be, 1);
    run(client_pkt(false, IPPROTO_TCP, 50000, kTcpPort, ack), XDP_TX, KXLB_R_FWD_TX);
    run(from_backend(false, IPPROTO_TCP, t4.be, t4.snat_port, Seg{TCP_SYN | TCP_ACK, 9, 2, {}}), XDP_TX, KXLB_R_FWD_TX);
    // v6 UDP: query and answer; v4 UDP and v6 TCP: one packet each.
    o = run(client_pkt(true, IPPROTO_UDP, 50001, kUdpPort, Seg{0, 0, 0, "q6"}), XDP_TX, KXLB_R_FWD_TX);
    const Hop u6{backend_index(o), be16(o, 54), o};
    ASSERT_GE(u6.be, 1);
    run(from_backend(true, IPPROTO_UDP, u6.be, u6.snat_port, Seg{0, 0, 0, "answer6"}), XDP_TX, KXLB_R_FWD_TX);
    o = run(client_pkt(false, IPPROTO_UDP, 50002, kUdpPort, Seg{0, 0, 0, "q4"}), XDP_TX, KXLB_R_FWD_TX);
    const int u4_be = backend_index(o);
    o = run(client_pkt(true, IPPROTO_TCP, 50003, kTcpPort, syn), XDP_TX, KXLB_R_FWD_TX);
    const int t6_be = backend_index(o);
    // Everything else.
    run(PacketBuilder()
            .eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0))
            .eth_type(0x0806)
            .payload(Bytes(28, 1))
            .build(),
        XDP_PASS, KXLB_R_PASS_NOT_IP);
    run(from_client(LbNet::kClient4, LbNet::kVip4).icmp(8, 0).build(), XDP_PASS, KXLB_R_PASS_VIP_OTHER_L4);
    run(client_pkt(false, IPPROTO_TCP, 50004, kTcpPort, syn).set_u8(14, 0x44), XDP_PASS, KXLB_R_PASS_MALFORMED);
    run(client_pkt(true, IPPROTO_TCP, 50005, kTcpPort, Seg{TCP_RST | TCP_ACK, 2, 2, {}}), XDP_DROP,
        KXLB_R_DROP_TCP_NO_FLOW);
    run(client_pkt(false, IPPROTO_UDP, 50006, kUdpNoBackend, Seg{0, 0, 0, "nobody"}), XDP_TX,
        KXLB_R_TX_UNREACH_NO_BACKEND);
    run(PacketBuilder()
            .eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0))
            .vlan(7)
            .ipv4(LbNet::kClient4, LbNet::kVip4)
            .tcp(1, 80)
            .build(),
        XDP_PASS, KXLB_R_PASS_VLAN);
    run(from_client(LbNet::kClient6, LbNet::kNode6).tcp(1, 22).build(), XDP_PASS, KXLB_R_PASS_NOT_VIP);

    // Reasons: one per frame, packets and bytes.
    std::uint64_t total_bytes = 0;
    for (const auto& p : sent) total_bytes += p.size();
    expect_reasons(want);
    EXPECT_EQ(h_->reasons_total(), sent.size());
    auto all = h_->counters().reasons();
    ASSERT_TRUE(all);
    std::uint64_t reason_bytes = 0;
    for (const auto& c : *all) reason_bytes += c.bytes;
    EXPECT_EQ(reason_bytes, total_bytes);
    const ParseStats ps = h_->parse_stats();
    EXPECT_EQ(ps[KXLB_PS_FRAMES].packets, sent.size());
    EXPECT_EQ(ps[KXLB_PS_FRAMES].bytes, total_bytes);

    // Per service and per backend: exactly what was sent to / received from them.
    auto sz = [&](std::initializer_list<std::size_t> idx) {
        std::uint64_t b = 0;
        for (auto i : idx) b += sent[i].size();
        return b;
    };
    struct Want {
        Frontend f;
        std::string backend;
        std::uint64_t packets, bytes, new_flows;
    };
    for (const Want& w : {Want{fe(false, IPPROTO_TCP, kTcpPort), LbNet::backend4(t4.be), 3, sz({0, 1, 2}), 1},
                          Want{fe(true, IPPROTO_UDP, kUdpPort), LbNet::backend6(u6.be), 2, sz({3, 4}), 1},
                          Want{fe(false, IPPROTO_UDP, kUdpPort), LbNet::backend4(u4_be), 1, sz({5}), 1},
                          Want{fe(true, IPPROTO_TCP, kTcpPort), LbNet::backend6(t6_be), 1, sz({6}), 1}}) {
        const auto sc = svc_counter(w.f);
        EXPECT_EQ(sc.packets, w.packets) << w.f.str();
        EXPECT_EQ(sc.bytes, w.bytes) << w.f.str();
        EXPECT_EQ(sc.new_flows, w.new_flows) << w.f.str();
        const auto bc = backend_counter(w.f, w.backend);
        EXPECT_EQ(bc.packets, w.packets) << w.f.str();
        EXPECT_EQ(bc.bytes, w.bytes) << w.f.str();
        EXPECT_EQ(bc.new_flows, w.new_flows) << w.f.str();
    }
    EXPECT_EQ(flow_count(), 4u);
    EXPECT_EQ(nat_count(), 4u);
}

TEST_F(LbGolden, DifferentSeedChangesSomeChoices) {
    LbConfig cfg = default_lb_config();
    cfg.hash_seed = 0x5eed0002;
    auto other = LbHarness::create(cfg);
    ASSERT_TRUE(other) << other.error().message;
    ASSERT_TRUE(program_default_services(**other));
    int differ = 0;
    std::map<int, int> spread_a, spread_b;
    for (std::uint16_t sport = 1000; sport < 1300; ++sport) {
        const Packet q = from_client(LbNet::kClient4, LbNet::kVip4).udp(sport, 53).build();
        auto a = h_->run(q);
        auto b = (*other)->run(q);
        ASSERT_TRUE(a && b);
        const int ba = backend_index(a->data), bb = backend_index(b->data);
        ASSERT_GE(ba, 1);
        ASSERT_GE(bb, 1);
        differ += ba != bb;
        ++spread_a[ba];
        ++spread_b[bb];
    }
    // Independent seeds agree on about a third of the flows by chance.
    EXPECT_GT(differ, 120) << "a different seed should change most choices";
    EXPECT_LT(differ, 300);
    EXPECT_EQ(spread_a.size(), 3u);
    EXPECT_EQ(spread_b.size(), 3u);
}

TEST_F(LbGolden, ThreeBackendsShareThreeThousandFlowsEvenly) {
    for (bool is6 : {false, true}) {
        std::map<int, int> spread;
        for (int i = 0; i < 3000; ++i) {
            // 3000 distinct flows: one client, 3000 different source ports.
            const auto sport = static_cast<std::uint16_t>(10000 + i * 7);
            auto r = h_->run(client_pkt(is6, IPPROTO_UDP, sport, kUdpPort, Seg{0, 0, 0, "x"}));
            ASSERT_TRUE(r);
            ASSERT_EQ(r->verdict, static_cast<std::uint32_t>(XDP_TX));
            ++spread[backend_index(r->data)];
        }
        EXPECT_EQ(spread.size(), 3u);
        for (auto [be, n] : spread) {
            EXPECT_GE(be, 1);
            EXPECT_NEAR(n, 1000, 150) << (is6 ? "v6" : "v4") << " backend " << be;
        }
        EXPECT_EQ(svc_counter(fe(is6, IPPROTO_UDP, kUdpPort)).new_flows, 3000u);
    }
}

// ---- Frames that are not ours: they pass untouched with a named reason (one shared harness; nothing in
// these tables creates state, and every check is a delta) ----

struct FrameCase {
    std::string name;
    std::function<Packet()> make;
    kxlb_reason reason;
    std::optional<kxlb_parse_stat> stat;  // a parser counter that must move too
};

std::string frame_case_name(const ::testing::TestParamInfo<FrameCase>& i) { return i.param.name; }

class LbGoldenStateless : public ::testing::TestWithParam<FrameCase> {
protected:
    static void SetUpTestSuite() {
        if (::geteuid() != 0) return;
        auto h = LbHarness::create();
        if (!h) {
            setup_error_ = h.error().message;
            return;
        }
        if (auto ok = program_default_services(**h); !ok) {
            setup_error_ = ok.message();
            return;
        }
        shared_ = std::move(h).value();
    }
    static void TearDownTestSuite() { shared_.reset(); }
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        ASSERT_NE(shared_, nullptr) << setup_error_;
    }

    // Runs the case's frame: XDP_PASS, byte-identical output, exactly one count under its reason (and none
    // elsewhere), the parser counter it names, and no conntrack state.
    void check_passes(const FrameCase& c) {
        const Packet in = c.make();
        const auto before = shared_->reason_packets();
        const ParseStats ps0 = shared_->parse_stats();
        auto r = shared_->run(in);
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->verdict, static_cast<std::uint32_t>(XDP_PASS));
        EXPECT_EQ(diff_frames(in.span(), r->data), "");
        const auto after = shared_->reason_packets();
        for (std::size_t i = 0; i < kReasonCount; ++i)
            EXPECT_EQ(after[i] - before[i], i == static_cast<std::size_t>(c.reason) ? 1u : 0u)
                << reason_name(static_cast<kxlb_reason>(i));
        const ParseStats ps1 = shared_->parse_stats();
        EXPECT_EQ(ps1[KXLB_PS_FRAMES].packets - ps0[KXLB_PS_FRAMES].packets, 1u);
        if (c.stat) {
            EXPECT_EQ(ps1[*c.stat].packets - ps0[*c.stat].packets, 1u) << parse_stat_name(*c.stat);
        }
        auto flows = shared_->conntrack().flows();
        ASSERT_TRUE(flows);
        EXPECT_TRUE(flows->empty());
    }

    static inline std::unique_ptr<LbHarness> shared_;
    static inline std::string setup_error_;
};

PacketBuilder client4(const std::string& dst = LbNet::kVip4, Ipv4Opts o = {}) {
    PacketBuilder b;
    b.eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0)).ipv4(LbNet::kClient4, dst, std::move(o));
    return b;
}
PacketBuilder client6(const std::string& dst = LbNet::kVip6, Ipv6Opts o = {}) {
    PacketBuilder b;
    b.eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0)).ipv6(LbNet::kClient6, dst, o);
    return b;
}
PacketBuilder l2(std::uint16_t ethertype) {
    PacketBuilder b;
    b.eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0)).eth_type(ethertype);
    return b;
}
Ipv4Opts v4opts(const std::function<void(Ipv4Opts&)>& f) {
    Ipv4Opts o;
    f(o);
    return o;
}

class LbGoldenPass : public LbGoldenStateless {};

TEST_P(LbGoldenPass, PassesUntouchedWithItsReason) { check_passes(GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    LbGolden, LbGoldenPass,
    ::testing::Values(
        FrameCase{"arp", [] { return l2(0x0806).payload(Bytes(28, 0x01)).build(); }, KXLB_R_PASS_NOT_IP, KXLB_PS_ARP},
        FrameCase{"lldp_non_ip", [] { return l2(0x88cc).payload(Bytes(46, 0x02)).build(); }, KXLB_R_PASS_NOT_IP,
                  KXLB_PS_L3_OTHER},
        FrameCase{"icmp_echo_to_node4",
                  [] { return client4(LbNet::kNode4).icmp(8, 0, 0x10001).payload("ping").build(); },
                  KXLB_R_PASS_NOT_VIP, KXLB_PS_ICMP},
        FrameCase{"icmp6_echo_to_node6", [] { return client6(LbNet::kNode6).icmp(128, 0, 0x10001).build(); },
                  KXLB_R_PASS_NOT_VIP, KXLB_PS_ICMPV6},
        FrameCase{"ipv4_options_to_vip",
                  [] {
                      return client4(LbNet::kVip4, v4opts([](Ipv4Opts& o) {
                                         o.options = {0x94, 0x04, 0, 0};
                                     }))
                          .tcp(1, kTcpPort)
                          .build();
                  },
                  KXLB_R_PASS_VIP_IPV4_OPTIONS, KXLB_PS_IPV4_OPTIONS},
        FrameCase{"ipv4_options_to_non_vip",
                  [] {
                      return client4(LbNet::kNode4, v4opts([](Ipv4Opts& o) {
                                         o.options = {0x94, 0x04, 0, 0};
                                     }))
                          .tcp(1, 22)
                          .build();
                  },
                  KXLB_R_PASS_NOT_VIP, KXLB_PS_IPV4_OPTIONS},
        FrameCase{"ipv4_first_fragment_to_vip",
                  [] {
                      return client4(LbNet::kVip4, v4opts([](Ipv4Opts& o) { o.mf = true; }))
                          .udp(1, kUdpPort)
                          .payload(std::string(64, 'f'))
                          .build();
                  },
                  KXLB_R_PASS_VIP_FRAGMENT, KXLB_PS_IPV4_FRAGMENT},
        FrameCase{"ipv4_later_fragment_to_vip",
                  [] {
                      return client4(LbNet::kVip4, v4opts([](Ipv4Opts& o) {
                                         o.frag_offset = 9;
                                         o.protocol = IPPROTO_UDP;
                                     }))
                          .payload(std::string(40, 'l'))
                          .build();
                  },
                  KXLB_R_PASS_VIP_FRAGMENT, KXLB_PS_IPV4_FRAGMENT},
        FrameCase{"ipv6_fragment_header_to_vip",
                  [] {
                      return client6().ipv6_ext(44, {0, 1, 0, 0, 0, 7}).udp(1, kUdpPort).payload("frag").build();
                  },
                  KXLB_R_PASS_VIP_IPV6_EXTHDR, KXLB_PS_IPV6_EXTHDR},
        FrameCase{"ipv6_hop_by_hop_to_vip",
                  [] {
                      return client6().ipv6_ext(0, {1, 4, 0, 0, 0, 0}).tcp(1, kTcpPort).build();
                  },
                  KXLB_R_PASS_VIP_IPV6_EXTHDR, KXLB_PS_IPV6_EXTHDR},
        FrameCase{"icmp_echo_to_vip4", [] { return client4().icmp(8, 0, 0x20001).payload("ping").build(); },
                  KXLB_R_PASS_VIP_OTHER_L4, KXLB_PS_ICMP},
        FrameCase{"icmp6_echo_to_vip6", [] { return client6().icmp(128, 0, 0x20001).build(); },
                  KXLB_R_PASS_VIP_OTHER_L4, KXLB_PS_ICMPV6},
        FrameCase{"gre_to_vip4",
                  [] {
                      return client4(LbNet::kVip4, v4opts([](Ipv4Opts& o) { o.protocol = 47; }))
                          .payload({0, 0, 0x08, 0x00, 0x45, 0, 0, 20})
                          .build();
                  },
                  KXLB_R_PASS_VIP_OTHER_L4, KXLB_PS_L4_OTHER},
        FrameCase{"gre_to_vip6",
                  [] {
                      return client6(LbNet::kVip6, Ipv6Opts{.next_header = 47}).payload({0, 0, 0x86, 0xdd}).build();
                  },
                  KXLB_R_PASS_VIP_OTHER_L4, KXLB_PS_L4_OTHER},
        FrameCase{"vlan_tcp_to_vip4",
                  [] {
                      return PacketBuilder()
                          .eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0))
                          .vlan(100)
                          .ipv4(LbNet::kClient4, LbNet::kVip4)
                          .tcp(1, kTcpPort)
                          .build();
                  },
                  KXLB_R_PASS_VLAN, KXLB_PS_VLAN},
        FrameCase{"qinq_udp_to_vip6",
                  [] {
                      return PacketBuilder()
                          .eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0))
                          .vlan(10, 0, 0x88a8)
                          .vlan(20)
                          .ipv6(LbNet::kClient6, LbNet::kVip6)
                          .udp(1, kUdpPort)
                          .build();
                  },
                  KXLB_R_PASS_VLAN, KXLB_PS_VLAN},
        FrameCase{"vip4_unconfigured_port", [] { return client4().tcp(1, 443).build(); }, KXLB_R_PASS_NOT_VIP,
                  KXLB_PS_TCP},
        FrameCase{"vip6_unconfigured_port", [] { return client6().udp(1, 5353).payload("x").build(); },
                  KXLB_R_PASS_NOT_VIP, KXLB_PS_UDP},
        FrameCase{"vip4_udp_on_tcp_only_port", [] { return client4().udp(1, kTcpPort).build(); }, KXLB_R_PASS_NOT_VIP,
                  KXLB_PS_UDP},
        FrameCase{"reply_to_snat_port_without_nat4",
                  [] {
                      return PacketBuilder()
                          .eth(mac(LbNet::backend_mac(1)), mac(LbNet::kNodeMac0))
                          .ipv4(LbNet::backend4(1), LbNet::kNode4)
                          .tcp(kBackendPort, 61234, TcpOpts{.flags = TCP_SYN | TCP_ACK})
                          .build();
                  },
                  KXLB_R_PASS_NOT_VIP, KXLB_PS_TCP},
        FrameCase{"reply_to_snat_port_without_nat6",
                  [] {
                      return PacketBuilder()
                          .eth(mac(LbNet::backend_mac(2)), mac(LbNet::kNodeMac0))
                          .ipv6(LbNet::backend6(2), LbNet::kNode6)
                          .udp(kBackendPort, 65535)
                          .payload("stale answer")
                          .build();
                  },
                  KXLB_R_PASS_NOT_VIP, KXLB_PS_UDP},
        FrameCase{"to_node_below_snat_range",
                  [] {
                      return PacketBuilder()
                          .eth(mac(LbNet::backend_mac(1)), mac(LbNet::kNodeMac0))
                          .ipv4(LbNet::backend4(1), LbNet::kNode4)
                          .udp(kBackendPort, 60999)
                          .build();
                  },
                  KXLB_R_PASS_NOT_VIP, KXLB_PS_UDP}),
    frame_case_name);

// ---- Truncated / malformed frames addressed to VIPs: passed untouched for the kernel to drop ----

// Truncates to l4 bytes of the L4 header and fixes the IP length field so the L4 layer is what fails.
Packet cut_l4(Packet p, std::size_t l4_bytes) {
    p.truncate(p.l4_off + l4_bytes);
    if ((p.u8(p.l3_off) >> 4) == 4) p.set_be16(p.l3_off + 2, static_cast<std::uint16_t>(p.size() - p.l3_off));
    else p.set_be16(p.l3_off + 4, static_cast<std::uint16_t>(p.size() - p.l4_off));
    return p;
}

class LbGoldenMalformed : public LbGoldenStateless {};

TEST_P(LbGoldenMalformed, PassesUntouchedAsMalformed) { check_passes(GetParam()); }

INSTANTIATE_TEST_SUITE_P(
    LbGolden, LbGoldenMalformed,
    ::testing::Values(
        FrameCase{"v4_ihl_below_5",
                  [] { return client4(LbNet::kVip4, v4opts([](Ipv4Opts& o) { o.ihl = 4; })).tcp(1, kTcpPort).build(); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_IPV4_IHL},
        FrameCase{
            "v4_ihl_past_frame_end",
            [] { return client4(LbNet::kVip4, v4opts([](Ipv4Opts& o) { o.ihl = 15; })).udp(1, kUdpPort).build(); },
            KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_IPV4_IHL},
        FrameCase{"v4_total_length_past_frame",
                  [] {
                      Packet p = client4().tcp(1, kTcpPort).payload("abc").build();
                      return p.set_be16(p.l3_off + 2, static_cast<std::uint16_t>(p.size() - p.l3_off + 1));
                  },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_IPV4_TOTLEN},
        FrameCase{
            "v4_total_length_below_header",
            [] { return client4(LbNet::kVip4, v4opts([](Ipv4Opts& o) { o.tot_len = 19; })).udp(1, kUdpPort).build(); },
            KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_IPV4_TOTLEN},
        FrameCase{"v4_header_cut", [] { return client4().tcp(1, kTcpPort).build().truncate(14 + 12); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_TRUNC_IPV4},
        FrameCase{"v4_version_not_4",
                  [] { return client4(LbNet::kVip4, v4opts([](Ipv4Opts& o) { o.version = 6; })).tcp(1, 80).build(); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_IPV4_VERSION},
        FrameCase{"v4_tcp_data_offset_below_5",
                  [] { return client4().tcp(1, kTcpPort, TcpOpts{.data_offset = 4}).build(); }, KXLB_R_PASS_MALFORMED,
                  KXLB_PS_ERR_TCP_DOFF},
        FrameCase{"v4_tcp_header_cut", [] { return cut_l4(client4().tcp(1, kTcpPort).build(), 12); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_TRUNC_TCP},
        FrameCase{"v4_tcp_options_past_segment",
                  [] { return client4().tcp(1, kTcpPort, TcpOpts{.data_offset = 10}).build(); }, KXLB_R_PASS_MALFORMED,
                  KXLB_PS_ERR_TRUNC_TCP},
        FrameCase{"v4_tcp_segment_shorter_than_header_in_padded_frame",
                  [] {
                      Packet p = client4().tcp(1, kTcpPort).build();
                      return p.set_be16(p.l3_off + 2, 20 + 12);  // frame holds 20 TCP bytes, IP says 12
                  },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_TRUNC_TCP},
        FrameCase{"v4_udp_length_below_8",
                  [] { return client4().udp(1, kUdpPort, UdpOpts{.length = 7}).payload("x").build(); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_UDP_LEN},
        FrameCase{"v4_udp_length_past_payload",
                  [] { return client4().udp(1, kUdpPort, UdpOpts{.length = 100}).payload("x").build(); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_UDP_LEN},
        FrameCase{"v4_udp_header_cut", [] { return cut_l4(client4().udp(1, kUdpPort).build(), 6); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_TRUNC_UDP},
        FrameCase{"v4_icmp_header_cut", [] { return cut_l4(client4().icmp(8, 0).build(), 4); }, KXLB_R_PASS_MALFORMED,
                  KXLB_PS_ERR_TRUNC_ICMP},
        FrameCase{"v6_payload_length_past_frame",
                  [] {
                      Packet p = client6().udp(1, kUdpPort).payload("abc").build();
                      return p.set_be16(p.l3_off + 4, static_cast<std::uint16_t>(p.size() - p.l4_off + 1));
                  },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_IPV6_PAYLEN},
        FrameCase{"v6_payload_length_below_tcp_header",
                  [] { return client6(LbNet::kVip6, Ipv6Opts{.payload_len = 12}).tcp(1, kTcpPort).build(); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_TRUNC_TCP},
        FrameCase{
            "v6_payload_length_below_udp_length",
            [] { return client6(LbNet::kVip6, Ipv6Opts{.payload_len = 8}).udp(1, kUdpPort).payload("abc").build(); },
            KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_UDP_LEN},
        FrameCase{"v6_udp_length_past_payload",
                  [] { return client6().udp(1, kUdpPort, UdpOpts{.length = 64}).payload("abc").build(); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_UDP_LEN},
        FrameCase{"v6_header_cut", [] { return client6().udp(1, kUdpPort).build().truncate(14 + 30); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_TRUNC_IPV6},
        FrameCase{"v6_version_not_6",
                  [] { return client6(LbNet::kVip6, Ipv6Opts{.version = 4}).tcp(1, kTcpPort).build(); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_IPV6_VERSION},
        FrameCase{"v6_tcp_header_cut", [] { return cut_l4(client6().tcp(1, kTcpPort).build(), 19); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_TRUNC_TCP},
        FrameCase{"v6_udp_header_cut", [] { return cut_l4(client6().udp(1, kUdpPort).build(), 7); },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_TRUNC_UDP},
        FrameCase{"ethernet_only_ipv4", [] { return l2(0x0800).build(); }, KXLB_R_PASS_MALFORMED,
                  KXLB_PS_ERR_TRUNC_IPV4},
        FrameCase{"ethernet_only_ipv6", [] { return l2(0x86dd).build(); }, KXLB_R_PASS_MALFORMED,
                  KXLB_PS_ERR_TRUNC_IPV6},
        FrameCase{"vlan_tag_cut",
                  [] {
                      return l2(0x8100).payload({0x00, 0x64}).build();
                  },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_TRUNC_VLAN},
        FrameCase{"three_vlan_tags",
                  [] {
                      return PacketBuilder()
                          .eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0))
                          .vlan(1, 0, 0x88a8)
                          .vlan(2)
                          .vlan(3)
                          .ipv4(LbNet::kClient4, LbNet::kVip4)
                          .tcp(1, kTcpPort)
                          .build();
                  },
                  KXLB_R_PASS_MALFORMED, KXLB_PS_ERR_VLAN_DEPTH}),
    frame_case_name);

}  // namespace
}  // namespace kxlb::test
