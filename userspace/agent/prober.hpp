// Asynchronous health probes of backends (tcp connect, http, https) driven by one EventLoop: every
// target is a small state machine of non-blocking socket (and OpenSSL) steps woken by epoll and
// timers, so thousands of backends cost no threads. HealthState turns the stream of probe results
// into healthy/unhealthy transitions with rise/fall hysteresis.
//
// What a probe checks:
//   tcp    the connect completes (the socket is then closed with RST, so frequent checks leave no
//          TIME_WAIT behind);
//   http   "GET <path> HTTP/1.1" with Host, "Connection: close" and "User-Agent: kxlb-agent"; only
//          the status line is read (at most kMaxResponseBytes), healthy iff its code equals
//          spec.expected_status;
//   https  the same over TLS 1.2+: SNI = spec.host unless empty or an IP literal; unless
//          spec.insecure, the chain is verified against spec.ca_file (or the system CAs if empty)
//          and the certificate must match spec.host, or the backend IP when spec.host is empty.
// Every attempt ends by its verdict or spec.timeout, whichever comes first; SIGPIPE is never raised.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>

#include "agent/event_loop.hpp"
#include "agent/health_check.hpp"
#include "lib/lb_types.hpp"
#include "lib/result.hpp"

namespace kxlb::agent {

// Rise/fall hysteresis over probe results; pure logic, no I/O.
class HealthState {
public:
    // rise/fall of 0 are treated as 1.
    HealthState(bool initially_healthy, std::uint32_t rise, std::uint32_t fall)
        : healthy_(initially_healthy), rise_(rise ? rise : 1), fall_(fall ? fall : 1) {}

    // Records one probe result. Returns true exactly when this result flips the state: the
    // `rise`-th consecutive success while unhealthy, or the `fall`-th consecutive failure while
    // healthy. A result agreeing with the current state resets the opposite streak.
    bool record(bool success);
    bool healthy() const { return healthy_; }
    // Consecutive results against the current state so far (0 after a transition).
    std::uint32_t streak() const { return streak_; }

private:
    bool healthy_;
    std::uint32_t rise_;
    std::uint32_t fall_;
    std::uint32_t streak_ = 0;
};

// The outcome of one probe attempt.
struct ProbeResult {
    bool ok = false;
    std::chrono::nanoseconds duration{0};  // from socket creation to the verdict
    // Empty when ok. Otherwise what failed, e.g. "connect: Connection refused",
    // "timeout after 1000ms (connect)", "http status 503 (want 200)",
    // "tls: certificate verify failed: unable to get local issuer certificate".
    std::string error;
};

using TargetId = std::uint64_t;  // chosen by the caller

class Prober {
public:
    // Called on the loop thread, synchronously from the callback that completed a probe, so the
    // caller can act (e.g. program the datapath) in the same loop iteration. Observers may call
    // Prober::add/remove, including remove() of the target being reported (if on_result removes
    // it, the transition that result caused is not reported).
    struct Observer {
        virtual ~Observer() = default;
        // Every completed probe, before any transition it causes.
        virtual void on_result(TargetId, const ProbeResult&) {}
        // The target's health flipped (per HealthState).
        virtual void on_transition(TargetId, bool healthy) = 0;
    };

    // Most bytes of a response read by an http(s) probe; only the status line is needed, and a
    // status line longer than this fails the probe.
    static constexpr std::size_t kMaxResponseBytes = 4096;

    // `loop` and `observer` must outlive the Prober. `rng_seed` seeds the jitter RNG (first probe
    // at a uniformly random offset within the interval, then interval +/-10%).
    Prober(EventLoop& loop, Observer& observer, std::uint64_t rng_seed);
    ~Prober();  // cancels every in-flight probe; no observer calls after this
    Prober(const Prober&) = delete;
    Prober& operator=(const Prober&) = delete;

    // Starts probing `addr`:(`spec.port` or else `port`) with `spec`, starting from
    // `initially_healthy` (e.g. the state the datapath already has). Fails (and adds nothing)
    // if `id` is already probed, the spec is invalid (interval <= 0, timeout <= 0 or >= interval,
    // no port, bad path) or, for https, the CA file cannot be loaded. No observer call happens
    // before the first probe completes.
    Status add(TargetId id, const IpAddr& addr, std::uint16_t port, const HealthCheckSpec& spec,
               bool initially_healthy);
    // Stops probing `id`: cancels its in-flight probe (closing its socket) and timers. No-op for
    // an unknown id. Safe from observer callbacks.
    void remove(TargetId id);

    std::optional<bool> healthy(TargetId id) const;  // nullopt: unknown id
    std::size_t size() const { return targets_.size(); }
    // Probes in flight right now (open sockets).
    std::size_t in_flight() const;

private:
    struct Target;
    class TlsContexts;

    void stop(Target& t);  // cancels its timer and in-flight attempt
    void schedule(Target& t, EventLoop::TimePoint at);
    void start_probe(TargetId id);
    void complete(TargetId id, ProbeResult result);

    EventLoop* loop_;
    Observer* observer_;
    std::mt19937_64 rng_;
    std::unique_ptr<TlsContexts> tls_;
    std::unordered_map<TargetId, std::unique_ptr<Target>> targets_;
    std::uint64_t next_serial_ = 1;
};

}  // namespace kxlb::agent
