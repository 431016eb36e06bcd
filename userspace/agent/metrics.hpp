// The agent's observability endpoint: Prometheus metrics (/metrics), liveness (/healthz) and
// readiness (/readyz), served over plain HTTP/1.1 by a small non-blocking server that runs in the
// agent's EventLoop.
//
// Why not prometheus-cpp's Exposer: it serves only registered collectables (no handler API for
// /healthz and /readyz; Debian's civetweb would be a second dependency for that), and it answers on
// civetweb worker threads, while most of what a scrape reads (the LbProgrammer's services, the
// agent's state) is owned by the loop thread: every scrape would have to post to the loop and wait,
// or everything would need locks. Serving from the loop instead means no threads and no locks: a
// scrape runs between two loop callbacks and sees a consistent state. prometheus-cpp is still used
// for what it does well: the Registry (counters, gauges, histograms owned by the agent) and the
// TextSerializer (exposition format). Datapath counters are read from the BPF maps at scrape time
// and turned into MetricFamily values directly (BPF counters are totals to report, not to add to).
//
// The server is bounded: at most `max_connections` clients at a time (the next ones wait in the
// accept queue), request heads of at most
// `max_request_bytes` (larger or malformed requests get 400), one request per connection
// (Connection: close), a deadline per connection, non-blocking reads and writes. Work per scrape is
// proportional to the number of programmed frontends and backends; the conntrack walk is cached
// (MetricsOptions::conntrack_cache_ttl).
//
// Threading: every member must be called on the loop's thread (the agent's handlers run there).
#pragma once

#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/event_loop.hpp"
#include "agent/prober.hpp"
#include "agent/reconciler.hpp"
#include "lib/abi.hpp"
#include "lib/decap_program.hpp"
#include "lib/local_rev_program.hpp"
#include "lib/result.hpp"
#include "lib/sock_lb_program.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
struct MetricFamily;
}  // namespace prometheus

