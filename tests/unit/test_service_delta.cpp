// Unit tests for applying Kubernetes deltas without a full merge: merges_cleanly() and
// Reconciler::update_services()/apply_services() must leave exactly the datapath state (and health
// bookkeeping) that a full merge_services() + set_services() + apply() leaves, over random deltas
// that include name and frontend clashes, frontends moving between services, and health changes.
#include <gtest/gtest.h>

#include <random>

#include "agent/k8s_source.hpp"
#include "agent/reconciler.hpp"
#include "unit/fake_lb_maps.hpp"

namespace kxlb::agent {
namespace {

using test::FakeLbMaps;

IpAddr ip(const std::string& s) { return IpAddr::parse(s).value(); }

// One programmed world: maps, programmer and reconciler.
struct World {
    FakeLbMaps maps;
    LbProgrammer lb = LbProgrammer::create(maps, LbProgrammerOptions{251, 1}).value();
    Reconciler rec;
    std::vector<std::string> conflicts;

    void full(const std::vector<ServicePtr>& file, const std::vector<ServicePtr>& k8s) {
        auto m = merge_services(file, k8s);
        conflicts = m.conflicts;
        rec.set_services(std::move(m.services));
        ASSERT_TRUE(rec.apply(lb).ok());
    }
    // What the datapath holds, one line per frontend (ids may differ between worlds; specs may not).
    std::string programmed() const {
        std::string out;
        for (const auto& [fe, st] : lb.services()) {
            out += fe.str() + " flags " + std::to_string(st.spec.flags) + " affinity " +
                   std::to_string(st.spec.affinity_timeout_s) + ":";
            for (const auto& b : st.spec.backends)
                out += " " + b.addr.str() + ":" + std::to_string(b.port) + (b.draining ? "(d)" : "") + "w" +
                       std::to_string(b.weight);
            out += "\n";
        }
        return out;
    }
};

class ServiceDelta : public ::testing::Test {
protected:
    std::mt19937 rng{20261127};
    int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }

    // Frontends 0..17; the file's services hold 0 and 1 (so a Kubernetes service claiming them clashes).
    Frontend frontend(int i) const {
        return i % 3 == 2 ? Frontend{ip("fd00::" + std::to_string(10 + i)), 80, IPPROTO_TCP}
                          : Frontend{ip("10.96.0." + std::to_string(10 + i)), 80, IPPROTO_TCP};
    }
    BackendConfig backend(int i, bool v6) const {
        return BackendConfig{ip(v6 ? "fd00:1::" + std::to_string(1 + i) : "10.1.0." + std::to_string(1 + i)), 8080};
    }

    std::vector<ServicePtr> file() const {
        std::vector<ServicePtr> out;
        for (int i : {0, 1}) {
            ServiceConfig s;
            s.name = "file-" + std::to_string(i);
            s.frontends = {frontend(i)};
            s.backends = {backend(20 + i, false)};
            out.push_back(std::make_shared<const ServiceConfig>(std::move(s)));
        }
        return out;
    }

