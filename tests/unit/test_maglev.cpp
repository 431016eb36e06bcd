// Unit tests for the Maglev table builder: weighted shares, minimal disruption, determinism.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "lib/maglev.hpp"

namespace kxlb {
namespace {

MaglevBackend v4_backend(std::uint32_t id, std::uint32_t weight = 1, std::uint16_t port = 443) {
    MaglevBackend b;
    b.id = id;
    b.weight = weight;
    b.identity.family = AF_INET;
    b.identity.addr = {10, 1, static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id & 0xff)};
    b.identity.port = port;
    return b;
}

std::map<std::uint32_t, std::size_t> shares(const std::vector<std::uint32_t>& table) {
    std::map<std::uint32_t, std::size_t> m;
    for (auto id : table) ++m[id];
    return m;
}

TEST(Maglev, PrimeCheck) {
    EXPECT_TRUE(is_prime(65537));
    EXPECT_TRUE(is_prime(251));
    EXPECT_FALSE(is_prime(65536));
    EXPECT_FALSE(is_prime(1));
    EXPECT_FALSE(is_prime(9));
}

TEST(Maglev, StableHashIsPinned) {
    // Every node must build identical tables: the hash may never change silently across versions.
    const std::uint8_t bytes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    EXPECT_EQ(stable_hash64(bytes, sizeof(bytes), 0), stable_hash64(bytes, sizeof(bytes), 0));
    EXPECT_NE(stable_hash64(bytes, sizeof(bytes), 0), stable_hash64(bytes, sizeof(bytes), 1));
    EXPECT_NE(stable_hash64(bytes, 10, 0), stable_hash64(bytes, 11, 0));
    EXPECT_EQ(stable_hash64(bytes, sizeof(bytes), 42), 0x4ef3ac7afffddb95ULL);
}

TEST(Maglev, EqualWeightsShareWithinOnePercent) {
    for (std::uint32_t n : {2u, 3u, 7u, 10u, 100u, 650u}) {
        std::vector<MaglevBackend> bs;
        for (std::uint32_t i = 0; i < n; ++i) bs.push_back(v4_backend(i + 1));
        auto t = build_maglev_table(bs, kDefaultMaglevSize, 7);
        ASSERT_TRUE(t) << t.error().message;
        ASSERT_EQ(t->size(), kDefaultMaglevSize);
        auto s = shares(*t);
        ASSERT_EQ(s.size(), n);
        const double ideal = static_cast<double>(kDefaultMaglevSize) / n;
        for (auto [id, count] : s) EXPECT_NEAR(count, ideal, ideal * 0.01) << "n=" << n << " backend " << id;
    }
}

TEST(Maglev, WeightedSharesFollowWeights) {
    std::vector<MaglevBackend> bs = {v4_backend(1, 1), v4_backend(2, 2), v4_backend(3, 3), v4_backend(4, 4),
                                     v4_backend(5, 0)};
    auto t = build_maglev_table(bs, kDefaultMaglevSize, 99);
    ASSERT_TRUE(t);
    auto s = shares(*t);
    EXPECT_EQ(s.count(5), 0u) << "weight 0 takes no slots";
    for (std::uint32_t id = 1; id <= 4; ++id) {
        const double ideal = kDefaultMaglevSize * id / 10.0;
        EXPECT_NEAR(s[id], ideal, ideal * 0.01) << "backend " << id;
    }
}

TEST(Maglev, RemovingOneBackendDisruptsLittle) {
    for (std::uint32_t n : {3u, 5u, 10u, 50u}) {
        std::vector<MaglevBackend> bs;
        for (std::uint32_t i = 0; i < n; ++i) bs.push_back(v4_backend(i + 1));
        auto before = build_maglev_table(bs, kDefaultMaglevSize, 1234);
        ASSERT_TRUE(before);
        for (std::uint32_t removed : {1u, n / 2 + 1, n}) {
            auto rest = bs;
            std::erase_if(rest, [&](const MaglevBackend& b) { return b.id == removed; });
            auto after = build_maglev_table(rest, kDefaultMaglevSize, 1234);
            ASSERT_TRUE(after);
            std::size_t changed = 0, moved_between_survivors = 0;
            for (std::size_t s = 0; s < kDefaultMaglevSize; ++s) {
                if ((*before)[s] == (*after)[s]) continue;
                ++changed;
                if ((*before)[s] != removed) ++moved_between_survivors;
            }
            const double limit = 1.5 / n * kDefaultMaglevSize;
            EXPECT_LE(changed, limit) << "n=" << n << " removed " << removed;
            // Slots of unaffected backends that moved to another unaffected one: only the excess over 1/N.
            EXPECT_LE(moved_between_survivors, 0.5 / n * kDefaultMaglevSize) << "n=" << n;
        }
    }
}

TEST(Maglev, IndependentOfInsertionOrderAndDeterministic) {
    std::vector<MaglevBackend> bs;
    for (std::uint32_t i = 0; i < 20; ++i) bs.push_back(v4_backend(i + 1, 1 + i % 3));
    auto a = build_maglev_table(bs, 4099, 5);
    std::mt19937 rng(42);
    std::shuffle(bs.begin(), bs.end(), rng);
    auto b = build_maglev_table(bs, 4099, 5);
    ASSERT_TRUE(a && b);
    EXPECT_EQ(*a, *b);
    auto c = build_maglev_table(bs, 4099, 6);
    ASSERT_TRUE(c);
    EXPECT_NE(*a, *c) << "the seed must change the table";
}

TEST(Maglev, Ipv6AndPortAreIdentity) {
    MaglevBackend a = v4_backend(1), b = v4_backend(2);
    b.identity = a.identity;
    b.identity.port = 444;  // same address, other port: a distinct backend
    auto t = build_maglev_table({a, b}, 251, 0);
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(shares(*t).size(), 2u);
    MaglevBackend c;
    c.id = 3;
    c.identity.family = AF_INET6;
    inet_pton(AF_INET6, "fd00::1", c.identity.addr.data());
    c.identity.port = 443;
    auto t6 = build_maglev_table({a, c}, 251, 0);
    ASSERT_TRUE(t6);
    EXPECT_EQ(shares(*t6).size(), 2u);
}

TEST(Maglev, RejectsBadInput) {
    auto not_prime = build_maglev_table({v4_backend(1)}, 65536, 0);
    ASSERT_FALSE(not_prime);
    EXPECT_NE(not_prime.error().message.find("not a prime"), std::string::npos);
    auto dup = build_maglev_table({v4_backend(1), v4_backend(1)}, 251, 0);
    ASSERT_FALSE(dup);
    EXPECT_NE(dup.error().message.find("duplicate"), std::string::npos);
    std::vector<MaglevBackend> many;
    for (std::uint32_t i = 0; i < 8; ++i) many.push_back(v4_backend(i + 1));
    EXPECT_FALSE(build_maglev_table(many, 7, 0));
    auto none = build_maglev_table({v4_backend(1, 0)}, 251, 0);
    ASSERT_TRUE(none);
    EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace kxlb
