// bpf tier: DSR (direct server return) through the load balancer. Services flagged KXLB_SVC_F_DSR send the
// client's frame unchanged inside an outer IPv4 (IPIP) or IPv6 (IP6IP6) header to the backend. Every case asserts
// the verdict, the exact output bytes (outer header rebuilt independently with PacketBuilder, the outer source
// and IPv6 flow label from a C++ mirror of the datapath's flow hash), independently validated checksums, the
// conntrack entry and the counters it moved; the round trip through the backend's decap program
// (bpf/xdp_decap.bpf.c) must give back the client's IP packet byte for byte.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "bpf/lb_harness.hpp"
#include "common/checksum.hpp"
#include "common/privileges.hpp"
#include "lib/decap_program.hpp"

namespace kxlb::test {
namespace {

constexpr std::uint16_t kBackendPort = 8080;  // ignored by DSR: the backend sees the VIP port
constexpr std::uint16_t kTcpPort = 80, kUdpPort = 53;
constexpr std::uint16_t kFullNatPort = 81;  // a full-NAT TCP service on the same VIP
constexpr std::uint16_t kFarPort = 8000;    // DSR TCP service whose backend sits behind eth1
constexpr std::uint16_t kEmptyPort = 82;    // DSR TCP service without backends
constexpr std::uint32_t kSmallMtu = 1400;   // node eth0 MTU in the too-big cases (>= 1280: IPv6 stays on)

// ---- C++ mirror of the datapath's flow hash (bpf/lib/lb.h lb_flow_hash) and outer source (bpf/lib/encap.h) ----

std::uint32_t mix32(std::uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return static_cast<std::uint32_t>(h);
}

std::uint32_t flow_hash(const kxlb_flow_key& k, std::uint64_t seed) {
    std::uint32_t w[sizeof(k) / 4];
    std::memcpy(w, &k, sizeof(k));
    std::uint64_t h = seed ^ 0x9e3779b97f4a7c15ULL;
    for (std::uint32_t x : w) h = (h ^ x) * 0x100000001b3ULL + (h >> 29);
    return mix32(h);
}

// The outer source for a flow under prefix p (host bits from the hash), written independently of encap.h.
std::string spread_source(const Cidr& p, std::uint32_t hash) {
    IpAddr a = p.addr;
    auto or_word = [&](int word, std::uint32_t v) {
        for (int i = 0; i < 4; ++i) a.bytes[word * 4 + i] |= static_cast<std::uint8_t>(v >> (24 - 8 * i));
    };
    const auto host_mask = [](int bits) { return bits >= 32 ? 0xffffffffu : bits <= 0 ? 0u : (1u << bits) - 1; };
    if (a.family == AF_INET) {
        or_word(0, hash & host_mask(32 - p.prefix_len));
    } else {
        or_word(2, (hash * 0x9e3779b1u) & host_mask(96 - p.prefix_len));
        or_word(3, hash & host_mask(128 - p.prefix_len));
    }
    return a.str();
}

bool in_prefix(const std::string& addr, const Cidr& p) {
    Cidr c{IpAddr::parse(addr).value(), p.prefix_len};
    return c.network() == p;
}

// One TCP segment or UDP datagram's contents (flags/seq/ack only matter for TCP), and the inner IP header's
// TOS / traffic class and DF bit.
struct Seg {
    std::uint8_t flags = TCP_SYN;
    std::uint32_t seq = 1;
    std::uint32_t ack = 0;
    std::string payload;
    std::uint8_t tos = 0;
    bool df = false;
};

class LbDsrBase {
protected:
    void setup(const LbConfig& cfg = default_lb_config()) {
        cfg_ = cfg;
        auto h = LbHarness::create(cfg);
        ASSERT_TRUE(h) << h.error().message;
        h_ = std::move(h).value();
        for (bool is6 : {false, true}) {
            add_service(is6, IPPROTO_TCP, kTcpPort, {1, 2, 3}, KXLB_SVC_F_DSR);
            add_service(is6, IPPROTO_UDP, kUdpPort, {1, 2, 3}, KXLB_SVC_F_DSR);
            add_service(is6, IPPROTO_TCP, kFullNatPort, {1, 2, 3}, 0);
            add_service(is6, IPPROTO_TCP, kEmptyPort, {}, KXLB_SVC_F_DSR);
        }
    }

    static const char* vip(bool is6) { return is6 ? LbNet::kVip6 : LbNet::kVip4; }
    static const char* client(bool is6) { return is6 ? LbNet::kClient6 : LbNet::kClient4; }
    static const char* node(bool is6) { return is6 ? LbNet::kNode6 : LbNet::kNode4; }
    static std::string backend(bool is6, int i) { return is6 ? LbNet::backend6(i) : LbNet::backend4(i); }
    static std::size_t l3_len(bool is6) { return is6 ? 40 : 20; }

