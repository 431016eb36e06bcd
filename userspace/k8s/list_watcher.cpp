// ListWatcher: list (paginated) → watch (from the list's resourceVersion) → relist on 410, with the
// per-key uid/resourceVersion memory that turns lists and replays into real changes only.
#include "k8s/list_watcher.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <optional>
#include <utility>

#include "k8s/objects.hpp"

namespace kxlb::k8s {
namespace {

constexpr int kMaxListRestarts = 3;

std::string url_escape(std::string_view s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 15]);
        }
    }
    return out;
}

// An HTTP error answer as an Error (the code says what kind for callers that look).
Error http_error(const std::string& what, const HttpResponse& r) {
    const int code = r.status == 401 || r.status == 403 ? EACCES
                     : r.status == 404                  ? ENOENT
                     : r.status == 410                  ? ESTALE
                     : r.status == 429                  ? EAGAIN
                                                        : EIO;
    return Error{code, what + ": " + r.describe()};
}

std::string rv_of(const nlohmann::json& obj) {
    if (!obj.is_object()) return "";
    const auto m = obj.find("metadata");
    if (m == obj.end() || !m->is_object()) return "";
    const auto rv = m->find("resourceVersion");
    return rv != m->end() && rv->is_string() ? rv->get<std::string>() : "";
}

}  // namespace

Backoff::Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max, std::uint64_t seed)
    : initial_(initial), max_(std::max(max, initial)), cur_(initial), rng_(seed) {}

std::chrono::milliseconds Backoff::next() {
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    const auto d =
        std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(cur_.count()) * jitter(rng_)));
    cur_ = std::min(cur_ * 2, max_);
    return std::min(d, max_);
}

const char* event_type_name(EventType t) {
    switch (t) {
        case EventType::Added: return "ADDED";
        case EventType::Modified: return "MODIFIED";
        case EventType::Deleted: return "DELETED";
    }
    return "?";
}

ListWatcher::ListWatcher(std::shared_ptr<const ApiClient> client, std::string path, ListWatchHandler handler,
                         ListWatchOptions opts)
    : client_(std::move(client)),
      path_(std::move(path)),
      handler_(std::move(handler)),
      opts_(opts),
      backoff_(opts.backoff_initial, opts.backoff_max) {}

ListWatcher::~ListWatcher() { stop(); }

void ListWatcher::start() {
    if (thread_.joinable() || stop_) return;
    thread_ = std::thread([this] { run(); });
}

