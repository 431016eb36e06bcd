// bpf tier: ICMP errors about tracked full-NAT flows (bpf/lib/icmp_xlate.h). An error from the backend side
// (to the node's SNAT address, quoting node:snat_port -> backend) must reach the client as VIP -> client quoting
// the packet as the client sent it; an error from the client side (to the VIP, quoting VIP -> client) must reach
// the backend as node -> backend quoting the packet as the backend sent it. Every case asserts the verdict, the
// exact output bytes (the expected frame is built independently with PacketBuilder), every checksum of the
// output (including the quoted IP header and, when fully quoted, the quoted TCP/UDP datagram) and the counters.
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <netinet/in.h>

#include <limits>
#include <map>

#include "bpf/lb_harness.hpp"
#include "common/checksum.hpp"
#include "common/privileges.hpp"

namespace kxlb::test {
namespace {

constexpr std::uint16_t kBackendPort = 8080, kTcpPort = 80, kUdpPort = 53;
constexpr const char* kRouterMac = "02:00:00:00:00:fe";  // a router on the node's link
constexpr std::size_t kAll = std::numeric_limits<std::size_t>::max();

// ICMP type/code pairs per family.
struct IcmpKind {
    std::uint8_t type4, code4, type6, code6;
    std::uint8_t type(bool is6) const { return is6 ? type6 : type4; }
    std::uint8_t code(bool is6) const { return is6 ? code6 : code4; }
};
constexpr IcmpKind kPortUnreach{3, 3, 1, 4};
constexpr IcmpKind kTooBig{3, 4, 2, 0};  // fragmentation needed / packet too big
constexpr IcmpKind kTimeExceeded{11, 0, 3, 0};
constexpr IcmpKind kEcho{8, 0, 128, 0};
constexpr IcmpKind kEchoReply{0, 0, 129, 0};
// The "rest" word carrying an MTU: IPv4 next-hop MTU in the low 16 bits, ICMPv6 a 32-bit MTU.
constexpr std::uint32_t kMtu = 1400;

// A datagram as it travels (Ethernet MACs are irrelevant: only its IP part is ever quoted).
struct Dgram {
    std::string src, dst;
    std::uint8_t proto = IPPROTO_UDP;
    std::uint16_t sport = 0, dport = 0;
    TcpOpts tcp{};
    std::string payload;
    std::optional<std::uint16_t> udp_csum;
    Bytes ip_options;  // IPv4 only
};

bool is_v6(const std::string& a) { return a.find(':') != std::string::npos; }

Packet build_dgram(const Dgram& d, const std::string& smac, const std::string& dmac) {
    PacketBuilder b;
    b.eth(Mac::parse(smac), Mac::parse(dmac));
    if (is_v6(d.dst)) {
        b.ipv6(d.src, d.dst);
    } else {
        Ipv4Opts o;
        o.options = d.ip_options;
        b.ipv4(d.src, d.dst, o);
    }
    if (d.proto == IPPROTO_TCP) b.tcp(d.sport, d.dport, d.tcp);
    else b.udp(d.sport, d.dport, UdpOpts{.length = std::nullopt, .checksum = d.udp_csum});
    if (!d.payload.empty()) b.payload(d.payload);
    return b.build();
}

// The first n bytes of a datagram's IP packet (all of it by default), as an ICMP error quotes it.
Bytes quote_of(const Dgram& d, std::size_t n = kAll) {
    const Packet p = build_dgram(d, LbNet::kClientMac, LbNet::kNodeMac0);
    auto s = p.span_from(p.l3_off);
    return Bytes(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(std::min(n, s.size())));
}

// An ICMP/ICMPv6 message of kind k (the family's type and code) src -> dst carrying quote.
Packet icmp_frame(const std::string& smac, const std::string& dmac, const std::string& src, const std::string& dst,
                  const IcmpKind& k, std::uint32_t rest, const Bytes& quote) {
    PacketBuilder b;
    b.eth(Mac::parse(smac), Mac::parse(dmac));
    if (is_v6(dst)) b.ipv6(src, dst);
    else b.ipv4(src, dst);
    b.icmp(k.type(is_v6(dst)), k.code(is_v6(dst)), rest);
    if (!quote.empty()) b.payload(quote);
    return b.build();
}

// Independent check of what an ICMP error quotes (checksum_errors() does not look inside quotes): the quoted
// IPv4 header checksum, and the quoted TCP/UDP checksum with its pseudo-header when the whole datagram is quoted.
std::vector<std::string> quote_errors(const Bytes& f, bool is6) {
    std::vector<std::string> errs;
    const std::size_t q = is6 ? 14 + 40 + 8 : 14 + 20 + 8;
    const std::span<const std::uint8_t> all(f);
    auto be16 = [&](std::size_t off) { return static_cast<std::uint16_t>(f[off] << 8 | f[off + 1]); };
    if (f.size() < q + (is6 ? 40 : 20)) return {"quote shorter than an IP header"};
    Bytes pseudo;
    std::size_t l4 = 0, l4_len = 0, total = 0;
    std::uint8_t proto = 0;
    if (is6) {
        l4 = q + 40;
        l4_len = be16(q + 4);
        total = 40 + l4_len;
        proto = f[q + 6];
        pseudo.assign(f.begin() + static_cast<std::ptrdiff_t>(q + 8), f.begin() + static_cast<std::ptrdiff_t>(q + 40));
        pseudo.insert(pseudo.end(), {0, 0, static_cast<std::uint8_t>(l4_len >> 8), static_cast<std::uint8_t>(l4_len), 0,
                                     0, 0, proto});
    } else {
        const std::size_t hl = (f[q] & 0xfu) * 4u;
        if (ones_complement_sum(all.subspan(q, hl)) != 0xffff) errs.push_back("quoted ipv4 header checksum");
        l4 = q + hl;
        total = be16(q + 2);
        l4_len = total - hl;
        proto = f[q + 9];
        pseudo.assign(f.begin() + static_cast<std::ptrdiff_t>(q + 12), f.begin() + static_cast<std::ptrdiff_t>(q + 20));
        pseudo.insert(pseudo.end(),
                      {0, proto, static_cast<std::uint8_t>(l4_len >> 8), static_cast<std::uint8_t>(l4_len)});
    }
    if (q + total != f.size()) return errs;  // partial quote: its L4 checksum cannot be verified
    const std::size_t csum_at = l4 + (proto == IPPROTO_TCP ? 16 : 6);
    if (!is6 && proto == IPPROTO_UDP && be16(csum_at) == 0) return errs;  // "no checksum"
    if (ones_complement_sum(all.subspan(l4, l4_len), ones_complement_sum(pseudo)) != 0xffff)
        errs.push_back("quoted l4 checksum");
    return errs;
}

class LbIcmp : public ::testing::TestWithParam<bool> {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        auto h = LbHarness::create();
        ASSERT_TRUE(h) << h.error().message;
        h_ = std::move(h).value();
        // One backend per frontend, so the backend of every flow is known: backend 1.
        for (bool v6 : {false, true})
            for (auto [proto, port] :
                 {std::pair<std::uint8_t, std::uint16_t>{IPPROTO_TCP, kTcpPort}, {IPPROTO_UDP, kUdpPort}}) {
                auto r = h_->lb().upsert_service(
                    make_service(v6 ? LbNet::kVip6 : LbNet::kVip4, port, proto, {backend_of(v6, 1)}, kBackendPort));
                ASSERT_TRUE(r) << r.error().message;
            }
    }

