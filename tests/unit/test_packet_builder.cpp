// Unit tests for the test-support packet builder and the independent checksum verifier, against hand-computed
// known answers (literal bytes), not against the code under test.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/checksum.hpp"
#include "common/packet_builder.hpp"

namespace kxlb::test {
namespace {

// True when some error message contains `needle`.
bool any_error_contains(const std::vector<std::string>& errs, const std::string& needle) {
    return std::any_of(errs.begin(), errs.end(), [&](const std::string& e) { return e.find(needle) != e.npos; });
}

std::string joined(const std::vector<std::string>& errs) {
    std::string s;
    for (const auto& e : errs) s += e + "\n";
    return s;
}

// Default Ethernet header the builder uses: dst 02:00:00:00:00:02, src 02:00:00:00:00:01, then the ethertype.
Bytes eth_default(std::uint16_t ethertype) {
    return {0x02,
            0x00,
            0x00,
            0x00,
            0x00,
            0x02,
            0x02,
            0x00,
            0x00,
            0x00,
            0x00,
            0x01,
            static_cast<std::uint8_t>(ethertype >> 8),
            static_cast<std::uint8_t>(ethertype)};
}

Bytes cat(Bytes a, const Bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

// ================================================================ Checksum: primitives

TEST(Checksum, OnesComplementSumRfc1071Example) {
    // RFC 1071 section 3: 0001 + f203 + f4f5 + f6f7 = 2ddf0, folded = ddf2.
    const Bytes d = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
    EXPECT_EQ(ones_complement_sum(d), 0xddf2);
}

TEST(Checksum, OnesComplementSumOddLengthAndInitial) {
    const Bytes odd = {0x12, 0x34, 0x56};  // 0x1234 + 0x5600 = 0x6834
    EXPECT_EQ(ones_complement_sum(odd), 0x6834);
    EXPECT_EQ(ones_complement_sum({}, 0), 0x0000);
    EXPECT_EQ(ones_complement_sum({}, 0x1fffe), 0xffff);   // 0xfffe + 1
    EXPECT_EQ(ones_complement_sum(odd, 0x10000), 0x6835);  // the initial value is folded too
    const Bytes ones = {0xff, 0xff, 0xff, 0xff};           // 0x1fffe -> 0xffff
    EXPECT_EQ(ones_complement_sum(ones), 0xffff);
}

// The classic IPv4 header example: 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
// 4500+0073+0000+4000+4011+c0a8+0001+c0a8+00c7 = 2479c -> 479e, ~479e = b861.
const Bytes kClassicIpv4Header = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                  0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};

TEST(Checksum, ClassicIpv4HeaderSumsToAllOnes) {
    EXPECT_EQ(ones_complement_sum(kClassicIpv4Header), 0xffff);
    Bytes zeroed = kClassicIpv4Header;
    zeroed[10] = zeroed[11] = 0;
    EXPECT_EQ(static_cast<std::uint16_t>(~ones_complement_sum(zeroed)), 0xb861);
}

// A frame written out entirely by hand: 10.0.0.1:1234 -> 10.0.0.2:53 UDP "hi".
//   IPv4 header: 4500+001e+0000+0000+4011+0a00+0001+0a00+0002 = 9932, ~ = 66cd.
//   UDP: pseudo 0a00+0001+0a00+0002+0011+000a = 141e; 04d2+0035+000a+0000+6869 = 6d7a; 141e+6d7a = 8198,
//        ~ = 7e67.
const Bytes kHandUdp4 = cat(eth_default(0x0800),
                            {0x45, 0x00, 0x00, 0x1e, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0x66, 0xcd, 0x0a, 0x00, 0x00,
                             0x01, 0x0a, 0x00, 0x00, 0x02, 0x04, 0xd2, 0x00, 0x35, 0x00, 0x0a, 0x7e, 0x67, 0x68, 0x69});

TEST(Checksum, VerifierAcceptsHandWrittenFrame) {
    EXPECT_TRUE(checksum_errors(kHandUdp4).empty()) << joined(checksum_errors(kHandUdp4));
}

TEST(Checksum, VerifierNamesEachBrokenChecksum) {
    Bytes bad_ip = kHandUdp4;
    bad_ip[14 + 11] ^= 0x01;  // IPv4 header checksum low byte
    auto errs = checksum_errors(bad_ip);
    ASSERT_EQ(errs.size(), 1u) << joined(errs);
    EXPECT_NE(errs[0].find("ipv4 header checksum 0x66cc"), std::string::npos) << errs[0];
    EXPECT_NE(errs[0].find("correct: 0x66cd"), std::string::npos) << errs[0];

    Bytes bad_udp = kHandUdp4;
    bad_udp.back() = 'j';  // payload changed, checksum not updated
    errs = checksum_errors(bad_udp);
    ASSERT_EQ(errs.size(), 1u) << joined(errs);
    EXPECT_NE(errs[0].find("udp checksum 0x7e67"), std::string::npos) << errs[0];

    Bytes no_udp_sum = kHandUdp4;
    no_udp_sum[14 + 20 + 6] = no_udp_sum[14 + 20 + 7] = 0;  // IPv4: 0 = no checksum, valid
    EXPECT_TRUE(checksum_errors(no_udp_sum).empty()) << joined(checksum_errors(no_udp_sum));
}

TEST(Checksum, VerifierChecksLengths) {
    Bytes short_udp_len = kHandUdp4;
    short_udp_len[14 + 20 + 5] = 0x09;  // udp length 9, IP payload 10
    EXPECT_TRUE(any_error_contains(checksum_errors(short_udp_len), "udp length 9"));

    Bytes long_tot_len = kHandUdp4;
    long_tot_len[14 + 3] = 0x1f;  // tot_len 31 > 30 present (header checksum now wrong as well)
    auto errs = checksum_errors(long_tot_len);
    EXPECT_TRUE(any_error_contains(errs, "truncated ipv4 packet: tot_len 31")) << joined(errs);

    Bytes padded = kHandUdp4;  // Ethernet padding after the outermost IP packet is fine
    padded.resize(60, 0);
    EXPECT_TRUE(checksum_errors(padded).empty()) << joined(checksum_errors(padded));
}

TEST(Checksum, UnknownEthertypeAndProtocolAreNotErrors) {
    Bytes arp = cat(eth_default(0x0806), Bytes(28, 0xab));
    EXPECT_TRUE(checksum_errors(arp).empty());
    Bytes gre = kHandUdp4;
    gre[14 + 9] = 47;  // protocol GRE; fix the header checksum by hand: 9932 - 0011 + 002f = 9950, ~ = 66af
    gre[14 + 10] = 0x66;
    gre[14 + 11] = 0xaf;
    EXPECT_TRUE(checksum_errors(gre).empty()) << joined(checksum_errors(gre));
}

TEST(Checksum, DescribeOffsetNamesFields) {
    EXPECT_EQ(describe_offset(kHandUdp4, 0), "eth.dst[0]");
    EXPECT_EQ(describe_offset(kHandUdp4, 9), "eth.src[3]");
    EXPECT_EQ(describe_offset(kHandUdp4, 13), "eth.ethertype[1]");
    EXPECT_EQ(describe_offset(kHandUdp4, 22), "ipv4.ttl");
    EXPECT_EQ(describe_offset(kHandUdp4, 33), "ipv4.daddr[3]");
    EXPECT_EQ(describe_offset(kHandUdp4, 40), "udp.checksum[0]");
    EXPECT_EQ(describe_offset(kHandUdp4, 43), "udp payload+1");
    EXPECT_EQ(describe_offset(kHandUdp4, 44), "beyond end");
    Bytes padded = kHandUdp4;
    padded.resize(60, 0);
    EXPECT_EQ(describe_offset(padded, 46), "trailer+2");
}

// ================================================================ PacketBuilder: addresses

TEST(PacketBuilderAddr, MacParse) {
    EXPECT_EQ(Mac::parse("02:00:00:00:00:01").b, (std::array<std::uint8_t, 6>{2, 0, 0, 0, 0, 1}));
    EXPECT_EQ(Mac::parse("AA:bb:0C:d0:Ef:ff").b, (std::array<std::uint8_t, 6>{0xaa, 0xbb, 0x0c, 0xd0, 0xef, 0xff}));
    EXPECT_EQ(Mac::parse("aa:bb:0c:d0:ef:ff").to_string(), "aa:bb:0c:d0:ef:ff");
    for (const char* bad : {"", "02:00:00:00:00", "02:00:00:00:00:01:", "02-00-00-00-00-01", "02:00:00:00:00:0g",
                            "2:00:00:00:00:001", "02:00:00:00:00:01 "})
        EXPECT_THROW(Mac::parse(bad), std::invalid_argument) << bad;
}

TEST(PacketBuilderAddr, IpAddresses) {
    EXPECT_EQ(ipv4_addr("192.168.0.199"), (std::array<std::uint8_t, 4>{192, 168, 0, 199}));
    const std::array<std::uint8_t, 16> v6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34};
    EXPECT_EQ(ipv6_addr("2001:db8::1234"), v6);
    for (const char* bad : {"", "1.2.3", "1.2.3.256", "1.2.3.4 ", "::1", "a.b.c.d"})
        EXPECT_THROW(ipv4_addr(bad), std::invalid_argument) << bad;
    for (const char* bad : {"", "1.2.3.4", "2001:db8:::1", "2001:db8::g", "fe80::1%eth0"})
        EXPECT_THROW(ipv6_addr(bad), std::invalid_argument) << bad;
    EXPECT_THROW(PacketBuilder().ipv4("10.0.0.1", "nope"), std::invalid_argument);
    EXPECT_THROW(PacketBuilder().ipv6("::1", "10.0.0.1"), std::invalid_argument);
}

// ================================================================ PacketBuilder: known answers

TEST(PacketBuilderKnown, ClassicIpv4HeaderChecksum) {
    // 0x73 = 115 = 20 (IP) + 8 (UDP) + 87 payload bytes; DF, TTL 64, id 0.
    const Packet p = PacketBuilder()
                         .ipv4("192.168.0.1", "192.168.0.199", Ipv4Opts{.ttl = 64, .df = true})
                         .udp(1000, 2000)
                         .payload(Bytes(87, 0x5a))
                         .build();
    ASSERT_EQ(p.size(), 14u + 115u);
    EXPECT_EQ(Bytes(p.bytes.begin() + 14, p.bytes.begin() + 34), kClassicIpv4Header);
}

TEST(PacketBuilderKnown, Udp4FrameExact) {
    const Packet p = udp4("10.0.0.1", 1234, "10.0.0.2", 53, "hi");
    EXPECT_EQ(p.bytes, kHandUdp4) << diff_frames(kHandUdp4, p.span());
    EXPECT_EQ(p.l3_off, 14u);
    EXPECT_EQ(p.l4_off, 34u);
    EXPECT_EQ(p.payload_off, 42u);
}

TEST(PacketBuilderKnown, Tcp4SynFrameExact) {
    // 192.0.2.1:40000 -> 198.51.100.2:80 SYN, seq 1, ack 0, window 65535, no options.
    //   IPv4: 4500+0028+0000+0000+4006+c000+0201+c633+6402 -> ~ = 8e99.
    //   TCP: pseudo c000+0201+c633+6402+0006+0014 = 1ec50; 9c40+0050+0000+0001+0000+0000+5002+ffff+0000+0000 =
    //        1ec92; 1ec50+1ec92 = 3d8e2 -> d8e5, ~ = 271a.
    const Bytes want = cat(eth_default(0x0800), {0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x40, 0x06,
                                                 0x8e, 0x99, 0xc0, 0x00, 0x02, 0x01, 0xc6, 0x33, 0x64, 0x02,  // IPv4
                                                 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
                                                 0x00, 0x00, 0x50, 0x02, 0xff, 0xff, 0x27, 0x1a, 0x00, 0x00});  // TCP
    const Packet p = tcp4("192.0.2.1", 40000, "198.51.100.2", 80);
    EXPECT_EQ(p.bytes, want) << diff_frames(want, p.span());
}

TEST(PacketBuilderKnown, Icmp4EchoExact) {
    //   IPv4 tot_len 0x20 -> header checksum 8ea6.
    //   ICMP: 0800+0000+0001+0001+6162+6364 = ccc8, ~ = 3337.
    const Bytes want =
        cat(eth_default(0x0800), {0x45, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x40, 0x01,
                                  0x8e, 0xa6, 0xc0, 0x00, 0x02, 0x01, 0xc6, 0x33, 0x64, 0x02,  // IPv4
                                  0x08, 0x00, 0x33, 0x37, 0x00, 0x01, 0x00, 0x01,              // ICMP echo, id 1, seq 1
                                  0x61, 0x62, 0x63, 0x64});                                    // "abcd"
    const Packet p = PacketBuilder().ipv4("192.0.2.1", "198.51.100.2").icmp(8, 0, 0x00010001).payload("abcd").build();
    EXPECT_EQ(p.bytes, want) << diff_frames(want, p.span());
    EXPECT_TRUE(checksum_errors(want).empty()) << joined(checksum_errors(want));
}

// IPv6 header for 2001:db8::1 -> 2001:db8::2 with the given payload length and next header, hop limit 64.
Bytes ipv6_hdr_db8(std::uint16_t plen, std::uint8_t nh) {
    return {0x60,
            0x00,
            0x00,
            0x00,
            static_cast<std::uint8_t>(plen >> 8),
            static_cast<std::uint8_t>(plen),
            nh,
            64,
            0x20,
            0x01,
            0x0d,
            0xb8,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0x01,
            0x20,
            0x01,
            0x0d,
            0xb8,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0x02};
}

TEST(PacketBuilderKnown, Icmp6EchoExact) {
    // pseudo: 2001+0db8+0001 + 2001+0db8+0002 + 0000+0008 + 0000+003a = 5bb7; ICMPv6 8000+0000+0001+0001 = 8002;
    // 5bb7+8002 = dbb9, ~ = 2446.
    const Bytes want =
        cat(cat(eth_default(0x86dd), ipv6_hdr_db8(8, 58)), {0x80, 0x00, 0x24, 0x46, 0x00, 0x01, 0x00, 0x01});
    const Packet p = PacketBuilder().ipv6("2001:db8::1", "2001:db8::2").icmp(128, 0, 0x00010001).build();
    EXPECT_EQ(p.bytes, want) << diff_frames(want, p.span());
    EXPECT_TRUE(checksum_errors(want).empty()) << joined(checksum_errors(want));
}

TEST(PacketBuilderKnown, Udp6FrameExact) {
    // pseudo: 2001+0db8+0001 + 2001+0db8+0002 + 0000+0009 + 0000+0011 = 5b8f; UDP 03e8+07d0+0009+0000+4100 = 4cc1;
    // 5b8f+4cc1 = a850, ~ = 57af.
    const Bytes want =
        cat(cat(eth_default(0x86dd), ipv6_hdr_db8(9, 17)), {0x03, 0xe8, 0x07, 0xd0, 0x00, 0x09, 0x57, 0xaf, 0x41});
    const Packet p = udp6("2001:db8::1", 1000, "2001:db8::2", 2000, "A");
    EXPECT_EQ(p.bytes, want) << diff_frames(want, p.span());
    EXPECT_TRUE(checksum_errors(want).empty()) << joined(checksum_errors(want));
}

TEST(PacketBuilderKnown, UdpChecksumThatComputesToZeroIsSentAsFfff) {
    // Same datagram as kHandUdp4 but payload e6d0: 141e+04d2+0035+000a+e6d0 = ffff, ~ = 0 -> sent as ffff.
    const Packet p = PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").udp(1234, 53).payload({0xe6, 0xd0}).build();
    EXPECT_EQ(p.be16(p.l4_off + 6), 0xffff);
    EXPECT_TRUE(checksum_errors(p.span()).empty()) << joined(checksum_errors(p.span()));
}

// ================================================================ PacketBuilder: layouts

TEST(PacketBuilderLayout, Tcp4) {
    const Packet p = tcp4("10.1.2.3", 12345, "10.9.8.7", 443, TCP_ACK | TCP_PSH, "hello");
    ASSERT_EQ(p.size(), 14u + 20u + 20u + 5u);
    EXPECT_EQ(p.be16(12), 0x0800);
    EXPECT_EQ(p.l3_off, 14u);
    EXPECT_EQ(p.inner_l3_off, 14u);
    EXPECT_EQ(p.l4_off, 34u);
    EXPECT_EQ(p.payload_off, 54u);
    EXPECT_EQ(p.u8(14), 0x45);
    EXPECT_EQ(p.be16(16), 45);  // tot_len
    EXPECT_EQ(p.u8(22), 64);    // ttl
    EXPECT_EQ(p.u8(23), 6);     // protocol
    EXPECT_EQ(p.be32(26), 0x0a010203u);
    EXPECT_EQ(p.be32(30), 0x0a090807u);
    EXPECT_EQ(p.be16(34), 12345);
    EXPECT_EQ(p.be16(36), 443);
    EXPECT_EQ(p.be32(38), 1u);  // seq
    EXPECT_EQ(p.u8(46), 0x50);  // data offset 5
    EXPECT_EQ(p.u8(47), 0x18);  // ACK|PSH
    EXPECT_EQ(p.be16(48), 65535);
    EXPECT_EQ(std::string(p.bytes.begin() + 54, p.bytes.end()), "hello");
    EXPECT_TRUE(checksum_errors(p.span()).empty()) << joined(checksum_errors(p.span()));
}

TEST(PacketBuilderLayout, Udp4) {
    const Packet p = udp4("10.0.0.1", 5000, "10.0.0.2", 53, "query");
    ASSERT_EQ(p.size(), 14u + 20u + 8u + 5u);
    EXPECT_EQ(p.u8(23), 17);
    EXPECT_EQ(p.be16(16), 33);
    EXPECT_EQ(p.be16(p.l4_off + 4), 13);  // udp length
    EXPECT_NE(p.be16(p.l4_off + 6), 0);
    EXPECT_EQ(p.payload_off, 42u);
    EXPECT_TRUE(checksum_errors(p.span()).empty()) << joined(checksum_errors(p.span()));
}

TEST(PacketBuilderLayout, Tcp6) {
    const Packet p = tcp6("fd00::1", 1111, "fd00::2", 80, TCP_FIN | TCP_ACK, "bye");
    ASSERT_EQ(p.size(), 14u + 40u + 20u + 3u);
    EXPECT_EQ(p.be16(12), 0x86dd);
    EXPECT_EQ(p.be32(14), 0x60000000u);  // version 6, tc 0, flow 0
    EXPECT_EQ(p.be16(18), 23);           // payload_len
    EXPECT_EQ(p.u8(20), 6);              // next header
    EXPECT_EQ(p.u8(21), 64);             // hop limit
    EXPECT_EQ(p.u8(22), 0xfd);
    EXPECT_EQ(p.u8(37), 0x01);
    EXPECT_EQ(p.u8(53), 0x02);
    EXPECT_EQ(p.l4_off, 54u);
    EXPECT_EQ(p.u8(54 + 13), 0x11);
    EXPECT_EQ(p.payload_off, 74u);
    EXPECT_TRUE(checksum_errors(p.span()).empty()) << joined(checksum_errors(p.span()));
}

TEST(PacketBuilderLayout, Udp6) {
    const Packet p = udp6("fd00::1", 1111, "fd00::2", 53);
    ASSERT_EQ(p.size(), 14u + 40u + 8u);
    EXPECT_EQ(p.u8(20), 17);
    EXPECT_EQ(p.be16(18), 8);
    EXPECT_EQ(p.be16(58), 8);
    EXPECT_NE(p.be16(60), 0);
    EXPECT_EQ(p.payload_off, p.size());
    EXPECT_TRUE(checksum_errors(p.span()).empty()) << joined(checksum_errors(p.span()));
}

TEST(PacketBuilderLayout, Ipv6TrafficClassAndFlowLabel) {
    const Ipv6Opts opts{.hop_limit = 7, .traffic_class = 0xb8, .flow_label = 0xabcde};
    const Packet p = PacketBuilder().ipv6("fd00::1", "fd00::2", opts).udp(1, 2).build();
    EXPECT_EQ(p.be32(14), 0x6b8abcdeu);
    EXPECT_EQ(p.u8(21), 7);
    EXPECT_THROW(PacketBuilder().ipv6("::1", "::2", Ipv6Opts{.flow_label = 0x100000}), std::invalid_argument);
}

TEST(PacketBuilderLayout, Icmp4And6) {
    const Packet v4 = PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").icmp(0, 0, 0x12345678).build();
    EXPECT_EQ(v4.u8(23), 1);
    EXPECT_EQ(v4.u8(34), 0);
    EXPECT_EQ(v4.be32(38), 0x12345678u);
    EXPECT_EQ(v4.size(), 42u);
    EXPECT_TRUE(checksum_errors(v4.span()).empty()) << joined(checksum_errors(v4.span()));

    const Packet v6 = PacketBuilder().ipv6("fd00::1", "fd00::2").icmp(129, 0, 7).payload("ping").build();
    EXPECT_EQ(v6.u8(20), 58);
    EXPECT_EQ(v6.u8(54), 129);
    EXPECT_EQ(v6.be16(18), 12);
    EXPECT_TRUE(checksum_errors(v6.span()).empty()) << joined(checksum_errors(v6.span()));

    // The ICMPv6 checksum covers the pseudo-header: another destination address gives another checksum.
    const Packet v6b = PacketBuilder().ipv6("fd00::1", "fd00::3").icmp(129, 0, 7).payload("ping").build();
    EXPECT_NE(v6.be16(56), v6b.be16(56));  // ICMPv6 checksum covers the addresses
}

TEST(PacketBuilderLayout, IcmpErrorQuotingADatagram) {
    const Packet orig = tcp4("10.0.0.1", 40000, "10.0.0.9", 80, TCP_ACK, "0123456789");
    const Packet err = PacketBuilder()
                           .ipv4("10.0.0.254", "10.0.0.1")
                           .icmp(3, 4, 1400)  // fragmentation needed, next-hop MTU 1400
                           .payload(orig.span_from(orig.l3_off).first(28))
                           .build();
    EXPECT_EQ(err.be32(err.l4_off + 4), 1400u);
    EXPECT_EQ(err.size(), 14u + 20u + 8u + 28u);
    EXPECT_EQ(err.be16(err.payload_off + 2), 50);  // the quoted header keeps its original tot_len (20+20+10)
    EXPECT_TRUE(checksum_errors(err.span()).empty()) << joined(checksum_errors(err.span()));
}

TEST(PacketBuilderLayout, EthAndEthType) {
    const Mac src = Mac::parse("0a:0b:0c:0d:0e:0f"), dst = Mac::parse("ff:ff:ff:ff:ff:ff");
    const Packet arp = PacketBuilder().eth(src, dst).eth_type(0x0806).payload(Bytes(28, 0x11)).build();
    EXPECT_EQ(arp.size(), 42u);
    EXPECT_EQ(Bytes(arp.bytes.begin(), arp.bytes.begin() + 12),
              (Bytes{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f}));
    EXPECT_EQ(arp.be16(12), 0x0806);
    EXPECT_EQ(arp.l3_off, 14u);
    EXPECT_EQ(arp.payload_off, 14u);
    EXPECT_TRUE(checksum_errors(arp.span()).empty());

    const Packet bare = PacketBuilder().build();
    EXPECT_EQ(bare.bytes, eth_default(0x88b5));

    // eth_type overrides the computed ethertype even in front of an IP header.
    const Packet lie =
        PacketBuilder().eth_type(0x86dd).ipv4("10.0.0.1", "10.0.0.2").udp(1, 2).payload(Bytes(20, 0)).build();
    EXPECT_EQ(lie.be16(12), 0x86dd);
    EXPECT_TRUE(any_error_contains(checksum_errors(lie.span()), "ipv6 version"));
}

TEST(PacketBuilderLayout, SingleVlan) {
    const Packet p = PacketBuilder().vlan(100, 5).ipv4("10.0.0.1", "10.0.0.2").tcp(1, 2).build();
    EXPECT_EQ(p.be16(12), 0x8100);
    EXPECT_EQ(p.be16(14), 0xa064);  // pcp 5, dei 0, vid 100
    EXPECT_EQ(p.be16(16), 0x0800);
    EXPECT_EQ(p.l3_off, 18u);
    EXPECT_EQ(p.l4_off, 38u);
    EXPECT_EQ(p.u8(18), 0x45);
    EXPECT_TRUE(checksum_errors(p.span()).empty()) << joined(checksum_errors(p.span()));
    EXPECT_EQ(describe_offset(p.span(), 15), "vlan.tci[1]");
}

TEST(PacketBuilderLayout, DoubleVlan) {
    const Packet p = PacketBuilder().vlan(100, 0, 0x88a8).vlan(4095, 7).ipv6("fd00::1", "fd00::2").udp(1, 2).build();
    EXPECT_EQ(p.be16(12), 0x88a8);
    EXPECT_EQ(p.be16(14), 0x0064);
    EXPECT_EQ(p.be16(16), 0x8100);
    EXPECT_EQ(p.be16(18), 0xefff);
    EXPECT_EQ(p.be16(20), 0x86dd);
    EXPECT_EQ(p.l3_off, 22u);
    EXPECT_EQ(p.u8(22) >> 4, 6);
    EXPECT_TRUE(checksum_errors(p.span()).empty()) << joined(checksum_errors(p.span()));
    EXPECT_EQ(describe_offset(p.span(), 20), "vlan#2.ethertype[0]");

    // eth_type() overrides the innermost ethertype (after the last tag), not the TPIDs.
    const Packet q = PacketBuilder().vlan(1).vlan(2).eth_type(0x0806).payload(Bytes(28, 0)).build();
    EXPECT_EQ(q.be16(12), 0x8100);
    EXPECT_EQ(q.be16(16), 0x8100);
    EXPECT_EQ(q.be16(20), 0x0806);
    EXPECT_THROW(PacketBuilder().vlan(4096), std::invalid_argument);
    EXPECT_THROW(PacketBuilder().vlan(1, 8), std::invalid_argument);
}

TEST(PacketBuilderLayout, Ipv4Options) {
    // 4 bytes (router alert) -> ihl 6, no padding.
    const Packet ra =
        PacketBuilder().ipv4("10.0.0.1", "10.0.0.2", Ipv4Opts{.options = {0x94, 0x04, 0x00, 0x00}}).udp(1, 2).build();
    EXPECT_EQ(ra.u8(14), 0x46);
    EXPECT_EQ(ra.be16(16), 24 + 8);
    EXPECT_EQ(ra.be32(34), 0x94040000u);
    EXPECT_EQ(ra.l4_off, 38u);
    EXPECT_TRUE(checksum_errors(ra.span()).empty()) << joined(checksum_errors(ra.span()));

    // 7 bytes -> padded with one EOL to 8 -> ihl 7.
    const Packet rr = PacketBuilder()
                          .ipv4("10.0.0.1", "10.0.0.2", Ipv4Opts{.options = {0x07, 0x07, 0x04, 1, 2, 3, 4}})
                          .tcp(1, 2)
                          .build();
    EXPECT_EQ(rr.u8(14), 0x47);
    EXPECT_EQ(rr.be16(16), 28 + 20);
    EXPECT_EQ(Bytes(rr.bytes.begin() + 34, rr.bytes.begin() + 42), (Bytes{0x07, 0x07, 0x04, 1, 2, 3, 4, 0x00}));
    EXPECT_EQ(rr.l4_off, 42u);
    EXPECT_TRUE(checksum_errors(rr.span()).empty()) << joined(checksum_errors(rr.span()));
    EXPECT_EQ(describe_offset(rr.span(), 41), "ipv4.options[7]");

    EXPECT_THROW(PacketBuilder().ipv4("10.0.0.1", "10.0.0.2", Ipv4Opts{.options = Bytes(41, 1)}),
                 std::invalid_argument);
}

TEST(PacketBuilderLayout, Ipv4TosIdAndFragments) {
    const Packet first = PacketBuilder()
                             .ipv4("10.0.0.1", "10.0.0.2", Ipv4Opts{.tos = 0x10, .id = 0xbeef, .mf = true})
                             .udp(1, 2)
                             .payload(Bytes(100, 7))
                             .build();
    EXPECT_EQ(first.u8(15), 0x10);
    EXPECT_EQ(first.be16(18), 0xbeef);
    EXPECT_EQ(first.be16(20), 0x2000);
    EXPECT_TRUE(checksum_errors(first.span()).empty()) << joined(checksum_errors(first.span()));

    // A later fragment: no L4 header, raw payload, protocol stated explicitly.
    const Packet later = PacketBuilder()
                             .ipv4("10.0.0.1", "10.0.0.2", Ipv4Opts{.id = 0xbeef, .frag_offset = 185, .protocol = 17})
                             .payload(Bytes(40, 9))
                             .build();
    EXPECT_EQ(later.be16(20), 185);
    EXPECT_EQ(later.u8(23), 17);
    EXPECT_EQ(later.l4_off, 34u);
    EXPECT_EQ(later.payload_off, 34u);
    EXPECT_TRUE(checksum_errors(later.span()).empty()) << joined(checksum_errors(later.span()));

    const Packet df = PacketBuilder().ipv4("10.0.0.1", "10.0.0.2", Ipv4Opts{.df = true, .frag_offset = 1}).build();
    EXPECT_EQ(df.be16(20), 0x4001);
    EXPECT_EQ(df.u8(23), 253);  // nothing after the header: RFC 3692 experimental protocol
    EXPECT_THROW(PacketBuilder().ipv4("10.0.0.1", "10.0.0.2", Ipv4Opts{.frag_offset = 0x2000}), std::invalid_argument);
}

TEST(PacketBuilderLayout, TcpOptionsAndFields) {
    const Packet p = PacketBuilder()
                         .ipv4("10.0.0.1", "10.0.0.2")
                         .tcp(1, 2,
                              TcpOpts{.flags = TCP_SYN | TCP_ECE | TCP_CWR,
                                      .seq = 0xdeadbeef,
                                      .ack = 0x01020304,
                                      .window = 1024,
                                      .options = {0x02, 0x04, 0x05, 0xb4, 0x03, 0x03, 0x07}})
                         .build();
    EXPECT_EQ(p.be32(38), 0xdeadbeefu);
    EXPECT_EQ(p.be32(42), 0x01020304u);
    EXPECT_EQ(p.u8(46), 0x70);  // 20 + 8 option bytes = 7 words
    EXPECT_EQ(p.u8(47), 0xc2);
    EXPECT_EQ(p.be16(48), 1024);
    EXPECT_EQ(Bytes(p.bytes.begin() + 54, p.bytes.end()), (Bytes{0x02, 0x04, 0x05, 0xb4, 0x03, 0x03, 0x07, 0x01}));
    EXPECT_EQ(p.payload_off, p.size());
    EXPECT_TRUE(checksum_errors(p.span()).empty()) << joined(checksum_errors(p.span()));
}

TEST(PacketBuilderLayout, PayloadConcatenatesAndPadTo) {
    const Packet p =
        PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").udp(1, 2).payload("ab").payload({0x63}).pad_to(60).build();
    EXPECT_EQ(p.size(), 60u);
    EXPECT_EQ(p.be16(16), 31);  // lengths exclude the padding
    EXPECT_EQ(p.be16(38), 11);
    EXPECT_EQ(p.u8(42), 'a');
    EXPECT_EQ(p.u8(44), 'c');
    EXPECT_EQ(p.u8(45), 0);
    EXPECT_TRUE(checksum_errors(p.span()).empty()) << joined(checksum_errors(p.span()));
    EXPECT_EQ(describe_offset(p.span(), 59), "trailer+14");
    EXPECT_EQ(PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").udp(1, 2).payload(Bytes(100, 0)).pad_to(60).build().size(),
              142u);
}

// ================================================================ PacketBuilder: tunnels

TEST(PacketBuilderTunnel, Ipip) {
    const Packet p = PacketBuilder()
                         .ipv4("172.16.0.1", "172.16.0.2", Ipv4Opts{.ttl = 32})
                         .ipv4("10.0.0.1", "10.0.0.2")
                         .tcp(1000, 80)
                         .payload("x")
                         .build();
    EXPECT_EQ(p.l3_off, 14u);
    EXPECT_EQ(p.inner_l3_off, 34u);
    EXPECT_EQ(p.l4_off, 54u);
    EXPECT_EQ(p.u8(23), 4);  // outer protocol IPIP
    EXPECT_EQ(p.u8(22), 32);
    EXPECT_EQ(p.u8(43), 6);  // inner protocol TCP
    EXPECT_EQ(p.be16(16), 20 + 20 + 20 + 1);
    EXPECT_EQ(p.be16(36), 20 + 20 + 1);
    EXPECT_TRUE(checksum_errors(p.span()).empty()) << joined(checksum_errors(p.span()));

    Packet bad = p;
    bad.set_u8(34 + 8, 1);  // inner TTL changed without fixing the inner checksum
    auto errs = checksum_errors(bad.span());
    ASSERT_EQ(errs.size(), 1u) << joined(errs);
    EXPECT_NE(errs[0].find("ipv4#2 header checksum"), std::string::npos) << errs[0];
    EXPECT_NE(diff_frames(p.span(), bad.span()).find("ipv4#2.ttl"), std::string::npos);
}

TEST(PacketBuilderTunnel, Ip6ip6And4in6And6in4) {
    const Packet p66 = PacketBuilder().ipv6("fd00::a", "fd00::b").ipv6("fd01::1", "fd01::2").udp(53, 53).build();
    EXPECT_EQ(p66.u8(20), 41);
    EXPECT_EQ(p66.be16(18), 40 + 8);
    EXPECT_EQ(p66.inner_l3_off, 54u);
    EXPECT_EQ(p66.u8(54 + 6), 17);
    EXPECT_EQ(p66.l4_off, 94u);
    EXPECT_TRUE(checksum_errors(p66.span()).empty()) << joined(checksum_errors(p66.span()));

    const Packet p46 = PacketBuilder().ipv6("fd00::a", "fd00::b").ipv4("10.0.0.1", "10.0.0.2").icmp(8, 0).build();
    EXPECT_EQ(p46.u8(20), 4);
    EXPECT_EQ(p46.u8(54 + 9), 1);  // ICMPv4: governed by the inner IPv4 header
    EXPECT_TRUE(checksum_errors(p46.span()).empty()) << joined(checksum_errors(p46.span()));

    const Packet p64 = PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").ipv6("fd01::1", "fd01::2").icmp(128, 0).build();
    EXPECT_EQ(p64.u8(23), 41);
    EXPECT_EQ(p64.u8(34 + 6), 58);
    EXPECT_TRUE(checksum_errors(p64.span()).empty()) << joined(checksum_errors(p64.span()));

    // Inner header claims fewer bytes than the outer payload holds: flagged inside a tunnel.
    const Packet shortin = PacketBuilder()
                               .ipv4("10.0.0.1", "10.0.0.2")
                               .ipv4("10.0.0.3", "10.0.0.4", Ipv4Opts{.tot_len = 40})
                               .tcp(1, 2)
                               .payload("abc")
                               .build();
    EXPECT_TRUE(any_error_contains(checksum_errors(shortin.span()), "ipv4#2 tot_len 40 but the enclosing payload"))
        << joined(checksum_errors(shortin.span()));
}

TEST(PacketBuilderTunnel, Ipv6ExtensionHeaders) {
    // Hop-by-hop with a router alert option (05 02 0000) padded by PadN (01 00) to 8 bytes.
    const Packet hbh =
        PacketBuilder().ipv6("fd00::1", "fd00::2").ipv6_ext(0, {0x05, 0x02, 0x00, 0x00, 0x01, 0x00}).tcp(1, 2).build();
    EXPECT_EQ(hbh.u8(20), 0);
    EXPECT_EQ(Bytes(hbh.bytes.begin() + 54, hbh.bytes.begin() + 62), (Bytes{6, 0, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00}));
    EXPECT_EQ(hbh.be16(18), 8 + 20);
    EXPECT_EQ(hbh.l4_off, 62u);
    EXPECT_TRUE(checksum_errors(hbh.span()).empty()) << joined(checksum_errors(hbh.span()));
    Packet bad = hbh;
    bad.set_u8(hbh.l4_off + 13, TCP_RST);
    EXPECT_TRUE(any_error_contains(checksum_errors(bad.span()), "tcp checksum"));

    // Destination options (10-byte body -> 16 bytes, hdr ext len 1), then ICMPv6 (pseudo-header still applies).
    const Packet dst = PacketBuilder().ipv6("fd00::1", "fd00::2").ipv6_ext(60, Bytes(10, 0)).icmp(128, 0).build();
    EXPECT_EQ(dst.u8(20), 60);
    EXPECT_EQ(dst.u8(54), 58);
    EXPECT_EQ(dst.u8(55), 1);
    EXPECT_EQ(dst.l4_off, 70u);
    EXPECT_TRUE(checksum_errors(dst.span()).empty()) << joined(checksum_errors(dst.span()));

    // Non-first fragment: offset 8 units, M=1; the L4 checksum of a fragment is not verifiable, so no error even
    // though the UDP checksum here covers only this fragment's bytes.
    const Packet frag =
        PacketBuilder().ipv6("fd00::1", "fd00::2").ipv6_ext(44, {0x00, 0x41, 0, 0, 0, 7}).udp(1, 2).build();
    EXPECT_EQ(Bytes(frag.bytes.begin() + 54, frag.bytes.begin() + 62), (Bytes{17, 0, 0x00, 0x41, 0, 0, 0, 7}));
    Packet frag_bad = frag;
    frag_bad.set_be16(frag.l4_off + 6, 0x1234);
    EXPECT_TRUE(checksum_errors(frag_bad.span()).empty()) << joined(checksum_errors(frag_bad.span()));
    EXPECT_THROW(PacketBuilder().ipv6_ext(44, Bytes(7, 0)), std::invalid_argument);
}

// ================================================================ PacketBuilder: overrides

TEST(PacketBuilderOverride, Ipv4Fields) {
    auto with = [](const Ipv4Opts& o) { return PacketBuilder().ipv4("10.0.0.1", "10.0.0.2", o).tcp(1, 2).build(); };
    const Packet good = with({});

    const Packet ver = with(Ipv4Opts{.version = 5});
    EXPECT_EQ(ver.u8(14), 0x55);
    EXPECT_TRUE(any_error_contains(checksum_errors(ver.span()), "ipv4 version field is 5"));

    const Packet ihl4 = with(Ipv4Opts{.ihl = 4});
    EXPECT_EQ(ihl4.u8(14), 0x44);
    EXPECT_TRUE(any_error_contains(checksum_errors(ihl4.span()), "ihl 4 < 5"));

    const Packet ihl15 = with(Ipv4Opts{.ihl = 15});
    EXPECT_EQ(ihl15.u8(14), 0x4f);
    EXPECT_TRUE(any_error_contains(checksum_errors(ihl15.span()), "truncated ipv4 header"));

    const Packet proto = with(Ipv4Opts{.protocol = 200});
    EXPECT_EQ(proto.u8(23), 200);
    EXPECT_TRUE(checksum_errors(proto.span()).empty()) << joined(checksum_errors(proto.span()));  // header sum OK

    const Packet long_len = with(Ipv4Opts{.tot_len = 1000});
    EXPECT_EQ(long_len.be16(16), 1000);
    auto errs = checksum_errors(long_len.span());
    ASSERT_EQ(errs.size(), 1u) << joined(errs);  // header checksum still computed over the override
    EXPECT_NE(errs[0].find("truncated ipv4 packet: tot_len 1000"), std::string::npos) << errs[0];

    const Packet tiny_len = with(Ipv4Opts{.tot_len = 10});
    EXPECT_TRUE(any_error_contains(checksum_errors(tiny_len.span()), "smaller than its header length"));

    const Packet csum = with(Ipv4Opts{.checksum = 0x1234});
    EXPECT_EQ(csum.be16(24), 0x1234);
    errs = checksum_errors(csum.span());
    ASSERT_EQ(errs.size(), 1u) << joined(errs);
    char correct[32];
    (void)std::snprintf(correct, sizeof correct, "correct: 0x%04x", good.be16(24));
    EXPECT_NE(errs[0].find("ipv4 header checksum 0x1234"), std::string::npos) << errs[0];
    EXPECT_NE(errs[0].find(correct), std::string::npos) << errs[0];
}

TEST(PacketBuilderOverride, Ipv6Fields) {
    auto with = [](Ipv6Opts o) { return PacketBuilder().ipv6("fd00::1", "fd00::2", o).udp(1, 2).build(); };
    const Packet ver = with(Ipv6Opts{.version = 4});
    EXPECT_EQ(ver.u8(14) >> 4, 4);
    EXPECT_TRUE(any_error_contains(checksum_errors(ver.span()), "ipv6 version field is 4"));

    const Packet hbh = with(Ipv6Opts{.next_header = 0});
    EXPECT_EQ(hbh.u8(20), 0);
    EXPECT_EQ(hbh.size(), 14u + 40u + 8u);  // no extension header was added

    const Packet nonext = with(Ipv6Opts{.next_header = 59});
    EXPECT_EQ(nonext.u8(20), 59);
    EXPECT_TRUE(checksum_errors(nonext.span()).empty());

    const Packet long_len = with(Ipv6Opts{.payload_len = 9});
    EXPECT_EQ(long_len.be16(18), 9);
    EXPECT_TRUE(any_error_contains(checksum_errors(long_len.span()), "truncated ipv6 packet: payload_len 9"));

    const Packet short_len = with(Ipv6Opts{.payload_len = 4});
    EXPECT_TRUE(any_error_contains(checksum_errors(short_len.span()), "truncated udp header"));
}

TEST(PacketBuilderOverride, TcpFields) {
    auto with = [](const TcpOpts& o) { return PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").tcp(1, 2, o).build(); };
    const Packet doff4 = with(TcpOpts{.data_offset = 4});
    EXPECT_EQ(doff4.u8(46), 0x40);
    EXPECT_TRUE(any_error_contains(checksum_errors(doff4.span()), "tcp data offset 4 < 5"));

    const Packet doff15 = with(TcpOpts{.data_offset = 15});
    EXPECT_EQ(doff15.u8(46), 0xf0);
    auto errs = checksum_errors(doff15.span());
    ASSERT_EQ(errs.size(), 1u) << joined(errs);  // the checksum itself is still right
    EXPECT_NE(errs[0].find("truncated tcp header"), std::string::npos) << errs[0];

    const Packet csum = with(TcpOpts{.checksum = 0xabcd});
    EXPECT_EQ(csum.be16(50), 0xabcd);
    errs = checksum_errors(csum.span());
    ASSERT_EQ(errs.size(), 1u) << joined(errs);
    EXPECT_NE(errs[0].find("tcp checksum 0xabcd"), std::string::npos) << errs[0];

    const Packet v6 = PacketBuilder().ipv6("fd00::1", "fd00::2").tcp(1, 2, TcpOpts{.checksum = 0}).build();
    EXPECT_TRUE(any_error_contains(checksum_errors(v6.span()), "tcp checksum 0x0000"));
}

TEST(PacketBuilderOverride, UdpFields) {
    auto v4 = [](UdpOpts o) { return PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").udp(1, 2, o).payload("xy").build(); };
    auto v6 = [](UdpOpts o) { return PacketBuilder().ipv6("fd00::1", "fd00::2").udp(1, 2, o).payload("xy").build(); };

    const Packet zero4 = v4(UdpOpts{.checksum = 0});
    EXPECT_EQ(zero4.be16(40), 0);
    EXPECT_TRUE(checksum_errors(zero4.span()).empty()) << joined(checksum_errors(zero4.span()));

    const Packet zero6 = v6(UdpOpts{.checksum = 0});
    EXPECT_EQ(zero6.be16(60), 0);
    auto errs = checksum_errors(zero6.span());
    ASSERT_EQ(errs.size(), 1u) << joined(errs);
    EXPECT_NE(errs[0].find("udp checksum is 0 over ipv6"), std::string::npos) << errs[0];

    const Packet bad4 = v4(UdpOpts{.checksum = 0x1234});
    EXPECT_TRUE(any_error_contains(checksum_errors(bad4.span()), "udp checksum 0x1234"));
    const Packet bad6 = v6(UdpOpts{.checksum = 0x1234});
    EXPECT_TRUE(any_error_contains(checksum_errors(bad6.span()), "udp checksum 0x1234"));

    const Packet long_len = v4(UdpOpts{.length = 100});
    EXPECT_EQ(long_len.be16(38), 100);
    EXPECT_TRUE(any_error_contains(checksum_errors(long_len.span()), "truncated udp datagram: udp length 100"));

    const Packet short_len = v6(UdpOpts{.length = 9});
    EXPECT_EQ(short_len.be16(58), 9);
    errs = checksum_errors(short_len.span());
    ASSERT_EQ(errs.size(), 1u) << joined(errs);  // only the length; the checksum covers the 9 claimed bytes
    EXPECT_NE(errs[0].find("udp length 9 does not match the IP payload length 10"), std::string::npos) << errs[0];

    const Packet runt = v4(UdpOpts{.length = 7});
    EXPECT_TRUE(any_error_contains(checksum_errors(runt.span()), "udp length 7 < 8"));
}

TEST(PacketBuilderOverride, PatchedIcmpChecksumsAreReported) {
    Packet v4 = PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").icmp(8, 0, 1).payload("data").build();
    v4.set_be16(v4.l4_off + 2, static_cast<std::uint16_t>(v4.be16(v4.l4_off + 2) ^ 0x0100));
    auto errs = checksum_errors(v4.span());
    ASSERT_EQ(errs.size(), 1u) << joined(errs);
    EXPECT_EQ(errs[0].rfind("icmp checksum", 0), 0u) << errs[0];

    Packet v6 = PacketBuilder().ipv6("fd00::1", "fd00::2").icmp(128, 0, 1).payload("data").build();
    v6.set_u8(v6.payload_off, 'D');
    errs = checksum_errors(v6.span());
    ASSERT_EQ(errs.size(), 1u) << joined(errs);
    EXPECT_EQ(errs[0].rfind("icmpv6 checksum", 0), 0u) << errs[0];

    // ICMPv6's checksum covers the pseudo-header: changing only the destination address breaks it.
    Packet v6dst = PacketBuilder().ipv6("fd00::1", "fd00::2").icmp(128, 0, 1).build();
    v6dst.set_u8(14 + 39, 0x03);
    EXPECT_TRUE(any_error_contains(checksum_errors(v6dst.span()), "icmpv6 checksum"));
}

// ================================================================ PacketBuilder: layering errors

TEST(PacketBuilderLayering, ImpossibleLayeringThrowsLogicError) {
    const Mac m = Mac::parse("02:00:00:00:00:09");
    EXPECT_THROW(PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").tcp(1, 2).tcp(3, 4).build(), std::logic_error);
    EXPECT_THROW(PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").udp(1, 2).icmp(8, 0).build(), std::logic_error);
    EXPECT_THROW(PacketBuilder().tcp(1, 2).build(), std::logic_error);
    EXPECT_THROW(PacketBuilder().vlan(1).tcp(1, 2).build(), std::logic_error);
    EXPECT_THROW(PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").vlan(1).build(), std::logic_error);
    EXPECT_THROW(PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").eth(m, m).build(), std::logic_error);
    EXPECT_THROW(PacketBuilder().eth(m, m).eth(m, m).build(), std::logic_error);
    EXPECT_THROW(PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").tcp(1, 2).ipv4("10.0.0.1", "10.0.0.2").build(),
                 std::logic_error);
    EXPECT_THROW(PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").payload("x").udp(1, 2).build(), std::logic_error);
    EXPECT_THROW(PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").ipv6_ext(0).build(), std::logic_error);
    EXPECT_THROW(PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").udp(1, 2).payload(Bytes(70000, 0)).build(),
                 std::logic_error);
    // The builder is not consumed by build(): building twice yields the same frame.
    PacketBuilder b;
    b.ipv4("10.0.0.1", "10.0.0.2").udp(1, 2).payload("p");
    EXPECT_EQ(b.build().bytes, b.build().bytes);
}

// ================================================================ Packet: patching

TEST(PacketBuilderPacket, SettersAndReaders) {
    Packet p = udp4("10.0.0.1", 1234, "10.0.0.2", 53, "hi");
    p.set_u8(22, 1).set_be16(34, 0xabcd).set_be32(26, 0xc0a80001);
    EXPECT_EQ(p.bytes[22], 1);
    EXPECT_EQ(p.bytes[34], 0xab);
    EXPECT_EQ(p.bytes[35], 0xcd);
    EXPECT_EQ((Bytes{p.bytes[26], p.bytes[27], p.bytes[28], p.bytes[29]}), (Bytes{0xc0, 0xa8, 0x00, 0x01}));
    EXPECT_EQ(p.be32(26), 0xc0a80001u);
    // No checksum fix-up: the IPv4 header and UDP checksums are now wrong.
    auto errs = checksum_errors(p.span());
    EXPECT_TRUE(any_error_contains(errs, "ipv4 header checksum")) << joined(errs);
    EXPECT_TRUE(any_error_contains(errs, "udp checksum")) << joined(errs);

    EXPECT_THROW(p.set_u8(44, 0), std::out_of_range);
    EXPECT_THROW(p.set_be16(43, 0), std::out_of_range);
    EXPECT_THROW(p.set_be32(41, 0), std::out_of_range);
    EXPECT_THROW(p.set_be32(SIZE_MAX - 1, 0), std::out_of_range);
    EXPECT_THROW(static_cast<void>(p.be16(43)), std::out_of_range);
    EXPECT_NO_THROW(p.set_be32(40, 0));

    p.truncate(40);
    EXPECT_EQ(p.size(), 40u);
    EXPECT_EQ(p.span().size(), 40u);
    EXPECT_THROW(p.truncate(41), std::out_of_range);
    EXPECT_TRUE(p.span_from(40).empty());
    EXPECT_THROW(static_cast<void>(p.span_from(41)), std::out_of_range);
    p.truncate(0);
    EXPECT_TRUE(p.bytes.empty());
}

TEST(PacketBuilderPacket, TruncatedFramesReportTruncationAtEveryPrefix) {
    std::vector<Packet> frames = {
        tcp4("10.0.0.1", 1, "10.0.0.2", 2, TCP_SYN, "payload"),
        udp6("fd00::1", 1, "fd00::2", 2, "x"),
        PacketBuilder()
            .vlan(10, 0, 0x88a8)
            .vlan(20)
            .ipv4("10.0.0.1", "10.0.0.2", Ipv4Opts{.options = {1, 1, 1, 1, 1}})
            .udp(1, 2)
            .build(),
        PacketBuilder().ipv4("10.0.0.1", "10.0.0.2").ipv4("10.0.0.3", "10.0.0.4").tcp(1, 2).payload("abc").build(),
        PacketBuilder().ipv6("fd00::1", "fd00::2").ipv6("fd00::3", "fd00::4").icmp(128, 0).payload("z").build(),
        PacketBuilder().ipv6("fd00::1", "fd00::2").ipv6_ext(0, Bytes(6, 0)).icmp(128, 0).build(),
    };
    for (const Packet& f : frames) {
        ASSERT_TRUE(checksum_errors(f.span()).empty()) << joined(checksum_errors(f.span())) << hexdump(f.span());
        for (std::size_t len = 0; len < f.size(); ++len) {
            const auto errs = checksum_errors(f.span().first(len));
            EXPECT_TRUE(any_error_contains(errs, "truncated")) << "prefix of " << len << " bytes:\n"
                                                               << joined(errs) << hexdump(f.span().first(len));
            for (std::size_t off = 0; off <= len; ++off) static_cast<void>(describe_offset(f.span().first(len), off));
        }
    }
}

TEST(PacketBuilderPacket, GarbageDoesNotCrashTheVerifier) {
    // Every byte value at every position of a tunnelled frame: must not crash or trip the sanitizers.
    const Packet base = PacketBuilder()
                            .vlan(7)
                            .ipv6("fd00::1", "fd00::2")
                            .ipv6_ext(0, Bytes(6, 0))
                            .ipv4("10.0.0.3", "10.0.0.4", Ipv4Opts{.options = {7, 3, 4}})
                            .udp(1, 2)
                            .payload("abc")
                            .build();
    for (std::size_t off = 0; off < base.size(); ++off) {
        for (int v : {0x00, 0x01, 0x04, 0x05, 0x0f, 0x29, 0x2c, 0x3a, 0x45, 0x60, 0x7f, 0x80, 0xf0, 0xff}) {
            Packet p = base;
            p.set_u8(off, static_cast<std::uint8_t>(v));
            static_cast<void>(checksum_errors(p.span()));
            static_cast<void>(describe_offset(p.span(), off));
        }
    }
}

// ================================================================ hexdump / diff_frames

TEST(PacketBuilderDump, HexdumpFormat) {
    Bytes d;
    for (int i = 0; i < 18; ++i) d.push_back(static_cast<std::uint8_t>(0x3e + i));
    EXPECT_EQ(hexdump(d),
              "0000  3e 3f 40 41 42 43 44 45  46 47 48 49 4a 4b 4c 4d  |>?@ABCDEFGHIJKLM|\n"
              "0010  4e 4f                                             |NO|\n");
    EXPECT_EQ(hexdump({}), "");
    EXPECT_EQ(hexdump(Bytes{0x00, 0x7f}), "0000  00 7f                                             |..|\n");
}

TEST(PacketBuilderDump, DiffFrames) {
    const Packet a = tcp4("10.0.0.1", 1, "10.0.0.2", 2);
    EXPECT_EQ(diff_frames(a.span(), a.span()), "");
    EXPECT_EQ(diff_frames({}, {}), "");

    Packet b = a;
    b.set_u8(22, 63);
    const std::string d = diff_frames(a.span(), b.span());
    EXPECT_NE(d.find("offset 22 (0x0016, ipv4.ttl)"), std::string::npos) << d;
    EXPECT_NE(d.find("expected 0x40, actual 0x3f"), std::string::npos) << d;
    EXPECT_NE(d.find("1 byte(s) differ"), std::string::npos) << d;
    EXPECT_NE(d.find("-0010"), std::string::npos) << d;
    EXPECT_NE(d.find("+0010"), std::string::npos) << d;

    Packet c = a;
    c.truncate(50);
    const std::string dt = diff_frames(a.span(), c.span());
    EXPECT_NE(dt.find("offset 50 (0x0032, tcp.checksum[0])"), std::string::npos) << dt;
    EXPECT_NE(dt.find("actual <end>"), std::string::npos) << dt;
    EXPECT_NE(dt.find("expected 54 bytes, actual 50 bytes"), std::string::npos) << dt;

    const std::string de = diff_frames({}, a.span());
    EXPECT_NE(de.find("offset 0 "), std::string::npos) << de;
}

}  // namespace
}  // namespace kxlb::test
