// bpf tier: local backends (BackendSpec::local, KXLB_BE_F_LOCAL: pods on this node). The XDP datapath rewrites
// only the destination of a client's frame to the pod (client source kept) and passes it to the kernel
// (XDP_PASS, fwd_local), tracking the flow with KXLB_CT_F_LOCAL and a kxlb_nat entry keyed by the pod's reply;
// the tc egress program (bpf/tc_local_rev.bpf.c) puts the frontend back as the reply's source. Every case
// asserts exact output bytes (expected frames rebuilt independently with PacketBuilder), independently
// validated checksums, the flow entries and the counters of both programs.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "bpf/lb_harness.hpp"
#include "common/checksum.hpp"
#include "common/privileges.hpp"
#include "lib/local_rev_program.hpp"

namespace kxlb::test {
namespace {

constexpr std::uint16_t kPodPort = 8080;
constexpr std::uint16_t kTcpPort = 80, kUdpPort = 53;
constexpr std::uint16_t kMixedPort = 90;     // TCP: the local pod and two remote backends
constexpr std::uint16_t kOtherPort = 91;     // TCP: the same pod through another frontend
constexpr const char* kPod4 = "10.244.0.5";  // behind a veth of the node: never looked up in the FIB
constexpr const char* kPod6 = "fd44::5";
constexpr const char* kPodMac = "02:00:00:00:44:05";

struct Seg {
    std::uint8_t flags = TCP_SYN;
    std::uint32_t seq = 1;
    std::uint32_t ack = 0;
    std::string payload;
    std::optional<std::uint16_t> udp_csum;  // override (0: IPv4 "no checksum")
};

class LbLocalBase {
protected:
    void setup() {
        auto h = LbHarness::create();
        ASSERT_TRUE(h) << h.error().message;
        h_ = std::move(h).value();
        auto rev = LocalRevProgram::load(h_->program().lb_map_fds());
        ASSERT_TRUE(rev) << rev.error().message;
        rev_.emplace(std::move(rev).value());
        for (bool is6 : {false, true}) {
            upsert(spec(is6, IPPROTO_TCP, kTcpPort, {}, true));
            upsert(spec(is6, IPPROTO_UDP, kUdpPort, {}, true));
            upsert(spec(is6, IPPROTO_TCP, kMixedPort, {1, 2}, true));
            upsert(spec(is6, IPPROTO_TCP, kOtherPort, {}, true));
        }
    }

    static const char* vip(bool is6) { return is6 ? LbNet::kVip6 : LbNet::kVip4; }
    static const char* client(bool is6) { return is6 ? LbNet::kClient6 : LbNet::kClient4; }
    static const char* pod(bool is6) { return is6 ? kPod6 : kPod4; }
    static std::string backend(bool is6, int i) { return is6 ? LbNet::backend6(i) : LbNet::backend4(i); }

    // A service whose backends are the remote eth0 backends `remote` and, if with_pod, the local pod.
    static ServiceSpec spec(bool is6, std::uint8_t proto, std::uint16_t port, const std::vector<int>& remote,
                            bool with_pod) {
        std::vector<std::string> addrs;
        for (int i : remote) addrs.push_back(backend(is6, i));
        ServiceSpec s = make_service(vip(is6), port, proto, addrs, kPodPort);
        if (with_pod) s.backends.push_back(BackendSpec{IpAddr::parse(pod(is6)).value(), kPodPort, 1, false, true});
        return s;
    }
    void upsert(const ServiceSpec& s) {
        auto r = h_->lb().upsert_service(s);
        ASSERT_TRUE(r) << r.error().message;
    }