    static ServiceSpec spec(bool is6, std::uint8_t proto, std::uint16_t port, const std::vector<int>& backends,
                            std::uint32_t flags) {
        std::vector<std::string> addrs;
        for (int i : backends) addrs.push_back(backend(is6, i));
        ServiceSpec s = make_service(vip(is6), port, proto, addrs, kBackendPort);
        s.flags = flags;
        return s;
    }
    void add_service(bool is6, std::uint8_t proto, std::uint16_t port, const std::vector<int>& backends,
                     std::uint32_t flags) {
        upsert(spec(is6, proto, port, backends, flags));
    }
    void upsert(const ServiceSpec& s) {
        auto r = h_->lb().upsert_service(s);
        ASSERT_TRUE(r) << r.error().message;
    }

    // The client's frame as it arrives on node eth0.
    static Packet client_pkt(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport, const Seg& s,
                             const std::string& src = "") {
        PacketBuilder b;
        b.eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0));
        inner(b, is6, proto, sport, dport, s, src.empty() ? client(is6) : src);
        return b.build();
    }
    static void inner(PacketBuilder& b, bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport,
                      const Seg& s, const std::string& src) {
        if (is6) b.ipv6(src, vip(is6), Ipv6Opts{.traffic_class = s.tos});
        else b.ipv4(src, vip(is6), Ipv4Opts{.tos = s.tos, .df = s.df});
        if (proto == IPPROTO_TCP) b.tcp(sport, dport, TcpOpts{.flags = s.flags, .seq = s.seq, .ack = s.ack});
        else b.udp(sport, dport);
        if (!s.payload.empty()) b.payload(s.payload);
    }
    // What the balancer must send: node MAC -> next-hop MAC, outer header from outer_src to the backend address
    // (TOS/traffic class copied, DF, TTL 64, id 0, IPv6 flow label = 20 bits of the flow hash), then the client's
    // IP packet unchanged.
    Packet encapsulated(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport, const Seg& s,
                        const std::string& be_addr, const std::string& be_mac, const std::string& outer_src,
                        const std::string& src = "", const char* node_mac = LbNet::kNodeMac0) const {
        const std::string csrc = src.empty() ? client(is6) : src;
        PacketBuilder b;
        b.eth(mac(node_mac), mac(be_mac));
        if (is6) {
            const std::uint32_t h = flow_hash(flow_key(csrc, sport, vip(is6), dport, proto), cfg_.hash_seed);
            b.ipv6(outer_src, be_addr, Ipv6Opts{.hop_limit = 64, .traffic_class = s.tos, .flow_label = h & 0xfffff});
        } else {
            b.ipv4(outer_src, be_addr, Ipv4Opts{.ttl = 64, .tos = s.tos, .id = 0, .df = true});
        }
        inner(b, is6, proto, sport, dport, s, csrc);
        return b.build();
    }

    Bytes run_expect(const Packet& in, std::uint32_t verdict, int ingress = 0) {
        return h_->run_expect(in, verdict, ingress);
    }

    // Which backend (1..4) an output frame was sent to, from its destination MAC.
    static int backend_index(const Bytes& out) {
        for (int i = 1; i <= 4; ++i) {
            Mac m = Mac::parse(LbNet::backend_mac(i));
            if (out.size() >= 6 && std::equal(m.b.begin(), m.b.end(), out.begin())) return i;
        }
        return 0;
    }

    // The outer IPv4 header checksum, recomputed here from the bytes (not by the checksum module).
    static void expect_outer_v4_checksum(const Bytes& out) {
        ASSERT_GE(out.size(), 34u);
        std::uint32_t sum = 0;
        for (std::size_t i = 14; i < 34; i += 2) sum += static_cast<std::uint32_t>(out[i] << 8 | out[i + 1]);
        while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
        EXPECT_EQ(sum, 0xffffu) << "outer IPv4 header checksum";
    }

    // Sends a client frame that must be encapsulated toward an eth0 backend (XDP_TX, fwd_encap_tx); the expected
    // frame is rebuilt for the backend the output names and compared byte for byte. Returns the backend index.
    int forward(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport, const Seg& s,
                const std::string& outer_src = "", const std::string& src = "") {
        const Packet in = client_pkt(is6, proto, sport, dport, s, src);
        const Bytes out = run_expect(in, XDP_TX);
        const int be = backend_index(out);
        EXPECT_GE(be, 1) << "not sent to an eth0 backend:\n" << hexdump(out);
        if (be < 1) return 0;
        const Packet want = encapsulated(is6, proto, sport, dport, s, backend(is6, be), LbNet::backend_mac(be),
                                         outer_src.empty() ? node(is6) : outer_src, src);
        EXPECT_EQ(diff_frames(want.span(), out), "");
        EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
        if (!is6) expect_outer_v4_checksum(out);
        // The inner packet is the client's, byte for byte.
        const std::size_t ol = l3_len(is6);
        EXPECT_EQ(Bytes(out.begin() + static_cast<std::ptrdiff_t>(14 + ol), out.end()),
                  Bytes(in.bytes.begin() + 14, in.bytes.end()));
        return be;
    }

