// ClusterStore: nothing is handed out before both initial lists complete, per-service change
// notifications only for real content changes, services with several slices, slices moving between
// services, malformed objects; and the whole pipeline (ClusterWatch) against the fake apiserver.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "k8s/cluster_store.hpp"
#include "k8s/fake_apiserver.hpp"

namespace kxlb::k8s {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using Keys = std::vector<std::string>;

json service(const std::string& ns, const std::string& name, const std::string& rv, int port = 80) {
    return {{"metadata", {{"name", name}, {"namespace", ns}, {"uid", "u-" + name}, {"resourceVersion", rv}}},
            {"spec", {{"clusterIP", "10.96.0.1"}, {"ports", {{{"port", port}}}}}}};
}

json slice(const std::string& ns, const std::string& name, const std::string& svc, const std::string& rv,
           const std::vector<std::string>& addrs) {
    json eps = json::array();
    for (const auto& a : addrs) eps.push_back({{"addresses", {a}}, {"conditions", {{"ready", true}}}});
    return {{"metadata",
             {{"name", name},
              {"namespace", ns},
              {"resourceVersion", rv},
              {"labels", {{"kubernetes.io/service-name", svc}}}}},
            {"addressType", "IPv4"},
            {"ports", {{{"port", 8080}}}},
            {"endpoints", eps}};
}

ObjectEvent added(const json& obj) {
    return {EventType::Added,
            obj["metadata"]["namespace"].get<std::string>() + "/" + obj["metadata"]["name"].get<std::string>(), obj};
}
ObjectEvent modified(const json& obj) {
    auto ev = added(obj);
    ev.type = EventType::Modified;
    return ev;
}

TEST(ClusterStore, SyncedOnlyAfterBothListsAndThenEverythingAtOnce) {
    ClusterStore store;
    store.apply_service(added(service("ns", "a", "1")));
    store.apply_slice(added(slice("ns", "a-1", "a", "2", {"10.0.0.1"})));
    store.apply_slice(added(slice("ns", "orphan-1", "gone", "3", {"10.0.0.9"})));
    store.services_listed();
    EXPECT_FALSE(store.synced());
    EXPECT_EQ(store.wait_changes(50ms), Keys{});  // partial state is never handed out
    store.slices_listed();
    EXPECT_TRUE(store.synced());
    EXPECT_EQ(store.wait_changes(0ms), (Keys{"ns/a", "ns/gone"}));  // the first batch: every service known
    EXPECT_EQ(store.wait_changes(0ms), Keys{});
    store.slices_listed();  // a later relist changes nothing by itself
    EXPECT_EQ(store.wait_changes(0ms), Keys{});
}

TEST(ClusterStore, MultiSliceServiceAndContentComparison) {
    ClusterStore store;
    store.services_listed();
    store.slices_listed();
    EXPECT_EQ(store.wait_changes(0ms), Keys{});
    store.apply_service(added(service("ns", "web", "1")));
    store.apply_slice(added(slice("ns", "web-b", "web", "2", {"10.0.0.2"})));
    store.apply_slice(added(slice("ns", "web-a", "web", "3", {"10.0.0.1"})));
    EXPECT_EQ(store.wait_changes(0ms), Keys{"ns/web"});
    auto st = store.get("ns/web");
    ASSERT_TRUE(st.service);
    EXPECT_EQ(st.service->ports[0].port, 80);
    ASSERT_EQ(st.slices.size(), 2u);
    EXPECT_EQ(st.slices[0].meta.name, "web-a");  // sorted by name
    EXPECT_EQ(st.slices[1].endpoints[0].addresses[0], "10.0.0.2");

    // A new resourceVersion with the same content is no change.
    store.apply_slice(modified(slice("ns", "web-a", "web", "4", {"10.0.0.1"})));
    store.apply_service(modified(service("ns", "web", "5")));
    EXPECT_EQ(store.wait_changes(0ms), Keys{});
    EXPECT_EQ(store.get("ns/web").slices[0].meta.resource_version, "4");
    // A real change is.
    store.apply_slice(modified(slice("ns", "web-a", "web", "6", {"10.0.0.1", "10.0.0.3"})));
    EXPECT_EQ(store.wait_changes(0ms), Keys{"ns/web"});
    EXPECT_EQ(store.get("ns/web").slices[0].endpoints.size(), 2u);
    // A slice moving to another service changes both.
    store.apply_slice(modified(slice("ns", "web-b", "api", "7", {"10.0.0.2"})));
    EXPECT_EQ(store.wait_changes(0ms), (Keys{"ns/api", "ns/web"}));
    EXPECT_EQ(store.get("ns/web").slices.size(), 1u);
    EXPECT_EQ(store.get("ns/api").slices.size(), 1u);
    EXPECT_FALSE(store.get("ns/api").service);
    // Deletions.
    store.apply_slice({EventType::Deleted, "ns/web-a", nullptr});
    store.apply_service({EventType::Deleted, "ns/web", nullptr});
    store.apply_service({EventType::Deleted, "ns/never", nullptr});
    EXPECT_EQ(store.wait_changes(0ms), Keys{"ns/web"});
    EXPECT_FALSE(store.get("ns/web").service);
    EXPECT_TRUE(store.get("ns/web").slices.empty());
    EXPECT_EQ(store.service_keys(), Keys{"ns/api"});
    const auto stats = store.stats();
    EXPECT_EQ(stats.services, 0u);
    EXPECT_EQ(stats.slices, 1u);
}

TEST(ClusterStore, MalformedObjectsAreCountedAndKeepTheLastValidVersion) {
    std::vector<std::string> errors;
    ClusterStore store([&](const Error& e) { errors.push_back(e.message); });
    store.services_listed();
    store.slices_listed();
    store.apply_service(added(service("ns", "a", "1", 80)));
    EXPECT_EQ(store.wait_changes(0ms), Keys{"ns/a"});
    auto bad = service("ns", "a", "2");
    bad["spec"]["ports"][0]["port"] = "eighty";
    store.apply_service(modified(bad));
    auto bad_slice = slice("ns", "a-1", "a", "3", {"not-an-ip"});
    store.apply_slice(added(bad_slice));
    EXPECT_EQ(store.wait_changes(0ms), Keys{});
    EXPECT_EQ(store.get("ns/a").service->meta.resource_version, "1");
    EXPECT_EQ(store.stats().invalid_services, 1u);
    EXPECT_EQ(store.stats().invalid_slices, 1u);
    EXPECT_EQ(errors, (std::vector<std::string>{
                          "Service ns/a: spec.ports[0].port: expected an integer 1-65535, got \"eighty\"",
                          "EndpointSlice ns/a-1: endpoints[0].addresses[0]: \"not-an-ip\" is not an IP address"}));
}

TEST(ClusterStore, WaitChangesWakesOnAnotherThreadsChange) {
    ClusterStore store;
    int notified = 0;
    store.set_notify([&] { ++notified; });
    store.services_listed();
    store.slices_listed();
    std::thread feeder([&] {
        std::this_thread::sleep_for(100ms);
        store.apply_service(added(service("ns", "a", "1")));
    });
    const auto t0 = std::chrono::steady_clock::now();
    const auto keys = store.wait_changes(5s);
    feeder.join();
    EXPECT_EQ(keys, Keys{"ns/a"});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
    EXPECT_EQ(notified, 1);
}

TEST(ClusterWatch, SyncsFromTheApiServerOnlyWhenBothListsAreDone) {
    auto s = test::FakeApiServer::start();
    ASSERT_TRUE(s) << s.error().message;
    auto& server = **s;
    server.put(kServicesPath, service("ns", "web", "0"));
    server.put(kEndpointSlicesPath, slice("ns", "web-1", "web", "0", {"10.0.0.1"}));
    server.put(kEndpointSlicesPath, slice("ns", "web-2", "web", "0", {"10.0.0.2"}));
    server.control({{"cmd", "set"}, {"list_delay", {{kEndpointSlicesPath, 1}}}});
    auto client = ApiClient::create(server.config());
    ASSERT_TRUE(client) << client.error().message;
    ClusterStore store;
    ClusterWatch watch(*client, store);
    watch.start();
    ASSERT_TRUE(test::wait_until([&] { return watch.service_stats().lists == 1; }));
    EXPECT_FALSE(store.synced());  // the slice list is still running
    EXPECT_EQ(store.wait_changes(200ms), Keys{});
    EXPECT_EQ(store.wait_changes(5s), Keys{"ns/web"});
    EXPECT_TRUE(store.synced());
    EXPECT_EQ(store.get("ns/web").slices.size(), 2u);

    server.put(kEndpointSlicesPath, slice("ns", "web-2", "web", "0", {"10.0.0.2", "10.0.0.3"}));
    EXPECT_EQ(store.wait_changes(5s), Keys{"ns/web"});
    EXPECT_EQ(store.get("ns/web").slices[1].endpoints.size(), 2u);
    // A relist with identical state notifies nobody.
    server.control({{"cmd", "compact"}});
    server.control({{"cmd", "gone_watches"}});
    ASSERT_TRUE(test::wait_until([&] { return watch.slice_stats().lists == 2 && watch.service_stats().lists == 2; }));
    EXPECT_EQ(store.wait_changes(300ms), Keys{});
    const auto t0 = std::chrono::steady_clock::now();
    watch.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

}  // namespace
}  // namespace kxlb::k8s
