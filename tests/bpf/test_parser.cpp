// bpf tier: the XDP datapath's packet parser, driven by crafted frames through BPF_PROG_TEST_RUN.
// Each case asserts the verdict, the exact output bytes (the parser must not touch the frame) and
// the exact per-CPU counters it moved.
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "common/packet_builder.hpp"
#include "common/privileges.hpp"
#include "lib/libbpf_log.hpp"
#include "lib/test_run.hpp"
#include "lib/xdp_programs.hpp"

namespace kxlb {
namespace {

using test::Bytes;
using test::Packet;
using test::PacketBuilder;

struct ParserCase {
    std::string name;
    std::function<Packet()> make;
    std::vector<kxlb_parse_stat> expect;  // every counter that must move by exactly one packet
};

// Fixes the IPv4 total length (and nothing else) after a truncation so the L4 layer is what fails.
Packet truncate_l4_v4(Packet p, std::size_t l4_bytes) {
    p.truncate(p.l4_off + l4_bytes);
    p.set_be16(p.l3_off + 2, static_cast<std::uint16_t>(p.size() - p.l3_off));
    return p;
}
Packet truncate_l4_v6(Packet p, std::size_t l4_bytes) {
    p.truncate(p.l4_off + l4_bytes);
    p.set_be16(p.l3_off + 4, static_cast<std::uint16_t>(p.size() - p.l4_off));
    return p;
}

Packet eth_only(std::uint16_t ethertype, std::size_t payload) {
    Bytes body(payload, 0xab);
    return PacketBuilder().eth_type(ethertype).payload(body).build();
}

std::vector<ParserCase> cases() {
    const char* a4 = "10.0.0.1";
    const char* b4 = "10.0.0.2";
    const char* a6 = "fd00::1";
    const char* b6 = "fd00::2";
    return {
        // ---- well-formed, every protocol the parser knows ----
        {"tcp4_syn",
         [] { return test::tcp4("10.0.0.1", 40000, "10.0.0.2", 80); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_TCP}},
        {"udp4",
         [] { return test::udp4("10.0.0.1", 5353, "10.0.0.2", 53, "query"); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_UDP}},
        {"tcp6_data",
         [] { return test::tcp6("fd00::1", 40000, "fd00::2", 443, test::TCP_ACK | test::TCP_PSH, "hi"); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_TCP}},
        {"udp6",
         [] { return test::udp6("fd00::1", 5000, "fd00::2", 6000, "x"); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_UDP}},
        {"icmp4_echo",
         [=] { return PacketBuilder().ipv4(a4, b4).icmp(8, 0, 0x00010001).payload("ping").build(); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ICMP}},
        {"icmp6_echo",
         [=] { return PacketBuilder().ipv6(a6, b6).icmp(128, 0, 0x00010001).build(); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_ICMPV6}},
        {"arp", [] { return eth_only(0x0806, 28); }, {KXLB_PS_FRAMES, KXLB_PS_ARP}},
        {"lldp_other_l3", [] { return eth_only(0x88cc, 40); }, {KXLB_PS_FRAMES, KXLB_PS_L3_OTHER}},
        {"vlan_tcp4",
         [=] { return PacketBuilder().vlan(100).ipv4(a4, b4).tcp(1, 2).build(); },
         {KXLB_PS_FRAMES, KXLB_PS_VLAN, KXLB_PS_IPV4, KXLB_PS_TCP}},
        {"qinq_udp6",
         [=] { return PacketBuilder().vlan(10, 0, 0x88a8).vlan(20).ipv6(a6, b6).udp(1, 2).build(); },
         {KXLB_PS_FRAMES, KXLB_PS_VLAN, KXLB_PS_IPV6, KXLB_PS_UDP}},
        {"ipv4_options_tcp",
         [=] {
             test::Ipv4Opts o;
             o.options = {0x94, 0x04, 0x00, 0x00};  // router alert
             return PacketBuilder().ipv4(a4, b4, o).tcp(1000, 80).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_IPV4_OPTIONS, KXLB_PS_TCP}},
        {"ipv4_first_fragment_udp",
         [=] {
             test::Ipv4Opts o;
             o.mf = true;
             return PacketBuilder().ipv4(a4, b4, o).udp(1, 2).payload(Bytes(64, 1)).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_IPV4_FRAGMENT, KXLB_PS_UDP}},
        {"ipv4_later_fragment",
         [=] {
             test::Ipv4Opts o;
             o.frag_offset = 9;
             o.protocol = 17;
             return PacketBuilder().ipv4(a4, b4, o).payload(Bytes(40, 2)).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_IPV4_FRAGMENT}},
        {"ipv6_hop_by_hop",
         [=] {
             test::Ipv6Opts o;
             o.next_header = 0;
             return PacketBuilder().ipv6(a6, b6, o).payload(Bytes(16, 0)).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_IPV6_EXTHDR}},
        {"ipv6_fragment_header",
         [=] {
             test::Ipv6Opts o;
             o.next_header = 44;
             return PacketBuilder().ipv6(a6, b6, o).payload(Bytes(24, 0)).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_IPV6_EXTHDR}},
        {"gre_other_l4",
         [=] {
             test::Ipv4Opts o;
             o.protocol = 47;
             return PacketBuilder().ipv4(a4, b4, o).payload(Bytes(24, 0)).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_L4_OTHER}},
        {"ipip_outer_only",
         [=] { return PacketBuilder().ipv4("192.0.2.1", "192.0.2.2").ipv4(a4, b4).tcp(1, 2).build(); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_L4_OTHER}},
        {"udp4_ethernet_padding",
         [] {
             Packet p = test::udp4("10.0.0.1", 1, "10.0.0.2", 2);  // 42 bytes: NICs pad to 60
             p.bytes.resize(60, 0);
             return p;
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_UDP}},

        // ---- truncated or malformed at every layer boundary ----
        // The kernel never hands XDP a frame shorter than an Ethernet header (BPF_PROG_TEST_RUN
        // refuses them too), so the first boundary testable end to end is Ethernet -> L3.
        {"ethernet_header_only_ipv4",
         [] { return test::tcp4("10.0.0.1", 1, "10.0.0.2", 2).truncate(14); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_TRUNC_IPV4}},
        {"ethernet_header_only_ipv6",
         [] { return test::tcp6("fd00::1", 1, "fd00::2", 2).truncate(14); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_ERR_TRUNC_IPV6}},
        {"vlan_tag_cut",
         [=] { return PacketBuilder().vlan(5).ipv4(a4, b4).udp(1, 2).build().truncate(16); },
         {KXLB_PS_FRAMES, KXLB_PS_ERR_TRUNC_VLAN}},
        {"three_vlan_tags",
         [=] { return PacketBuilder().vlan(1, 0, 0x88a8).vlan(2).vlan(3).ipv4(a4, b4).udp(1, 2).build(); },
         {KXLB_PS_FRAMES, KXLB_PS_VLAN, KXLB_PS_ERR_VLAN_DEPTH}},
        {"ipv4_header_cut",
         [] { return test::udp4("10.0.0.1", 1, "10.0.0.2", 2).truncate(14 + 19); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_TRUNC_IPV4}},
        {"ipv4_bad_version",
         [=] {
             test::Ipv4Opts o;
             o.version = 6;
             return PacketBuilder().ipv4(a4, b4, o).udp(1, 2).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_IPV4_VERSION}},
        {"ipv4_ihl_below_5",
         [=] {
             test::Ipv4Opts o;
             o.ihl = 4;
             return PacketBuilder().ipv4(a4, b4, o).udp(1, 2).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_IPV4_IHL}},
        {"ipv4_options_past_end",
         [=] {
             test::Ipv4Opts o;
             o.ihl = 15;  // claims 60 bytes of header; the frame has 20 + 8
             return PacketBuilder().ipv4(a4, b4, o).udp(1, 2).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_IPV4_OPTIONS, KXLB_PS_ERR_IPV4_IHL}},
        {"ipv4_total_length_too_long",
         [=] {
             test::Ipv4Opts o;
             o.tot_len = 1500;
             return PacketBuilder().ipv4(a4, b4, o).udp(1, 2).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_IPV4_TOTLEN}},
        {"ipv4_total_length_below_header",
         [=] {
             test::Ipv4Opts o;
             o.tot_len = 19;
             return PacketBuilder().ipv4(a4, b4, o).udp(1, 2).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_IPV4_TOTLEN}},
        {"ipv6_header_cut",
         [] { return test::udp6("fd00::1", 1, "fd00::2", 2).truncate(14 + 39); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_ERR_TRUNC_IPV6}},
        {"ipv6_bad_version",
         [=] {
             test::Ipv6Opts o;
             o.version = 4;
             return PacketBuilder().ipv6(a6, b6, o).udp(1, 2).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_ERR_IPV6_VERSION}},
        {"ipv6_payload_length_lies",
         [=] {
             test::Ipv6Opts o;
             o.payload_len = 200;
             return PacketBuilder().ipv6(a6, b6, o).udp(1, 2).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_ERR_IPV6_PAYLEN}},
        {"tcp4_header_cut",
         [] { return truncate_l4_v4(test::tcp4("10.0.0.1", 1, "10.0.0.2", 2), 19); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_TRUNC_TCP}},
        {"tcp6_header_cut",
         [] { return truncate_l4_v6(test::tcp6("fd00::1", 1, "fd00::2", 2), 10); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_ERR_TRUNC_TCP}},
        {"tcp_data_offset_below_5",
         [=] {
             test::TcpOpts o;
             o.data_offset = 4;
             return PacketBuilder().ipv4(a4, b4).tcp(1, 2, o).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_TCP_DOFF}},
        {"tcp_options_past_end",
         [=] {
             test::TcpOpts o;
             o.data_offset = 15;  // 60-byte header in a 20-byte segment
             return PacketBuilder().ipv4(a4, b4).tcp(1, 2, o).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_TRUNC_TCP}},
        {"tcp_with_options",
         [=] {
             test::TcpOpts o;
             o.options = {2, 4, 0x05, 0xb4, 4, 2};  // MSS 1460, SACK permitted
             return PacketBuilder().ipv4(a4, b4).tcp(1, 2, o).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_TCP}},
        {"udp4_header_cut",
         [] { return truncate_l4_v4(test::udp4("10.0.0.1", 1, "10.0.0.2", 2), 7); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_TRUNC_UDP}},
        {"udp_length_below_8",
         [=] {
             test::UdpOpts o;
             o.length = 7;
             return PacketBuilder().ipv4(a4, b4).udp(1, 2, o).build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_UDP_LEN}},
        {"udp6_length_past_payload",
         [=] {
             test::UdpOpts o;
             o.length = 100;
             return PacketBuilder().ipv6(a6, b6).udp(1, 2, o).payload("abc").build();
         },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_ERR_UDP_LEN}},
        {"icmp4_header_cut",
         [=] { return truncate_l4_v4(PacketBuilder().ipv4(a4, b4).icmp(8, 0).build(), 4); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV4, KXLB_PS_ERR_TRUNC_ICMP}},
        {"icmp6_header_cut",
         [=] { return truncate_l4_v6(PacketBuilder().ipv6(a6, b6).icmp(128, 0).build(), 3); },
         {KXLB_PS_FRAMES, KXLB_PS_IPV6, KXLB_PS_ERR_TRUNC_ICMP}},
    };
}

class ParserTest : public ::testing::TestWithParam<ParserCase> {
protected:
    static void SetUpTestSuite() { route_libbpf_log_to_spdlog(); }

    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        auto prog = XdpLbProgram::load();
        ASSERT_TRUE(prog) << prog.error().message;
        prog_.emplace(std::move(prog).value());
    }

