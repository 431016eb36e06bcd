// The agent's single-threaded event loop: epoll fd readiness, one-shot timers and a thread-safe
// task queue (eventfd) on one thread. Everything the agent does after start-up (health probes,
// config reloads, signal handling via post()) runs as callbacks of one EventLoop, so no state
// needs a lock.
//
// Threading: every member except post() and stop() must be called on the loop's thread (the one
// calling run()/run_once()); other threads may call those two while the loop object is alive. Callbacks may
// add/modify/remove fds and add/cancel timers freely, including removing the fd or cancelling the timer being
// dispatched; a removed fd or cancelled timer is never called again, not even for events already collected in the same
// iteration. Callbacks should not throw: an exception escaping one is logged and swallowed so the loop survives, but
// the callback's own state may then be inconsistent.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "lib/result.hpp"
#include "lib/unique_fd.hpp"

namespace kxlb::agent {

class EventLoop {
public:
    using Clock = std::chrono::steady_clock;
    using TimePoint = Clock::time_point;
    using FdCallback = std::function<void(std::uint32_t revents)>;  // EPOLLIN/OUT/ERR/HUP... bits
    using TimerId = std::uint64_t;                                  // never 0

    // Creates the epoll instance and the wake-up eventfd.
    static Result<std::unique_ptr<EventLoop>> create();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Watches `fd` (not owned; must stay open until remove_fd) for `events` (EPOLLIN, EPOLLOUT, ...;
    // level-triggered unless EPOLLET is given). Fails if the fd is already watched or epoll refuses.
    Status add_fd(int fd, std::uint32_t events, FdCallback callback);
    // Changes the events of a watched fd; the callback stays.
    Status modify_fd(int fd, std::uint32_t events);
    // Stops watching `fd` and destroys its callback (deferred if it is running). Call it before
    // closing the fd. No-op for an fd that is not watched.
    void remove_fd(int fd);
    bool watching(int fd) const { return fds_.contains(fd); }

    // Runs `callback` once at `deadline` (or at the first iteration after it). Timers with equal
    // deadlines run in the order they were added. A timer added by a callback for a time already
    // past runs in the next iteration, never in the one that added it.
    TimerId add_timer(TimePoint deadline, std::function<void()> callback);
    TimerId add_timer(std::chrono::milliseconds delay, std::function<void()> callback) {
        return add_timer(now() + delay, std::move(callback));
    }
    // Returns false if the timer already ran or was cancelled (or the id is unknown).
    bool cancel_timer(TimerId id);

    // Thread-safe: queues `task` to run on the loop thread in the next iteration and wakes the loop.
    void post(std::function<void()> task);

    // One iteration: waits up to `max_wait` (less if a timer is due sooner; 0 if work is pending)
    // for fd readiness, then runs ready fd callbacks, due timers and posted tasks. Fails only if
    // epoll_wait fails (EINTR is not a failure).
    Status run_once(std::chrono::milliseconds max_wait);
    // Iterates until stop(); fails if an iteration fails. Clears the stop request when it returns.
    Status run();
    // Thread-safe: makes run() return after the current iteration.
    void stop();

    TimePoint now() const { return Clock::now(); }
    std::size_t fd_count() const { return fds_.size(); }
    std::size_t timer_count() const { return timers_.size(); }

private:
    struct FdEntry {
        std::uint32_t reg;  // registration id: stale epoll events for a re-added fd are dropped
        std::shared_ptr<FdCallback> callback;
    };

    EventLoop(UniqueFd epoll, UniqueFd wake) : epoll_(std::move(epoll)), wake_(std::move(wake)) {}
    void dispatch_fd(std::uint64_t tag, std::uint32_t revents);
    void run_due_timers();
    void run_posted();
    void wake();

    static constexpr std::uint64_t kWakeTag = 0;  // epoll tag of wake_; fd tags are reg << 32 | fd

    UniqueFd epoll_;
    UniqueFd wake_;               // eventfd: post()/stop() from any thread
    std::uint32_t next_reg_ = 1;  // never 0
    std::unordered_map<int, FdEntry> fds_;

    TimerId next_timer_ = 1;
    std::map<std::pair<TimePoint, TimerId>, std::function<void()>> timers_;
    std::unordered_map<TimerId, TimePoint> timer_deadlines_;

    std::mutex posted_mu_;
    std::vector<std::function<void()>> posted_;  // guarded by posted_mu_
    std::atomic<bool> stop_{false};
};

}  // namespace kxlb::agent
