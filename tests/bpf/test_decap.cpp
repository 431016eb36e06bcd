// bpf tier: the DSR backend-side decapsulation program (bpf/xdp_decap.bpf.c), driven by crafted
// IPIP / IP6IP6 frames through BPF_PROG_TEST_RUN. Each case asserts the verdict, the exact output
// bytes (the inner frame under the original Ethernet header, or the untouched input) and every
// outcome counter.
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <ostream>
#include <string>

#include "common/checksum.hpp"
#include "common/packet_builder.hpp"
#include "common/privileges.hpp"
#include "lib/decap_program.hpp"
#include "lib/libbpf_log.hpp"
#include "lib/test_run.hpp"

namespace kxlb {
namespace {

using test::Bytes;
using test::Ipv4Opts;
using test::Ipv6Opts;
using test::Packet;
using test::PacketBuilder;

// The balancer (outer source), this node (listed outer destination), a node address that is not
// listed, the client and the VIP (inner source and destination).
constexpr const char* kLb4 = "192.0.2.1";
constexpr const char* kNode4 = "192.0.2.10";
constexpr const char* kOther4 = "192.0.2.99";
constexpr const char* kClient4 = "198.51.100.7";
constexpr const char* kVip4 = "203.0.113.5";
constexpr const char* kLb6 = "2001:db8:1::1";
constexpr const char* kNode6 = "2001:db8:1::10";
constexpr const char* kOther6 = "2001:db8:1::99";
constexpr const char* kClient6 = "2001:db8:2::7";
constexpr const char* kVip6 = "2001:db8:3::5";

// Non-default MACs, so the test shows the Ethernet header is carried over, not rebuilt.
PacketBuilder eth() {
    PacketBuilder b;
    b.eth(test::Mac::parse("0a:00:00:00:00:aa"), test::Mac::parse("0a:00:00:00:00:bb"));
    return b;
}

// The inner packet: appended after whatever outer header the builder already holds.
using Inner = std::function<void(PacketBuilder&)>;

Inner tcp4_inner(Ipv4Opts o = {}) {
    return [o](PacketBuilder& b) {
        test::TcpOpts t;
        t.flags = test::TCP_ACK | test::TCP_PSH;
        b.ipv4(kClient4, kVip4, o).tcp(40000, 443, t).payload("GET / HTTP/1.1\r\n");
    };
}
Inner udp4_inner(Ipv4Opts o = {}) {
    return [o](PacketBuilder& b) { b.ipv4(kClient4, kVip4, o).udp(5353, 53).payload("query"); };
}
Inner tcp6_inner(Ipv6Opts o = {}) {
    return [o](PacketBuilder& b) { b.ipv6(kClient6, kVip6, o).tcp(40000, 443).payload("hello"); };
}
Inner udp6_inner(Ipv6Opts o = {}) {
    return [o](PacketBuilder& b) { b.ipv6(kClient6, kVip6, o).udp(5000, 6000).payload("datagram"); };
}

// An IPIP / IP6IP6 frame as a balancer sends it (outer destination: this node unless told).
Packet ipip(const Inner& inner, Ipv4Opts outer = {}, const char* dst = kNode4) {
    PacketBuilder b = eth();
    b.ipv4(kLb4, dst, outer);
    inner(b);
    return b.build();
}
Packet ip6ip6(const Inner& inner, Ipv6Opts outer = {}, const char* dst = kNode6) {
    PacketBuilder b = eth();
    b.ipv6(kLb6, dst, outer);
    inner(b);
    return b.build();
}
// What decapsulation must leave: the inner packet under the same Ethernet header.
Packet bare(const Inner& inner) {
    PacketBuilder b = eth();
    inner(b);
    return b.build();
}

struct DecapCase {
    std::string name;
    std::function<Packet()> input;
    kxlb_decap_reason reason;
    std::function<Packet()> expect;  // empty: the frame must come out untouched
};
void PrintTo(const DecapCase& c, std::ostream* os) { *os << c.name; }

constexpr std::uint8_t kEct0 = 2, kEct1 = 1, kCe = 3;

Ipv4Opts tos(std::uint8_t v) { return {.tos = v}; }
Ipv6Opts tclass(std::uint8_t v) { return {.traffic_class = v}; }

std::vector<DecapCase> decap_cases() {
    return {
        {"ipip_tcp4", [] { return ipip(tcp4_inner()); }, KXLB_DR_DECAP_IPIP, [] { return bare(tcp4_inner()); }},
        {"ipip_udp4", [] { return ipip(udp4_inner()); }, KXLB_DR_DECAP_IPIP, [] { return bare(udp4_inner()); }},
        {"ip6ip6_tcp6", [] { return ip6ip6(tcp6_inner()); }, KXLB_DR_DECAP_IP6IP6, [] { return bare(tcp6_inner()); }},
        {"ip6ip6_udp6", [] { return ip6ip6(udp6_inner()); }, KXLB_DR_DECAP_IP6IP6, [] { return bare(udp6_inner()); }},
        {"ipip_inner_ipv4_options",  // the inner header is the backend stack's business
         [] {
             return ipip(tcp4_inner(Ipv4Opts{.options = {0x94, 0x04, 0x00, 0x00}}));
         },
         KXLB_DR_DECAP_IPIP,
         [] {
             return bare(tcp4_inner(Ipv4Opts{.options = {0x94, 0x04, 0x00, 0x00}}));
         }},
        {"ipip_inner_first_fragment",  // the backend reassembles
         [] { return ipip(udp4_inner(Ipv4Opts{.id = 77, .mf = true})); }, KXLB_DR_DECAP_IPIP,
         [] { return bare(udp4_inner(Ipv4Opts{.id = 77, .mf = true})); }},
        {"ip6ip6_inner_extension_header",
         [] {
             PacketBuilder b = eth();
             b.ipv6(kLb6, kNode6).ipv6(kClient6, kVip6).ipv6_ext(60, Bytes(6, 0)).udp(1, 2);
             return b.build();
         },
         KXLB_DR_DECAP_IP6IP6,
         [] {
             PacketBuilder b = eth();
             b.ipv6(kClient6, kVip6).ipv6_ext(60, Bytes(6, 0)).udp(1, 2);
             return b.build();
         }},
        {"ipip_ethernet_trailer_kept",  // bytes after the outer packet stay (the stack trims them)
         [] {
             PacketBuilder b = eth();
             b.ipv4(kLb4, kNode4).ipv4(kClient4, kVip4).udp(1, 2).pad_to(90);
             return b.build();
         },
         KXLB_DR_DECAP_IPIP,
         [] {
             PacketBuilder b = eth();
             b.ipv4(kClient4, kVip4).udp(1, 2).pad_to(70);
             return b.build();
         }},
        // ECN (RFC 6040 normal mode): outer CE reaches an ECN-capable inner packet.
        {"ipip_ecn_ce_marks_inner_ect0",  // inner TOS and header checksum rewritten
         [] { return ipip(tcp4_inner(tos(0xb8 | kEct0)), tos(0xb8 | kCe)); }, KXLB_DR_DECAP_IPIP,
         [] { return bare(tcp4_inner(tos(0xb8 | kCe))); }},
        {"ip6ip6_ecn_ce_marks_inner_ect1", [] { return ip6ip6(udp6_inner(tclass(0x28 | kEct1)), tclass(kCe)); },
         KXLB_DR_DECAP_IP6IP6, [] { return bare(udp6_inner(tclass(0x28 | kCe))); }},
        {"ipip_ecn_ect_outer_leaves_inner", [] { return ipip(udp4_inner(tos(0x10)), tos(kEct0)); }, KXLB_DR_DECAP_IPIP,
         [] { return bare(udp4_inner(tos(0x10))); }},
        {"ip6ip6_ecn_ce_on_ce_inner_unchanged", [] { return ip6ip6(tcp6_inner(tclass(kCe)), tclass(kCe)); },
         KXLB_DR_DECAP_IP6IP6, [] { return bare(tcp6_inner(tclass(kCe))); }},
    };
}

std::vector<DecapCase> pass_cases() {
    return {
        {"ipip_not_listed_destination", [] { return ipip(tcp4_inner(), {}, kOther4); }, KXLB_DR_PASS_NOT_DECAP_ADDR},
        {"ip6ip6_not_listed_destination", [] { return ip6ip6(udp6_inner(), {}, kOther6); },
         KXLB_DR_PASS_NOT_DECAP_ADDR},
        {"plain_tcp4_to_node", [] { return test::tcp4(kClient4, 1000, kNode4, 22); }, KXLB_DR_PASS_NOT_TUNNEL},
        {"plain_udp6_to_node", [] { return test::udp6(kClient6, 1000, kNode6, 53, "q"); }, KXLB_DR_PASS_NOT_TUNNEL},
        {"arp", [] { return PacketBuilder().eth_type(0x0806).payload(Bytes(28, 1)).build(); }, KXLB_DR_PASS_NOT_IP},
        {"vlan_tagged_ipip",
         [] { return PacketBuilder().vlan(100).ipv4(kLb4, kNode4).ipv4(kClient4, kVip4).udp(1, 2).build(); },
         KXLB_DR_PASS_VLAN},
        {"sit_6in4_not_ours", [] { return PacketBuilder().ipv4(kLb4, kNode4).ipv6(kClient6, kVip6).udp(1, 2).build(); },
         KXLB_DR_PASS_NOT_TUNNEL},
        {"4in6_not_ours", [] { return PacketBuilder().ipv6(kLb6, kNode6).ipv4(kClient4, kVip4).udp(1, 2).build(); },
         KXLB_DR_PASS_NOT_TUNNEL},
        {"outer_first_fragment", [] { return ipip(udp4_inner(), Ipv4Opts{.mf = true}); }, KXLB_DR_PASS_OUTER_FRAGMENT},
        {"outer_later_fragment", [] { return ipip(udp4_inner(), Ipv4Opts{.frag_offset = 5}); },
         KXLB_DR_PASS_OUTER_FRAGMENT},
        {"outer_ipv4_options",
         [] {
             return ipip(tcp4_inner(), Ipv4Opts{.options = {0x94, 0x04, 0x00, 0x00}});
         },
         KXLB_DR_PASS_OUTER_IPV4_OPTIONS},
        {"outer_ipv6_fragment_header",
         [] {
             PacketBuilder b = eth();
             b.ipv6(kLb6, kNode6).ipv6_ext(44, {0, 0, 0, 0, 0, 9}).ipv6(kClient6, kVip6).udp(1, 2);
             return b.build();
         },
         KXLB_DR_PASS_OUTER_IPV6_EXTHDR},
        {"outer_bad_header_checksum", [] { return ipip(tcp4_inner(), Ipv4Opts{.checksum = 0x1234}); },
         KXLB_DR_PASS_OUTER_BAD_CSUM},
        {"outer_ipv4_header_cut", [] { return ipip(tcp4_inner()).truncate(14 + 10); }, KXLB_DR_PASS_MALFORMED},
        {"outer_ipv4_ihl_below_5", [] { return ipip(tcp4_inner(), Ipv4Opts{.ihl = 4}); }, KXLB_DR_PASS_MALFORMED},
        {"outer_total_length_past_frame", [] { return ipip(tcp4_inner(), Ipv4Opts{.tot_len = 1400}); },
         KXLB_DR_PASS_MALFORMED},
        {"outer_ipv6_header_cut", [] { return ip6ip6(tcp6_inner()).truncate(14 + 30); }, KXLB_DR_PASS_MALFORMED},
        {"outer_ipv6_payload_length_past_frame", [] { return ip6ip6(tcp6_inner(), Ipv6Opts{.payload_len = 1400}); },
         KXLB_DR_PASS_MALFORMED},
    };
}

std::vector<DecapCase> drop_cases() {
    return {
        {"ipip_inner_truncated",  // outer length consistent, only 12 inner bytes
         [] { return ipip(udp4_inner(), Ipv4Opts{.tot_len = 20 + 12}).truncate(14 + 20 + 12); },
         KXLB_DR_DROP_INNER_TRUNCATED},
        {"ip6ip6_inner_truncated",
         [] { return ip6ip6(udp6_inner(), Ipv6Opts{.payload_len = 30}).truncate(14 + 40 + 30); },
         KXLB_DR_DROP_INNER_TRUNCATED},
        {"ipip_inner_is_ipv6",  // protocol 4 claims IPv4 inside
         [] {
             return PacketBuilder().ipv4(kLb4, kNode4, Ipv4Opts{.protocol = 4}).ipv6(kClient6, kVip6).udp(1, 2).build();
         },
         KXLB_DR_DROP_INNER_VERSION},
        {"ip6ip6_inner_is_ipv4",  // next header 41 claims IPv6 inside
         [] {
             return PacketBuilder()
                 .ipv6(kLb6, kNode6, Ipv6Opts{.next_header = 41})
                 .ipv4(kClient4, kVip4)
                 .tcp(1, 2)
                 .payload(Bytes(40, 7))
                 .build();
         },
         KXLB_DR_DROP_INNER_VERSION},
        {"ipip_inner_ihl_below_5", [] { return ipip(udp4_inner(Ipv4Opts{.ihl = 4})); }, KXLB_DR_DROP_INNER_IHL},
        {"ipip_inner_options_past_end",  // 60-byte header claimed, 20 + 8 + 5 bytes present
         [] { return ipip(udp4_inner(Ipv4Opts{.ihl = 15})); }, KXLB_DR_DROP_INNER_IHL},
        {"ipip_inner_length_past_frame", [] { return ipip(udp4_inner(Ipv4Opts{.tot_len = 1000})); },
         KXLB_DR_DROP_INNER_LENGTH},
        {"ipip_inner_length_short_of_outer",  // the 5 payload bytes would be tunnel garbage
         [] { return ipip(udp4_inner(Ipv4Opts{.tot_len = 20 + 8})); }, KXLB_DR_DROP_INNER_LENGTH},
        {"ipip_outer_length_short_of_inner",  // the frame still carries the whole inner packet
         [] { return ipip(udp4_inner(), Ipv4Opts{.tot_len = 20 + 20}); }, KXLB_DR_DROP_INNER_LENGTH},
        {"ip6ip6_inner_payload_length_past_frame", [] { return ip6ip6(udp6_inner(Ipv6Opts{.payload_len = 500})); },
         KXLB_DR_DROP_INNER_LENGTH},
        {"ip6ip6_inner_payload_length_short_of_outer", [] { return ip6ip6(udp6_inner(Ipv6Opts{.payload_len = 8})); },
         KXLB_DR_DROP_INNER_LENGTH},
        {"ipip_ecn_ce_on_not_ect_inner", [] { return ipip(tcp4_inner(), tos(kCe)); }, KXLB_DR_DROP_ECN_CE_NOT_ECT},
        {"ip6ip6_ecn_ce_on_not_ect_inner", [] { return ip6ip6(udp6_inner(tclass(0x20)), tclass(kCe)); },
         KXLB_DR_DROP_ECN_CE_NOT_ECT},
    };
}

std::uint32_t verdict_of(kxlb_decap_reason r) {
    const std::string_view name = decap_reason_name(r);
    return name.starts_with("drop_") ? XDP_DROP : XDP_PASS;
}

class DecapFixture {
protected:
    // A freshly loaded program listing this node's two addresses.
    static Result<XdpDecapProgram> load_listing_node() {
        auto prog = XdpDecapProgram::load();
        if (!prog) return prog;
        for (const char* a : {kNode4, kNode6})
            if (auto st = prog->add_address(IpAddr::parse(a).value()); !st) return st.error();
        return prog;
    }