    static void l4(PacketBuilder& b, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport, const Seg& s) {
        if (proto == IPPROTO_TCP) b.tcp(sport, dport, TcpOpts{.flags = s.flags, .seq = s.seq, .ack = s.ack});
        else b.udp(sport, dport, UdpOpts{.checksum = s.udp_csum});
        if (!s.payload.empty()) b.payload(s.payload);
    }
    // A frame on the wire: src_mac -> dst_mac, src:sport -> dst:dport.
    static Packet frame(const std::string& src_mac, const std::string& dst_mac, const std::string& src,
                        std::uint16_t sport, const std::string& dst, std::uint16_t dport, std::uint8_t proto,
                        const Seg& s) {
        PacketBuilder b;
        b.eth(mac(src_mac), mac(dst_mac));
        if (src.find(':') != std::string::npos) b.ipv6(src, dst);
        else b.ipv4(src, dst);
        l4(b, proto, sport, dport, s);
        return b.build();
    }
    // The client's frame as it arrives on node eth0, and what the kernel must get from XDP: the same frame
    // with only the destination rewritten to the pod.
    static Packet client_pkt(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport, const Seg& s,
                             const std::string& src = "") {
        return frame(LbNet::kClientMac, LbNet::kNodeMac0, src.empty() ? client(is6) : src, sport, vip(is6), dport,
                     proto, s);
    }
    static Packet dnat_pkt(bool is6, std::uint8_t proto, std::uint16_t sport, const Seg& s) {
        return frame(LbNet::kClientMac, LbNet::kNodeMac0, client(is6), sport, pod(is6), kPodPort, proto, s);
    }
    // The pod's reply as it leaves node eth0 (the kernel routed it: node MAC -> client MAC), and after tc.
    static Packet pod_reply(bool is6, std::uint8_t proto, std::uint16_t cport, const Seg& s) {
        return frame(LbNet::kNodeMac0, LbNet::kClientMac, pod(is6), kPodPort, client(is6), cport, proto, s);
    }
    static Packet rev_pkt(bool is6, std::uint8_t proto, std::uint16_t cport, std::uint16_t vport, const Seg& s) {
        return frame(LbNet::kNodeMac0, LbNet::kClientMac, vip(is6), vport, client(is6), cport, proto, s);
    }

    Bytes run_expect(const Packet& in, std::uint32_t verdict) {
        auto r = h_->run(in);
        EXPECT_TRUE(r) << r.error().message;
        if (!r) return {};
        EXPECT_EQ(r->verdict, verdict) << hexdump(r->data);
        return r->data;
    }
    // Client frame that must go to the pod: XDP_PASS with exactly want's bytes.
    void expect_local(const Packet& in, const Packet& want) {
        const Bytes out = run_expect(in, XDP_PASS);
        EXPECT_EQ(diff_frames(want.span(), out), "");
        EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
    }
    Bytes run_tc_expect(const Packet& in, std::int32_t verdict) {
        auto r = run_tc(rev_->prog_fd(), in.span());
        EXPECT_TRUE(r) << r.error().message;
        if (!r) return {};
        EXPECT_EQ(r->verdict, verdict) << hexdump(r->data);
        return r->data;
    }
    // A reply the tc program must translate to exactly want.
    void expect_rev(const Packet& in, const Packet& want) {
        const Bytes out = run_tc_expect(in, TC_ACT_UNSPEC);
        EXPECT_EQ(diff_frames(want.span(), out), "");
        EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
    }
    void expect_tc_untouched(const Packet& in) {
        const Bytes out = run_tc_expect(in, TC_ACT_UNSPEC);
        EXPECT_EQ(diff_frames(in.span(), out), "");
    }

