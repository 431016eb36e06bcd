// ClusterStore: typed objects by key, the service→slices index, the synced gate and the dirty set.
#include "k8s/cluster_store.hpp"

#include <utility>

namespace kxlb::k8s {
namespace {

// Equal apart from resourceVersion (which changes on every write, also for status-only updates).
template <typename T>
bool same_content(T a, T b) {
    a.meta.resource_version.clear();
    b.meta.resource_version.clear();
    return a == b;
}

ListWatchHandler with_error(ListWatchHandler h, const std::function<void(const Error&)>& on_error) {
    if (on_error) h.on_error = on_error;
    return h;
}

}  // namespace

ClusterStore::ClusterStore(std::function<void(const Error&)> on_error) : on_error_(std::move(on_error)) {}

void ClusterStore::set_notify(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    notify_ = std::move(fn);
}

void ClusterStore::mark(const std::string& service_key) {
    if (!service_key.empty()) dirty_.insert(service_key);
}

void ClusterStore::after_change(std::unique_lock<std::mutex>& lock, const std::optional<Error>& err) {
    const bool wake = services_listed_ && slices_listed_ && !dirty_.empty();
    auto notify = wake ? notify_ : nullptr;
    lock.unlock();
    if (err && on_error_) on_error_(*err);
    if (wake) {
        cv_.notify_all();
        if (notify) notify();
    }
}

void ClusterStore::apply_service(const ObjectEvent& ev) {
    std::optional<Error> err;
    std::unique_lock lock(mu_);
    if (ev.type == EventType::Deleted) {
        if (services_.erase(ev.key) > 0) mark(ev.key);
    } else if (auto svc = parse_service(ev.object); !svc) {
        ++stats_.invalid_services;
        err = svc.error();
    } else {
        auto it = services_.find(ev.key);
        if (it == services_.end() || !same_content(it->second, *svc)) mark(ev.key);
        services_.insert_or_assign(ev.key, std::move(svc).value());
    }
    stats_.services = services_.size();
    after_change(lock, err);
}

void ClusterStore::apply_slice(const ObjectEvent& ev) {
    std::optional<Error> err;
    std::unique_lock lock(mu_);
    const auto old = slices_.find(ev.key);
    const auto forget_old = [&] {
        const auto svc = old->second.service_key();
        mark(svc);
        if (svc.empty()) {
            --stats_.slices_without_service;
        } else if (auto idx = slices_by_service.find(svc); idx != slices_by_service.end()) {
            idx->second.erase(ev.key);
            if (idx->second.empty()) slices_by_service.erase(idx);
        }
        slices_.erase(old);
    };
    if (ev.type == EventType::Deleted) {
        if (old != slices_.end()) forget_old();
    } else if (auto es = parse_endpoint_slice(ev.object); !es) {
        ++stats_.invalid_slices;
        err = es.error();
    } else if (old != slices_.end() && same_content(old->second, *es)) {
        old->second.meta.resource_version = es->meta.resource_version;
    } else {
        if (old != slices_.end()) forget_old();
        const auto svc = es->service_key();
        mark(svc);
        if (svc.empty()) ++stats_.slices_without_service;
        else slices_by_service[svc].insert(ev.key);
        slices_.emplace(ev.key, std::move(es).value());
    }
    stats_.slices = slices_.size();
    after_change(lock, err);
}

std::vector<std::string> ClusterStore::keys_locked() const {
    std::set<std::string> keys;
    for (const auto& [k, s] : services_) keys.insert(k);
    for (const auto& [k, s] : slices_by_service) keys.insert(k);
    return {keys.begin(), keys.end()};
}

void ClusterStore::listed(bool& flag) {
    std::unique_lock lock(mu_);
    const bool was_synced = services_listed_ && slices_listed_;
    flag = true;
    if (!was_synced && services_listed_ && slices_listed_)
        for (const auto& k : keys_locked()) mark(k);  // the first batch: everything
    after_change(lock, std::nullopt);
}

void ClusterStore::services_listed() { listed(services_listed_); }
void ClusterStore::slices_listed() { listed(slices_listed_); }

ListWatchHandler ClusterStore::service_handler() {
    return {[this](const ObjectEvent& ev) { apply_service(ev); }, [this] { services_listed(); }, on_error_};
}

ListWatchHandler ClusterStore::slice_handler() {
    return {[this](const ObjectEvent& ev) { apply_slice(ev); }, [this] { slices_listed(); }, on_error_};
}

bool ClusterStore::synced() const {
    std::lock_guard lock(mu_);
    return services_listed_ && slices_listed_;
}

std::vector<std::string> ClusterStore::wait_changes(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    const auto ready = [this] { return services_listed_ && slices_listed_ && !dirty_.empty(); };
    if (!cv_.wait_for(lock, timeout, ready)) return {};
    std::vector<std::string> out(dirty_.begin(), dirty_.end());
    dirty_.clear();
    return out;
}

ServiceState ClusterStore::get(const std::string& service_key) const {
    std::lock_guard lock(mu_);
    ServiceState st;
    if (auto it = services_.find(service_key); it != services_.end()) st.service = it->second;
    if (auto idx = slices_by_service.find(service_key); idx != slices_by_service.end())
        for (const auto& slice_key : idx->second) st.slices.push_back(slices_.at(slice_key));
    return st;
}

std::vector<std::string> ClusterStore::service_keys() const {
    std::lock_guard lock(mu_);
    return keys_locked();
}

ClusterStoreStats ClusterStore::stats() const {
    std::lock_guard lock(mu_);
    return stats_;
}

ClusterWatch::ClusterWatch(std::shared_ptr<const ApiClient> client, ClusterStore& store, ListWatchOptions opts,
                           std::function<void(const Error&)> on_error)
    : services_(client, kServicesPath, with_error(store.service_handler(), on_error), opts),
      slices_(client, kEndpointSlicesPath, with_error(store.slice_handler(), on_error), opts) {}

void ClusterWatch::start() {
    services_.start();
    slices_.start();
}

void ClusterWatch::stop() {
    services_.stop();
    slices_.stop();
}

}  // namespace kxlb::k8s