    // A random Kubernetes-like config named `name`: one or two frontends (mostly of its own range,
    // sometimes a clashing one), up to four backends of the frontends' families (rarely a stray one).
    ServicePtr random_service(const std::string& name, int own) {
        ServiceConfig s;
        s.name = name;
        const int n_fe = 1 + pick(2);
        for (int k = 0; k < n_fe; ++k) {
            const int idx = pick(80) == 0 ? pick(18) : 2 + own * 2 + k;
            if (std::find(s.frontends.begin(), s.frontends.end(), frontend(idx)) == s.frontends.end())
                s.frontends.push_back(frontend(idx));
        }
        const bool v6 = s.frontends.front().addr.family == AF_INET6;
        const int n_be = pick(5);
        for (int k = 0; k < n_be; ++k) {
            auto b = backend(pick(6), pick(200) == 0 ? !v6 : v6);
            b.draining = pick(6) == 0;
            if (std::none_of(s.backends.begin(), s.backends.end(),
                             [&](const BackendConfig& o) { return o.addr == b.addr && o.port == b.port; }))
                s.backends.push_back(b);
        }
        if (pick(3) == 0) s.health_check = HealthCheckSpec{};
        if (pick(4) == 0) s.affinity_timeout = std::chrono::seconds(60 + pick(3));
        return std::make_shared<const ServiceConfig>(std::move(s));
    }
};

TEST_F(ServiceDelta, IncrementalApplyEqualsAFullMergeOverRandomDeltas) {
    const auto file_services = file();
    const auto in_file = [&](const std::string& n) {
        return std::any_of(file_services.begin(), file_services.end(),
                           [&](const ServicePtr& s) { return s->name == n; });
    };
    std::map<std::string, ServicePtr> k8s;  // the source's current services, by name
    const auto k8s_list = [&] {
        std::vector<ServicePtr> v;
        for (const auto& [n, s] : k8s) v.push_back(s);
        return v;
    };
    World full, inc;
    full.full(file_services, {});
    inc.full(file_services, {});
    int incremental = 0, fallbacks = 0, writes_inc = 0;
    for (int step = 0; step < 1000; ++step) {
        // A delta of 1-3 services: add, change or remove; now and then a name the file owns.
        std::set<std::string> names;
        const int n = 1 + pick(3);
        for (int k = 0; k < n; ++k) {
            const int id = pick(8);
            const std::string name = pick(60) == 0 ? "file-0" : "k8s." + std::to_string(id);
            names.insert(name);
            if (pick(4) == 0) k8s.erase(name);
            else k8s[name] = random_service(name, id);
        }
        if (k8s.count("file-0") && pick(5) == 0) {  // the clash goes away again
            k8s.erase("file-0");
            names.insert("file-0");
        }
        // Health news for a backend of some service, in both worlds (the agent applies that service).
        std::set<std::string> to_apply = names;
        if (!k8s.empty() && pick(3) == 0) {
            auto it = std::next(k8s.begin(), pick(static_cast<int>(k8s.size())));
            if (!it->second->backends.empty()) {
                const auto& b =
                    it->second->backends[static_cast<std::size_t>(pick(static_cast<int>(it->second->backends.size())))];
                const BackendRef ref{it->first, BackendSpec{b.addr, b.port}.identity()};
                const bool h = pick(2) == 0;
                full.rec.set_health(ref, h);
                inc.rec.set_health(ref, h);
                to_apply.insert(it->first);
            }
        }

        full.full(file_services, k8s_list());

        std::vector<ServiceChange> delta;
        for (const auto& nm : names) {
            auto it = k8s.find(nm);
            delta.push_back(ServiceChange{nm, it == k8s.end() ? nullptr : it->second});
        }
        if (inc.conflicts.empty() &&
            merges_cleanly(delta, in_file, [&](const Frontend& fe) { return inc.rec.owner(fe); })) {
            ++incremental;
            inc.rec.update_services(delta);
            const std::vector<std::string> v(to_apply.begin(), to_apply.end());
            const auto r = inc.rec.apply_services(inc.lb, v);
            ASSERT_TRUE(r.ok());
            writes_inc += r.upserted + r.removed;
        } else {
            ++fallbacks;
            inc.full(file_services, k8s_list());
        }
        ASSERT_EQ(inc.programmed(), full.programmed()) << "step " << step << " names " << names.size();
        ASSERT_EQ(inc.rec.desired(), full.rec.desired()) << "step " << step;
        // The incremental world holds every frontend in the fake maps exactly once, and nothing else.
        ASSERT_EQ(inc.maps.services.size(), inc.lb.services().size()) << "step " << step;
    }
    // Both paths were exercised, the cheap one mostly.
    EXPECT_GT(incremental, 500) << fallbacks;
    EXPECT_GT(fallbacks, 20) << incremental;
    EXPECT_GT(writes_inc, 100);
}

TEST_F(ServiceDelta, MergesCleanlyRefusesEveryKindOfClash) {
    Reconciler rec;
    rec.set_services(merge_services(file(), {}).services);
    const auto in_file = [](const std::string& n) { return n.rfind("file-", 0) == 0; };
    const auto owner = [&](const Frontend& fe) { return rec.owner(fe); };
    const auto svc = [&](const std::string& name, std::vector<int> fes, bool stray_backend = false) {
        ServiceConfig s;
        s.name = name;
        for (int i : fes) s.frontends.push_back(frontend(i));
        s.backends = {backend(1, false)};
        if (stray_backend) s.backends.push_back(backend(2, true));
        return std::make_shared<const ServiceConfig>(std::move(s));
    };
    EXPECT_TRUE(merges_cleanly({{"k8s.a", svc("k8s.a", {3})}}, in_file, owner));
    EXPECT_TRUE(merges_cleanly({{"k8s.a", nullptr}}, in_file, owner));
    EXPECT_FALSE(merges_cleanly({{"file-0", svc("file-0", {3})}}, in_file, owner));            // name
    EXPECT_FALSE(merges_cleanly({{"k8s.a", svc("k8s.a", {0})}}, in_file, owner));              // file frontend
    EXPECT_FALSE(merges_cleanly({{"k8s.a", svc("k8s.a", {3})}, {"k8s.b", svc("k8s.b", {3})}},  // each other
                                in_file, owner));
    EXPECT_FALSE(merges_cleanly({{"k8s.a", svc("k8s.a", {3}, true)}}, in_file, owner));  // family
    // A frontend moving between two services of the same delta is fine.
    rec.update_services({{"k8s.a", svc("k8s.a", {3})}});
    EXPECT_FALSE(merges_cleanly({{"k8s.b", svc("k8s.b", {3})}}, in_file, owner));
    EXPECT_TRUE(merges_cleanly({{"k8s.a", svc("k8s.a", {4})}, {"k8s.b", svc("k8s.b", {3})}}, in_file, owner));
}

TEST_F(ServiceDelta, AFrontendMovingBetweenServicesIsRewrittenNotWithdrawn) {
    FakeLbMaps maps;
    auto lb = LbProgrammer::create(maps, LbProgrammerOptions{251, 1}).value();
    Reconciler rec;
    ServiceConfig a;
    a.name = "k8s.a";
    a.frontends = {frontend(3), frontend(4)};
    a.backends = {backend(1, false)};
    rec.set_services(std::vector<ServiceConfig>{a});
    ASSERT_TRUE(rec.apply(lb).ok());
    const auto id3 = lb.service(frontend(3))->id;

    ServiceConfig a2 = a, b;
    a2.frontends = {frontend(4)};
    b.name = "k8s.b";
    b.frontends = {frontend(3)};
    b.backends = {backend(2, false)};
    rec.update_services(
        {{"k8s.a", std::make_shared<const ServiceConfig>(a2)}, {"k8s.b", std::make_shared<const ServiceConfig>(b)}});
    const auto r = rec.apply_services(lb, {"k8s.a", "k8s.b"});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.removed, 0);
    EXPECT_EQ(r.upserted, 1);  // frontend 3 got b's backend; frontend 4 did not change
    EXPECT_EQ(lb.service(frontend(3))->id, id3);
    EXPECT_EQ(*rec.owner(frontend(3)), "k8s.b");