    // Runs one frame and checks its output and that exactly `reason` counted it.
    static void expect_run(const XdpDecapProgram& prog, const Packet& in, kxlb_decap_reason reason,
                           const std::optional<Packet>& out) {
        auto run = run_xdp(prog.prog_fd(), in.span());
        ASSERT_TRUE(run) << run.error().message;
        EXPECT_EQ(run->verdict, verdict_of(reason)) << decap_reason_name(reason);
        EXPECT_EQ(test::diff_frames(out ? out->span() : in.span(), run->data), "");
        if (out) {
            EXPECT_EQ(test::checksum_errors(run->data), std::vector<std::string>{});
        }
        auto counters = prog.reasons();
        ASSERT_TRUE(counters) << counters.error().message;
        for (std::size_t i = 0; i < kDecapReasonCount; ++i) {
            const auto id = static_cast<kxlb_decap_reason>(i);
            const std::uint64_t want = id == reason ? 1 : 0;
            EXPECT_EQ(counters.value()[i].packets, want) << "counter " << decap_reason_name(id);
            EXPECT_EQ(counters.value()[i].bytes, want * in.size()) << "counter bytes " << decap_reason_name(id);
        }
    }
};

class DecapGoldenTest : public ::testing::TestWithParam<DecapCase>, protected DecapFixture {
protected:
    static void SetUpTestSuite() { route_libbpf_log_to_spdlog(); }

    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        auto prog = load_listing_node();
        ASSERT_TRUE(prog) << prog.error().message;
        prog_.emplace(std::move(prog).value());
    }

