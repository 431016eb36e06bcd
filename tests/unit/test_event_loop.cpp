// Unit tests for the agent's EventLoop: fd readiness dispatch, timer order and cancellation,
// removal from inside callbacks, cross-thread post() wake-ups, and that idle waits really sleep.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "agent/event_loop.hpp"

namespace kxlb::agent {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::unique_ptr<EventLoop> make_loop() {
    auto loop = EventLoop::create();
    EXPECT_TRUE(loop.ok()) << loop.error().message;
    return std::move(loop).value();
}

struct Pipe {
    UniqueFd r, w;
    Pipe() {
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
        r.reset(fds[0]);
        w.reset(fds[1]);
    }
    void put() { EXPECT_EQ(::write(w.get(), "x", 1), 1); }
};

// Iterates until `pred` or `limit`; true if `pred` became true.
template <typename Pred>
bool run_until(EventLoop& loop, Pred pred, std::chrono::milliseconds limit = 2000ms) {
    auto end = Clock::now() + limit;
    while (!pred() && Clock::now() < end) EXPECT_TRUE(loop.run_once(10ms).ok());
    return pred();
}

TEST(EventLoop, DispatchesFdReadiness) {
    auto loop = make_loop();
    Pipe p;
    std::vector<std::uint32_t> seen;
    ASSERT_TRUE(loop->add_fd(p.r.get(), EPOLLIN, [&](std::uint32_t ev) {
        seen.push_back(ev);
        char c;
        (void)!::read(p.r.get(), &c, 1);
    }));
    ASSERT_TRUE(loop->run_once(0ms));
    EXPECT_TRUE(seen.empty());  // nothing written yet
    p.put();
    ASSERT_TRUE(loop->run_once(1000ms));
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_TRUE(seen[0] & EPOLLIN);

    // Same fd twice is an error; modify switches interest to the write end's readiness semantics.
    EXPECT_FALSE(loop->add_fd(p.r.get(), EPOLLIN, [](std::uint32_t) {}));
    EXPECT_FALSE(loop->add_fd(-1, EPOLLIN, [](std::uint32_t) {}));
    EXPECT_FALSE(loop->modify_fd(p.w.get(), EPOLLOUT));  // not watched

    std::uint32_t wev = 0;
    ASSERT_TRUE(loop->add_fd(p.w.get(), 0, [&](std::uint32_t ev) { wev = ev; }));
    ASSERT_TRUE(loop->run_once(0ms));
    EXPECT_EQ(wev, 0u);
    ASSERT_TRUE(loop->modify_fd(p.w.get(), EPOLLOUT));
    ASSERT_TRUE(loop->run_once(1000ms));
    EXPECT_TRUE(wev & EPOLLOUT);
    loop->remove_fd(p.w.get());
    loop->remove_fd(p.w.get());  // idempotent
    EXPECT_EQ(loop->fd_count(), 1u);
}

TEST(EventLoop, TimersFireInDeadlineOrder) {
    auto loop = make_loop();
    std::vector<int> order;
    auto t0 = loop->now();
    loop->add_timer(t0 + 30ms, [&] { order.push_back(3); });
    loop->add_timer(t0 + 10ms, [&] { order.push_back(1); });
    loop->add_timer(t0 + 20ms, [&] { order.push_back(2); });
    loop->add_timer(t0 + 20ms, [&] { order.push_back(22); });  // same deadline: insertion order
    EXPECT_EQ(loop->timer_count(), 4u);
    ASSERT_TRUE(run_until(*loop, [&] { return order.size() == 4; }));
    EXPECT_EQ(order, (std::vector<int>{1, 2, 22, 3}));
    EXPECT_GE(Clock::now() - t0, 30ms);
    EXPECT_EQ(loop->timer_count(), 0u);
}

TEST(EventLoop, CancelledTimersNeverRun) {
    auto loop = make_loop();
    std::vector<int> ran;
    auto t0 = loop->now();
    auto a = loop->add_timer(t0 + 5ms, [&] { ran.push_back(1); });
    auto b = loop->add_timer(t0 + 10ms, [&] { ran.push_back(2); });
    auto c = loop->add_timer(t0 + 10ms, [&] { ran.push_back(3); });
    // d fires in the same batch as b/c (same deadline, earlier id) and cancels c before it runs.
    loop->add_timer(t0 + 10ms - 1ns, [&] {
        ran.push_back(4);
        EXPECT_TRUE(loop->cancel_timer(c));
    });
    EXPECT_TRUE(loop->cancel_timer(a));
    EXPECT_FALSE(loop->cancel_timer(a));  // already cancelled
    EXPECT_FALSE(loop->cancel_timer(12345));
    std::this_thread::sleep_for(15ms);  // everything due: one batch
    ASSERT_TRUE(loop->run_once(0ms));
    EXPECT_EQ(ran, (std::vector<int>{4, 2}));
    EXPECT_FALSE(loop->cancel_timer(b));  // already ran
}

TEST(EventLoop, TimerAddedForThePastRunsNextIteration) {
    auto loop = make_loop();
    int runs = 0;
    loop->add_timer(0ms, [&] {
        ++runs;
        loop->add_timer(loop->now() - 1s, [&] { ++runs; });
    });
    ASSERT_TRUE(loop->run_once(100ms));
    EXPECT_EQ(runs, 1);
    ASSERT_TRUE(loop->run_once(100ms));
    EXPECT_EQ(runs, 2);
}

TEST(EventLoop, RemoveFdFromInsideCallbacks) {
    auto loop = make_loop();
    Pipe a, b;
    int a_calls = 0, b_calls = 0;
    // Whichever runs first removes both; the other one's already-collected event must be dropped.
    auto remove_both = [&] {
        loop->remove_fd(a.r.get());
        loop->remove_fd(b.r.get());
    };
    ASSERT_TRUE(loop->add_fd(a.r.get(), EPOLLIN, [&, remove_both](std::uint32_t) {
        ++a_calls;
        remove_both();  // destroys this very callback's registration while it runs
    }));
    ASSERT_TRUE(loop->add_fd(b.r.get(), EPOLLIN, [&, remove_both](std::uint32_t) {
        ++b_calls;
        remove_both();
    }));
    a.put();
    b.put();
    ASSERT_TRUE(loop->run_once(1000ms));
    EXPECT_EQ(a_calls + b_calls, 1);
    EXPECT_EQ(loop->fd_count(), 0u);
    ASSERT_TRUE(loop->run_once(20ms));
    EXPECT_EQ(a_calls + b_calls, 1);

    // Remove and re-add the same fd number inside a callback: the new registration gets only its
    // own events, never a stale one for the old callback.
    Pipe c;
    int old_calls = 0, new_calls = 0;
    ASSERT_TRUE(loop->add_fd(c.r.get(), EPOLLIN, [&](std::uint32_t) {
        ++old_calls;
        loop->remove_fd(c.r.get());
        ASSERT_TRUE(loop->add_fd(c.r.get(), EPOLLIN, [&](std::uint32_t) {
            ++new_calls;
            loop->remove_fd(c.r.get());
        }));
    }));
    c.put();
    ASSERT_TRUE(loop->run_once(1000ms));
    EXPECT_EQ(old_calls, 1);
    EXPECT_EQ(new_calls, 0);
    ASSERT_TRUE(loop->run_once(1000ms));  // still readable: the new callback runs now
    EXPECT_EQ(new_calls, 1);
}

TEST(EventLoop, PostFromAnotherThreadWakesTheLoop) {
    auto loop = make_loop();
    std::atomic<int> ran{0};
    std::thread::id ran_on;
    auto t0 = Clock::now();
    std::thread poster([&] {
        std::this_thread::sleep_for(50ms);
        loop->post([&] {
            ran_on = std::this_thread::get_id();
            ++ran;
        });
    });
    ASSERT_TRUE(loop->run_once(5000ms));  // must return on the post, long before 5 s
    auto waited = Clock::now() - t0;
    poster.join();
    EXPECT_EQ(ran.load(), 1);
    EXPECT_EQ(ran_on, std::this_thread::get_id());
    EXPECT_LT(waited, 2000ms);
}

TEST(EventLoop, RunUntilStopFromTimerAndFromAnotherThread) {
    auto loop = make_loop();
    int ticks = 0;
    std::function<void()> tick = [&] {
        if (++ticks == 3) return loop->stop();
        loop->add_timer(5ms, tick);
    };
    loop->add_timer(5ms, tick);
    ASSERT_TRUE(loop->run());
    EXPECT_EQ(ticks, 3);

    auto t0 = Clock::now();
    std::thread stopper([&] {
        std::this_thread::sleep_for(30ms);
        loop->stop();
    });
    ASSERT_TRUE(loop->run());  // nothing registered: only stop() can end it
    stopper.join();
    EXPECT_LT(Clock::now() - t0, 2000ms);
}

TEST(EventLoop, IdleWaitSleepsInsteadOfSpinning) {
    auto loop = make_loop();
    // With nothing to do, run_once sleeps the whole max_wait: few iterations in 100 ms.
    int iterations = 0;
    auto t0 = Clock::now();
    while (Clock::now() - t0 < 100ms) {
        ASSERT_TRUE(loop->run_once(40ms));
        ++iterations;
    }
    EXPECT_LE(iterations, 4);
    // A timer shortens the wait to its deadline (rounded up to whole ms, never early).
    bool fired = false;
    auto deadline = loop->now() + 20ms;
    loop->add_timer(deadline, [&] { fired = true; });
    iterations = 0;
    while (!fired && Clock::now() - t0 < 2s) {
        ASSERT_TRUE(loop->run_once(1000ms));
        ++iterations;
    }
    EXPECT_TRUE(fired);
    EXPECT_GE(Clock::now(), deadline);
    EXPECT_LE(iterations, 2);
}

TEST(EventLoop, ThrowingCallbackDoesNotBreakTheLoop) {
    auto loop = make_loop();
    bool after = false;
    loop->add_timer(0ms, [] { throw std::runtime_error("boom"); });
    loop->add_timer(0ms, [&] { after = true; });
    ASSERT_TRUE(loop->run_once(100ms));
    EXPECT_TRUE(after);
}

}  // namespace
}  // namespace kxlb::agent