    bool is6() const { return GetParam(); }
    const char* vip() const { return is6() ? LbNet::kVip6 : LbNet::kVip4; }
    const char* client() const { return is6() ? LbNet::kClient6 : LbNet::kClient4; }
    const char* node() const { return is6() ? LbNet::kNode6 : LbNet::kNode4; }
    const char* router() const { return is6() ? "fd00::fe" : "10.0.0.254"; }
    static std::string backend_of(bool v6, int i) { return v6 ? LbNet::backend6(i) : LbNet::backend4(i); }
    std::string backend() const { return backend_of(is6(), 1); }
    std::size_t l4_off() const { return is6() ? 54 : 34; }
    static std::uint16_t port_of(std::uint8_t proto) { return proto == IPPROTO_TCP ? kTcpPort : kUdpPort; }
    Frontend fe(std::uint8_t proto) const { return Frontend{IpAddr::parse(vip()).value(), port_of(proto), proto}; }

    // The three views of one flow's packets: client -> VIP (as sent by the client), node -> backend (after full
    // NAT), and their replies backend -> node / VIP -> client.
    Dgram client_dgram(std::uint8_t proto, std::uint16_t cport, const std::string& payload = "hello") const {
        Dgram d{client(), vip(), proto, cport, port_of(proto)};
        d.tcp = TcpOpts{.flags = TCP_SYN, .seq = 1000, .ack = 0};
        d.payload = proto == IPPROTO_UDP ? payload : "";
        return d;
    }
    Dgram forwarded(const Dgram& c, std::uint16_t snat_port) const {
        Dgram d = c;
        d.src = node();
        d.dst = backend();
        d.sport = snat_port;
        d.dport = kBackendPort;
        return d;
    }
    Dgram backend_reply(std::uint8_t proto, std::uint16_t snat_port, const std::string& payload = "answer") const {
        Dgram d{backend(), node(), proto, kBackendPort, snat_port};
        d.tcp = TcpOpts{.flags = TCP_SYN | TCP_ACK, .seq = 7000, .ack = 1001};
        d.payload = payload;
        return d;
    }
    Dgram client_reply(const Dgram& r, std::uint16_t cport) const {
        Dgram d = r;
        d.src = vip();
        d.dst = client();
        d.sport = port_of(r.proto);
        d.dport = cport;
        return d;
    }

