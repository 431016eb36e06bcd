// bpf tier: pinned maps survive the program that created them and are adopted by the next load;
// a pinned map whose layout differs (size, or same size but other fields per BTF) is refused.
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "common/privileges.hpp"
#include "lib/lb_inspect.hpp"
#include "lib/lb_programmer.hpp"
#include "lib/pinning.hpp"
#include "lib/sock_lb_program.hpp"
#include "lib/xdp_programs.hpp"

namespace kxlb {
namespace {

class PinningTest : public ::testing::Test {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        layout_.root = "/sys/fs/bpf/kxlb-test-" + std::to_string(::getpid());
        (void)remove_pinned(layout_);
        ASSERT_TRUE(prepare_pin_dirs(layout_));
    }
    void TearDown() override {
        if (!layout_.root.empty()) (void)remove_pinned(layout_);
    }
    XdpLbLoadOptions pinned(std::uint32_t ct = 4096) const {
        XdpLbLoadOptions o;
        o.ct_entries = ct;
        o.pin_root = layout_.root;
        return o;
    }
    PinLayout layout_;
};

ServiceSpec web() {
    ServiceSpec s;
    s.frontend = Frontend{IpAddr::parse("10.96.0.1").value(), 443, IPPROTO_TCP};
    for (const char* a : {"10.0.0.1", "10.0.0.2"}) s.backends.push_back(BackendSpec{IpAddr::parse(a).value(), 8443});
    return s;
}

TEST_F(PinningTest, MapsOutliveTheProgramAndAreAdoptedByTheNextLoad) {
    std::vector<std::uint32_t> table;
    {
        auto prog = XdpLbProgram::load(pinned());
        ASSERT_TRUE(prog) << prog.error().message;
        auto maps = BpfLbMaps::bind(prog->lb_map_fds()).value();
        auto lb = LbProgrammer::create(maps, LbProgrammerOptions{251, 7}).value();
        ASSERT_TRUE(lb.upsert_service(web()));
        const auto* st = lb.service(web().frontend);
        table = lb.maglev_table(st->spec, st->backend_ids).value();
    }  // program and its fds gone: only the pins hold the maps
    for (const char* name : {"kxlb_services", "kxlb_backends", "kxlb_maglev", "kxlb_ct", "kxlb_nat", "kxlb_reasons"})
        EXPECT_TRUE(std::filesystem::exists(layout_.map(name))) << name;

    auto again = XdpLbProgram::load(pinned());
    ASSERT_TRUE(again) << again.error().message;
    auto maps = BpfLbMaps::bind(again->lb_map_fds()).value();
    auto adopted = LbProgrammer::adopt(maps, LbProgrammerOptions{251, 7});
    ASSERT_TRUE(adopted) << adopted.error().message;
    const auto* st = adopted->service(web().frontend);
    ASSERT_NE(st, nullptr);
    EXPECT_EQ(st->spec, web());
    EXPECT_EQ(adopted->maglev_table(st->spec, st->backend_ids).value(), table);

    // The socket-LB object finds the shared maps by name and pins its own beside them.
    auto sock = SockLbProgram::load_pinned(layout_);
    ASSERT_TRUE(sock) << sock.error().message;
    EXPECT_TRUE(std::filesystem::exists(layout_.map("kxlb_sock_reasons")));
}

TEST_F(PinningTest, ConntrackSizeChangeIsRefusedWithTheReason) {
    ASSERT_TRUE(XdpLbProgram::load(pinned(4096)));
    auto bigger = XdpLbProgram::load(pinned(8192));
    ASSERT_FALSE(bigger);
    const auto& msg = bigger.error().message;
    EXPECT_NE(msg.find("pinned map " + layout_.map("kxlb_ct") + " has another layout"), std::string::npos) << msg;
    EXPECT_NE(msg.find("max_entries=4096"), std::string::npos) << msg;
    EXPECT_NE(msg.find("max_entries=8192"), std::string::npos) << msg;
    EXPECT_NE(msg.find("kxlb-agent --uninstall"), std::string::npos) << msg;
    // Nothing was replaced: the original still loads.
    EXPECT_TRUE(XdpLbProgram::load(pinned(4096)));
}

// A map of the right sizes whose value struct has other fields (what an upgrade that reorders
// kxlb_config would leave behind) is caught through BTF, not reused.
TEST_F(PinningTest, SameSizeButDifferentFieldsIsRefused) {
    btf* b = btf__new_empty();
    ASSERT_NE(b, nullptr);
    const int u32 = btf__add_int(b, "__u32", 4, 0);
    const int u64 = btf__add_int(b, "__u64", 8, 0);
    const int st = btf__add_struct(b, "kxlb_config", sizeof(kxlb_config));
    // Same 40 bytes as the real struct, other names and order.
    ASSERT_EQ(btf__add_field(b, "snat_port_lo", u32, 0, 0), 0);
    ASSERT_EQ(btf__add_field(b, "seed", u64, 64, 0), 0);
    ASSERT_EQ(btf__add_field(b, "rest", u64, 128, 0), 0);
    ASSERT_EQ(btf__add_field(b, "rest2", u64, 192, 0), 0);
    ASSERT_EQ(btf__add_field(b, "rest3", u64, 256, 0), 0);
    ASSERT_EQ(btf__load_into_kernel(b), 0);
    LIBBPF_OPTS(bpf_map_create_opts, opts, .btf_fd = static_cast<__u32>(btf__fd(b)),
                .btf_key_type_id = static_cast<__u32>(u32), .btf_value_type_id = static_cast<__u32>(st));
    UniqueFd fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, "kxlb_config", 4, sizeof(kxlb_config), 1, &opts));
    btf__free(b);
    ASSERT_TRUE(fd.valid()) << std::strerror(errno);
    ASSERT_EQ(bpf_obj_pin(fd.get(), layout_.map("kxlb_config").c_str()), 0) << std::strerror(errno);

    auto prog = XdpLbProgram::load(pinned());
    ASSERT_FALSE(prog);
    const auto& msg = prog.error().message;
    EXPECT_NE(msg.find("kxlb_config has another layout"), std::string::npos) << msg;
    EXPECT_NE(msg.find("snat_port_lo"), std::string::npos) << msg;  // the pinned layout is shown
    EXPECT_NE(msg.find("struct kxlb_config{hash_seed:int64@0"), std::string::npos) << msg;  // and ours
}