    // The forward conntrack entry of client:sport -> vip:dport.
    std::optional<kxlb_ct_value> flow(bool is6, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport) {
        return h_->ct_entry(flow_key(client(is6), sport, vip(is6), dport, proto));
    }
    std::size_t nat_count() { return h_->nat_count(); }
    Frontend fe(bool is6, std::uint8_t proto, std::uint16_t port) {
        return Frontend{IpAddr::parse(vip(is6)).value(), port, proto};
    }
    kxlb_lb_counter svc_counter(const Frontend& f) { return h_->service_counter(f); }
    std::optional<std::uint32_t> backend_id(const Frontend& f, const std::string& addr) {
        return h_->lb().backend_id(f, BackendSpec{IpAddr::parse(addr).value(), kBackendPort}.identity());
    }
    kxlb_lb_counter backend_counter(const Frontend& f, const std::string& addr) {
        return h_->backend_counter(f, BackendSpec{IpAddr::parse(addr).value(), kBackendPort}.identity());
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
    void set_node_mtu(std::uint32_t mtu) {
        auto r = h_->lab().run("node", {"ip", "link", "set", "dev", "eth0", "mtu", std::to_string(mtu)});
        ASSERT_TRUE(r) << r.error().message;
        ASSERT_EQ(r->exit_code, 0) << r->err;
    }

    LbConfig cfg_;
    std::unique_ptr<LbHarness> h_;
};

class LbDsr : public ::testing::Test, protected LbDsrBase {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        setup();
    }
};

class LbDsrFlow : public ::testing::TestWithParam<Flow>, protected LbDsrBase {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        setup();
    }
};

// New flow, then an established one with payload: exact bytes both times, the same backend, a conntrack entry
// marked DSR without SNAT port or reverse entry, counters, and the round trip through the decap program.
TEST_P(LbDsrFlow, NewAndEstablishedFlowsAreEncapsulatedExactly) {
    const auto [is6, proto] = GetParam();
    const std::uint16_t port = proto == IPPROTO_TCP ? kTcpPort : kUdpPort;
    const Seg first{.flags = TCP_SYN, .seq = 1000};
    const Seg data{.flags = TCP_ACK | TCP_PSH, .seq = 1001, .ack = 77, .payload = "GET / HTTP/1.1\r\n\r\n"};

    const int be = forward(is6, proto, 40000, port, first);
    ASSERT_GE(be, 1);
    const auto ct = flow(is6, proto, 40000, port);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, static_cast<std::uint32_t>(KXLB_CT_F_DSR));
    EXPECT_EQ(ct->snat_port, 0);
    EXPECT_EQ(ct->backend_id, backend_id(fe(is6, proto, port), backend(is6, be)).value_or(~0u));
    EXPECT_EQ(nat_count(), 0u) << "DSR keeps no reverse entry";

    // Established: same backend (forward() checks the bytes against the backend the output names).
    EXPECT_EQ(forward(is6, proto, 40000, port, data), be);

    const Packet p1 = client_pkt(is6, proto, 40000, port, first), p2 = client_pkt(is6, proto, 40000, port, data);
    const auto sc = svc_counter(fe(is6, proto, port));
    EXPECT_EQ(sc.packets, 2u);
    EXPECT_EQ(sc.new_flows, 1u);
    EXPECT_EQ(sc.bytes, p1.size() + p2.size()) << "bytes as received";
    const auto bc = backend_counter(fe(is6, proto, port), backend(is6, be));
    EXPECT_EQ(bc.packets, 2u);
    EXPECT_EQ(bc.new_flows, 1u);
    expect_reasons({{KXLB_R_FWD_ENCAP_TX, 2}});

    // The backend's decap program (listing the backend's address) turns the output back into the client's packet.
    auto decap = XdpDecapProgram::load();
    ASSERT_TRUE(decap) << decap.error().message;
    ASSERT_TRUE(decap->add_address(IpAddr::parse(backend(is6, be)).value()));
    for (const Packet* in : {&p1, &p2}) {
        auto out = h_->run(*in);
        ASSERT_TRUE(out) << out.error().message;
        auto d = run_xdp(decap->prog_fd(), out->data);
        ASSERT_TRUE(d) << d.error().message;
        EXPECT_EQ(d->verdict, static_cast<std::uint32_t>(XDP_PASS));
        PacketBuilder b;
        b.eth(mac(LbNet::kNodeMac0), mac(LbNet::backend_mac(be)));
        inner(b, is6, proto, 40000, port, in == &p1 ? first : data, client(is6));
        EXPECT_EQ(diff_frames(b.build().span(), d->data), "");
        EXPECT_EQ(Bytes(d->data.begin() + 14, d->data.end()), Bytes(in->bytes.begin() + 14, in->bytes.end()));
    }
    auto dr = decap->reasons();
    ASSERT_TRUE(dr);
    EXPECT_EQ((*dr)[is6 ? KXLB_DR_DECAP_IP6IP6 : KXLB_DR_DECAP_IPIP].packets, 2u);
}