    // Opens a flow with the client datagram c (which must be full-NATed to backend 1); returns its SNAT port.
    std::uint16_t open(const Dgram& c) {
        const Packet in = build_dgram(c, LbNet::kClientMac, LbNet::kNodeMac0);
        auto r = h_->run(in);
        EXPECT_TRUE(r) << r.error().message;
        if (!r) return 0;
        EXPECT_EQ(r->verdict, static_cast<std::uint32_t>(XDP_TX)) << hexdump(r->data);
        const std::uint16_t port = static_cast<std::uint16_t>(r->data.at(l4_off()) << 8 | r->data.at(l4_off() + 1));
        const Packet want = build_dgram(forwarded(c, port), LbNet::kNodeMac0, LbNet::backend_mac(1));
        EXPECT_EQ(diff_frames(want.span(), r->data), "");
        bytes_ += in.size();
        return port;
    }

    // Runs in, expects XDP_TX with exactly want and valid checksums everywhere.
    void expect_translated(const Packet& in, const Packet& want) {
        auto r = h_->run(in);
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->verdict, static_cast<std::uint32_t>(XDP_TX)) << hexdump(r->data);
        EXPECT_EQ(diff_frames(want.span(), r->data), "");
        EXPECT_TRUE(checksum_errors(r->data).empty()) << join(checksum_errors(r->data));
        EXPECT_TRUE(quote_errors(r->data, is6()).empty()) << join(quote_errors(r->data, is6()));
        bytes_ += in.size();
    }
    // Runs in, expects verdict with the frame untouched.
    void expect_untouched(const Packet& in, std::uint32_t verdict) {
        auto r = h_->run(in);
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->verdict, verdict);
        EXPECT_EQ(diff_frames(in.span(), r->data), "");
    }

    // Every reason counter equals want (0 when not listed).
    void expect_reasons(const std::map<kxlb_reason, std::uint64_t>& want) {
        const auto got = h_->reason_packets();
        for (std::size_t i = 0; i < kReasonCount; ++i) {
            const auto it = want.find(static_cast<kxlb_reason>(i));
            EXPECT_EQ(got[i], it == want.end() ? 0u : it->second) << reason_name(static_cast<kxlb_reason>(i));
        }
    }
    // The service and its backend counted `packets` frames of bytes_ in total, one new flow.
    void expect_lb_counters(std::uint8_t proto, std::uint64_t packets) {
        const auto* st = h_->lb().service(fe(proto));
        ASSERT_NE(st, nullptr);
        auto sc = h_->counters().service(st->id);
        ASSERT_TRUE(sc) << sc.error().message;
        EXPECT_EQ(sc->packets, packets);
        EXPECT_EQ(sc->bytes, bytes_);
        EXPECT_EQ(sc->new_flows, 1u);
        auto id =
            h_->lb().backend_id(fe(proto), BackendSpec{IpAddr::parse(backend()).value(), kBackendPort}.identity());
        ASSERT_TRUE(id.has_value());
        auto bc = h_->counters().backend(*id);
        ASSERT_TRUE(bc) << bc.error().message;
        EXPECT_EQ(bc->packets, packets);
        EXPECT_EQ(bc->bytes, bytes_);
        EXPECT_EQ(bc->new_flows, 1u);
    }

    // ICMP errors as they arrive on eth0: to the node from src (a router by default), to the VIP from the client.
    Packet to_node(const IcmpKind& k, std::uint32_t rest, const Bytes& quote, const std::string& smac = kRouterMac,
                   const std::string& src = {}) const {
        return icmp_frame(smac, LbNet::kNodeMac0, src.empty() ? router() : src, node(), k, rest, quote);
    }
    Packet to_vip(const IcmpKind& k, std::uint32_t rest, const Bytes& quote, const std::string& src = {}) const {
        return icmp_frame(LbNet::kClientMac, LbNet::kNodeMac0, src.empty() ? client() : src, vip(), k, rest, quote);
    }

    // Backend side: in (an error to the node) must leave toward the client as VIP -> client quoting client_view.
    void backend_side(const Packet& in, const IcmpKind& k, std::uint32_t rest, const Bytes& client_view) {
        expect_translated(in, icmp_frame(LbNet::kNodeMac0, LbNet::kClientMac, vip(), client(), k, rest, client_view));
    }
    // Client side: in (an error to the VIP) must leave toward backend 1 as node -> backend quoting backend_view.
    void client_side(const Packet& in, const IcmpKind& k, std::uint32_t rest, const Bytes& backend_view) {
        expect_translated(
            in, icmp_frame(LbNet::kNodeMac0, LbNet::backend_mac(1), node(), backend(), k, rest, backend_view));
    }

    std::unique_ptr<LbHarness> h_;
    std::uint64_t bytes_ = 0;  // bytes of the frames the service should have counted
};