    std::optional<XdpDecapProgram> prog_;
};

TEST_P(DecapGoldenTest, VerdictBytesAndCounters) {
    const DecapCase& c = GetParam();
    std::optional<Packet> out;
    if (c.expect) out = c.expect();
    expect_run(*prog_, c.input(), c.reason, out);
}

std::string case_name(const ::testing::TestParamInfo<DecapCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Decap, DecapGoldenTest, ::testing::ValuesIn(decap_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Pass, DecapGoldenTest, ::testing::ValuesIn(pass_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Drop, DecapGoldenTest, ::testing::ValuesIn(drop_cases()), case_name);

// Every case's verdict follows from its reason's name, so the table cannot claim a "pass_" outcome
// for a frame the program drops; and every reason the program can reach is covered by a case.
TEST(DecapCases, EveryReasonButAdjustFailureIsCovered) {
    std::vector<bool> seen(kDecapReasonCount, false);
    for (const auto& cases : {decap_cases(), pass_cases(), drop_cases()})
        for (const auto& c : cases) seen[c.reason] = true;
    for (std::size_t i = 0; i < kDecapReasonCount; ++i)
        if (i != KXLB_DR_DROP_DECAP_FAILED) {
            EXPECT_TRUE(seen[i]) << decap_reason_name(static_cast<kxlb_decap_reason>(i));
        }
}

class DecapProgramTest : public ::testing::Test, protected DecapFixture {
protected:
    void SetUp() override { KXLB_REQUIRE_ROOT(); }
};

TEST_F(DecapProgramTest, EmptyAddressMapDecapsulatesNothing) {
    auto prog = XdpDecapProgram::load();
    ASSERT_TRUE(prog) << prog.error().message;
    auto listed = prog->addresses();
    ASSERT_TRUE(listed);
    EXPECT_TRUE(listed->empty());
    expect_run(*prog, ipip(tcp4_inner()), KXLB_DR_PASS_NOT_DECAP_ADDR, std::nullopt);
}

TEST_F(DecapProgramTest, AddRemoveAndListAddresses) {
    auto prog = load_listing_node();
    ASSERT_TRUE(prog) << prog.error().message;
    ASSERT_TRUE(prog->add_address(IpAddr::parse(kNode4).value())) << "adding a listed address again";
    auto listed = prog->addresses();
    ASSERT_TRUE(listed);
    std::vector<std::string> names;
    for (const auto& a : *listed) names.push_back(a.str());
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{kNode4, kNode6}));

    expect_run(*prog, ip6ip6(tcp6_inner()), KXLB_DR_DECAP_IP6IP6, bare(tcp6_inner()));
    auto removed = prog->remove_address(IpAddr::parse(kNode6).value());
    ASSERT_TRUE(removed);
    EXPECT_TRUE(*removed);
    removed = prog->remove_address(IpAddr::parse(kNode6).value());
    ASSERT_TRUE(removed);
    EXPECT_FALSE(*removed);

    ASSERT_TRUE(prog->reset_reasons());
    expect_run(*prog, ip6ip6(tcp6_inner()), KXLB_DR_PASS_NOT_DECAP_ADDR, std::nullopt);
    ASSERT_TRUE(prog->reset_reasons());
    expect_run(*prog, ipip(udp4_inner()), KXLB_DR_DECAP_IPIP, bare(udp4_inner()));

    auto bad = prog->add_address(IpAddr{});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, EINVAL);
}

TEST_F(DecapProgramTest, RepeatedRunsAccumulate) {
    auto prog = load_listing_node();
    ASSERT_TRUE(prog) << prog.error().message;
    const Packet pkt = ipip(tcp4_inner(), {}, kOther4);  // untouched, so the buffer can be reused
    XdpRunOptions opts;
    opts.repeat = 100;
    ASSERT_TRUE(run_xdp(prog->prog_fd(), pkt.span(), opts));
    auto counters = prog->reasons();
    ASSERT_TRUE(counters);
    EXPECT_EQ(counters.value()[KXLB_DR_PASS_NOT_DECAP_ADDR].packets, 100u);
    EXPECT_EQ(counters.value()[KXLB_DR_PASS_NOT_DECAP_ADDR].bytes, 100u * pkt.size());
}

TEST_F(DecapProgramTest, AttachToMissingInterfaceFails) {
    auto prog = XdpDecapProgram::load();
    ASSERT_TRUE(prog) << prog.error().message;
    auto link = prog->attach(std::string("kxlb-no-such-if"), XdpMode::Generic);
    ASSERT_FALSE(link);
    EXPECT_EQ(link.error().code, ENODEV);
}

}  // namespace
}  // namespace kxlb