void ListWatcher::stop() {
    {
        std::lock_guard lock(sleep_mu_);
        stop_ = true;
    }
    sleep_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

ListWatchStats ListWatcher::stats() const {
    std::lock_guard lock(stats_mu_);
    return stats_;
}

void ListWatcher::report(const Error& e) {
    if (handler_.on_error && !stop_) handler_.on_error(e);
}

void ListWatcher::sleep_for(std::chrono::milliseconds d) {
    std::unique_lock lock(sleep_mu_);
    sleep_cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

void ListWatcher::run() {
    bool need_list = true;
    while (!stop_) {
        if (need_list) {
            if (auto st = list(); !st) {
                if (stop_) break;
                with_stats([](ListWatchStats& s) { ++s.failures; });
                report(st.error());
                sleep_for(backoff_.next());
                continue;
            }
            need_list = false;
            backoff_.reset();
        }
        const auto started = std::chrono::steady_clock::now();
        const auto events_before = stats().events + stats().bookmarks;
        switch (watch()) {
            case WatchEnd::Stopped: return;
            case WatchEnd::Gone:
                with_stats([](ListWatchStats& s) { ++s.relists_gone; });
                need_list = true;
                break;
            case WatchEnd::Failed:
                with_stats([](ListWatchStats& s) { ++s.failures; });
                sleep_for(backoff_.next());
                break;
            case WatchEnd::Closed:
                // The server's timeoutSeconds ended the watch: re-watch at once. A server that closes
                // watches immediately without sending anything gets the backoff instead of a busy loop.
                if (stats().events + stats().bookmarks == events_before &&
                    std::chrono::steady_clock::now() - started < std::chrono::seconds(1))
                    sleep_for(backoff_.next());
                else backoff_.reset();
                break;
        }
    }
}

Status ListWatcher::list() {
    const std::string sep = path_.find('?') == std::string::npos ? "?" : "&";
    std::map<std::string, std::pair<nlohmann::json, Known>> items;
    std::string cont, rv;
    int restarts = 0;
    for (;;) {
        if (stop_) return Error{ECANCELED, "LIST " + path_ + ": stopped"};
        std::string url = path_ + sep + "limit=" + std::to_string(opts_.page_size);
        if (!cont.empty()) url += "&continue=" + url_escape(cont);
        auto r = client_->get(url, &stop_);
        if (!r) return r.error();
        if (r->status == 410 && !cont.empty()) {
            // The continue token expired (its snapshot was compacted): start the list over, a few
            // times at once, then with the caller's backoff.
            if (++restarts > kMaxListRestarts) return http_error("LIST " + url, *r);
            with_stats([](ListWatchStats& s) { ++s.list_restarts; });
            items.clear();
            cont.clear();
            continue;
        }
        if (r->status != 200) return http_error("LIST " + url, *r);
        const auto& body = r->body;
        const auto list_items = body.is_object() ? body.find("items") : body.end();
        const auto meta = body.is_object() ? body.find("metadata") : body.end();
        if (meta == body.end() || !meta->is_object() || !meta->contains("resourceVersion") ||
            !(*meta)["resourceVersion"].is_string() ||
            (list_items != body.end() && !list_items->is_array() && !list_items->is_null()))
            return Error{EBADMSG, "LIST " + url + ": not a list (items / metadata.resourceVersion missing)"};
        if (list_items != body.end() && list_items->is_array())
            for (const auto& item : *list_items) {
                auto m = parse_meta(item);
                if (!m) {
                    with_stats([](ListWatchStats& s) { ++s.bad_objects; });
                    report(Error::invalid("LIST " + path_ + ": skipping an item: " + m.error().message));
                    continue;
                }
                items[m->key()] = {item, Known{m->uid, m->resource_version}};
            }
        if (rv.empty()) rv = (*meta)["resourceVersion"].get<std::string>();
        const auto c = meta->find("continue");
        cont = c != meta->end() && c->is_string() ? c->get<std::string>() : "";
        if (cont.empty()) break;
    }

    // Deliver the difference to what the consumer already has.
    std::map<std::string, Known> now;
    std::uint64_t delivered = 0;
    for (auto& [key, item] : items) {
        auto& [obj, k] = item;
        const auto old = known_.find(key);
        if (old == known_.end() || old->second.uid != k.uid || old->second.resource_version != k.resource_version) {
            handler_.on_event(ObjectEvent{old == known_.end() ? EventType::Added : EventType::Modified, key, obj});
            ++delivered;
        }
        now.emplace(key, std::move(k));
    }
    for (const auto& [key, k] : known_)
        if (!now.contains(key)) {
            handler_.on_event(ObjectEvent{EventType::Deleted, key, nullptr});
            ++delivered;
        }
    known_ = std::move(now);
    rv_ = rv;
    with_stats([&](ListWatchStats& s) {
        ++s.lists;
        s.events += delivered;
        s.resource_version = rv;
    });
    if (handler_.on_listed) handler_.on_listed();
    return {};
}

bool ListWatcher::on_watch_line(std::string_view line, bool& gone, std::optional<Error>& failure) {
    const auto bad = [&](const std::string& why) {
        with_stats([](ListWatchStats& s) { ++s.bad_objects; });
        report(Error::invalid("WATCH " + path_ + ": skipping an event: " + why));
        return true;  // keep the stream: one bad object must not cost the others
    };
    auto ev = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (ev.is_discarded() || !ev.is_object()) return bad("not a JSON object");
    const auto type_it = ev.find("type");
    const auto obj_it = ev.find("object");
    if (type_it == ev.end() || !type_it->is_string() || obj_it == ev.end()) return bad("no type or object");
    const auto type = type_it->get<std::string>();
    const auto& obj = *obj_it;

    if (type == "ERROR") {
        HttpResponse status{0, obj,
                            obj.is_object() && obj.contains("message") && obj["message"].is_string()
                                ? obj["message"].get<std::string>()
                                : ""};
        status.status = status.status_code();
        if (status.status == 410) {
            gone = true;
        } else {
            failure = http_error("WATCH " + path_ + " ERROR event", status);
        }
        return false;
    }
    if (type == "BOOKMARK") {
        const auto rv = rv_of(obj);
        if (rv.empty()) return bad("BOOKMARK without metadata.resourceVersion");
        rv_ = rv;
        with_stats([&](ListWatchStats& s) {
            ++s.bookmarks;
            s.resource_version = rv;
        });
        return true;
    }
    if (type != "ADDED" && type != "MODIFIED" && type != "DELETED") return bad("unknown type \"" + type + "\"");
    auto m = parse_meta(obj);
    if (!m) {
        // Still advance past it when possible, so a re-watch does not replay it forever.
        if (const auto rv = rv_of(obj); !rv.empty()) rv_ = rv;
        return bad(m.error().message);
    }
    const auto key = m->key();
    std::optional<ObjectEvent> out;
    const auto old = known_.find(key);
    if (type == "DELETED") {
        if (old != known_.end()) {
            known_.erase(old);
            out = ObjectEvent{EventType::Deleted, key, obj};
        }
    } else if (old == known_.end()) {
        known_.emplace(key, Known{m->uid, m->resource_version});
        out = ObjectEvent{EventType::Added, key, obj};
    } else if (old->second.uid != m->uid || old->second.resource_version != m->resource_version) {
        old->second = Known{m->uid, m->resource_version};
        out = ObjectEvent{EventType::Modified, key, obj};
    }
    if (!m->resource_version.empty()) rv_ = m->resource_version;
    if (out) handler_.on_event(*out);
    with_stats([&](ListWatchStats& s) {
        s.events += out ? 1 : 0;
        s.resource_version = rv_;
    });
    return true;
}

ListWatcher::WatchEnd ListWatcher::watch() {
    const std::string sep = path_.find('?') == std::string::npos ? "?" : "&";
    std::uniform_int_distribution<std::int64_t> jitter(0, opts_.watch_timeout.count() / 4);
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    const auto timeout = opts_.watch_timeout.count() + jitter(rng);
    const std::string url = path_ + sep + "watch=1&allowWatchBookmarks=true&resourceVersion=" + url_escape(rv_) +
                            "&timeoutSeconds=" + std::to_string(timeout);
    with_stats([](ListWatchStats& s) { ++s.watches; });
    bool gone = false;
    std::optional<Error> failure;
    auto r = client_->stream(
        url, [&](std::string_view line) { return on_watch_line(line, gone, failure); }, &stop_);
    if (stop_) return WatchEnd::Stopped;
    if (gone) return WatchEnd::Gone;
    if (failure) {
        report(*failure);
        return WatchEnd::Failed;
    }
    if (!r) {
        report(r.error());
        return WatchEnd::Failed;
    }
    if (r->status == 410 || r->status_code() == 410) return WatchEnd::Gone;
    if (r->status != 200) {
        report(http_error("WATCH " + url, *r));
        return WatchEnd::Failed;
    }
    return WatchEnd::Closed;
}

}  // namespace kxlb::k8s