INSTANTIATE_TEST_SUITE_P(LbIcmp, LbIcmp, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "v6" : "v4"; });

TEST_P(LbIcmp, BackendPortUnreachableForUdpReachesClient) {
    const Dgram c = client_dgram(IPPROTO_UDP, 40001, "query");
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    const Packet in = to_node(kPortUnreach, 0, quote_of(forwarded(c, port)), LbNet::backend_mac(1), backend());
    backend_side(in, kPortUnreach, 0, quote_of(c));
    expect_reasons({{KXLB_R_FWD_TX, 2}});
    expect_lb_counters(IPPROTO_UDP, 2);
}

TEST_P(LbIcmp, RouterTooBigForTcpReachesClientWithMtuKept) {
    const Dgram c = client_dgram(IPPROTO_TCP, 40002);
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    // The whole segment is quoted: the quoted TCP checksum is translated too.
    backend_side(to_node(kTooBig, kMtu, quote_of(forwarded(c, port))), kTooBig, kMtu, quote_of(c));
    expect_reasons({{KXLB_R_FWD_TX, 2}});
    expect_lb_counters(IPPROTO_TCP, 2);
}

TEST_P(LbIcmp, MinimalTcpQuoteWithoutChecksumIsTranslated) {
    const Dgram c = client_dgram(IPPROTO_TCP, 40003);
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    // IP header + 8 bytes (ports and sequence number): the TCP checksum is not quoted and nothing else changes.
    const std::size_t n = (is6() ? 40 : 20) + 8;
    backend_side(to_node(kTooBig, kMtu, quote_of(forwarded(c, port), n)), kTooBig, kMtu, quote_of(c, n));
    expect_reasons({{KXLB_R_FWD_TX, 2}});
}

TEST_P(LbIcmp, PartialUdpQuoteGetsItsChecksumTranslated) {
    const Dgram c = client_dgram(IPPROTO_UDP, 40004, std::string(200, 'u'));
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    // The checksum field is quoted, the datagram is not: the checksum is still that of the whole datagram.
    const std::size_t n = (is6() ? 40 : 20) + 8 + 32;
    backend_side(to_node(kPortUnreach, 0, quote_of(forwarded(c, port), n)), kPortUnreach, 0, quote_of(c, n));
    expect_reasons({{KXLB_R_FWD_TX, 2}});
}

TEST_P(LbIcmp, TimeExceededForUdpReachesClient) {
    const Dgram c = client_dgram(IPPROTO_UDP, 40005);
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    backend_side(to_node(kTimeExceeded, 0, quote_of(forwarded(c, port))), kTimeExceeded, 0, quote_of(c));
    expect_reasons({{KXLB_R_FWD_TX, 2}});
}