    kxlb_flow_key key(const std::string& s, std::uint16_t sp, const std::string& d, std::uint16_t dp,
                      std::uint8_t proto) {
        return flow_key(s, sp, d, dp, proto);
    }
    std::optional<kxlb_ct_value> flow(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport) {
        auto flows = h_->conntrack().flows();
        EXPECT_TRUE(flows) << flows.error().message;
        if (!flows) return std::nullopt;
        const auto want = key(client(is6), sport, vip(is6), dport, proto);
        for (const auto& [k, v] : *flows)
            if (std::memcmp(&k, &want, sizeof(k)) == 0) return v;
        return std::nullopt;
    }
    // The local flow's reverse entry: keyed {pod:port -> client:cport}.
    std::optional<kxlb_nat_value> rev_entry(bool is6, std::uint8_t proto, std::uint16_t cport) {
        return h_->nat_entry(key(pod(is6), kPodPort, client(is6), cport, proto));
    }
    std::size_t nat_count() { return h_->nat_count(); }
    Frontend fe(bool is6, std::uint8_t proto, std::uint16_t port) {
        return Frontend{IpAddr::parse(vip(is6)).value(), port, proto};
    }
    std::uint32_t pod_id(bool is6, std::uint8_t proto, std::uint16_t port) {
        auto id = h_->lb().backend_id(fe(is6, proto, port),
                                      BackendSpec{IpAddr::parse(pod(is6)).value(), kPodPort}.identity());
        EXPECT_TRUE(id.has_value());
        return id.value_or(~0u);
    }
    void expect_reasons(const std::map<kxlb_reason, std::uint64_t>& want) {
        const auto got = h_->reason_packets();
        for (std::size_t i = 0; i < kReasonCount; ++i) {
            const auto r = static_cast<kxlb_reason>(i);
            const auto it = want.find(r);
            EXPECT_EQ(got[i], it == want.end() ? 0u : it->second) << "reason " << reason_name(r);
        }
    }
    void expect_rev_reasons(const std::map<kxlb_local_rev_reason, std::uint64_t>& want) {
        auto got = rev_->reasons();
        ASSERT_TRUE(got) << got.error().message;
        for (std::size_t i = 0; i < kLocalRevReasonCount; ++i) {
            const auto r = static_cast<kxlb_local_rev_reason>(i);
            const auto it = want.find(r);
            EXPECT_EQ((*got)[i].packets, it == want.end() ? 0u : it->second)
                << "tc reason " << local_rev_reason_name(r);
        }
    }

    std::unique_ptr<LbHarness> h_;
    std::optional<LocalRevProgram> rev_;
};

class LbLocal : public ::testing::Test, protected LbLocalBase {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        setup();
    }
};

class LbLocalFlow : public ::testing::TestWithParam<Flow>, protected LbLocalBase {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        setup();
    }
};