namespace kxlb::agent {

class NodeDatapath;

// ---- What a scrape reads from the datapath ----------------------------------------------------

// One programmed frontend (a datapath "service": it has its own id, counters and backend ids).
struct ServiceView {
    struct Backend {
        std::string label;  // "10.0.0.1:6443", "[fd00::1]:6443" (BackendSpec::str())
        std::uint32_t id = 0;
    };
    std::string label;  // "10.96.0.1:443/tcp" (Frontend::str()); unique among services
    std::uint32_t id = 0;
    bool socket_lb = false;         // KXLB_SVC_F_SOCKET_LB: also balanced at connect()
    std::vector<Backend> backends;  // every programmed backend, draining ones included
};

// Read access to the datapath for metrics. The real one (make_datapath_view) reads the BPF maps;
// unit tests use fakes. Called on the loop thread only, at scrape time.
class DatapathView {
public:
    virtual ~DatapathView() = default;
    virtual std::vector<ServiceView> services() const = 0;
    // Per-reason {packets, bytes} of the XDP datapath, summed over CPUs.
    virtual Result<std::array<kxlb_counter, kReasonCount>> reasons() const = 0;
    // {packets, bytes, new_flows} of a service / backend id, summed over CPUs.
    virtual Result<kxlb_lb_counter> service_counters(std::uint32_t svc_id) const = 0;
    virtual Result<kxlb_lb_counter> backend_counters(std::uint32_t backend_id) const = 0;
    // Entries in the forward conntrack map (kxlb_ct) right now. Expensive (walks the map): the
    // caller caches it.
    virtual Result<std::uint64_t> count_conntrack_entries() const = 0;
    // The conntrack map's max_entries.
    virtual Result<std::uint64_t> conntrack_capacity() const = 0;
    // The flow cache's hits, misses and fills, summed over CPUs (nullopt: the datapath has none).
    virtual Result<std::optional<kxlb_flow_cache_counters>> flow_cache_counters() const = 0;
    // Socket-LB counters; when has_socket_lb() is false (hooks not loaded) the others are not called.
    virtual bool has_socket_lb() const = 0;
    virtual Result<std::array<std::uint64_t, kSockReasonCount>> socket_lb_reasons() const = 0;
    virtual Result<std::uint64_t> socket_lb_service_connections(std::uint32_t svc_id) const = 0;
    virtual Result<std::uint64_t> socket_lb_backend_connections(std::uint32_t backend_id) const = 0;
    // Outcomes of the local backends' reply translation (tc egress), summed over CPUs.
    virtual Result<LocalRevReasons> local_rev_reasons() const = 0;
};

// A view of the agent's NodeDatapath (its LbProgrammer's services, the XDP program's maps, the
// socket-LB program if loaded). `dp` must outlive the view. Fails if the counter or conntrack maps
// cannot be bound (layout mismatch).
Result<std::unique_ptr<DatapathView>> make_datapath_view(NodeDatapath& dp);

// Counts the entries of a hash map (batched lookups, or a key walk where batches are not
// supported). Entries may come and go during the count: the result is a snapshot estimate.
Result<std::uint64_t> count_map_entries(int map_fd, std::size_t key_size, std::size_t value_size);

// ---- Classification of datapath outcomes --------------------------------------------------------

// Which family a kxlb_reason is exported in: fwd_* forwards (translated and transmitted), pass_*
// passes (handed to the kernel stack untouched), drop_* and tx_unreach_no_backend drops (the frame
// never reaches a backend; the latter is answered with an ICMP port unreachable).
enum class ReasonKind { Forward, Pass, Drop };
// Precondition: reason < kReasonCount.
ReasonKind reason_kind(std::size_t reason);

// ---- The HTTP side, exposed for tests -----------------------------------------------------------

// A listen address from the configuration: "IPv4:port" or "[IPv6]:port" (IP literals only; port 0
// picks an ephemeral port). Error (EINVAL) for anything else.
struct ListenAddress {
    sockaddr_storage addr{};
    socklen_t len = 0;
};
Result<ListenAddress> parse_listen_address(std::string_view text);

// Incremental parsing of an HTTP/1.x request head (request line + header lines; a body is never
// read: every response closes the connection).
struct HttpRequestHead {
    enum class State { Incomplete, Complete, Bad };
    State state = State::Incomplete;
    std::string method;  // "GET"
    std::string path;    // "/metrics" (query string and fragment cut off)
    std::string error;   // for Bad: what is wrong (never echoes request bytes)
};
// Parses the bytes received so far. Bad as soon as something is malformed, or when the head does
// not end within max_bytes. Accepts CRLF or bare LF line ends, HTTP/1.0 and HTTP/1.1, and
// origin-form targets ("/path?query") only.
HttpRequestHead parse_request_head(std::string_view data, std::size_t max_bytes);

// ---- The metrics -------------------------------------------------------------------------------

struct MetricsOptions {
    std::string version = KXLB_VERSION;  // kxlb_build_info{version}
    // The conntrack entry count is recomputed at most this often (a walk of up to
    // datapath.conntrack_entries keys); scrapes in between report the cached value.
    std::chrono::milliseconds conntrack_cache_ttl{5000};
    std::size_t max_connections = 16;                     // more clients wait in the kernel's accept queue (backlog 64)
    std::size_t max_request_bytes = 8192;                 // request head limit; larger gets 400
    std::chrono::milliseconds connection_timeout{10000};  // from accept to close, whatever happens
};

class AgentMetrics {
public:
    explicit AgentMetrics(MetricsOptions opts = {});
    ~AgentMetrics();  // stops serving (closes the listener and every connection) first
    AgentMetrics(const AgentMetrics&) = delete;
    AgentMetrics& operator=(const AgentMetrics&) = delete;

    // Listens on `address` ("IP:port" / "[IPv6]:port"; the caller skips serve() when the endpoint
    // is disabled with "") and serves /metrics, /healthz, /readyz from `loop`, which must outlive
    // this object. Fails (EINVAL bad address, EADDRINUSE, EALREADY if already serving, ...)
    // without serving anything.
    Status serve(EventLoop& loop, const std::string& address);
    // The bound port (useful with port 0); nullopt before serve() succeeded.
    std::optional<std::uint16_t> port() const;