    std::optional<XdpLbProgram> prog_;
};

TEST_P(ParserTest, VerdictBytesAndCounters) {
    const ParserCase& c = GetParam();
    const Packet pkt = c.make();
    auto run = run_xdp(prog_->prog_fd(), pkt.span());
    ASSERT_TRUE(run) << run.error().message;

    EXPECT_EQ(run->verdict, static_cast<std::uint32_t>(XDP_PASS));
    EXPECT_EQ(test::diff_frames(pkt.span(), run->data), "") << "the parser must not modify the frame";

    auto stats = prog_->parse_stats();
    ASSERT_TRUE(stats) << stats.error().message;
    std::map<kxlb_parse_stat, int> want;
    for (auto id : c.expect) want[id] = 1;
    for (std::size_t i = 0; i < kParseStatCount; ++i) {
        const auto id = static_cast<kxlb_parse_stat>(i);
        const std::uint64_t expect_pkts = want.count(id) ? 1 : 0;
        EXPECT_EQ(stats.value()[id].packets, expect_pkts) << "counter " << parse_stat_name(id);
        EXPECT_EQ(stats.value()[id].bytes, expect_pkts * pkt.size()) << "counter bytes " << parse_stat_name(id);
    }
}

INSTANTIATE_TEST_SUITE_P(Golden, ParserTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<ParserCase>& info) { return info.param.name; });