// New flow and established flow: DNAT only (exact bytes), XDP_PASS with fwd_local, the flow entry marked local
// without SNAT port, the reverse entry under the reply's key; the pod's replies come back out with the frontend
// as source (exact bytes), counted by both programs.
TEST_P(LbLocalFlow, NewAndEstablishedFlowsAreDnatOnlyAndRepliesReverseTranslated) {
    const auto [is6, proto] = GetParam();
    const std::uint16_t port = proto == IPPROTO_TCP ? kTcpPort : kUdpPort;
    const Seg first{.flags = TCP_SYN, .seq = 1000, .payload = proto == IPPROTO_UDP ? "query" : ""};
    const Seg data{.flags = TCP_ACK | TCP_PSH, .seq = 1001, .ack = 78, .payload = "GET / HTTP/1.1\r\n\r\n"};
    const Seg reply1{
        .flags = TCP_SYN | TCP_ACK, .seq = 77, .ack = 1001, .payload = proto == IPPROTO_UDP ? "answer" : ""};
    const Seg reply2{.flags = TCP_ACK | TCP_PSH, .seq = 78, .ack = 1019, .payload = "HTTP/1.1 200 OK\r\n\r\nhello"};

    expect_local(client_pkt(is6, proto, 40000, port, first), dnat_pkt(is6, proto, 40000, first));
    const auto ct = flow(is6, proto, 40000, port);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, static_cast<std::uint32_t>(KXLB_CT_F_LOCAL));
    EXPECT_EQ(ct->snat_port, 0);
    EXPECT_EQ(ct->backend_id, pod_id(is6, proto, port));
    EXPECT_EQ(ct->nh.ifindex, 0u) << "the kernel routes local flows";
    const auto rev = rev_entry(is6, proto, 40000);
    ASSERT_TRUE(rev) << "reverse entry keyed {pod:port -> client:port}";
    EXPECT_EQ(rev->flags, static_cast<std::uint32_t>(KXLB_CT_F_LOCAL));
    EXPECT_EQ(rev->vip_port, htons(port));
    EXPECT_EQ(rev->client_port, htons(40000));
    EXPECT_EQ(IpAddr::from_words(is6 ? AF_INET6 : AF_INET, rev->vip_addr).str(), vip(is6));
    EXPECT_EQ(IpAddr::from_words(is6 ? AF_INET6 : AF_INET, rev->client_addr).str(), client(is6));
    EXPECT_EQ(nat_count(), 1u);

    expect_rev(pod_reply(is6, proto, 40000, reply1), rev_pkt(is6, proto, 40000, port, reply1));
    expect_local(client_pkt(is6, proto, 40000, port, data), dnat_pkt(is6, proto, 40000, data));
    expect_rev(pod_reply(is6, proto, 40000, reply2), rev_pkt(is6, proto, 40000, port, reply2));

    expect_reasons({{KXLB_R_FWD_LOCAL, 2}});
    expect_rev_reasons({{KXLB_LR_REV_LOCAL, 2}});
    auto sc = h_->counters().service(h_->lb().service(fe(is6, proto, port))->id);
    ASSERT_TRUE(sc);
    EXPECT_EQ(sc->packets, 2u);
    EXPECT_EQ(sc->new_flows, 1u);
    auto bc = h_->counters().backend(pod_id(is6, proto, port));
    ASSERT_TRUE(bc);
    EXPECT_EQ(bc->packets, 2u);
    EXPECT_EQ(bc->new_flows, 1u);
}

INSTANTIATE_TEST_SUITE_P(Families, LbLocalFlow,
                         ::testing::Values(Flow{false, IPPROTO_TCP}, Flow{false, IPPROTO_UDP}, Flow{true, IPPROTO_TCP},
                                           Flow{true, IPPROTO_UDP}),
                         flow_name<::testing::TestParamInfo<Flow>>);

// UDP over IPv4 without a checksum (0) stays without one in both directions.
TEST_F(LbLocal, Ipv4UdpZeroChecksumStaysZero) {
    const Seg q{.payload = "q", .udp_csum = 0}, a{.payload = "a", .udp_csum = 0};
    const Bytes out = run_expect(client_pkt(false, IPPROTO_UDP, 41000, kUdpPort, q), XDP_PASS);
    EXPECT_EQ(diff_frames(dnat_pkt(false, IPPROTO_UDP, 41000, q).span(), out), "");
    const Bytes back = run_tc_expect(pod_reply(false, IPPROTO_UDP, 41000, a), TC_ACT_UNSPEC);
    EXPECT_EQ(diff_frames(rev_pkt(false, IPPROTO_UDP, 41000, kUdpPort, a).span(), back), "");
    EXPECT_EQ(back.at(14 + 20 + 6), 0);
    EXPECT_EQ(back.at(14 + 20 + 7), 0);
    expect_rev_reasons({{KXLB_LR_REV_LOCAL, 1}});
}