// A backend removed from the service: the established flow re-balances to a remaining backend (a new flow
// again in the counters) instead of being sent to a dead address.
TEST_P(LbDsrFlow, FlowRebalancesWhenItsBackendIsRemoved) {
    const auto [is6, proto] = GetParam();
    const std::uint16_t port = proto == IPPROTO_TCP ? kTcpPort : kUdpPort;
    const int be = forward(is6, proto, 40100, port, Seg{});
    ASSERT_GE(be, 1);
    std::vector<int> rest;
    for (int i : {1, 2, 3})
        if (i != be) rest.push_back(i);
    upsert(spec(is6, proto, port, rest, KXLB_SVC_F_DSR));
    const Seg data{.flags = TCP_ACK, .seq = 2, .ack = 1, .payload = "x"};
    const int be2 = forward(is6, proto, 40100, port, data);
    EXPECT_NE(be2, be);
    EXPECT_TRUE(be2 == rest[0] || be2 == rest[1]) << be2;
    const auto ct = flow(is6, proto, 40100, port);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->backend_id, backend_id(fe(is6, proto, port), backend(is6, be2)).value_or(~0u));
    EXPECT_EQ(ct->flags, static_cast<std::uint32_t>(KXLB_CT_F_DSR));
    EXPECT_EQ(svc_counter(fe(is6, proto, port)).new_flows, 2u);
    expect_reasons({{KXLB_R_FWD_ENCAP_TX, 2}});
}

INSTANTIATE_TEST_SUITE_P(LbDsr, LbDsrFlow,
                         ::testing::Values(Flow{false, IPPROTO_TCP}, Flow{false, IPPROTO_UDP}, Flow{true, IPPROTO_TCP},
                                           Flow{true, IPPROTO_UDP}),
                         flow_name<::testing::TestParamInfo<Flow>>);

// The outer header copies the inner TOS / traffic class including ECN (RFC 6040 normal mode) and sets DF even when
// the inner IPv4 packet has none; the IPv6 flow label is the low 20 bits of the flow hash (different flows,
// different labels).
TEST_F(LbDsr, OuterCopiesTosAndEcnSetsDfAndLabelsFlows) {
    for (bool is6 : {false, true}) {
        for (std::uint8_t tos : {std::uint8_t{0xb8 | 1}, std::uint8_t{0x28 | 2}, std::uint8_t{3}}) {
            const Seg s{.flags = TCP_SYN, .tos = tos, .df = false};
            const std::uint16_t sport = static_cast<std::uint16_t>(41000 + tos);
            const Packet in = client_pkt(is6, IPPROTO_TCP, sport, kTcpPort, s);
            const Bytes out = run_expect(in, XDP_TX);
            ASSERT_GE(out.size(), 54u);
            if (is6) {
                EXPECT_EQ(((out[14] & 0x0f) << 4) | (out[15] >> 4), tos) << "traffic class";
            } else {
                EXPECT_EQ(out[15], tos) << "outer TOS";
                EXPECT_EQ(out[20] & 0x40, 0x40) << "outer DF";
                EXPECT_EQ(out[34 + 6] & 0x40, 0) << "inner DF untouched";
            }
            const int be = backend_index(out);
            ASSERT_GE(be, 1);
            const Packet want =
                encapsulated(is6, IPPROTO_TCP, sport, kTcpPort, s, backend(is6, be), LbNet::backend_mac(be), node(is6));
            EXPECT_EQ(diff_frames(want.span(), out), "");
        }
    }
    // Flow labels of a few IPv6 flows: exactly the hash's low 20 bits, and not all the same.
    std::set<std::uint32_t> labels;
    for (std::uint16_t sport = 42000; sport < 42008; ++sport) {
        const Bytes out = run_expect(client_pkt(true, IPPROTO_UDP, sport, kUdpPort, Seg{}), XDP_TX);
        ASSERT_GE(out.size(), 18u);
        const std::uint32_t label = (out[15] & 0x0fu) << 16 | out[16] << 8 | out[17];
        const std::uint32_t h =
            flow_hash(flow_key(LbNet::kClient6, sport, LbNet::kVip6, kUdpPort, IPPROTO_UDP), cfg_.hash_seed);
        EXPECT_EQ(label, h & 0xfffff);
        labels.insert(label);
    }
    EXPECT_GE(labels.size(), 7u);
}

// Encap source prefixes: every flow's outer source lies in the prefix, its host bits from the flow hash (exact),
// one flow always uses the same source, and flows spread over many sources. A /32 (/128) is one fixed source.
TEST(LbDsrSource, PrefixSpreadsFlowsAcrossSources) {
    KXLB_REQUIRE_ROOT();
    for (const auto& [p4, p6] :
         {std::pair{Cidr{IpAddr::parse("192.0.2.0").value(), 24}, Cidr{IpAddr::parse("2001:db8:e::").value(), 64}},
          std::pair{Cidr{IpAddr::parse("192.0.2.77").value(), 32},
                    Cidr{IpAddr::parse("2001:db8:e::aa00").value(), 120}}}) {
        class Fixture : public LbDsrBase {
        public:
            using LbDsrBase::setup;
            void run(const Cidr& v4, const Cidr& v6) {
                LbConfig c = default_lb_config();
                c.encap_src_v4 = v4;
                c.encap_src_v6 = v6;
                ASSERT_TRUE(validate(c));
                setup(c);
                for (bool is6 : {false, true}) {
                    const Cidr& p = is6 ? v6 : v4;
                    std::set<std::string> sources;
                    for (std::uint16_t sport = 43000; sport < 43064; ++sport) {
                        const std::uint32_t h =
                            flow_hash(flow_key(client(is6), sport, vip(is6), kUdpPort, IPPROTO_UDP), cfg_.hash_seed);
                        const std::string src = spread_source(p, h);
                        ASSERT_TRUE(in_prefix(src, p)) << src;
                        sources.insert(src);
                        forward(is6, IPPROTO_UDP, sport, kUdpPort, Seg{}, src);  // exact bytes, new flow
                        forward(is6, IPPROTO_UDP, sport, kUdpPort, Seg{.payload = "again"}, src);  // established
                    }
                    if (p.prefix_len == (is6 ? 128 : 32)) EXPECT_EQ(sources.size(), 1u);
                    else if (p.prefix_len <= (is6 ? 120 : 24)) EXPECT_GE(sources.size(), 50u) << "flows spread";
                    else EXPECT_GE(sources.size(), 2u);
                }
                expect_reasons({{KXLB_R_FWD_ENCAP_TX, 2 * 2 * 64}});
            }
        } f;
        f.run(p4, p6);
    }
}