class ParserCountingTest : public ::testing::Test {
protected:
    void SetUp() override { KXLB_REQUIRE_ROOT(); }
};

TEST_F(ParserCountingTest, RepeatedRunsAccumulateAndResetClears) {
    auto prog = XdpLbProgram::load();
    ASSERT_TRUE(prog) << prog.error().message;
    const Packet pkt = test::udp4("10.1.1.1", 1111, "10.2.2.2", 2222, "payload");
    XdpRunOptions opts;
    opts.repeat = 250;
    auto run = run_xdp(prog->prog_fd(), pkt.span(), opts);
    ASSERT_TRUE(run) << run.error().message;
    auto stats = prog->parse_stats();
    ASSERT_TRUE(stats);
    EXPECT_EQ(stats.value()[KXLB_PS_UDP].packets, 250u);
    EXPECT_EQ(stats.value()[KXLB_PS_FRAMES].bytes, 250u * pkt.size());

    ASSERT_TRUE(prog->reset_parse_stats());
    stats = prog->parse_stats();
    ASSERT_TRUE(stats);
    for (const auto& c : stats->by_id) EXPECT_EQ(c.packets, 0u);
}

TEST_F(ParserCountingTest, EachLoadHasItsOwnMaps) {
    auto a = XdpLbProgram::load();
    auto b = XdpLbProgram::load();
    ASSERT_TRUE(a && b);
    const Packet pkt = test::tcp4("10.0.0.1", 1, "10.0.0.2", 2);
    ASSERT_TRUE(run_xdp(a->prog_fd(), pkt.span()));
    EXPECT_EQ(a->parse_stats().value()[KXLB_PS_TCP].packets, 1u);
    EXPECT_EQ(b->parse_stats().value()[KXLB_PS_TCP].packets, 0u);
}

}  // namespace
}  // namespace kxlb