// Everything else leaving the NIC is left alone and counted: replies without a local flow (other client port,
// other pod port), a full-NAT flow's reverse key (backend -> node SNAT address: never leaves, and is not local),
// other protocols, non-IP frames, malformed packets.
TEST_F(LbLocal, NonMatchingEgressIsUntouched) {
    expect_local(client_pkt(false, IPPROTO_TCP, 42000, kTcpPort, Seg{}), dnat_pkt(false, IPPROTO_TCP, 42000, Seg{}));
    const Seg r{.flags = TCP_SYN | TCP_ACK, .seq = 5, .ack = 2};
    expect_tc_untouched(pod_reply(false, IPPROTO_TCP, 42001, r));  // another client port
    expect_tc_untouched(
        frame(LbNet::kNodeMac0, LbNet::kClientMac, kPod4, 9090, LbNet::kClient4, 42000, IPPROTO_TCP, r));
    expect_tc_untouched(pod_reply(false, IPPROTO_UDP, 42000, Seg{.payload = "x"}));  // other protocol, same ports
    expect_tc_untouched(pod_reply(true, IPPROTO_TCP, 42000, r));                     // other family

    // A full-NAT flow to a remote backend: its reverse entry is not the tc program's business.
    auto full = make_service(LbNet::kVip4, 100, IPPROTO_TCP, {LbNet::backend4(1)}, kPodPort);
    upsert(full);
    const Bytes fwd = run_expect(client_pkt(false, IPPROTO_TCP, 42002, 100, Seg{}), XDP_TX);
    ASSERT_GE(fwd.size(), 38u);
    const std::uint16_t snat_port = static_cast<std::uint16_t>(fwd[34] << 8 | fwd[35]);
    expect_tc_untouched(frame(LbNet::kNodeMac0, LbNet::backend_mac(1), LbNet::backend4(1), kPodPort, LbNet::kNode4,
                              snat_port, IPPROTO_TCP, r));

    PacketBuilder icmp;
    icmp.eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac)).ipv4(kPod4, LbNet::kClient4).icmp(0, 0, 0x12340001);
    expect_tc_untouched(icmp.build());
    PacketBuilder arp;
    arp.eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac)).eth_type(0x0806).payload(std::string(28, '\0'));
    expect_tc_untouched(arp.build());
    PacketBuilder vlan;
    vlan.eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac)).vlan(7).ipv4(kPod4, LbNet::kClient4).tcp(kPodPort, 42000);
    expect_tc_untouched(vlan.build());
    Packet bad = pod_reply(false, IPPROTO_TCP, 42000, r);
    bad.set_u8(14, 0x44);  // IHL 4
    expect_tc_untouched(bad);

    expect_rev_reasons({{KXLB_LR_PASS_NOT_LOCAL_REPLY, 5},
                        {KXLB_LR_PASS_OTHER_L4, 1},
                        {KXLB_LR_PASS_NOT_IP, 1},
                        {KXLB_LR_PASS_VLAN, 1},
                        {KXLB_LR_PASS_MALFORMED, 1}});
    expect_reasons({{KXLB_R_FWD_LOCAL, 1}, {KXLB_R_FWD_TX, 1}});
}