// Without a prefix the outer source is the node address (tested above by forward()'s default); without either,
// DSR frames of that family pass untouched (pass_no_encap_src) while the other family still works, and a
// prefix alone is enough.
TEST_F(LbDsr, NoOuterSourcePassesUntouched) {
    LbConfig c = default_lb_config();
    c.snat_v4 = IpAddr{};
    ASSERT_TRUE(h_->set_config(c));
    const Packet in = client_pkt(false, IPPROTO_TCP, 44000, kTcpPort, Seg{});
    const Bytes out = run_expect(in, XDP_PASS);
    EXPECT_EQ(diff_frames(in.span(), out), "");
    forward(true, IPPROTO_TCP, 44000, kTcpPort, Seg{});
    EXPECT_FALSE(flow(false, IPPROTO_TCP, 44000, kTcpPort)) << "no flow opened";
    expect_reasons({{KXLB_R_PASS_NO_ENCAP_SRC, 1}, {KXLB_R_FWD_ENCAP_TX, 1}});

    c.encap_src_v4 = Cidr{IpAddr::parse("192.0.2.0").value(), 28};
    cfg_ = c;
    ASSERT_TRUE(h_->set_config(c));
    const std::uint32_t h =
        flow_hash(flow_key(LbNet::kClient4, 44000, LbNet::kVip4, kTcpPort, IPPROTO_TCP), c.hash_seed);
    forward(false, IPPROTO_TCP, 44000, kTcpPort, Seg{}, spread_source(c.encap_src_v4, h));

    // IPv6 without node address and prefix.
    c.snat_v6 = IpAddr{};
    ASSERT_TRUE(h_->set_config(c));
    const Packet in6 = client_pkt(true, IPPROTO_UDP, 44001, kUdpPort, Seg{});
    const Bytes out6 = run_expect(in6, XDP_PASS);
    EXPECT_EQ(diff_frames(in6.span(), out6), "");
    expect_reasons({{KXLB_R_PASS_NO_ENCAP_SRC, 2}, {KXLB_R_FWD_ENCAP_TX, 2}});
}

// Too big once encapsulated, IPv4 with DF: ICMP fragmentation needed from the VIP with next-hop MTU = egress MTU -
// 20, quoting the inner IP header + 8 bytes; nothing is forwarded or counted for the service. One byte less fits.
TEST_F(LbDsr, TooBigIpv4WithDfAnswersFragmentationNeeded) {
    set_node_mtu(kSmallMtu);
    const Seg syn{.flags = TCP_SYN, .df = true};
    const int be = forward(false, IPPROTO_TCP, 45000, kTcpPort, syn);
    ASSERT_GE(be, 1);
    // inner IPv4 length = 20 + 20 + payload: exactly MTU - 20 fits, one byte more does not.
    const std::string fits(kSmallMtu - 20 - 40, 'a'), too_big(kSmallMtu - 20 - 40 + 1, 'b');
    const Seg ok{.flags = TCP_ACK, .seq = 2, .ack = 1, .payload = fits, .df = true};
    EXPECT_EQ(forward(false, IPPROTO_TCP, 45000, kTcpPort, ok), be);

    const Seg big{.flags = TCP_ACK | TCP_PSH,
                  .seq = 2 + static_cast<std::uint32_t>(fits.size()),
                  .ack = 1,
                  .payload = too_big,
                  .tos = 0x10,
                  .df = true};
    const Packet in = client_pkt(false, IPPROTO_TCP, 45000, kTcpPort, big);
    const Bytes out = run_expect(in, XDP_TX);
    const Bytes quote(in.bytes.begin() + 14, in.bytes.begin() + 14 + 28);
    const Packet want = PacketBuilder()
                            .eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac))
                            .ipv4(LbNet::kVip4, LbNet::kClient4, Ipv4Opts{.tos = 0xc0})
                            .icmp(3, 4, kSmallMtu - 20)
                            .payload(quote)
                            .build();
    EXPECT_EQ(diff_frames(want.span(), out), "");
    EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
    ASSERT_GE(out.size(), 42u);
    EXPECT_EQ(out[38] << 8 | out[39], 0) << "unused";
    EXPECT_EQ(out[40] << 8 | out[41], static_cast<int>(kSmallMtu - 20)) << "next-hop MTU field";
    // ICMP checksum over the whole message, recomputed here.
    EXPECT_EQ(ones_complement_sum(std::span(out).subspan(34)), 0xffff);

    EXPECT_EQ(svc_counter(fe(false, IPPROTO_TCP, kTcpPort)).packets, 2u) << "the ICMP answer is no forward";
    const auto ct = flow(false, IPPROTO_TCP, 45000, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, static_cast<std::uint32_t>(KXLB_CT_F_DSR)) << "the flow entry stays as it was";
    expect_reasons({{KXLB_R_FWD_ENCAP_TX, 2}, {KXLB_R_TX_ICMP_TOO_BIG, 1}});

    // A new flow whose first frame is too big (UDP) opens nothing; a small one afterwards does.
    const Seg bigdgram{.payload = std::string(kSmallMtu, 'u'), .df = true};
    const Bytes o2 = run_expect(client_pkt(false, IPPROTO_UDP, 45001, kUdpPort, bigdgram), XDP_TX);
    EXPECT_EQ(o2.size(), 14u + 20 + 8 + 28);
    EXPECT_FALSE(flow(false, IPPROTO_UDP, 45001, kUdpPort));
    forward(false, IPPROTO_UDP, 45001, kUdpPort, Seg{.payload = "small"});
    EXPECT_EQ(svc_counter(fe(false, IPPROTO_UDP, kUdpPort)).new_flows, 1u);
    expect_reasons({{KXLB_R_FWD_ENCAP_TX, 3}, {KXLB_R_TX_ICMP_TOO_BIG, 2}});
}

