// Unit tests for the agent's Reconciler against the in-memory map backend: diffs for add, remove,
// weight change, reorder and health flaps, the all-backends-down policies, and retry after failure.
#include <gtest/gtest.h>

#include "agent/reconciler.hpp"
#include "unit/fake_lb_maps.hpp"

namespace kxlb::agent {
namespace {

using test::FakeLbMaps;

BackendConfig be(const char* addr, std::uint16_t port = 6443, std::uint32_t weight = 1) {
    return BackendConfig{IpAddr::parse(addr).value(), port, weight};
}

ServiceConfig api(std::vector<BackendConfig> backends, AllDownPolicy policy = AllDownPolicy::KeepLastHealthy) {
    ServiceConfig s;
    s.name = "kubernetes";
    s.frontends = {Frontend{IpAddr::parse("10.96.0.1").value(), 443, IPPROTO_TCP}};
    s.socket_lb = true;
    s.backends = std::move(backends);
    s.all_down = policy;
    s.health_check = HealthCheckSpec{};
    return s;
}

BackendRef ref(const char* addr, std::uint16_t port = 6443) {
    return BackendRef{"kubernetes", BackendSpec{IpAddr::parse(addr).value(), port}.identity()};
}

class ReconcilerTest : public ::testing::Test {
protected:
    ReconcilerTest() : lb_(LbProgrammer::create(maps_, LbProgrammerOptions{251, 1}).value()) {}
    ApplyReport apply() { return rec_.apply(lb_); }
    // Backend ids of the service's table (those that take new flows).
    std::set<std::uint32_t> serving(const Frontend& fe) {
        const auto* st = lb_.service(fe);
        if (!st || !maps_.tables.count(st->id)) return {};
        const auto& t = maps_.tables[st->id];
        return {t.begin(), t.end()};
    }
    std::uint32_t id_of(const Frontend& fe, const char* addr) {
        return *lb_.backend_id(fe, BackendSpec{IpAddr::parse(addr).value(), 6443}.identity());
    }
    FakeLbMaps maps_;
    LbProgrammer lb_;
    Reconciler rec_;
};

const Frontend kFe{IpAddr::parse("10.96.0.1").value(), 443, IPPROTO_TCP};

TEST_F(ReconcilerTest, AddThenApplyAgainWritesNothing) {
    rec_.set_services({api({be("10.0.0.1"), be("10.0.0.2"), be("10.0.0.3")})});
    auto r = apply();
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.upserted, 1);
    EXPECT_EQ(serving(kFe).size(), 3u);
    EXPECT_EQ(maps_.services.begin()->second.flags, static_cast<std::uint32_t>(KXLB_SVC_F_SOCKET_LB));
    const int writes = maps_.writes;
    r = apply();
    EXPECT_EQ(r.upserted, 0);
    EXPECT_EQ(maps_.writes, writes);
}

TEST_F(ReconcilerTest, BackendsAtTheNodesAddressesOrMarkedLocalAreLocal) {
    auto cfg = api({be("10.0.0.1"), be("10.0.0.2"), be("10.244.0.5"), be("10.0.0.7")});
    cfg.backends[2].local = true;  // a pod of this node, behind a CNI interface
    cfg.backends[3].local = true;  // "on this node" by name, but in the balancing NIC's prefix
    rec_.set_services({cfg});
    const std::vector<Cidr> nic{Cidr{IpAddr::parse("10.0.0.0").value(), 24}};
    EXPECT_TRUE(rec_.set_node_addressing({IpAddr::parse("10.0.0.1").value()}, nic));
    EXPECT_FALSE(rec_.set_node_addressing({IpAddr::parse("10.0.0.1").value()}, nic));  // unchanged
    ASSERT_TRUE(apply().ok());
    const auto local = [&] {
        std::map<std::string, bool> out;
        for (const auto& b : lb_.service(kFe)->spec.backends) out[b.addr.str()] = b.local;
        return out;
    };
    EXPECT_EQ(local(), (std::map<std::string, bool>{
                           {"10.0.0.1", true}, {"10.0.0.2", false}, {"10.244.0.5", true}, {"10.0.0.7", false}}));
    // The node address moves away and the NIC prefix with it: rewritten in place (same ids).
    const auto id = id_of(kFe, "10.0.0.1");
    EXPECT_TRUE(rec_.set_node_addressing({}, {}));
    EXPECT_EQ(apply().upserted, 1);
    EXPECT_EQ(local(), (std::map<std::string, bool>{
                           {"10.0.0.1", false}, {"10.0.0.2", false}, {"10.244.0.5", true}, {"10.0.0.7", true}}));
    EXPECT_EQ(id_of(kFe, "10.0.0.1"), id);
}

TEST_F(ReconcilerTest, ReorderedBackendsAreNotAChange) {
    rec_.set_services({api({be("10.0.0.1"), be("10.0.0.2"), be("10.0.0.3")})});
    ASSERT_TRUE(apply().ok());
    const int writes = maps_.writes;
    rec_.set_services({api({be("10.0.0.3"), be("10.0.0.1"), be("10.0.0.2")})});
    EXPECT_EQ(apply().upserted, 0);
    EXPECT_EQ(maps_.writes, writes);
}

TEST_F(ReconcilerTest, RemovedBackendAndRemovedServiceAreWithdrawn) {
    rec_.set_services({api({be("10.0.0.1"), be("10.0.0.2")})});
    ASSERT_TRUE(apply().ok());
    rec_.set_services({api({be("10.0.0.1")})});
    EXPECT_EQ(apply().upserted, 1);
    EXPECT_EQ(serving(kFe), std::set<std::uint32_t>{id_of(kFe, "10.0.0.1")});
    EXPECT_EQ(maps_.backends.size(), 1u);
    rec_.set_services(std::vector<ServiceConfig>{});
    auto r = apply();
    EXPECT_EQ(r.removed, 1);
    EXPECT_TRUE(maps_.services.empty());
    EXPECT_TRUE(maps_.backends.empty());
    EXPECT_TRUE(maps_.tables.empty());
}

TEST_F(ReconcilerTest, WeightChangeReshapesTheTable) {
    rec_.set_services({api({be("10.0.0.1"), be("10.0.0.2")})});
    ASSERT_TRUE(apply().ok());
    rec_.set_services({api({be("10.0.0.1", 6443, 4), be("10.0.0.2")})});
    EXPECT_EQ(apply().upserted, 1);
    const auto& t = maps_.tables[lb_.service(kFe)->id];
    EXPECT_NEAR(std::count(t.begin(), t.end(), id_of(kFe, "10.0.0.1")), 251 * 4 / 5, 2);
}

TEST_F(ReconcilerTest, HealthFlapDrainsAndRestoresWithoutNewIds) {
    rec_.set_services({api({be("10.0.0.1"), be("10.0.0.2"), be("10.0.0.3")})});
    ASSERT_TRUE(apply().ok());
    const auto id2 = id_of(kFe, "10.0.0.2");
    EXPECT_TRUE(rec_.set_health(ref("10.0.0.2"), false));
    EXPECT_FALSE(rec_.set_health(ref("10.0.0.2"), false));  // no news
    EXPECT_EQ(apply().upserted, 1);
    EXPECT_EQ(serving(kFe).count(id2), 0u);
    EXPECT_EQ(maps_.backends[id2].flags, static_cast<std::uint8_t>(KXLB_BE_F_DRAINING));  // flows continue
    EXPECT_TRUE(rec_.set_health(ref("10.0.0.2"), true));
    EXPECT_EQ(apply().upserted, 1);
    EXPECT_EQ(serving(kFe).size(), 3u);
    EXPECT_EQ(id_of(kFe, "10.0.0.2"), id2);
    EXPECT_EQ(maps_.backends[id2].flags, 0);
}

TEST_F(ReconcilerTest, AllDownKeepsTheLastHealthyBackendServing) {
    rec_.set_services({api({be("10.0.0.1"), be("10.0.0.2")})});
    ASSERT_TRUE(apply().ok());
    rec_.set_health(ref("10.0.0.1"), false);
    ASSERT_TRUE(apply().ok());
    EXPECT_EQ(serving(kFe), std::set<std::uint32_t>{id_of(kFe, "10.0.0.2")});
    // The last one fails too: it keeps serving (it may be the only apiserver left).
    EXPECT_FALSE(rec_.set_health(ref("10.0.0.2"), false));
    ASSERT_TRUE(apply().ok());
    EXPECT_EQ(serving(kFe), std::set<std::uint32_t>{id_of(kFe, "10.0.0.2")});
    // 10.0.0.1 recovers: only it serves.
    EXPECT_TRUE(rec_.set_health(ref("10.0.0.1"), true));
    ASSERT_TRUE(apply().ok());
    EXPECT_EQ(serving(kFe), std::set<std::uint32_t>{id_of(kFe, "10.0.0.1")});
}

TEST_F(ReconcilerTest, AllDownWithNoBackendsPolicyWithdrawsThemAll) {
    rec_.set_services({api({be("10.0.0.1"), be("10.0.0.2")}, AllDownPolicy::NoBackends)});
    ASSERT_TRUE(apply().ok());
    rec_.set_health(ref("10.0.0.1"), false);
    EXPECT_TRUE(rec_.set_health(ref("10.0.0.2"), false));
    ASSERT_TRUE(apply().ok());
    EXPECT_TRUE(serving(kFe).empty());
    EXPECT_EQ(maps_.backends.size(), 2u);  // still known: established flows drain
}

TEST_F(ReconcilerTest, BackendsServeFrontendsOfTheirFamilyOnly) {
    auto s = api({be("10.0.0.1"), be("fd00::1"), be("fd00::2")});
    s.frontends.push_back(Frontend{IpAddr::parse("fd00::10").value(), 443, IPPROTO_TCP});
    rec_.set_services({s});
    ASSERT_TRUE(apply().ok());
    const Frontend fe6{IpAddr::parse("fd00::10").value(), 443, IPPROTO_TCP};
    EXPECT_EQ(lb_.service(kFe)->spec.backends.size(), 1u);
    EXPECT_EQ(lb_.service(fe6)->spec.backends.size(), 2u);
}

TEST_F(ReconcilerTest, FailedWriteIsReportedAndRetriedByTheNextApply) {
    rec_.set_services({api({be("10.0.0.1")})});
    maps_.fail("swap_maglev");
    auto r = apply();
    ASSERT_EQ(r.failures.size(), 1u);
    EXPECT_EQ(r.failures[0], "10.96.0.1:443/tcp: fake swap_maglev: Input/output error");
    EXPECT_TRUE(maps_.services.empty());  // nothing half-applied
    EXPECT_TRUE(maps_.backends.empty());
    r = apply();
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(serving(kFe).size(), 1u);
}

TEST_F(ReconcilerTest, ReloadKeepsHealthOfBackendsThatStay) {
    rec_.set_services({api({be("10.0.0.1"), be("10.0.0.2")})});
    rec_.set_health(ref("10.0.0.2"), false);
    rec_.set_services({api({be("10.0.0.1"), be("10.0.0.2"), be("10.0.0.3")})});
    EXPECT_FALSE(rec_.healthy(ref("10.0.0.2")));
    EXPECT_TRUE(rec_.healthy(ref("10.0.0.3")));
    rec_.set_services({api({be("10.0.0.1")})});
    rec_.set_services({api({be("10.0.0.1"), be("10.0.0.2")})});
    EXPECT_TRUE(rec_.healthy(ref("10.0.0.2")));  // left and came back: starts fresh
}

}  // namespace
}  // namespace kxlb::agent