// A service with a local pod and two remote backends spreads flows over all three; each flow is handled the
// way its backend needs (DNAT-only XDP_PASS for the pod, full-NAT XDP_TX for the others), and only the pod's
// replies are the tc program's.
TEST_F(LbLocal, MixedServiceUsesLocalAndRemoteBackends) {
    std::set<std::string> seen;
    std::uint64_t local = 0, remote = 0;
    for (std::uint16_t sport = 43000; sport < 43064; ++sport) {
        auto r = h_->run(client_pkt(false, IPPROTO_TCP, sport, kMixedPort, Seg{}));
        ASSERT_TRUE(r) << r.error().message;
        const Bytes& out = r->data;
        if (r->verdict == XDP_PASS) {
            EXPECT_EQ(diff_frames(frame(LbNet::kClientMac, LbNet::kNodeMac0, LbNet::kClient4, sport, kPod4, kPodPort,
                                        IPPROTO_TCP, Seg{})
                                      .span(),
                                  out),
                      "");
            ++local;
            seen.insert(kPod4);
            const Seg sa{.flags = TCP_SYN | TCP_ACK, .seq = 9, .ack = 2};
            expect_rev(pod_reply(false, IPPROTO_TCP, sport, sa), rev_pkt(false, IPPROTO_TCP, sport, kMixedPort, sa));
        } else {
            ASSERT_EQ(r->verdict, XDP_TX) << hexdump(out);
            ASSERT_GE(out.size(), 34u);
            // full-NAT: source is the node, destination one of the remote backends
            const std::string dst = std::to_string(out[30]) + "." + std::to_string(out[31]) + "." +
                                    std::to_string(out[32]) + "." + std::to_string(out[33]);
            EXPECT_TRUE(dst == LbNet::backend4(1) || dst == LbNet::backend4(2)) << dst;
            EXPECT_EQ(std::to_string(out[26]) + "." + std::to_string(out[27]) + "." + std::to_string(out[28]) + "." +
                          std::to_string(out[29]),
                      LbNet::kNode4);
            EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
            ++remote;
            seen.insert(dst);
        }
    }
    EXPECT_EQ(seen.size(), 3u) << "64 flows reach the pod and both remote backends";
    expect_reasons({{KXLB_R_FWD_LOCAL, local}, {KXLB_R_FWD_TX, remote}});
    expect_rev_reasons({{KXLB_LR_REV_LOCAL, local}});
    EXPECT_EQ(nat_count(), 64u) << "one reverse entry per flow, local or full-NAT";
}

// TCP close tracking: the client's FIN is seen by XDP, the pod's by tc; both close the flow in both entries.
// An RST from the pod closes it at once.
TEST_F(LbLocal, FinBothWaysAndRstCloseTheFlow) {
    for (bool is6 : {false, true}) {
        SCOPED_TRACE(is6 ? "IPv6" : "IPv4");
        const std::uint8_t proto = IPPROTO_TCP;
        expect_local(client_pkt(is6, proto, 44000, kTcpPort, Seg{}), dnat_pkt(is6, proto, 44000, Seg{}));
        const Seg fin{.flags = TCP_FIN | TCP_ACK, .seq = 2, .ack = 9};
        expect_local(client_pkt(is6, proto, 44000, kTcpPort, fin), dnat_pkt(is6, proto, 44000, fin));
        EXPECT_EQ(flow(is6, proto, 44000, kTcpPort)->flags, KXLB_CT_F_LOCAL | KXLB_CT_F_FIN_CLIENT);
        EXPECT_EQ(rev_entry(is6, proto, 44000)->flags, KXLB_CT_F_LOCAL | KXLB_CT_F_FIN_CLIENT);
        const Seg pfin{.flags = TCP_FIN | TCP_ACK, .seq = 9, .ack = 3};
        expect_rev(pod_reply(is6, proto, 44000, pfin), rev_pkt(is6, proto, 44000, kTcpPort, pfin));
        const std::uint32_t closed = KXLB_CT_F_LOCAL | KXLB_CT_F_FIN_CLIENT | KXLB_CT_F_FIN_BACKEND | KXLB_CT_F_CLOSED;
        EXPECT_EQ(flow(is6, proto, 44000, kTcpPort)->flags, closed);
        EXPECT_EQ(rev_entry(is6, proto, 44000)->flags, closed);

        expect_local(client_pkt(is6, proto, 44001, kTcpPort, Seg{}), dnat_pkt(is6, proto, 44001, Seg{}));
        const Seg rst{.flags = TCP_RST | TCP_ACK, .seq = 0, .ack = 2};
        expect_rev(pod_reply(is6, proto, 44001, rst), rev_pkt(is6, proto, 44001, kTcpPort, rst));
        EXPECT_EQ(flow(is6, proto, 44001, kTcpPort)->flags, KXLB_CT_F_LOCAL | KXLB_CT_F_CLOSED);
        EXPECT_EQ(rev_entry(is6, proto, 44001)->flags, KXLB_CT_F_LOCAL | KXLB_CT_F_CLOSED);

        // A new SYN on the closed 5-tuple is a new flow to the pod again.
        expect_local(client_pkt(is6, proto, 44000, kTcpPort, Seg{}), dnat_pkt(is6, proto, 44000, Seg{}));
        EXPECT_EQ(flow(is6, proto, 44000, kTcpPort)->flags, static_cast<std::uint32_t>(KXLB_CT_F_LOCAL));
    }
    expect_reasons({{KXLB_R_FWD_LOCAL, 8}});
}

