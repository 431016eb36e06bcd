// ListWatcher against the fake apiserver: pagination, watch events, bookmarks, 410 Gone (event,
// HTTP status and expired continue tokens) with relists that deliver only real changes, dropped and
// stalled connections, malformed lines, token rotation, TLS failure and prompt stop.
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "k8s/cluster_store.hpp"
#include "k8s/fake_apiserver.hpp"
#include "k8s/list_watcher.hpp"

namespace kxlb::k8s {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using test::wait_until;

json svc(const std::string& name, int port = 80) {
    return {{"metadata", {{"name", name}, {"namespace", "ns"}}},
            {"spec", {{"clusterIP", "10.96.0.1"}, {"ports", {{{"port", port}}}}}}};
}

// Collects what the watcher delivers (thread-safe).
class Recorder {
public:
    ListWatchHandler handler() {
        return {[this](const ObjectEvent& ev) {
                    std::lock_guard lock(mu_);
                    events_.push_back(std::string(event_type_name(ev.type)) + " " + ev.key +
                                      (ev.object.is_null() ? " (no object)" : ""));
                },
                [this] {
                    std::lock_guard lock(mu_);
                    ++listed_;
                },
                [this](const Error& e) {
                    std::lock_guard lock(mu_);
                    errors_.push_back(e);
                }};
    }
    std::vector<std::string> events() {
        std::lock_guard lock(mu_);
        return events_;
    }
    std::size_t count() { return events().size(); }
    int listed() {
        std::lock_guard lock(mu_);
        return listed_;
    }
    std::vector<Error> errors() {
        std::lock_guard lock(mu_);
        return errors_;
    }

private:
    std::mutex mu_;
    std::vector<std::string> events_;
    int listed_ = 0;
    std::vector<Error> errors_;
};

class ListWatcherTest : public test::FakeApiServerTest {
protected:
    void SetUp() override {
        FakeApiServerTest::SetUp();
        opts_.backoff_initial = 50ms;
        opts_.backoff_max = 500ms;
    }
    void TearDown() override {
        if (watcher_) watcher_->stop();
    }
    // Starts a watcher on /api/v1/services and waits for its first list.
    void start(KubeConfig cfg, ApiClientOptions client_opts = {}, bool wait_listed = true) {
        auto c = client(std::move(cfg), client_opts);
        ASSERT_TRUE(c);
        watcher_ = std::make_unique<ListWatcher>(c, kServicesPath, rec_.handler(), opts_);
        watcher_->start();
        if (wait_listed) {
            ASSERT_TRUE(wait_until([&] { return rec_.listed() == 1; })) << errors();
        }
    }
    void start() { start(server_->config()); }
    bool watching() {
        return wait_until([&] { return server_->active_watches(kServicesPath) == 1; });
    }
    std::string errors() {
        std::string s;
        for (const auto& e : rec_.errors()) s += e.message + "\n";
        return s;
    }
    // The requests of the given kind ("list" or "watch") the server received, in order.
    std::vector<json> requests(const std::string& kind) {
        std::vector<json> out;
        for (const auto& r : server_->requests())
            if ((r["query"].contains("watch") ? "watch" : "list") == kind) out.push_back(r);
        return out;
    }