TEST_P(LbIcmp, ClientSideTooBigForTcpReachesBackend) {
    const Dgram c = client_dgram(IPPROTO_TCP, 40006);
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    // A router on the client's path could not forward the (translated) SYN-ACK.
    const Dgram r = backend_reply(IPPROTO_TCP, port, std::string(100, 'r'));
    client_side(to_vip(kTooBig, kMtu, quote_of(client_reply(r, 40006)), router()), kTooBig, kMtu, quote_of(r));
    expect_reasons({{KXLB_R_FWD_TX, 2}});
    expect_lb_counters(IPPROTO_TCP, 2);
}

TEST_P(LbIcmp, ClientPortUnreachableForUdpReachesBackend) {
    const Dgram c = client_dgram(IPPROTO_UDP, 40007);
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    const Dgram r = backend_reply(IPPROTO_UDP, port);
    client_side(to_vip(kPortUnreach, 0, quote_of(client_reply(r, 40007))), kPortUnreach, 0, quote_of(r));
    expect_reasons({{KXLB_R_FWD_TX, 2}});
    expect_lb_counters(IPPROTO_UDP, 2);
}

TEST_P(LbIcmp, ClientSideTruncatedTcpQuoteReachesBackend) {
    const Dgram c = client_dgram(IPPROTO_TCP, 40008);
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    const Dgram r = backend_reply(IPPROTO_TCP, port, "");
    const std::size_t n = (is6() ? 40 : 20) + 8;
    client_side(to_vip(kTooBig, kMtu, quote_of(client_reply(r, 40008), n), router()), kTooBig, kMtu, quote_of(r, n));
    expect_reasons({{KXLB_R_FWD_TX, 2}});
}

TEST_P(LbIcmp, ErrorsQuotingNoTrackedFlowPassUntouched) {
    const Dgram c = client_dgram(IPPROTO_UDP, 40009);
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    // To the node: another SNAT port; the flow's port but TCP.
    Dgram other_port = forwarded(c, port);
    other_port.sport = static_cast<std::uint16_t>(port == 65535 ? port - 1 : port + 1);
    Dgram other_proto = forwarded(c, port);
    other_proto.proto = IPPROTO_TCP;
    // To the VIP: a reply to another client port; a packet someone else sent (the error is not about ours).
    const Dgram reply = client_reply(backend_reply(IPPROTO_UDP, port), 40009);
    Dgram other_client = reply;
    other_client.dport = 40010;
    Dgram foreign = reply;
    foreign.src = router();
    for (const Packet& p :
         {to_node(kPortUnreach, 0, quote_of(other_port)), to_node(kTooBig, kMtu, quote_of(other_proto)),
          to_vip(kPortUnreach, 0, quote_of(other_client)), to_vip(kPortUnreach, 0, quote_of(foreign))})
        expect_untouched(p, XDP_PASS);
    expect_reasons({{KXLB_R_FWD_TX, 1}, {KXLB_R_PASS_ICMP_NO_FLOW, 4}});
    expect_lb_counters(IPPROTO_UDP, 1);
}

TEST_P(LbIcmp, ClientSideErrorAfterBackendRemovedPassesAsNoFlow) {
    const Dgram c = client_dgram(IPPROTO_UDP, 40011);
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    auto up = h_->lb().upsert_service(make_service(vip(), kUdpPort, IPPROTO_UDP, {backend_of(is6(), 2)}, kBackendPort));
    ASSERT_TRUE(up) << up.error().message;
    expect_untouched(to_vip(kPortUnreach, 0, quote_of(client_reply(backend_reply(IPPROTO_UDP, port), 40011))),
                     XDP_PASS);
    expect_reasons({{KXLB_R_FWD_TX, 1}, {KXLB_R_PASS_ICMP_NO_FLOW, 1}});
}