// IPv4 without DF: XDP cannot fragment, so the frame is dropped (drop_too_big) and nothing is answered.
TEST_F(LbDsr, TooBigIpv4WithoutDfIsDropped) {
    set_node_mtu(kSmallMtu);
    const int be = forward(false, IPPROTO_TCP, 46000, kTcpPort, Seg{});
    ASSERT_GE(be, 1);
    const Seg big{.flags = TCP_ACK, .seq = 2, .ack = 1, .payload = std::string(kSmallMtu - 59, 'b'), .df = false};
    run_expect(client_pkt(false, IPPROTO_TCP, 46000, kTcpPort, big), XDP_DROP);
    EXPECT_EQ(svc_counter(fe(false, IPPROTO_TCP, kTcpPort)).packets, 1u);
    expect_reasons({{KXLB_R_FWD_ENCAP_TX, 1}, {KXLB_R_DROP_TOO_BIG, 1}});
}

// IPv6: ICMPv6 packet too big from the VIP with MTU = egress MTU - 40 and the inner header + 8 bytes quoted
// (96 bytes in all, far below 1280); exactly MTU - 40 still fits.
TEST_F(LbDsr, TooBigIpv6AnswersPacketTooBig) {
    set_node_mtu(kSmallMtu);
    const int be = forward(true, IPPROTO_TCP, 47000, kTcpPort, Seg{});
    ASSERT_GE(be, 1);
    const Seg ok{.flags = TCP_ACK, .seq = 2, .ack = 1, .payload = std::string(kSmallMtu - 40 - 60, 'a')};
    EXPECT_EQ(forward(true, IPPROTO_TCP, 47000, kTcpPort, ok), be);
    const Seg big{.flags = TCP_ACK, .seq = 2, .ack = 1, .payload = std::string(kSmallMtu - 40 - 60 + 1, 'b')};
    const Packet in = client_pkt(true, IPPROTO_TCP, 47000, kTcpPort, big);
    const Bytes out = run_expect(in, XDP_TX);
    const Bytes quote(in.bytes.begin() + 14, in.bytes.begin() + 14 + 48);
    const Packet want = PacketBuilder()
                            .eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac))
                            .ipv6(LbNet::kVip6, LbNet::kClient6)
                            .icmp(2, 0, kSmallMtu - 40)
                            .payload(quote)
                            .build();
    EXPECT_EQ(diff_frames(want.span(), out), "");
    EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
    EXPECT_LE(out.size() - 14, 1280u);
    expect_reasons({{KXLB_R_FWD_ENCAP_TX, 2}, {KXLB_R_TX_ICMP_TOO_BIG, 1}});
}

// Session affinity applies to DSR services: every flow of one client goes to the backend of its first flow
// (8 flows hashed freely over 3 backends would almost never agree).
TEST_F(LbDsr, SessionAffinityKeepsTheClientsBackend) {
    ServiceSpec s = spec(false, IPPROTO_TCP, kTcpPort, {1, 2, 3}, KXLB_SVC_F_DSR);
    s.affinity_timeout_s = 600;
    upsert(s);
    const int be = forward(false, IPPROTO_TCP, 48000, kTcpPort, Seg{});
    ASSERT_GE(be, 1);
    for (std::uint16_t sport = 48001; sport < 48008; ++sport)
        EXPECT_EQ(forward(false, IPPROTO_TCP, sport, kTcpPort, Seg{}), be) << sport;
    for (std::uint16_t sport = 48000; sport < 48008; ++sport) {
        auto ct = flow(false, IPPROTO_TCP, sport, kTcpPort);
        ASSERT_TRUE(ct);
        EXPECT_EQ(ct->flags, static_cast<std::uint32_t>(KXLB_CT_F_DSR));
    }
    expect_reasons({{KXLB_R_FWD_ENCAP_TX, 8}});
}