    // Removing b withdraws its frontend; a's stays.
    rec.update_services({{"k8s.b", nullptr}});
    const auto r2 = rec.apply_services(lb, {"k8s.b"});
    EXPECT_EQ(r2.removed, 1);
    EXPECT_FALSE(lb.service(frontend(3)));
    EXPECT_TRUE(lb.service(frontend(4)));
    EXPECT_EQ(rec.owner(frontend(3)), nullptr);
}

TEST_F(ServiceDelta, AFailedWithdrawalStaysPendingUntilItSucceeds) {
    FakeLbMaps maps;
    auto lb = LbProgrammer::create(maps, LbProgrammerOptions{251, 1}).value();
    Reconciler rec;
    ServiceConfig a;
    a.name = "k8s.a";
    a.frontends = {frontend(3)};
    a.backends = {backend(1, false)};
    rec.set_services(std::vector<ServiceConfig>{a});
    ASSERT_TRUE(rec.apply(lb).ok());
    rec.update_services({{"k8s.a", nullptr}});
    maps.fail("delete_service");
    const auto r = rec.apply_services(lb, {"k8s.a"});
    EXPECT_FALSE(r.ok());
    EXPECT_TRUE(lb.service(frontend(3)));
    const auto r2 = rec.apply_services(lb, {});
    EXPECT_TRUE(r2.ok());
    EXPECT_EQ(r2.removed, 1);
    EXPECT_FALSE(lb.service(frontend(3)));
}

TEST_F(ServiceDelta, HealthOfRemovedBackendsIsForgottenPerService) {
    Reconciler rec;
    ServiceConfig a;
    a.name = "k8s.a";
    a.frontends = {frontend(3)};
    a.backends = {backend(1, false), backend(2, false)};
    a.health_check = HealthCheckSpec{};
    ServiceConfig b = a;
    b.name = "k8s.b";
    b.frontends = {frontend(4)};
    rec.set_services(std::vector<ServiceConfig>{a, b});
    const BackendRef a1{"k8s.a", BackendSpec{backend(1, false).addr, 8080}.identity()};
    const BackendRef b1{"k8s.b", a1.backend};
    rec.set_health(a1, false);
    rec.set_health(b1, false);
    ServiceConfig a2 = a;
    a2.backends = {backend(2, false)};
    rec.update_services({{"k8s.a", std::make_shared<const ServiceConfig>(a2)}});
    rec.update_services({{"k8s.a", std::make_shared<const ServiceConfig>(a)}});
    EXPECT_TRUE(rec.healthy(a1));   // came back as new: starts healthy
    EXPECT_FALSE(rec.healthy(b1));  // another service's verdict on the same address stays
}

}  // namespace
}  // namespace kxlb::agent