TEST_P(LbIcmp, QuoteTooShortToNameAFlowIsDropped) {
    const Dgram c = client_dgram(IPPROTO_UDP, 40012);
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    const std::size_t ip = is6() ? 40 : 20;
    const Bytes reply = quote_of(client_reply(backend_reply(IPPROTO_UDP, port), 40012));
    Bytes wrong_version = reply;
    wrong_version[0] = static_cast<std::uint8_t>((is6() ? 4 : 6) << 4 | (wrong_version[0] & 0xf));
    // To the node: IP header + 4 bytes (the ports, but not the 8 bytes every error must quote). To the VIP: half an
    // IP header; an IP header of the other version.
    for (const Packet& p : {to_node(kTooBig, kMtu, quote_of(forwarded(c, port), ip + 4)),
                            to_vip(kPortUnreach, 0, Bytes(reply.begin(), reply.begin() + static_cast<long>(ip / 2))),
                            to_vip(kPortUnreach, 0, wrong_version)})
        expect_untouched(p, XDP_DROP);
    expect_reasons({{KXLB_R_FWD_TX, 1}, {KXLB_R_DROP_ICMP_MALFORMED, 3}});
    expect_lb_counters(IPPROTO_UDP, 1);
}

TEST_P(LbIcmp, EchoAndErrorsQuotingIcmpGoOnAsBefore) {
    const Dgram c = client_dgram(IPPROTO_UDP, 40013);
    ASSERT_NE(open(c), 0);
    const Bytes ping{'p', 'i', 'n', 'g'};
    // Time exceeded about an echo reply the VIP sent: it quotes ICMP, which no flow of ours can be.
    const Packet reply = icmp_frame(LbNet::kNodeMac0, LbNet::kClientMac, vip(), client(), kEchoReply, 0x10001, ping);
    const Packet te = icmp_frame(kRouterMac, LbNet::kNodeMac0, router(), vip(), kTimeExceeded, 0,
                                 Bytes(reply.bytes.begin() + 14, reply.bytes.end()));
    expect_untouched(to_vip(kEcho, 0x10001, ping), XDP_PASS);
    expect_untouched(te, XDP_PASS);
    // An error to an address that is neither the node's SNAT address nor a frontend's, quoting our flow.
    expect_untouched(icmp_frame(kRouterMac, LbNet::kNodeMac0, router(), is6() ? "fd00::77" : "10.0.0.77", kPortUnreach,
                                0, quote_of(c)),
                     XDP_PASS);
    expect_reasons({{KXLB_R_FWD_TX, 1}, {KXLB_R_PASS_VIP_OTHER_L4, 2}, {KXLB_R_PASS_NOT_VIP, 1}});
}

// IPv4 only: quoted IP options, quoted UDP without checksum, quoted later fragments.
class LbIcmp4 : public LbIcmp {};
INSTANTIATE_TEST_SUITE_P(LbIcmp, LbIcmp4, ::testing::Values(false), [](const auto&) { return "v4"; });

TEST_P(LbIcmp4, QuotedIpv4OptionsAreWalkedOver) {
    const Dgram c = client_dgram(IPPROTO_UDP, 40020);
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    // A router recorded its route in the packet toward the backend (IHL 8), then could not deliver it.
    Dgram q = forwarded(c, port);
    q.ip_options = {7, 11, 8, 10, 0, 0, 254, 0, 0, 0, 0};  // record route, one slot filled
    Dgram want = c;
    want.ip_options = q.ip_options;
    backend_side(to_node(kPortUnreach, 0, quote_of(q)), kPortUnreach, 0, quote_of(want));
    expect_reasons({{KXLB_R_FWD_TX, 2}});
}

TEST_P(LbIcmp4, QuotedUdpWithoutChecksumKeepsNone) {
    Dgram c = client_dgram(IPPROTO_UDP, 40021);
    c.udp_csum = 0;
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    backend_side(to_node(kPortUnreach, 0, quote_of(forwarded(c, port))), kPortUnreach, 0, quote_of(c));
    expect_reasons({{KXLB_R_FWD_TX, 2}});
}

TEST_P(LbIcmp4, QuotedLaterFragmentPassesAsNoFlow) {
    const Dgram c = client_dgram(IPPROTO_UDP, 40022, std::string(64, 'f'));
    const std::uint16_t port = open(c);
    ASSERT_NE(port, 0);
    Bytes q = quote_of(forwarded(c, port));
    q[6] = 0x00;  // fragment offset 8 x 8 bytes: no UDP header in this fragment (header checksum left stale)
    q[7] = 0x08;
    expect_untouched(to_node(kTimeExceeded, 0, q), XDP_PASS);
    expect_reasons({{KXLB_R_FWD_TX, 1}, {KXLB_R_PASS_ICMP_NO_FLOW, 1}});
}

}  // namespace
}  // namespace kxlb::test
