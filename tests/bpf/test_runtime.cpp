// bpf tier: the C++ BPF runtime layer against the real kernel: typed map accessors (layout checks,
// lookup/update/erase/walk, per-CPU arrays) and the test-run wrapper's error path.
#include <bpf/bpf.h>
#include <gtest/gtest.h>

#include <map>

#include "common/privileges.hpp"
#include "lib/abi.hpp"
#include "lib/bpf_map.hpp"
#include "lib/test_run.hpp"
#include "lib/unique_fd.hpp"
#include "lib/xdp_programs.hpp"

namespace kxlb {
namespace {

struct Key {
    std::uint32_t a;
    std::uint16_t b;
    std::uint16_t pad;
};

UniqueFd make_map(bpf_map_type type, std::uint32_t key, std::uint32_t value, std::uint32_t entries) {
    return UniqueFd(bpf_map_create(type, "kxlb_test", key, value, entries, nullptr));
}

class RuntimeTest : public ::testing::Test {
protected:
    void SetUp() override { KXLB_REQUIRE_ROOT(); }
};

TEST_F(RuntimeTest, TypedMapRoundTripAndWalk) {
    UniqueFd fd = make_map(BPF_MAP_TYPE_HASH, sizeof(Key), sizeof(kxlb_counter), 64);
    ASSERT_TRUE(fd.valid()) << std::strerror(errno);
    auto map = TypedMap<Key, kxlb_counter>::bind(fd.get());
    ASSERT_TRUE(map) << map.error().message;

    for (std::uint32_t i = 0; i < 10; ++i) ASSERT_TRUE(map->update(Key{i, 7, 0}, kxlb_counter{i, i * 100}));
    auto got = map->lookup(Key{3, 7, 0});
    ASSERT_TRUE(got);
    ASSERT_TRUE(got->has_value());
    EXPECT_EQ((*got)->bytes, 300u);
    EXPECT_FALSE(map->lookup(Key{99, 7, 0}).value().has_value());

    EXPECT_TRUE(map->erase(Key{3, 7, 0}).value());
    EXPECT_FALSE(map->erase(Key{3, 7, 0}).value());

    std::map<std::uint32_t, std::uint64_t> seen;
    ASSERT_TRUE(map->for_each([&](const Key& k, const kxlb_counter& v) { seen[k.a] = v.packets; }));
    EXPECT_EQ(seen.size(), 9u);
    EXPECT_EQ(seen.count(3), 0u);
    EXPECT_EQ(seen[9], 9u);

    auto st = map->update(Key{1, 7, 0}, kxlb_counter{}, BPF_NOEXIST);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error().code, EEXIST);
}

TEST_F(RuntimeTest, LayoutMismatchIsRejectedAtBind) {
    UniqueFd fd = make_map(BPF_MAP_TYPE_HASH, sizeof(Key), sizeof(kxlb_counter), 4);
    ASSERT_TRUE(fd.valid());
    auto wrong_value = TypedMap<Key, std::uint64_t>::bind(fd.get());
    ASSERT_FALSE(wrong_value);
    EXPECT_NE(wrong_value.error().message.find("layout mismatch"), std::string::npos) << wrong_value.error().message;
    auto wrong_kind = PerCpuArray<kxlb_counter>::bind(fd.get());
    ASSERT_FALSE(wrong_kind);
    EXPECT_NE(wrong_kind.error().message.find("not per-CPU"), std::string::npos) << wrong_kind.error().message;
}

TEST_F(RuntimeTest, PerCpuArrayReadsEverySlot) {
    UniqueFd fd = make_map(BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(std::uint32_t), sizeof(kxlb_counter), 4);
    ASSERT_TRUE(fd.valid());
    auto arr = PerCpuArray<kxlb_counter>::bind(fd.get());
    ASSERT_TRUE(arr) << arr.error().message;
    EXPECT_EQ(arr->cpus(), libbpf_num_possible_cpus());
    ASSERT_TRUE(arr->fill(2, kxlb_counter{5, 50}));
    auto v = arr->lookup(2);
    ASSERT_TRUE(v);
    ASSERT_EQ(v->size(), static_cast<std::size_t>(arr->cpus()));
    for (const auto& c : *v) EXPECT_EQ(c.bytes, 50u);
    auto out_of_range = arr->lookup(4);
    ASSERT_FALSE(out_of_range);
    EXPECT_EQ(out_of_range.error().code, ENOENT);
}

TEST_F(RuntimeTest, TestRunReportsKernelErrors) {
    auto prog = XdpPassProgram::load();
    ASSERT_TRUE(prog) << prog.error().message;
    std::vector<std::uint8_t> too_short(4, 0);  // XDP test runs need at least an Ethernet header
    auto run = run_xdp(prog->prog_fd(), too_short);
    ASSERT_FALSE(run);
    EXPECT_EQ(run.error().code, EINVAL);
    EXPECT_NE(run.error().message.find("BPF_PROG_TEST_RUN"), std::string::npos);

    std::vector<std::uint8_t> frame(64, 0xee);
    auto ok = run_xdp(prog->prog_fd(), frame);
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(ok->verdict, static_cast<std::uint32_t>(XDP_PASS));
    EXPECT_EQ(ok->data, frame);
}

}  // namespace
}  // namespace kxlb