// Source ranges apply to DSR services: a client outside them is dropped before any flow exists.
TEST_F(LbDsr, SourceRangesApply) {
    ServiceSpec s = spec(true, IPPROTO_UDP, kUdpPort, {1, 2, 3}, KXLB_SVC_F_DSR);
    s.source_ranges = {Cidr{IpAddr::parse("fd00::200").value(), 128}};
    upsert(s);
    run_expect(client_pkt(true, IPPROTO_UDP, 49000, kUdpPort, Seg{}), XDP_DROP);
    EXPECT_FALSE(flow(true, IPPROTO_UDP, 49000, kUdpPort));
    forward(true, IPPROTO_UDP, 49000, kUdpPort, Seg{}, "", "fd00::200");
    expect_reasons({{KXLB_R_DROP_SOURCE_RANGE, 1}, {KXLB_R_FWD_ENCAP_TX, 1}});
}

// A full-NAT service on the same VIP keeps working beside the DSR one: rewritten with an SNAT port and a reverse
// entry, its reply translated back; the DSR flow is encapsulated and has neither.
TEST_F(LbDsr, FullNatServiceBesideDsrService) {
    const int dsr_be = forward(false, IPPROTO_TCP, 50000, kTcpPort, Seg{});
    ASSERT_GE(dsr_be, 1);
    const Packet in = client_pkt(false, IPPROTO_TCP, 50000, kFullNatPort, Seg{});
    const Bytes out = run_expect(in, XDP_TX);
    const int be = backend_index(out);
    ASSERT_GE(be, 1);
    ASSERT_GE(out.size(), 38u);
    const std::uint16_t snat_port = static_cast<std::uint16_t>(out[34] << 8 | out[35]);
    const Packet want = PacketBuilder()
                            .eth(mac(LbNet::kNodeMac0), mac(LbNet::backend_mac(be)))
                            .ipv4(LbNet::kNode4, LbNet::backend4(be))
                            .tcp(snat_port, kBackendPort, TcpOpts{.flags = TCP_SYN})
                            .build();
    EXPECT_EQ(diff_frames(want.span(), out), "");
    EXPECT_EQ(nat_count(), 1u);
    auto nct = flow(false, IPPROTO_TCP, 50000, kFullNatPort);
    ASSERT_TRUE(nct);
    EXPECT_EQ(nct->flags, 0u);
    EXPECT_EQ(ntohs(nct->snat_port), snat_port);
    // The full-NAT reply still goes back to the client.
    const Packet synack = PacketBuilder()
                              .eth(mac(LbNet::backend_mac(be)), mac(LbNet::kNodeMac0))
                              .ipv4(LbNet::backend4(be), LbNet::kNode4)
                              .tcp(kBackendPort, snat_port, TcpOpts{.flags = TCP_SYN | TCP_ACK, .seq = 9, .ack = 2})
                              .build();
    const Bytes r = run_expect(synack, XDP_TX);
    const Packet want_r = PacketBuilder()
                              .eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac))
                              .ipv4(LbNet::kVip4, LbNet::kClient4)
                              .tcp(kFullNatPort, 50000, TcpOpts{.flags = TCP_SYN | TCP_ACK, .seq = 9, .ack = 2})
                              .build();
    EXPECT_EQ(diff_frames(want_r.span(), r), "");
    expect_reasons({{KXLB_R_FWD_ENCAP_TX, 1}, {KXLB_R_FWD_TX, 2}});
}

// TCP FIN and RST from the client mark the DSR entry as on the client side of full-NAT: FIN alone leaves it open
// (the backend's FIN never passes here), RST closes it, and a SYN on the closed 5-tuple is a new flow.
TEST_F(LbDsr, ClientFinAndRstMarkTheEntry) {
    const int be = forward(false, IPPROTO_TCP, 51000, kTcpPort, Seg{});
    ASSERT_GE(be, 1);
    forward(false, IPPROTO_TCP, 51000, kTcpPort, Seg{.flags = TCP_FIN | TCP_ACK, .seq = 2, .ack = 1});
    auto ct = flow(false, IPPROTO_TCP, 51000, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, static_cast<std::uint32_t>(KXLB_CT_F_DSR | KXLB_CT_F_FIN_CLIENT));
    forward(false, IPPROTO_TCP, 51000, kTcpPort, Seg{.flags = TCP_RST, .seq = 3});
    ct = flow(false, IPPROTO_TCP, 51000, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, static_cast<std::uint32_t>(KXLB_CT_F_DSR | KXLB_CT_F_FIN_CLIENT | KXLB_CT_F_CLOSED));
    forward(false, IPPROTO_TCP, 51000, kTcpPort, Seg{.seq = 9000});
    ct = flow(false, IPPROTO_TCP, 51000, kTcpPort);
    ASSERT_TRUE(ct);
    EXPECT_EQ(ct->flags, static_cast<std::uint32_t>(KXLB_CT_F_DSR)) << "a fresh entry";
    EXPECT_EQ(svc_counter(fe(false, IPPROTO_TCP, kTcpPort)).new_flows, 2u);
    expect_reasons({{KXLB_R_FWD_ENCAP_TX, 4}});
}

