// Unit tests for the C++ view of the shared ABI: counter names come from the ABI's X-macro.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "lib/abi.hpp"

namespace kxlb {
namespace {

TEST(Abi, EveryParseStatHasAUniqueSnakeCaseName) {
    std::set<std::string_view> seen;
    for (std::size_t i = 0; i < kParseStatCount; ++i) {
        auto name = kParseStatNames[i];
        ASSERT_FALSE(name.empty()) << "stat " << i;
        EXPECT_TRUE(seen.insert(name).second) << "duplicate name " << name;
        for (char c : name) EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') << name;
    }
    EXPECT_EQ(seen.size(), static_cast<std::size_t>(KXLB_PARSE_STAT_MAX));
}

TEST(Abi, NamesFollowEnumOrder) {
    EXPECT_EQ(parse_stat_name(KXLB_PS_FRAMES), "frames");
    EXPECT_EQ(parse_stat_name(KXLB_PS_TCP), "tcp");
    EXPECT_EQ(parse_stat_name(KXLB_PS_ERR_TRUNC_ICMP), "err_trunc_icmp");
    EXPECT_EQ(parse_stat_name(static_cast<kxlb_parse_stat>(KXLB_PARSE_STAT_MAX)), "unknown");
    EXPECT_EQ(parse_stat_from_name("ipv6_exthdr"), KXLB_PS_IPV6_EXTHDR);
    EXPECT_FALSE(parse_stat_from_name("nope").has_value());
}

TEST(Abi, FramesIsIdZeroSoParseErrorsAreNonZero) {
    // bpf/lib/parse.h returns 0 for success and a kxlb_parse_stat error id otherwise.
    EXPECT_EQ(KXLB_PS_FRAMES, 0);
    EXPECT_GT(KXLB_PS_ERR_TRUNC_ETH, 0);
}

}  // namespace
}  // namespace kxlb