// The argument that keeps local and full-NAT reverse keys apart: a client claiming the node's own (SNAT)
// address opens no local flow.
TEST_F(LbLocal, ClientWithTheNodeAddressIsDropped) {
    for (bool is6 : {false, true}) {
        const Packet in = client_pkt(is6, IPPROTO_TCP, 45000, kTcpPort, Seg{}, is6 ? LbNet::kNode6 : LbNet::kNode4);
        run_expect(in, XDP_DROP);
    }
    EXPECT_EQ(nat_count(), 0u);
    expect_reasons({{KXLB_R_DROP_LOCAL_NODE_SRC, 2}});
}

// The reverse key leaves out the frontend: the same client addr:port reaching the same pod through a second
// frontend while the first flow lives would make its replies ambiguous, so it is refused; once the first flow is
// closed and past TIME_WAIT (0 s here) the second frontend may take the tuple.
TEST_F(LbLocal, SameClientTupleThroughAnotherFrontendIsRefusedWhileLive) {
    LbConfig cfg = default_lb_config();
    cfg.tcp_timewait_s = 0;
    ASSERT_TRUE(h_->set_config(cfg));
    expect_local(client_pkt(false, IPPROTO_TCP, 46000, kTcpPort, Seg{}), dnat_pkt(false, IPPROTO_TCP, 46000, Seg{}));
    run_expect(client_pkt(false, IPPROTO_TCP, 46000, kOtherPort, Seg{}), XDP_DROP);
    EXPECT_FALSE(flow(false, IPPROTO_TCP, 46000, kOtherPort));
    EXPECT_EQ(rev_entry(false, IPPROTO_TCP, 46000)->vip_port, htons(kTcpPort)) << "the live flow keeps its entry";

    run_expect(client_pkt(false, IPPROTO_TCP, 46000, kTcpPort, Seg{.flags = TCP_RST | TCP_ACK, .seq = 2}), XDP_PASS);
    ::usleep(20 * 1000);  // past TIME_WAIT of 0 s on the coarse clock
    expect_local(client_pkt(false, IPPROTO_TCP, 46000, kOtherPort, Seg{}), dnat_pkt(false, IPPROTO_TCP, 46000, Seg{}));
    EXPECT_EQ(rev_entry(false, IPPROTO_TCP, 46000)->vip_port, htons(kOtherPort));
    const Seg sa{.flags = TCP_SYN | TCP_ACK, .seq = 9, .ack = 2};
    expect_rev(pod_reply(false, IPPROTO_TCP, 46000, sa), rev_pkt(false, IPPROTO_TCP, 46000, kOtherPort, sa));
    expect_reasons({{KXLB_R_FWD_LOCAL, 3}, {KXLB_R_DROP_LOCAL_TUPLE_BUSY, 1}});
}