// A backend behind another NIC: encapsulated and redirected (fwd_encap_redirect) with that NIC's MACs.
TEST_F(LbDsr, BackendBehindOtherNicIsRedirected) {
    ASSERT_TRUE(h_->add_tx_port_eth1());
    for (bool is6 : {false, true}) {
        ServiceSpec s =
            make_service(vip(is6), kFarPort, IPPROTO_TCP, {is6 ? LbNet::kFar6 : LbNet::kFar4}, kBackendPort);
        s.flags = KXLB_SVC_F_DSR;
        upsert(s);
        const Seg seg{.flags = TCP_SYN};
        const Packet in = client_pkt(is6, IPPROTO_TCP, 52000, kFarPort, seg);
        const Bytes out = run_expect(in, XDP_REDIRECT);
        const Packet want = encapsulated(is6, IPPROTO_TCP, 52000, kFarPort, seg, is6 ? LbNet::kFar6 : LbNet::kFar4,
                                         LbNet::kFarMac, node(is6), "", LbNet::kNodeMac1);
        EXPECT_EQ(diff_frames(want.span(), out), "");
        EXPECT_TRUE(checksum_errors(out).empty()) << join(checksum_errors(out));
    }
    expect_reasons({{KXLB_R_FWD_ENCAP_REDIRECT, 2}});
}

// A DSR service without backends answers ICMP port unreachable like a full-NAT one.
TEST_F(LbDsr, NoBackendAnswersPortUnreachable) {
    const Packet in = client_pkt(false, IPPROTO_TCP, 53000, kEmptyPort, Seg{});
    const Bytes out = run_expect(in, XDP_TX);
    const Bytes quote(in.bytes.begin() + 14, in.bytes.begin() + 14 + 28);
    const Packet want = PacketBuilder()
                            .eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac))
                            .ipv4(LbNet::kVip4, LbNet::kClient4, Ipv4Opts{.tos = 0xc0})
                            .icmp(3, 3)
                            .payload(quote)
                            .build();
    EXPECT_EQ(diff_frames(want.span(), out), "");
    expect_reasons({{KXLB_R_TX_UNREACH_NO_BACKEND, 1}});
}

// An ICMP error to the VIP about a DSR flow's reply (the backend sent it from the VIP) is not translated
// toward the backend like a full-NAT one: no node-side 4-tuple exists; it passes untouched.
TEST_F(LbDsr, IcmpErrorAboutDsrFlowPasses) {
    ASSERT_GE(forward(false, IPPROTO_TCP, 54000, kTcpPort, Seg{}), 1);
    const Packet reply = PacketBuilder()
                             .eth(mac(LbNet::kNodeMac0), mac(LbNet::kClientMac))
                             .ipv4(LbNet::kVip4, LbNet::kClient4)
                             .tcp(kTcpPort, 54000, TcpOpts{.flags = TCP_SYN | TCP_ACK})
                             .build();
    const Packet err = PacketBuilder()
                           .eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0))
                           .ipv4("10.0.0.254", LbNet::kVip4)
                           .icmp(3, 4, 1300)
                           .payload(std::span(reply.bytes).subspan(14, 28))
                           .build();
    const Bytes out = run_expect(err, XDP_PASS);
    EXPECT_EQ(diff_frames(err.span(), out), "");
    expect_reasons({{KXLB_R_FWD_ENCAP_TX, 1}, {KXLB_R_PASS_ICMP_NO_FLOW, 1}});
}

// Every DSR reason is produced by a case above except drop_encap_failed: bpf_xdp_adjust_head cannot fail under
// BPF_PROG_TEST_RUN (256 bytes of headroom), as for the decap program's drop_decap_failed.
TEST(LbDsrReasons, NamesFollowTheKindPrefixes) {
    EXPECT_EQ(reason_name(KXLB_R_FWD_ENCAP_TX), "fwd_encap_tx");
    EXPECT_EQ(reason_name(KXLB_R_FWD_ENCAP_REDIRECT), "fwd_encap_redirect");
    EXPECT_EQ(reason_name(KXLB_R_TX_ICMP_TOO_BIG), "tx_icmp_too_big");
    EXPECT_EQ(reason_name(KXLB_R_DROP_TOO_BIG), "drop_too_big");
    EXPECT_EQ(reason_name(KXLB_R_DROP_ENCAP_FAILED), "drop_encap_failed");
    EXPECT_EQ(reason_name(KXLB_R_PASS_NO_ENCAP_SRC), "pass_no_encap_src");
}

}  // namespace
}  // namespace kxlb::test