    // Sets, replaces or (nullptr) removes the datapath a scrape reads. Without one the datapath
    // families are absent.
    void set_datapath(std::unique_ptr<DatapathView> view);
    // Sets or (empty) removes the reader of the DSR decapsulation program's counters:
    // kxlb_dsr_decap_packets_total{reason} (every reason of docs/dsr-decap.md) while one is set.
    using DecapReader = std::function<Result<DecapReasons>()>;
    void set_decap(DecapReader reader) { decap_ = std::move(reader); }

    // One completed probe of `ref`: kxlb_probe_duration_seconds and kxlb_probe_failures_total
    // (both series appear with the first probe). Call from Prober::Observer::on_result.
    void observe_probe(const BackendRef& ref, const ProbeResult& result);
    // kxlb_backend_healthy{service,backend} = 1 or 0. Call for every configured backend when it
    // appears and on every health transition.
    void set_backend_health(const BackendRef& ref, bool healthy);
    // Drops the probe and health series of every backend not in `keep` (backends a reload removed),
    // so series do not accumulate. With `services` (sorted), only the series of those services are
    // considered (the others stay): the cost follows the size of a delta.
    void retain_backends(const std::set<BackendRef>& keep, const std::vector<std::string>* services = nullptr);

    // One Reconciler::apply(): its duration, and the number of frontends that failed to program
    // (each added to kxlb_map_operation_errors_total).
    void observe_reconcile(std::chrono::nanoseconds duration, std::size_t failures);
    // One configuration reload attempt: kxlb_config_reloads_total{result="ok"|"failed"}.
    void config_reload(bool ok);
    // Frontends one apply wrote and removed: kxlb_datapath_frontend_writes_total{op="upsert"|"remove"}
    // (zero after a Kubernetes relist that found nothing new).
    void observe_writes(std::size_t upserted, std::size_t removed);
    // The Kubernetes source: kxlb_k8s_synced (0/1), kxlb_k8s_services (mapped service configs), and the
    // running totals kxlb_k8s_watch_failures_total and kxlb_k8s_relists_total (pass the source's totals;
    // the counters advance by the difference). The series appear with the first call.
    void set_kubernetes(bool synced, std::size_t services, std::uint64_t watch_failures, std::uint64_t relists);
    // /readyz answers 200 "ready" while ready, else 503 "not ready: <reason>". Not ready
    // ("starting") until the first call.
    void set_ready(bool ready, std::string reason = {});
    bool ready() const { return ready_; }

    // The /metrics body (Prometheus text format 0.0.4), reading the datapath now.
    std::string render();

private:
    struct Families;
    class Server;
    // Series of one backend in the registry's families (owned by the families).
    struct BackendSeries {
        prometheus::Histogram* probe_duration = nullptr;
        prometheus::Counter* probe_failures = nullptr;
        prometheus::Gauge* healthy = nullptr;
    };

    void collect_datapath(std::vector<prometheus::MetricFamily>& out);
    void collect_decap(std::vector<prometheus::MetricFamily>& out);
    void scrape_error(const Error& e);

    MetricsOptions opts_;
    std::shared_ptr<prometheus::Registry> registry_;
    std::unique_ptr<Families> fam_;
    std::map<BackendRef, BackendSeries> backends_;
    std::unique_ptr<DatapathView> view_;
    DecapReader decap_;
    std::optional<std::uint64_t> ct_entries_;  // cached count
    EventLoop::TimePoint ct_counted_at_{};
    std::uint64_t scrape_errors_ = 0;
    std::optional<EventLoop::TimePoint> last_error_log_;
    bool ready_ = false;
    std::string not_ready_reason_ = "starting";
    prometheus::Counter* writes_upsert_ = nullptr;
    prometheus::Counter* writes_remove_ = nullptr;
    struct K8sSeries {
        prometheus::Gauge* synced = nullptr;
        prometheus::Gauge* services = nullptr;
        prometheus::Counter* watch_failures = nullptr;
        prometheus::Counter* relists = nullptr;
        std::uint64_t failures_seen = 0, relists_seen = 0;
    };
    std::optional<K8sSeries> k8s_;
    std::unique_ptr<Server> server_;  // last member: destroyed first
};

}  // namespace kxlb::agent