// When the pod goes away, its established flows re-balance like any other flow (here to a remote backend, with
// full-NAT); when a remote backend is replaced by the pod, its flows move to the pod.
TEST_F(LbLocal, FlowsRebalanceBetweenLocalAndRemote) {
    auto only_pod = spec(false, IPPROTO_TCP, 110, {}, true);
    upsert(only_pod);
    expect_local(client_pkt(false, IPPROTO_TCP, 47000, 110, Seg{}), dnat_pkt(false, IPPROTO_TCP, 47000, Seg{}));
    upsert(spec(false, IPPROTO_TCP, 110, {1}, false));  // pod removed, a remote backend instead
    const Seg ack{.flags = TCP_ACK, .seq = 2, .ack = 5};
    const Bytes out = run_expect(client_pkt(false, IPPROTO_TCP, 47000, 110, ack), XDP_TX);
    EXPECT_EQ(flow(false, IPPROTO_TCP, 47000, 110)->flags, 0u) << "now a full-NAT flow";
    upsert(spec(false, IPPROTO_TCP, 110, {}, true));  // and back to the pod only
    expect_local(client_pkt(false, IPPROTO_TCP, 47000, 110, ack), dnat_pkt(false, IPPROTO_TCP, 47000, ack));
    EXPECT_EQ(flow(false, IPPROTO_TCP, 47000, 110)->flags, static_cast<std::uint32_t>(KXLB_CT_F_LOCAL));
    expect_reasons({{KXLB_R_FWD_LOCAL, 2}, {KXLB_R_FWD_TX, 1}});
}

// Loading on pinned maps: the tc program finds the XDP program's kxlb_ct / kxlb_nat (sized as the XDP loader
// chose) and translates replies of flows the XDP program opened.
TEST(LbLocalPinned, SharesPinnedFlowMapsWithTheXdpProgram) {
    KXLB_REQUIRE_ROOT();
    const PinLayout layout{"/sys/fs/bpf/kxlb_test_local_" + std::to_string(::getpid())};
    ASSERT_TRUE(prepare_pin_dirs(layout));
    struct Cleanup {
        PinLayout l;
        ~Cleanup() {
            (void)remove_pinned(l);
            ::rmdir(l.root.c_str());
        }
    } cleanup{layout};
    XdpLbLoadOptions o;
    o.pin_root = layout.root;
    o.ct_entries = 4096;
    auto xdp = XdpLbProgram::load(o);
    ASSERT_TRUE(xdp) << xdp.error().message;
    auto rev = LocalRevProgram::load_pinned(layout);
    ASSERT_TRUE(rev) << rev.error().message;
    // Same map: an entry written through the XDP program's fd is visible through the pinned path.
    kxlb_flow_key k{};
    k.family = KXLB_AF_INET;
    k.proto = IPPROTO_TCP;
    kxlb_nat_value v{};
    v.flags = KXLB_CT_F_LOCAL;
    ASSERT_EQ(bpf_map_update_elem(xdp->lb_map_fds().nat, &k, &v, BPF_ANY), 0);
    UniqueFd pinned(bpf_obj_get(layout.map("kxlb_nat").c_str()));
    ASSERT_TRUE(pinned.valid());
    kxlb_nat_value got{};
    EXPECT_EQ(bpf_map_lookup_elem(pinned.get(), &k, &got), 0);
    EXPECT_EQ(got.flags, static_cast<std::uint32_t>(KXLB_CT_F_LOCAL));
    EXPECT_EQ(::access(layout.map("kxlb_local_rev_reasons").c_str(), F_OK), 0) << "its counters are pinned too";
}

TEST(LbLocalNames, ReasonNames) {
    EXPECT_EQ(reason_name(KXLB_R_FWD_LOCAL), "fwd_local");
    EXPECT_EQ(reason_name(KXLB_R_DROP_LOCAL_NODE_SRC), "drop_local_node_src");
    EXPECT_EQ(reason_name(KXLB_R_DROP_LOCAL_TUPLE_BUSY), "drop_local_tuple_busy");
    EXPECT_EQ(local_rev_reason_name(KXLB_LR_REV_LOCAL), "rev_local");
    EXPECT_EQ(local_rev_reason_name(KXLB_LR_PASS_NOT_LOCAL_REPLY), "pass_not_local_reply");
    EXPECT_EQ(kLocalRevReasonNames.size(), static_cast<std::size_t>(KXLB_LOCAL_REV_REASON_MAX));
}

}  // namespace
}  // namespace kxlb::test