    ListWatchOptions opts_;
    Recorder rec_;
    std::unique_ptr<ListWatcher> watcher_;
};

TEST_F(ListWatcherTest, PaginatedListThenWatchEvents) {
    for (const char* n : {"a", "b", "c", "d", "e", "f", "g"}) server_->put(kServicesPath, svc(n));
    opts_.page_size = 3;
    start();
    EXPECT_EQ(rec_.events(), (std::vector<std::string>{"ADDED ns/a", "ADDED ns/b", "ADDED ns/c", "ADDED ns/d",
                                                       "ADDED ns/e", "ADDED ns/f", "ADDED ns/g"}));
    const auto lists = requests("list");
    ASSERT_EQ(lists.size(), 3u);
    EXPECT_EQ(lists[0]["query"]["limit"], "3");
    EXPECT_FALSE(lists[0]["query"].contains("continue"));
    EXPECT_TRUE(lists[1]["query"].contains("continue"));
    EXPECT_TRUE(lists[2]["query"].contains("continue"));

    ASSERT_TRUE(watching());
    const auto w = requests("watch");
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(w[0]["query"]["resourceVersion"], "1007");  // the list's resourceVersion
    EXPECT_EQ(w[0]["query"]["allowWatchBookmarks"], "true");
    EXPECT_GE(std::stoi(w[0]["query"]["timeoutSeconds"].get<std::string>()), 300);

    server_->put(kServicesPath, svc("h"));
    server_->put(kServicesPath, svc("a", 81));
    server_->remove(kServicesPath, "ns", "b");
    ASSERT_TRUE(wait_until([&] { return rec_.count() == 10; })) << errors();
    const auto ev = rec_.events();
    EXPECT_EQ(std::vector<std::string>(ev.begin() + 7, ev.end()),
              (std::vector<std::string>{"ADDED ns/h", "MODIFIED ns/a", "DELETED ns/b"}));
    const auto st = watcher_->stats();
    EXPECT_EQ(st.lists, 1u);
    EXPECT_EQ(st.events, 10u);
    EXPECT_EQ(st.failures, 0u);
    EXPECT_EQ(st.resource_version, "1010");
    EXPECT_EQ(rec_.listed(), 1);
}

TEST_F(ListWatcherTest, BookmarkAdvancesResourceVersion) {
    server_->put(kServicesPath, svc("a"));
    start();
    ASSERT_TRUE(watching());
    // Changes elsewhere move the global resourceVersion; a bookmark tells this watch about it.
    server_->put(kEndpointSlicesPath, {{"metadata", {{"name", "x"}, {"namespace", "ns"}}}, {"addressType", "IPv4"}});
    server_->put(kEndpointSlicesPath, {{"metadata", {{"name", "y"}, {"namespace", "ns"}}}, {"addressType", "IPv4"}});
    server_->control({{"cmd", "bookmark"}});
    ASSERT_TRUE(wait_until([&] { return watcher_->stats().bookmarks == 1; }));
    EXPECT_EQ(watcher_->stats().resource_version, "1003");
    // A re-watch continues from the bookmark.
    server_->control({{"cmd", "drop_watches"}});
    ASSERT_TRUE(wait_until([&] { return requests("watch").size() == 2; }));
    EXPECT_EQ(requests("watch")[1]["query"]["resourceVersion"], "1003");
    EXPECT_EQ(rec_.count(), 1u);
}

TEST_F(ListWatcherTest, GoneEventRelistsWithoutDuplicateNotifications) {
    for (const char* n : {"a", "b", "c"}) server_->put(kServicesPath, svc(n));
    start();
    ASSERT_TRUE(watching());
    server_->control({{"cmd", "compact"}});
    server_->control({{"cmd", "gone_watches"}});
    ASSERT_TRUE(wait_until([&] { return rec_.listed() == 2; })) << errors();
    const auto st = watcher_->stats();
    EXPECT_EQ(st.relists_gone, 1u);
    EXPECT_EQ(st.lists, 2u);
    EXPECT_EQ(st.events, 3u);  // the relist found the same objects: nothing new
    EXPECT_EQ(rec_.count(), 3u);
    ASSERT_TRUE(wait_until([&] { return requests("watch").size() == 2; }));
    EXPECT_EQ(requests("watch")[1]["query"]["resourceVersion"], "1003");
}

TEST_F(ListWatcherTest, HttpGoneRelistsAndDeliversOnlyTheDifference) {
    for (const char* n : {"a", "b", "c"}) server_->put(kServicesPath, svc(n));
    start();
    ASSERT_TRUE(watching());
    server_->control({{"cmd", "set"}, {"gone_mode", "http"}});
    server_->control({{"cmd", "stall_watches"}});  // the watch misses these changes ...
    server_->put(kServicesPath, svc("b", 8080));
    server_->remove(kServicesPath, "ns", "c");
    server_->put(kServicesPath, svc("d"));
    server_->control({{"cmd", "compact"}});       // ... and they are compacted away
    server_->control({{"cmd", "drop_watches"}});  // the re-watch from 1003 gets HTTP 410
    ASSERT_TRUE(wait_until([&] { return rec_.listed() == 2; })) << errors();
    const auto ev = rec_.events();
    ASSERT_EQ(ev.size(), 6u);
    EXPECT_EQ(std::vector<std::string>(ev.begin() + 3, ev.end()),
              (std::vector<std::string>{"MODIFIED ns/b", "ADDED ns/d", "DELETED ns/c (no object)"}));
    EXPECT_EQ(watcher_->stats().relists_gone, 1u);
    EXPECT_EQ(watcher_->stats().resource_version, "1006");
}

TEST_F(ListWatcherTest, ExpiredContinueTokenRestartsTheList) {
    for (const char* n : {"a", "b", "c", "d", "e"}) server_->put(kServicesPath, svc(n));
    server_->control({{"cmd", "set"}, {"expire_continue", 1}});
    opts_.page_size = 2;
    start();
    EXPECT_EQ(rec_.count(), 5u);
    const auto st = watcher_->stats();
    EXPECT_EQ(st.list_restarts, 1u);
    EXPECT_EQ(st.lists, 1u);
    EXPECT_EQ(requests("list").size(), 5u);  // page 1, expired page 2, then pages 1-3
}

TEST_F(ListWatcherTest, DroppedConnectionReconnectsFromLastResourceVersion) {
    server_->put(kServicesPath, svc("a"));
    start();
    ASSERT_TRUE(watching());
    server_->put(kServicesPath, svc("b"));
    ASSERT_TRUE(wait_until([&] { return rec_.count() == 2; }));
    server_->control({{"cmd", "drop_watches"}});
    ASSERT_TRUE(wait_until([&] { return requests("watch").size() == 2; })) << errors();
    EXPECT_EQ(requests("watch")[1]["query"]["resourceVersion"], "1002");
    server_->put(kServicesPath, svc("c"));
    ASSERT_TRUE(wait_until([&] { return rec_.count() == 3; })) << errors();
    EXPECT_EQ(rec_.events().back(), "ADDED ns/c");
    const auto st = watcher_->stats();
    EXPECT_EQ(st.failures, 1u);
    EXPECT_EQ(st.lists, 1u);  // no relist needed
    ASSERT_FALSE(rec_.errors().empty());
    EXPECT_EQ(rec_.errors()[0].code, ECONNRESET) << errors();
}

TEST_F(ListWatcherTest, StalledConnectionReconnectsAfterTheStallTimeout) {
    ApiClientOptions copts;
    copts.stall_timeout = 1s;
    start(server_->config(), copts);
    ASSERT_TRUE(watching());
    server_->control({{"cmd", "stall_watches"}});
    const auto t0 = std::chrono::steady_clock::now();
    server_->put(kServicesPath, svc("a"));
    ASSERT_TRUE(wait_until([&] { return rec_.count() == 1; })) << errors();
    const auto took = std::chrono::steady_clock::now() - t0;
    EXPECT_GE(took, 900ms);  // only the new connection delivers it
    EXPECT_LT(took, 3s);
    EXPECT_EQ(watcher_->stats().failures, 1u);
    ASSERT_FALSE(rec_.errors().empty());
    EXPECT_EQ(rec_.errors()[0].code, ETIMEDOUT) << errors();
}

TEST_F(ListWatcherTest, MalformedLinesAreSkippedAndTheStreamContinues) {
    start();
    ASSERT_TRUE(watching());
    for (const char* line : {"this is not json", R"({"type": "ADDED", "object": {"metadata": {"namespace": "ns"}}})",
                             R"({"type": "SURPRISE", "object": {}})", R"([1, 2])"})
        server_->control({{"cmd", "inject"}, {"path", kServicesPath}, {"line", line}});
    server_->put(kServicesPath, svc("ok"));
    ASSERT_TRUE(wait_until([&] { return rec_.count() == 1; })) << errors();
    EXPECT_EQ(rec_.events()[0], "ADDED ns/ok");
    const auto st = watcher_->stats();
    EXPECT_EQ(st.bad_objects, 4u);
    EXPECT_EQ(st.failures, 0u);
    EXPECT_EQ(st.watches, 1u);
    EXPECT_EQ(rec_.errors().size(), 4u);
}

TEST_F(ListWatcherTest, ErrorEventRewatchesWithBackoff) {
    start();
    ASSERT_TRUE(watching());
    server_->control({{"cmd", "inject"},
                      {"path", kServicesPath},
                      {"line", R"({"type": "ERROR", "object": {"kind": "Status", "code": 500, "message": "etcd"}})"}});
    ASSERT_TRUE(wait_until([&] { return watcher_->stats().watches == 2; }));
    EXPECT_EQ(watcher_->stats().failures, 1u);
    EXPECT_EQ(watcher_->stats().lists, 1u);
    ASSERT_EQ(rec_.errors().size(), 1u);
    EXPECT_EQ(rec_.errors()[0].message, "WATCH /api/v1/services ERROR event: HTTP 500: etcd");
}

TEST_F(ListWatcherTest, RotatedTokenIsUsedAfterA401) {
    start(token_file_config("token-1"));
    ASSERT_TRUE(watching());
    rotate_token("token-2");
    server_->control({{"cmd", "drop_watches"}});
    server_->put(kServicesPath, svc("a"));
    ASSERT_TRUE(wait_until([&] { return rec_.count() == 1; })) << errors();
    const auto w = requests("watch");
    ASSERT_EQ(w.size(), 3u);
    EXPECT_EQ(w[0]["token"], "token-1");
    EXPECT_EQ(w[1]["token"], "token-1");        // rejected with 401 ...
    EXPECT_EQ(w[2]["token"], "token-2");        // ... the file is re-read
    EXPECT_EQ(watcher_->stats().failures, 1u);  // only the drop
}

TEST_F(ListWatcherTest, WrongCaIsAnErrorAndNothingIsListed) {
    auto cfg = server_->config();
    cfg.ca_pem = test::read_text(server_->file("other-ca.crt"));
    start(cfg, {}, /*wait_listed=*/false);
    ASSERT_TRUE(wait_until([&] { return rec_.errors().size() >= 2; }));
    EXPECT_EQ(rec_.errors()[0].code, EPROTO) << errors();
    EXPECT_EQ(rec_.listed(), 0);
    EXPECT_TRUE(server_->requests().empty());
}

TEST_F(ListWatcherTest, UnauthorizedListIsRetriedWithBackoff) {
    start(server_->config("bad"), {}, /*wait_listed=*/false);
    ASSERT_TRUE(wait_until([&] { return watcher_->stats().failures >= 3; }));
    EXPECT_EQ(rec_.errors()[0].code, EACCES);
    EXPECT_EQ(rec_.errors()[0].message, "LIST /api/v1/services?limit=500: HTTP 401: Unauthorized");
    server_->control({{"cmd", "set"}, {"tokens", {"bad"}}});
    ASSERT_TRUE(wait_until([&] { return rec_.listed() == 1; }, 3s)) << errors();
}

TEST_F(ListWatcherTest, StopIsPromptWhileWatching) {
    start();
    ASSERT_TRUE(watching());
    const auto t0 = std::chrono::steady_clock::now();
    watcher_->stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST_F(ListWatcherTest, StopIsPromptDuringASlowList) {
    server_->control({{"cmd", "set"}, {"list_delay", {{kServicesPath, 10}}}});
    start(server_->config(), {}, /*wait_listed=*/false);
    ASSERT_TRUE(wait_until([&] { return requests("list").size() == 1; }));
    const auto t0 = std::chrono::steady_clock::now();
    watcher_->stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
    EXPECT_EQ(rec_.listed(), 0);
}

TEST_F(ListWatcherTest, StopIsPromptDuringBackoff) {
    opts_.backoff_initial = 20s;
    opts_.backoff_max = 30s;
    start(server_->config("bad"), {}, /*wait_listed=*/false);
    ASSERT_TRUE(wait_until([&] { return watcher_->stats().failures == 1; }));
    const auto t0 = std::chrono::steady_clock::now();
    watcher_->stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST(Backoff, ExponentialJitteredAndCapped) {
    Backoff b(200ms, 30s, 42);
    std::vector<std::chrono::milliseconds> seen;
    for (int i = 0; i < 12; ++i) seen.push_back(b.next());
    for (int i = 0; i < 8; ++i) {
        const auto base = 200ms * (1 << i);
        EXPECT_GE(seen[i], base * 8 / 10) << i;
        EXPECT_LE(seen[i], std::min<std::chrono::milliseconds>(base * 12 / 10, 30s)) << i;
    }
    EXPECT_LE(seen[11], 30s);
    EXPECT_GE(seen[11], 24s);
    b.reset();
    EXPECT_LE(b.next(), 240ms);
}

}  // namespace
}  // namespace kxlb::k8s
