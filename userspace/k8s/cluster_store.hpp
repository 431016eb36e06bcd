// The cluster state kxlb programs from: current Services and EndpointSlices, whether the initial
// lists of both are complete (synced), and which services changed since the consumer last looked.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "k8s/list_watcher.hpp"
#include "k8s/objects.hpp"

namespace kxlb::k8s {

inline constexpr const char* kServicesPath = "/api/v1/services";
inline constexpr const char* kEndpointSlicesPath = "/apis/discovery.k8s.io/v1/endpointslices";

// Everything known about one service ("ns/name").
struct ServiceState {
    std::optional<Service> service;     // absent: no (valid) Service object with this key
    std::vector<EndpointSlice> slices;  // slices labelled kubernetes.io/service-name=name, sorted by name
};

struct ClusterStoreStats {
    std::uint64_t invalid_services = 0;  // Service objects that did not parse (the previous version is kept)
    std::uint64_t invalid_slices = 0;    // EndpointSlices that did not parse (the previous version is kept)
    std::size_t services = 0;
    std::size_t slices = 0;
    std::size_t slices_without_service = 0;  // slices without the kubernetes.io/service-name label
};

// Thread-safe. Fed by two ListWatchers (service_handler(), slice_handler()); read by the consumer.
// Nothing is handed out before synced(): a restarting node must not replace good backends with a
// partial set. A malformed object is counted and reported; the last valid version of it (if any) stays.
class ClusterStore {
public:
    // on_error: malformed objects (optional; called with the store's lock not held).
    explicit ClusterStore(std::function<void(const Error&)> on_error = nullptr);

    // Feeding, from the watcher threads.
    void apply_service(const ObjectEvent& ev);
    void apply_slice(const ObjectEvent& ev);
    void services_listed();
    void slices_listed();
    ListWatchHandler service_handler();  // on_event/on_listed bound to this store; on_error forwarded
    ListWatchHandler slice_handler();

    // True once the initial lists of both Services and EndpointSlices completed; stays true.
    bool synced() const;
    // Blocks until synced and some service changed since the last call, or `timeout` passed. Returns the
    // keys ("ns/name", sorted) of the services whose Service or any of whose slices changed in content
    // (a new resourceVersion alone is no change), and forgets them. The first batch after sync names
    // every service known. Empty on timeout.
    std::vector<std::string> wait_changes(std::chrono::milliseconds timeout);
    // Called after each change that makes wait_changes() return (e.g. to wake an event loop). Set it
    // before the watchers start; it runs on a watcher thread without the store's lock.
    void set_notify(std::function<void()> fn);

    ServiceState get(const std::string& service_key) const;
    std::vector<std::string> service_keys() const;  // services and services named by slices, sorted
    ClusterStoreStats stats() const;

private:
    void mark(const std::string& service_key);  // lock held
    std::vector<std::string> keys_locked() const;
    void listed(bool& flag);
    void after_change(std::unique_lock<std::mutex>& lock, const std::optional<Error>& err);

    std::function<void(const Error&)> on_error_;
    std::function<void()> notify_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::map<std::string, Service> services_;
    std::map<std::string, EndpointSlice> slices_;                    // by slice key
    std::map<std::string, std::set<std::string>> slices_by_service;  // service key -> slice keys
    std::set<std::string> dirty_;
    bool services_listed_ = false;
    bool slices_listed_ = false;
    ClusterStoreStats stats_;
};

// Lists and watches Services and EndpointSlices of the whole cluster into a ClusterStore (which must
// outlive it). on_error receives the watchers' recoverable problems (the store's own go to its callback).
class ClusterWatch {
public:
    ClusterWatch(std::shared_ptr<const ApiClient> client, ClusterStore& store, ListWatchOptions opts = {},
                 std::function<void(const Error&)> on_error = nullptr);
    void start();
    void stop();  // returns within ~100 ms
    ListWatchStats service_stats() const { return services_.stats(); }
    ListWatchStats slice_stats() const { return slices_.stats(); }

private:
    ListWatcher services_;
    ListWatcher slices_;
};

}  // namespace kxlb::k8s
