// EventLoop: epoll + eventfd + an ordered timer map (see event_loop.hpp for the contracts).
#include "agent/event_loop.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <exception>
#include <string>

namespace kxlb::agent {

namespace {

std::uint64_t fd_tag(std::uint32_t reg, int fd) {
    return (static_cast<std::uint64_t>(reg) << 32) | static_cast<std::uint32_t>(fd);
}

// Runs a callback; an exception must not unwind through epoll dispatch (it would skip the rest of
// the iteration and leave the caller of run() with a half-dispatched batch).
template <typename F>
void invoke_guarded(const char* what, F&& f) {
    try {
        std::forward<F>(f)();
    } catch (const std::exception& e) {
        spdlog::error("event loop: {} callback threw: {}", what, e.what());
    } catch (...) {
        spdlog::error("event loop: {} callback threw a non-standard exception", what);
    }
}

}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
    UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep.valid()) return Error::from_errno(errno, "epoll_create1");
    UniqueFd wake(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake.valid()) return Error::from_errno(errno, "eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeTag;
    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, wake.get(), &ev) != 0)
        return Error::from_errno(errno, "epoll_ctl add eventfd");
    return std::unique_ptr<EventLoop>(new EventLoop(std::move(ep), std::move(wake)));
}

EventLoop::~EventLoop() = default;

Status EventLoop::add_fd(int fd, std::uint32_t events, FdCallback callback) {
    if (fd < 0) return Error{EBADF, "event loop: add_fd: invalid fd " + std::to_string(fd)};
    if (fds_.contains(fd)) return Error{EEXIST, "event loop: fd " + std::to_string(fd) + " is already watched"};
    std::uint32_t reg = next_reg_++;
    if (next_reg_ == 0) next_reg_ = 1;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = fd_tag(reg, fd);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
        return Error::from_errno(errno, "epoll_ctl add fd " + std::to_string(fd));
    }
    fds_.emplace(fd, FdEntry{reg, std::make_shared<FdCallback>(std::move(callback))});
    return {};
}

Status EventLoop::modify_fd(int fd, std::uint32_t events) {
    auto it = fds_.find(fd);
    if (it == fds_.end()) return Error{ENOENT, "event loop: fd " + std::to_string(fd) + " is not watched"};
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = fd_tag(it->second.reg, fd);
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
        return Error::from_errno(errno, "epoll_ctl mod fd " + std::to_string(fd));
    }
    return {};
}

void EventLoop::remove_fd(int fd) {
    auto it = fds_.find(fd);
    if (it == fds_.end()) return;
    // Fails only if the fd was already closed, which removed it from the epoll set anyway.
    (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    fds_.erase(it);  // a running callback is kept alive by dispatch_fd's copy of the shared_ptr
}

EventLoop::TimerId EventLoop::add_timer(TimePoint deadline, std::function<void()> callback) {
    TimerId id = next_timer_++;
    timers_.emplace(std::make_pair(deadline, id), std::move(callback));
    timer_deadlines_.emplace(id, deadline);
    return id;
}

bool EventLoop::cancel_timer(TimerId id) {
    auto it = timer_deadlines_.find(id);
    if (it == timer_deadlines_.end()) return false;
    timers_.erase(std::make_pair(it->second, id));
    timer_deadlines_.erase(it);
    return true;
}

void EventLoop::post(std::function<void()> task) {
    {
        std::lock_guard lock(posted_mu_);
        posted_.push_back(std::move(task));
    }
    wake();
}

void EventLoop::stop() {
    stop_.store(true);
    wake();
}

void EventLoop::wake() {
    std::uint64_t one = 1;
    // EAGAIN means the counter is saturated: the loop is woken anyway.
    (void)!::write(wake_.get(), &one, sizeof one);
}

Status EventLoop::run_once(std::chrono::milliseconds max_wait) {
    using std::chrono::milliseconds;
    milliseconds wait = std::max(max_wait, milliseconds(0));
    if (!timers_.empty()) {
        auto until = timers_.begin()->first.first - Clock::now();
        // Rounded up: waking before the deadline would only spin through another iteration.
        wait = std::min(wait, std::max(std::chrono::ceil<milliseconds>(until), milliseconds(0)));
    }
    int timeout = static_cast<int>(std::min<milliseconds::rep>(wait.count(), INT_MAX));

    std::array<epoll_event, 256> events;
    int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0) {
        if (errno == EINTR) return {};
        return Error::from_errno(errno, "epoll_wait");
    }
    bool woken = false;
    for (int i = 0; i < n; ++i) {
        if (events[i].data.u64 == kWakeTag) {
            woken = true;
            continue;
        }
        dispatch_fd(events[i].data.u64, events[i].events);
    }
    run_due_timers();
    if (woken) {
        std::uint64_t count;
        (void)!::read(wake_.get(), &count, sizeof count);  // resets the eventfd counter
        run_posted();
    }
    return {};
}

Status EventLoop::run() {
    Status result;
    while (!stop_.load()) {
        if (auto st = run_once(std::chrono::hours(1)); !st) {
            result = st;
            break;
        }
    }
    stop_.store(false);
    return result;
}

void EventLoop::dispatch_fd(std::uint64_t tag, std::uint32_t revents) {
    int fd = static_cast<int>(static_cast<std::uint32_t>(tag));
    auto it = fds_.find(fd);
    if (it == fds_.end() || it->second.reg != static_cast<std::uint32_t>(tag >> 32)) return;  // removed
    std::shared_ptr<FdCallback> callback = it->second.callback;  // survives remove_fd from inside
    invoke_guarded("fd", [&] { (*callback)(revents); });
}

void EventLoop::run_due_timers() {
    if (timers_.empty()) return;
    auto now = Clock::now();
    std::vector<std::pair<TimePoint, TimerId>> due;
    for (auto it = timers_.begin(); it != timers_.end() && it->first.first <= now; ++it) due.push_back(it->first);
    for (const auto& key : due) {
        auto it = timers_.find(key);
        if (it == timers_.end()) continue;  // cancelled by an earlier callback of this batch
        std::function<void()> callback = std::move(it->second);
        timers_.erase(it);
        timer_deadlines_.erase(key.second);
        invoke_guarded("timer", callback);
    }
}

void EventLoop::run_posted() {
    std::vector<std::function<void()>> tasks;
    {
        std::lock_guard lock(posted_mu_);
        tasks.swap(posted_);
    }
    for (auto& task : tasks) invoke_guarded("posted task", task);
}

}  // namespace kxlb::agent
