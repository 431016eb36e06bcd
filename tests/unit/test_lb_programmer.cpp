// Unit tests for LbProgrammer against an in-memory map backend: ids, ordering, atomic table swaps,
// rollback on failure, and validation of services and configuration.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "lib/lb_programmer.hpp"
#include "unit/fake_lb_maps.hpp"

namespace kxlb {
namespace {

using test::FakeLbMaps;

constexpr std::uint32_t kSize = 251;

ServiceSpec svc(const std::string& vip, std::uint16_t port, const std::vector<std::string>& backends,
                std::uint8_t proto = IPPROTO_TCP) {
    ServiceSpec s;
    s.frontend = Frontend{IpAddr::parse(vip).value(), port, proto};
    for (const auto& b : backends) s.backends.push_back(BackendSpec{IpAddr::parse(b).value(), 8080, 1, false});
    return s;
}

class LbProgrammerTest : public ::testing::Test {
protected:
    LbProgrammer make() {
        LbProgrammerOptions o;
        o.maglev_size = kSize;
        o.hash_seed = 99;
        return LbProgrammer::create(maps_, o).value();
    }
    // Every slot of every table names a backend present in the backends map.
    void expect_consistent() {
        for (const auto& [svc_id, table] : maps_.tables) {
            EXPECT_EQ(table.size(), kSize);
            for (auto id : table) EXPECT_TRUE(maps_.backends.count(id)) << "svc " << svc_id << " slot names id " << id;
        }
        for (const auto& [key, s] : maps_.services) EXPECT_LT(s.id, KXLB_MAX_SERVICES);
    }
    FakeLbMaps maps_;
};

TEST_F(LbProgrammerTest, AddServiceWritesBackendsTableAndFrontend) {
    auto lb = make();
    auto id = lb.upsert_service(svc("10.96.0.1", 443, {"10.0.0.1", "10.0.0.2", "10.0.0.3"}));
    ASSERT_TRUE(id) << id.error().message;
    EXPECT_EQ(*id, 0u);
    EXPECT_EQ(maps_.services.size(), 1u);
    EXPECT_EQ(maps_.backends.size(), 3u);
    ASSERT_EQ(maps_.tables.count(*id), 1u);
    std::set<std::uint32_t> used(maps_.tables[*id].begin(), maps_.tables[*id].end());
    EXPECT_EQ(used.size(), 3u);
    EXPECT_EQ(maps_.vip_addrs.size(), 1u);
    expect_consistent();
    for (const auto& [bid, be] : maps_.backends) {
        EXPECT_NE(be.gen, 0u);
        EXPECT_EQ(be.family, AF_INET);
        EXPECT_EQ(ntohs(be.port), 8080);
    }
}

bool filter_has(const kxlb_frontend_filter& f, const Frontend& fe) {
    const auto k = fe.key();
    const auto bit = kxlb_frontend_bit(k.addr, k.family, k.port, k.proto);
    return (f.words[bit / 64] >> (bit % 64)) & 1;
}

TEST_F(LbProgrammerTest, FrontendFilterHasABitForEveryFrontend) {
    auto lb = make();
    std::vector<Frontend> fes;
    for (int i = 0; i < 50; ++i) {
        auto s = svc("10.96.1." + std::to_string(i), static_cast<std::uint16_t>(80 + i), {"10.0.0.1"},
                     i % 2 ? IPPROTO_UDP : IPPROTO_TCP);
        ASSERT_TRUE(lb.upsert_service(s));
        fes.push_back(s.frontend);
    }
    for (const auto& fe : fes) EXPECT_TRUE(filter_has(maps_.filter, fe)) << fe.str();
    int set = 0;
    for (auto w : maps_.filter.words) set += __builtin_popcountll(w);
    EXPECT_LE(set, 50);
    EXPECT_GE(set, 45) << "bits should rarely collide";
    for (const auto& fe : fes) ASSERT_TRUE(lb.remove_service(fe));
    for (auto w : maps_.filter.words) EXPECT_EQ(w, 0u) << "removing every frontend clears the filter";
    // The bit is in place before the frontend becomes visible: a failed publish leaves no bit behind.
    maps_.fail("put_service");
    ASSERT_FALSE(lb.upsert_service(svc("10.96.9.9", 80, {"10.0.0.1"})));
    EXPECT_FALSE(filter_has(maps_.filter, svc("10.96.9.9", 80, {}).frontend));
}

TEST_F(LbProgrammerTest, IdsAreStableAcrossUpdatesAndReusedAfterRemoval) {
    auto lb = make();
    auto a = lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1"}));
    auto b = lb.upsert_service(svc("10.96.0.2", 80, {"10.0.0.1", "10.0.0.2"}));
    ASSERT_TRUE(a && b);
    EXPECT_NE(*a, *b);
    auto b_again = lb.upsert_service(svc("10.96.0.2", 80, {"10.0.0.2", "10.0.0.1", "10.0.0.3"}));
    ASSERT_TRUE(b_again);
    EXPECT_EQ(*b_again, *b) << "updating a service keeps its id";
    const auto fe_b = svc("10.96.0.2", 80, {}).frontend;
    const auto id1 = lb.backend_id(fe_b, BackendSpec{IpAddr::parse("10.0.0.1").value(), 8080}.identity());
    ASSERT_TRUE(id1);

    ASSERT_TRUE(lb.remove_service(svc("10.96.0.1", 80, {}).frontend));
    auto c = lb.upsert_service(svc("10.96.0.3", 80, {"10.0.0.9"}));
    ASSERT_TRUE(c);
    EXPECT_EQ(*c, *a) << "a freed service id is reused";
    expect_consistent();
}

TEST_F(LbProgrammerTest, SameBackendInTwoServicesHasTwoIds) {
    auto lb = make();
    ASSERT_TRUE(lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1"})));
    ASSERT_TRUE(lb.upsert_service(svc("10.96.0.2", 80, {"10.0.0.1"})));
    EXPECT_EQ(maps_.backends.size(), 2u);
    // Removing it from one service must not touch the other's.
    ASSERT_TRUE(lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.2"})));
    const auto other = lb.backend_id(svc("10.96.0.2", 80, {}).frontend,
                                     BackendSpec{IpAddr::parse("10.0.0.1").value(), 8080}.identity());
    ASSERT_TRUE(other);
    EXPECT_TRUE(maps_.backends.count(*other));
    expect_consistent();
}

TEST_F(LbProgrammerTest, RemovedBackendIsClearedAfterTheTableNoLongerNamesIt) {
    auto lb = make();
    ASSERT_TRUE(lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1", "10.0.0.2"})));
    const auto fe = svc("10.96.0.1", 80, {}).frontend;
    const auto gone = *lb.backend_id(fe, BackendSpec{IpAddr::parse("10.0.0.2").value(), 8080}.identity());
    const auto gen_before = maps_.backends.at(gone).gen;
    ASSERT_TRUE(lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1"})));
    EXPECT_EQ(maps_.backends.count(gone), 0u);
    // Its id is reused by the next new backend, with a new generation so old flows re-balance.
    ASSERT_TRUE(lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1", "10.0.0.7"})));
    const auto reused = *lb.backend_id(fe, BackendSpec{IpAddr::parse("10.0.0.7").value(), 8080}.identity());
    EXPECT_EQ(reused, gone);
    EXPECT_NE(maps_.backends.at(reused).gen, gen_before);
    expect_consistent();
}

TEST_F(LbProgrammerTest, NoUsableBackendRemovesTheTable) {
    auto lb = make();
    auto id = lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1"}));
    ASSERT_TRUE(id);
    ServiceSpec s = svc("10.96.0.1", 80, {"10.0.0.1"});
    s.backends[0].draining = true;
    ASSERT_TRUE(lb.upsert_service(s));
    EXPECT_EQ(maps_.tables.count(*id), 0u) << "a draining-only service has no table (new flows get ICMP)";
    ASSERT_EQ(maps_.backends.size(), 1u) << "the draining backend stays for its existing flows";
    EXPECT_TRUE(maps_.backends.begin()->second.flags & KXLB_BE_F_DRAINING);
}

TEST_F(LbProgrammerTest, FailedTableSwapLeavesNothingBehind) {
    auto lb = make();
    maps_.fail("swap_maglev");
    auto id = lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1", "10.0.0.2"}));
    ASSERT_FALSE(id);
    EXPECT_EQ(id.error().code, EIO);
    EXPECT_TRUE(maps_.services.empty());
    EXPECT_TRUE(maps_.backends.empty());
    EXPECT_TRUE(maps_.tables.empty());
    EXPECT_EQ(lb.service_count(), 0u);
    // And the ids it tried are free again.
    auto ok = lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1"}));
    ASSERT_TRUE(ok);
    EXPECT_EQ(*ok, 0u);
}

TEST_F(LbProgrammerTest, FailedUpdateKeepsTheOldServiceServing) {
    auto lb = make();
    auto id = lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1", "10.0.0.2"}));
    ASSERT_TRUE(id);
    const auto before_tables = maps_.tables;
    const auto before_backends = maps_.backends.size();
    maps_.fail("put_backend");  // the new backend cannot be written
    auto r = lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1", "10.0.0.3"}));
    ASSERT_FALSE(r);
    EXPECT_EQ(maps_.tables, before_tables);
    EXPECT_EQ(maps_.backends.size(), before_backends);
    ASSERT_NE(lb.service(svc("10.96.0.1", 80, {}).frontend), nullptr);
    EXPECT_EQ(lb.service(svc("10.96.0.1", 80, {}).frontend)->spec.backends.size(), 2u);

    maps_.fail("put_service");  // a flags change that cannot be published restores the old table
    ServiceSpec flagged = svc("10.96.0.1", 80, {"10.0.0.1", "10.0.0.3"});
    flagged.flags = KXLB_SVC_F_SOCKET_LB;
    ASSERT_FALSE(lb.upsert_service(flagged));
    EXPECT_EQ(maps_.tables, before_tables);
    expect_consistent();
}

TEST_F(LbProgrammerTest, FailedNewFrontendRollsBackVipAddress) {
    auto lb = make();
    maps_.fail("put_service");
    ASSERT_FALSE(lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1"})));
    EXPECT_TRUE(maps_.vip_addrs.empty());
    EXPECT_TRUE(maps_.tables.empty());
    EXPECT_TRUE(maps_.backends.empty());
}

TEST_F(LbProgrammerTest, VipAddressIsRefcountedAcrossPorts) {
    auto lb = make();
    ASSERT_TRUE(lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1"})));
    ASSERT_TRUE(lb.upsert_service(svc("10.96.0.1", 53, {"10.0.0.1"}, IPPROTO_UDP)));
    ASSERT_EQ(maps_.vip_addrs.size(), 1u);
    EXPECT_EQ(maps_.vip_addrs.begin()->second, 2u);
    ASSERT_TRUE(lb.remove_service(svc("10.96.0.1", 80, {}).frontend));
    EXPECT_EQ(maps_.vip_addrs.begin()->second, 1u);
    ASSERT_TRUE(lb.remove_service(svc("10.96.0.1", 53, {}, IPPROTO_UDP).frontend));
    EXPECT_TRUE(maps_.vip_addrs.empty());
    EXPECT_TRUE(maps_.backends.empty());
    EXPECT_TRUE(maps_.tables.empty());
    EXPECT_FALSE(lb.remove_service(svc("10.96.0.1", 53, {}, IPPROTO_UDP).frontend));
}

TEST_F(LbProgrammerTest, TableIsIndependentOfBackendOrder) {
    auto lb = make();
    auto a = lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1", "10.0.0.2", "10.0.0.3"}));
    ASSERT_TRUE(a);
    // Translate ids to addresses to compare across services.
    auto by_addr = [&](const Frontend& fe, std::uint32_t svc_id) {
        std::map<std::uint32_t, std::string> name;
        for (const auto& be : lb.service(fe)->spec.backends) name[*lb.backend_id(fe, be.identity())] = be.str();
        std::vector<std::string> out;
        for (auto id : maps_.tables.at(svc_id)) out.push_back(name[id]);
        return out;
    };
    auto b = lb.upsert_service(svc("10.96.0.2", 80, {"10.0.0.3", "10.0.0.1", "10.0.0.2"}));
    ASSERT_TRUE(b);
    EXPECT_EQ(by_addr(svc("10.96.0.1", 80, {}).frontend, *a), by_addr(svc("10.96.0.2", 80, {}).frontend, *b));
}

TEST_F(LbProgrammerTest, RejectsInvalidServicesWithEveryProblem) {
    auto lb = make();
    ServiceSpec s = svc("10.96.0.1", 0, {"fd00::1", "10.0.0.1", "10.0.0.1"});
    s.frontend.proto = 47;
    auto r = lb.upsert_service(s);
    ASSERT_FALSE(r);
    const auto& m = r.error().message;
    EXPECT_NE(m.find("port 0"), std::string::npos) << m;
    EXPECT_NE(m.find("tcp or udp"), std::string::npos) << m;
    EXPECT_NE(m.find("another address family"), std::string::npos) << m;
    EXPECT_NE(m.find("listed twice"), std::string::npos) << m;
    EXPECT_TRUE(maps_.services.empty());
}

TEST_F(LbProgrammerTest, CapacityExhaustionIsAnErrorNotACrash) {
    LbProgrammerOptions o;
    o.maglev_size = kSize;
    o.max_services = 2;
    o.max_backends = 3;
    auto lb = LbProgrammer::create(maps_, o).value();
    ASSERT_TRUE(lb.upsert_service(svc("10.96.0.1", 80, {"10.0.0.1", "10.0.0.2"})));
    auto too_many_backends = lb.upsert_service(svc("10.96.0.2", 80, {"10.0.0.1", "10.0.0.2"}));
    ASSERT_FALSE(too_many_backends);
    EXPECT_EQ(too_many_backends.error().code, ENOSPC);
    ASSERT_TRUE(lb.upsert_service(svc("10.96.0.2", 80, {"10.0.0.1"})));
    auto too_many_services = lb.upsert_service(svc("10.96.0.3", 80, {}));
    ASSERT_FALSE(too_many_services);
    EXPECT_EQ(too_many_services.error().code, ENOSPC);
    expect_consistent();
}

TEST_F(LbProgrammerTest, UpsertingTheSameSpecWritesNothing) {
    auto lb = make();
    auto spec = svc("10.96.0.1", 443, {"10.0.0.1", "10.0.0.2"});
    ASSERT_TRUE(lb.upsert_service(spec));
    const int writes = maps_.writes;
    ASSERT_TRUE(lb.upsert_service(spec));
    EXPECT_EQ(maps_.writes, writes);
}

TEST_F(LbProgrammerTest, WeightChangeRewritesTheBackendAndRollsBackOnFailure) {
    auto lb = make();
    auto spec = svc("10.96.0.1", 443, {"10.0.0.1", "10.0.0.2"});
    const auto id = lb.upsert_service(spec).value();
    const auto before = maps_.backends;
    const auto table_before = maps_.tables[id];
    auto heavier = spec;
    heavier.backends[0].weight = 3;
    maps_.fail("swap_maglev");
    ASSERT_FALSE(lb.upsert_service(heavier));
    EXPECT_EQ(maps_.tables[id], table_before);
    for (const auto& [bid, be] : before) EXPECT_EQ(maps_.backends[bid].weight, be.weight) << bid;
    ASSERT_TRUE(lb.upsert_service(heavier));
    const auto b0 = *lb.backend_id(spec.frontend, spec.backends[0].identity());
    EXPECT_EQ(maps_.backends[b0].weight, 3u);
    EXPECT_NEAR(std::count(maps_.tables[id].begin(), maps_.tables[id].end(), b0), 188, 2);  // 3/4 of 251
}

// Programs a mix of services, then hands the maps to a new programmer as a restarted agent would.
TEST_F(LbProgrammerTest, AdoptTakesOverIdsGensAndWeightsSoTheSameSpecsWriteNothing) {
    std::vector<ServiceSpec> specs = {svc("10.96.0.1", 443, {"10.0.0.1", "10.0.0.2", "10.0.0.3"}),
                                      svc("10.96.0.1", 80, {"10.0.0.1"}),
                                      svc("fd00::10", 53, {"fd00::1", "fd00::2"}, IPPROTO_UDP)};
    specs[0].backends[1].weight = 5;
    specs[0].backends[2].draining = true;
    specs[1].flags = KXLB_SVC_F_SOCKET_LB;
    std::map<std::uint32_t, std::vector<std::uint32_t>> tables;
    std::uint32_t max_gen = 0;
    {
        auto lb = make();
        for (const auto& s : specs) ASSERT_TRUE(lb.upsert_service(s));
        ASSERT_TRUE(lb.remove_service(specs[1].frontend));  // leaves a hole in the ids
        ASSERT_TRUE(lb.upsert_service(specs[1]));
        tables = maps_.tables;
        for (const auto& [id, be] : maps_.backends) max_gen = std::max(max_gen, be.gen);
    }
    const auto backends = maps_.backends;
    LbProgrammerOptions o;
    o.maglev_size = kSize;
    o.hash_seed = 99;
    auto adopted = LbProgrammer::adopt(maps_, o);
    ASSERT_TRUE(adopted) << adopted.error().message;
    EXPECT_EQ(adopted->service_count(), 3u);
    const int writes = maps_.writes;
    for (const auto& s : specs) ASSERT_TRUE(adopted->upsert_service(s));
    EXPECT_EQ(maps_.writes, writes) << "re-applying the adopted state must not touch the maps";
    // The tables it would compute are the ones in the maps.
    for (const auto& s : specs) {
        const auto* st = adopted->service(s.frontend);
        ASSERT_NE(st, nullptr);
        EXPECT_EQ(adopted->maglev_table(st->spec, st->backend_ids).value(), tables.at(st->id)) << s.frontend.str();
    }
    // A change after adoption keeps the ids of unchanged backends and hands out fresh gens.
    auto more = specs[0];
    more.backends.push_back(BackendSpec{IpAddr::parse("10.0.0.9").value(), 8080, 1, false});
    ASSERT_TRUE(adopted->upsert_service(more));
    for (const auto& [id, be] : backends) EXPECT_EQ(maps_.backends.at(id).gen, be.gen);
    const auto new_id = *adopted->backend_id(more.frontend, more.backends[3].identity());
    EXPECT_EQ(backends.count(new_id), 0u);
    EXPECT_GT(maps_.backends.at(new_id).gen, max_gen);
    expect_consistent();
}

TEST_F(LbProgrammerTest, AdoptClearsBackendsOfServicesThatAreGone) {
    {
        auto lb = make();
        ASSERT_TRUE(lb.upsert_service(svc("10.96.0.1", 443, {"10.0.0.1", "10.0.0.2"})));
    }
    maps_.services.clear();  // e.g. a crash between removing the frontend and its backends
    auto adopted = LbProgrammer::adopt(maps_, LbProgrammerOptions{kSize, 99});
    ASSERT_TRUE(adopted) << adopted.error().message;
    EXPECT_EQ(adopted->service_count(), 0u);
    EXPECT_TRUE(maps_.backends.empty());
}

TEST_F(LbProgrammerTest, AdoptRefusesStateItCouldNotHaveWritten) {
    {
        auto lb = make();
        ASSERT_TRUE(lb.upsert_service(svc("10.96.0.1", 443, {"10.0.0.1"})));
        ASSERT_TRUE(lb.upsert_service(svc("10.96.0.2", 443, {"10.0.0.1"})));
    }
    for (auto& [key, s] : maps_.services) s.id = 7;  // two frontends claim one id
    const int writes = maps_.writes;
    auto adopted = LbProgrammer::adopt(maps_, LbProgrammerOptions{kSize, 99});
    ASSERT_FALSE(adopted);
    EXPECT_NE(adopted.error().message.find("id 7 is already allocated"), std::string::npos) << adopted.error().message;
    EXPECT_EQ(maps_.writes, writes);
    maps_.fail_reads = true;
    auto unreadable = LbProgrammer::adopt(maps_, LbProgrammerOptions{kSize, 99});
    ASSERT_FALSE(unreadable);
    EXPECT_EQ(unreadable.error().message, "adopt: fake read_services: Input/output error");
}

Cidr cidr(const std::string& addr, std::uint8_t len) { return Cidr{IpAddr::parse(addr).value(), len}; }

TEST_F(LbProgrammerTest, SourceRangesAndAffinityAreWrittenBeforeTheFlagAndRemovedAfter) {
    auto lb = make();
    ServiceSpec s = svc("10.96.0.1", 443, {"10.0.0.1"});
    s.source_ranges = {cidr("10.0.0.0", 8), cidr("fd00::", 8)};
    s.affinity_timeout_s = 600;
    auto id = lb.upsert_service(s);
    ASSERT_TRUE(id) << id.error().message;
    ASSERT_EQ(maps_.services.size(), 1u);
    const kxlb_service v = maps_.services.begin()->second;
    EXPECT_EQ(v.flags, static_cast<std::uint32_t>(KXLB_SVC_F_SOURCE_RANGES));
    EXPECT_EQ(v.affinity_timeout_s, 600u);
    ASSERT_EQ(maps_.source_ranges.size(), 2u);
    std::set<std::string> written;
    for (const auto& k : maps_.source_ranges) {
        auto r = source_range_from_key(k);
        ASSERT_TRUE(r);
        EXPECT_EQ(r->first, *id);
        written.insert(r->second.str());
    }
    EXPECT_EQ(written, (std::set<std::string>{"10.0.0.0/8", "fd00::/8"}));
    EXPECT_EQ(maps_.source_ranges.begin()->prefixlen, KXLB_SRC_RANGE_KEY_BITS + 8u);

    // One range replaced, affinity off.
    s.source_ranges = {cidr("10.0.0.0", 8), cidr("192.168.0.0", 16)};
    s.affinity_timeout_s = 0;
    ASSERT_TRUE(lb.upsert_service(s));
    written.clear();
    for (const auto& k : maps_.source_ranges) written.insert(source_range_from_key(k)->second.str());
    EXPECT_EQ(written, (std::set<std::string>{"10.0.0.0/8", "192.168.0.0/16"}));
    EXPECT_EQ(maps_.services.begin()->second.affinity_timeout_s, 0u);

    // No ranges: flag off, entries gone. Removal clears them too.
    s.source_ranges.clear();
    ASSERT_TRUE(lb.upsert_service(s));
    EXPECT_EQ(maps_.services.begin()->second.flags, 0u);
    EXPECT_TRUE(maps_.source_ranges.empty());
    s.source_ranges = {cidr("10.0.0.0", 8)};
    ASSERT_TRUE(lb.upsert_service(s));
    ASSERT_TRUE(lb.remove_service(s.frontend));
    EXPECT_TRUE(maps_.source_ranges.empty());
}

TEST_F(LbProgrammerTest, FailedSourceRangeWriteLeavesTheOldServiceAsItWas) {
    auto lb = make();
    ServiceSpec s = svc("10.96.0.1", 443, {"10.0.0.1"});
    s.source_ranges = {cidr("10.0.0.0", 8)};
    ASSERT_TRUE(lb.upsert_service(s));
    const auto services_before = maps_.services.begin()->second;
    ServiceSpec next = s;
    next.source_ranges = {cidr("10.0.0.0", 8), cidr("172.16.0.0", 12), cidr("192.168.0.0", 16)};
    maps_.fail("put_source_range", 2);  // the second new range fails
    EXPECT_FALSE(lb.upsert_service(next));
    ASSERT_EQ(maps_.source_ranges.size(), 1u);
    EXPECT_EQ(source_range_from_key(*maps_.source_ranges.begin())->second.str(), "10.0.0.0/8");
    EXPECT_EQ(std::memcmp(&maps_.services.begin()->second, &services_before, sizeof(kxlb_service)), 0);
    // A failed removal of an old range rolls the flag and the added ranges back as well.
    next.source_ranges = {cidr("172.16.0.0", 12)};
    maps_.fail("delete_source_range", 1);
    EXPECT_FALSE(lb.upsert_service(next));
    ASSERT_EQ(maps_.source_ranges.size(), 1u);
    EXPECT_EQ(source_range_from_key(*maps_.source_ranges.begin())->second.str(), "10.0.0.0/8");
    ASSERT_TRUE(lb.upsert_service(next));  // and it converges on retry
    EXPECT_EQ(source_range_from_key(*maps_.source_ranges.begin())->second.str(), "172.16.0.0/12");
}

TEST_F(LbProgrammerTest, AdoptReadsSourceRangesAndAffinityBack) {
    ServiceSpec s = svc("10.96.0.1", 443, {"10.0.0.1", "10.0.0.2"});
    s.source_ranges = {cidr("10.0.0.0", 8), cidr("fd00::", 8)};
    s.affinity_timeout_s = 30;
    {
        auto lb = make();
        ASSERT_TRUE(lb.upsert_service(s));
    }
    LbProgrammerOptions o;
    o.maglev_size = kSize;
    o.hash_seed = 99;
    auto adopted = LbProgrammer::adopt(maps_, o);
    ASSERT_TRUE(adopted) << adopted.error().message;
    const auto* st = adopted->service(s.frontend);
    ASSERT_NE(st, nullptr);
    EXPECT_EQ(st->spec.source_ranges, s.source_ranges);
    EXPECT_EQ(st->spec.affinity_timeout_s, 30u);
    EXPECT_EQ(st->spec.flags, 0u) << "the derived source-range flag is not a user flag";
    const int swaps = maps_.swaps;
    ASSERT_TRUE(adopted->upsert_service(s));
    EXPECT_EQ(maps_.swaps, swaps) << "the same spec after adoption writes nothing";
}

TEST(LbTypes, SourceRangeValidation) {
    ServiceSpec s = svc("10.96.0.1", 443, {"10.0.0.1"});
    s.source_ranges = {cidr("10.0.0.1", 8)};
    auto v = validate(s);
    ASSERT_FALSE(v);
    EXPECT_NE(v.error().message.find("10.0.0.1/8 has host bits set"), std::string::npos) << v.error().message;
    s.source_ranges = {cidr("10.0.0.0", 33)};
    EXPECT_FALSE(validate(s));
    s.source_ranges = {cidr("192.168.0.0", 16), cidr("10.0.0.0", 8)};
    EXPECT_FALSE(validate(s)) << "unsorted";
    s.source_ranges = {cidr("10.0.0.0", 8), cidr("10.0.0.0", 8)};
    EXPECT_FALSE(validate(s)) << "duplicate";
    s.source_ranges = {cidr("10.0.0.0", 8), cidr("fd00::", 8)};
    EXPECT_TRUE(validate(s));
    s.flags = KXLB_SVC_F_SOURCE_RANGES;
    EXPECT_FALSE(validate(s)) << "the derived flag cannot be set by callers";
    EXPECT_EQ(cidr("10.1.2.3", 12).network().str(), "10.0.0.0/12");
    EXPECT_EQ(cidr("fd00::ff", 120).network().str(), "fd00::/120");
}

TEST(LbProgrammerOptionsTest, RejectsNonPrimeTable) {
    FakeLbMaps maps;
    LbProgrammerOptions o;
    o.maglev_size = 65536;
    EXPECT_FALSE(LbProgrammer::create(maps, o));
}

TEST(LbTypes, ParseAndFormat) {
    EXPECT_EQ(IpAddr::parse("10.1.2.3")->str(), "10.1.2.3");
    EXPECT_EQ(IpAddr::parse("fd00::1")->family, AF_INET6);
    EXPECT_FALSE(IpAddr::parse("10.1.2"));
    EXPECT_FALSE(IpAddr::parse("fd00:::1"));
    Frontend fe{IpAddr::parse("fd00::1").value(), 443, IPPROTO_TCP};
    EXPECT_EQ(fe.str(), "[fd00::1]:443/tcp");
    const auto key = fe.key();
    EXPECT_EQ(key.port, htons(443));
    EXPECT_EQ(key.family, AF_INET6);
}

TEST(LbTypes, ConfigValidation) {
    LbConfig c;
    EXPECT_TRUE(validate(c));
    c.snat_port_lo = 100;
    c.snat_port_hi = 99;
    EXPECT_FALSE(validate(c));
    c = LbConfig{};
    c.snat_v4 = IpAddr::parse("fd00::1").value();
    EXPECT_FALSE(validate(c));
    c = LbConfig{};
    c.snat_v4 = IpAddr::parse("10.0.0.1").value();
    const auto abi = c.to_abi();
    EXPECT_EQ(abi.snat_v4, htonl(0x0a000001));
    EXPECT_EQ(abi.snat_port_lo, 61000);
}

Cidr cidr(const char* addr, std::uint8_t len) { return Cidr{IpAddr::parse(addr).value(), len}; }

TEST(LbTypes, EncapSourcePrefixesReachTheAbi) {
    LbConfig c;
    // Unset: all zero in the ABI, so the datapath falls back to the node address.
    auto abi = c.to_abi();
    EXPECT_EQ(abi.encap_src_v4, 0u);
    EXPECT_EQ(abi.encap_src_v4_len, 0);
    EXPECT_EQ(abi.encap_src_v6[0] | abi.encap_src_v6[1] | abi.encap_src_v6[2] | abi.encap_src_v6[3], 0u);
    EXPECT_EQ(abi.encap_src_v6_len, 0);

    c.encap_src_v4 = cidr("192.0.2.0", 24);
    c.encap_src_v6 = cidr("2001:db8:1:2::", 64);
    ASSERT_TRUE(validate(c));
    abi = c.to_abi();
    EXPECT_EQ(abi.encap_src_v4, htonl(0xc0000200));
    EXPECT_EQ(abi.encap_src_v4_len, 24);
    EXPECT_EQ(abi.encap_src_v6[0], htonl(0x20010db8));
    EXPECT_EQ(abi.encap_src_v6[1], htonl(0x00010002));
    EXPECT_EQ(abi.encap_src_v6[2], 0u);
    EXPECT_EQ(abi.encap_src_v6[3], 0u);
    EXPECT_EQ(abi.encap_src_v6_len, 64);
    // The full-NAT fields are untouched by the encap ones (separate ABI fields).
    EXPECT_EQ(abi.snat_v4, 0u);
}

TEST(LbTypes, EncapSourcePrefixValidation) {
    auto with = [](Cidr v4, Cidr v6) {
        LbConfig c;
        c.encap_src_v4 = v4;
        c.encap_src_v6 = v6;
        return validate(c);
    };
    // Boundaries that are accepted.
    EXPECT_TRUE(with(cidr("10.0.0.0", 8), {}));
    EXPECT_TRUE(with(cidr("10.0.0.7", 32), {}));
    EXPECT_TRUE(with({}, cidr("fd00::", 64)));
    EXPECT_TRUE(with({}, cidr("fd00::7", 128)));
    // Length out of range.
    EXPECT_FALSE(with(cidr("10.0.0.0", 7), {}));
    EXPECT_FALSE(with(cidr("10.0.0.0", 33), {}));
    EXPECT_FALSE(with({}, cidr("fd00::", 63)));
    EXPECT_FALSE(with({}, cidr("fd00::", 129)));
    // Host bits set.
    EXPECT_FALSE(with(cidr("10.0.0.1", 24), {}));
    EXPECT_FALSE(with({}, cidr("fd00::1", 64)));
    // Wrong family in either field.
    EXPECT_FALSE(with(cidr("fd00::", 64), {}));
    EXPECT_FALSE(with({}, cidr("10.0.0.0", 24)));
    // A length without an address; the unspecified address.
    EXPECT_FALSE(with(Cidr{IpAddr{}, 24}, {}));
    EXPECT_FALSE(with(cidr("0.0.0.0", 8), {}));
    EXPECT_FALSE(with({}, cidr("::", 64)));
    // The error names the field.
    auto st = with(cidr("10.0.0.1", 24), {});
    ASSERT_FALSE(st);
    EXPECT_NE(st.error().message.find("encap_src_v4"), std::string::npos) << st.error().message;
}

}  // namespace
}  // namespace kxlb

namespace kxlb {
namespace {

// Local backends (pods on this node): BackendSpec::local is KXLB_BE_F_LOCAL in the backend value, next to
// (never instead of) the draining bit.
TEST_F(LbProgrammerTest, LocalBackendSetsTheLocalFlag) {
    auto lb = make();
    auto s = svc("10.96.0.1", 443, {"10.0.0.1", "10.0.0.2"});
    s.backends[0].local = true;
    auto id = lb.upsert_service(s);
    ASSERT_TRUE(id) << id.error().message;
    const auto local_id = *lb.backend_id(s.frontend, s.backends[0].identity());
    const auto remote_id = *lb.backend_id(s.frontend, s.backends[1].identity());
    EXPECT_EQ(maps_.backends.at(local_id).flags, KXLB_BE_F_LOCAL);
    EXPECT_EQ(maps_.backends.at(remote_id).flags, 0);
    // Local backends take new flows like any other: both are in the table.
    std::set<std::uint32_t> used(maps_.tables[*id].begin(), maps_.tables[*id].end());
    EXPECT_EQ(used, (std::set<std::uint32_t>{local_id, remote_id}));

    s.backends[0].draining = true;
    ASSERT_TRUE(lb.upsert_service(s));
    EXPECT_EQ(maps_.backends.at(local_id).flags, KXLB_BE_F_LOCAL | KXLB_BE_F_DRAINING);
}

// local is a spec change, not an identity change: the backend is rewritten in place (same id and gen, so
// its flows stay), and setting it back restores the value.
TEST_F(LbProgrammerTest, ChangingLocalRewritesTheBackendInPlace) {
    auto lb = make();
    auto s = svc("10.96.0.1", 443, {"10.0.0.1"});
    ASSERT_TRUE(lb.upsert_service(s));
    const auto id = *lb.backend_id(s.frontend, s.backends[0].identity());
    const auto before = maps_.backends.at(id);
    const auto table = maps_.tables.begin()->second;
    const int writes = maps_.writes;

    s.backends[0].local = true;
    ASSERT_TRUE(lb.upsert_service(s));
    EXPECT_GT(maps_.writes, writes) << "a change of local must reach the maps";
    EXPECT_EQ(*lb.backend_id(s.frontend, s.backends[0].identity()), id);
    EXPECT_EQ(maps_.backends.at(id).flags, KXLB_BE_F_LOCAL);
    EXPECT_EQ(maps_.backends.at(id).gen, before.gen) << "same backend: its flows keep going";
    EXPECT_EQ(maps_.tables.begin()->second, table);
    EXPECT_TRUE(lb.service(s.frontend)->spec.backends[0].local);

    s.backends[0].local = false;
    ASSERT_TRUE(lb.upsert_service(s));
    EXPECT_EQ(maps_.backends.at(id).flags, 0);
}

// A restarted agent reads local back from the backend map: the same specs then write nothing.
TEST_F(LbProgrammerTest, AdoptReadsLocalBack) {
    auto s = svc("10.96.0.1", 443, {"10.0.0.1", "10.0.0.2"});
    s.backends[1].local = true;
    {
        auto lb = make();
        ASSERT_TRUE(lb.upsert_service(s));
    }
    LbProgrammerOptions o;
    o.maglev_size = kSize;
    o.hash_seed = 99;
    auto adopted = LbProgrammer::adopt(maps_, o);
    ASSERT_TRUE(adopted) << adopted.error().message;
    const auto* st = adopted->service(s.frontend);
    ASSERT_NE(st, nullptr);
    std::size_t locals = 0;
    for (const auto& b : st->spec.backends) locals += b.local ? 1 : 0;
    EXPECT_EQ(locals, 1u);
    const int writes = maps_.writes;
    ASSERT_TRUE(adopted->upsert_service(s));
    EXPECT_EQ(maps_.writes, writes) << "re-applying the adopted state must not touch the maps";
}

}  // namespace
}  // namespace kxlb
