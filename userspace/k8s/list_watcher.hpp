// The list/watch engine for one resource collection: a paginated list, then a watch from the list's
// resourceVersion with bookmarks, relisting on 410 Gone and re-watching with jittered backoff after
// dropped or stalled connections, delivering only real changes to the consumer.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>

#include "k8s/api_client.hpp"
#include "lib/result.hpp"

namespace kxlb::k8s {

// Jittered exponential backoff: next() returns initial, 2×initial, … capped at max, each scaled by a
// random factor in [0.8, 1.2] (and never above max). reset() starts over. Not thread-safe.
class Backoff {
public:
    Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max,
            std::uint64_t seed = std::random_device{}());
    std::chrono::milliseconds next();
    void reset() { cur_ = initial_; }

private:
    std::chrono::milliseconds initial_, max_, cur_;
    std::mt19937_64 rng_;
};

enum class EventType { Added, Modified, Deleted };
const char* event_type_name(EventType t);  // "ADDED", "MODIFIED", "DELETED"

// One change of one object. The ListWatcher normalises watch and list results: Added for a key it
// did not have, Modified for a key it had with another uid or resourceVersion, Deleted for a key it
// had that is gone (object: the final state from a watch, null when a relist found it missing).
struct ObjectEvent {
    EventType type = EventType::Added;
    std::string key;  // "namespace/name" (or "name" for cluster-scoped objects)
    nlohmann::json object;
};

// The consumer. Called on the watcher's thread, one call at a time; keep them short (no blocking).
struct ListWatchHandler {
    std::function<void(const ObjectEvent&)> on_event;  // required
    // After every complete (re)list, once its changes were delivered through on_event. The first call
    // means the consumer holds the full collection.
    std::function<void()> on_listed;
    // A problem the engine recovered from (failed request, dropped watch, malformed object); for logs
    // and counters. Optional.
    std::function<void(const Error&)> on_error;
};

struct ListWatchOptions {
    std::size_t page_size = 500;              // list `limit`
    std::chrono::seconds watch_timeout{300};  // `timeoutSeconds` of a watch, +0..25 % jitter
    std::chrono::milliseconds backoff_initial{200};
    std::chrono::milliseconds backoff_max{30000};
};

struct ListWatchStats {
    std::uint64_t lists = 0;          // complete (re)lists
    std::uint64_t list_restarts = 0;  // paginated lists restarted because a continue token expired (410)
    std::uint64_t relists_gone = 0;   // relists because the watch's resourceVersion was too old (410)
    std::uint64_t watches = 0;        // watch requests sent
    std::uint64_t failures = 0;       // failed lists/watches (dropped, stalled, HTTP errors), each retried with backoff
    std::uint64_t events = 0;         // ObjectEvents delivered
    std::uint64_t bookmarks = 0;
    std::uint64_t bad_objects = 0;  // watch lines or list items that could not be used (skipped)
    std::string resource_version;   // the last one seen (list, event or bookmark)
};

// Lists and watches one collection ("/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices",
// optionally with a query such as "?labelSelector=..."). Objects are remembered by key with uid and
// resourceVersion only, so a relist or a replayed watch event with nothing new yields no event.
class ListWatcher {
public:
    ListWatcher(std::shared_ptr<const ApiClient> client, std::string path, ListWatchHandler handler,
                ListWatchOptions opts = {});
    ~ListWatcher();  // stop()
    ListWatcher(const ListWatcher&) = delete;
    ListWatcher& operator=(const ListWatcher&) = delete;

    // Starts the thread (once). It runs until stop(), retrying every failure.
    void start();
    // Stops the thread and waits for it: an in-flight request is abandoned within ~50 ms. Idempotent.
    // No handler call happens after stop() returns.
    void stop();
    ListWatchStats stats() const;
    const std::string& path() const { return path_; }

private:
    enum class WatchEnd { Closed, Gone, Failed, Stopped };
    struct Known {
        std::string uid;
        std::string resource_version;
    };

    void run();
    Status list();  // also delivers the diff and on_listed
    WatchEnd watch();
    bool on_watch_line(std::string_view line, bool& gone, std::optional<Error>& failure);
    void report(const Error& e);
    void sleep_for(std::chrono::milliseconds d);
    template <typename F>
    void with_stats(F&& f) {
        std::lock_guard lock(stats_mu_);
        f(stats_);
    }

    const std::shared_ptr<const ApiClient> client_;
    const std::string path_;
    const ListWatchHandler handler_;
    const ListWatchOptions opts_;

    std::map<std::string, Known> known_;  // watcher thread only
    std::string rv_;                      // watcher thread only
    Backoff backoff_;

    std::atomic<bool> stop_{false};
    std::mutex sleep_mu_;
    std::condition_variable sleep_cv_;
    mutable std::mutex stats_mu_;
    ListWatchStats stats_;
    std::thread thread_;
};

}  // namespace kxlb::k8s