TEST_F(PinningTest, PinPathMustBeOnBpffs) {
    auto st = prepare_pin_dirs(PinLayout{"/tmp/kxlb-not-bpffs"});
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message.find("is not on a bpffs mount"), std::string::npos) << st.error().message;
    auto rel = prepare_pin_dirs(PinLayout{"relative/path"});
    ASSERT_FALSE(rel);
    EXPECT_EQ(rel.error().message, "pin path 'relative/path' must be absolute");
}

TEST_F(PinningTest, RemovePinnedRemovesEverything) {
    ASSERT_TRUE(XdpLbProgram::load(pinned()));
    auto n = remove_pinned(layout_);
    ASSERT_TRUE(n) << n.error().message;
    EXPECT_GE(*n, 12);
    EXPECT_FALSE(std::filesystem::exists(layout_.root));
}

// Double-buffered Maglev tables: a quick second change publishes a fresh inner map (kernel grace
// period); a change after the quiet time rewrites the inactive half in place and flips to it.
TEST_F(PinningTest, MaglevTableFlipsInPlaceOnceTheOtherHalfIsQuiet) {
    auto prog = XdpLbProgram::load(pinned());
    ASSERT_TRUE(prog) << prog.error().message;
    const int outer = prog->lb_map_fds().maglev;
    auto maps = BpfLbMaps::bind(prog->lb_map_fds()).value();
    auto inner_id = [&] {
        std::uint32_t key = 3, id = 0;
        EXPECT_EQ(bpf_map_lookup_elem(outer, &key, &id), 0);
        return id;
    };
    auto active = [&] {
        auto t = read_maglev_table(outer, 3);
        EXPECT_TRUE(t) << t.error().message;
        return t ? *t : std::vector<std::uint32_t>{};
    };
    const std::vector<std::uint32_t> a(251, 7), b(251, 8), c(251, 9), d(13, 5);
    ASSERT_TRUE(maps.swap_maglev(3, a));
    const auto first = inner_id();
    EXPECT_EQ(active(), a);
    ASSERT_TRUE(maps.swap_maglev(3, b));  // the never-used half: in place at once
    EXPECT_EQ(inner_id(), first);
    EXPECT_EQ(active(), b);
    ASSERT_TRUE(maps.swap_maglev(3, c));  // half a was active a moment ago: new inner map
    const auto second = inner_id();
    EXPECT_NE(second, first);
    EXPECT_EQ(active(), c);
    ASSERT_TRUE(maps.swap_maglev(3, a));  // fresh map's other half: in place
    EXPECT_EQ(inner_id(), second);
    std::this_thread::sleep_for(BpfLbMaps::kHalfQuiesce + std::chrono::milliseconds(50));
    ASSERT_TRUE(maps.swap_maglev(3, b));  // quiet long enough: in place again
    EXPECT_EQ(inner_id(), second);
    EXPECT_EQ(active(), b);
    ASSERT_TRUE(maps.swap_maglev(3, d));  // another size: another map
    EXPECT_NE(inner_id(), second);
    EXPECT_EQ(active(), d);
    ASSERT_TRUE(maps.swap_maglev(3, {}));
    EXPECT_TRUE(active().empty());
}

}  // namespace
}  // namespace kxlb
