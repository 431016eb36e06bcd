// AgentMetrics: the metric families (prometheus-cpp registry + scrape-time datapath reads), the
// datapath view over NodeDatapath, and the event-loop HTTP/1.1 server (see metrics.hpp for why it
// is not prometheus-cpp's Exposer).
#include "agent/metrics.hpp"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <functional>
#include <unordered_map>

#include "agent/datapath.hpp"
#include "lib/bpf_map.hpp"
#include "lib/lb_inspect.hpp"
#include "lib/unique_fd.hpp"

namespace kxlb::agent {

namespace {

using Clock = EventLoop::Clock;

// ---- Reason classification ----------------------------------------------------------------------

constexpr bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

constexpr std::optional<ReasonKind> classify(std::string_view name) {
    if (starts_with(name, "fwd_")) return ReasonKind::Forward;
    if (starts_with(name, "pass_")) return ReasonKind::Pass;
    // tx_*: the frame was answered with an ICMP error instead of being delivered.
    if (starts_with(name, "drop_") || starts_with(name, "tx_")) return ReasonKind::Drop;
    return std::nullopt;
}

constexpr bool all_reasons_classified() {
    for (auto name : kReasonNames)
        if (!classify(name)) return false;
    return true;
}
// A new reason in include/kxlb/abi.h must be given a kind here (and a line in docs/agent.md).
static_assert(all_reasons_classified(), "a kxlb_reason name has no metric family: extend classify()");

// ---- HTTP parsing helpers -------------------------------------------------------------------------

bool is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar); }

// Request line: METHOD SP origin-form SP HTTP/1.x. Fills method/path or returns an error.
std::optional<std::string> parse_request_line(std::string_view line, HttpRequestHead& out) {
    const auto sp1 = line.find(' ');
    if (sp1 == std::string_view::npos) return "malformed request line";
    const auto sp2 = line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
        return "malformed request line";
    const auto method = line.substr(0, sp1);
    const auto target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const auto version = line.substr(sp2 + 1);
    if (!is_token(method) || method.size() > 16) return "malformed method";
    if (target.empty() || target[0] != '/') return "request target must be an absolute path";
    for (char c : target)
        if (c <= 0x20 || c >= 0x7f) return "invalid character in request target";
    if (version != "HTTP/1.1" && version != "HTTP/1.0") return "unsupported HTTP version";
    out.method = std::string(method);
    out.path = std::string(target.substr(0, target.find_first_of("?#")));
    return std::nullopt;
}

std::optional<std::string> check_header_line(std::string_view line) {
    if (line[0] == ' ' || line[0] == '\t') return "obsolete header line folding";
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) return "malformed header line";
    for (char c : line.substr(colon + 1))
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return "invalid character in header";
    return std::nullopt;
}

const char* status_text(int status) {
    switch (status) {
        case 200: return "OK";
        case 400: return "Bad Request";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 503: return "Service Unavailable";
        default: return "Error";
    }
}

struct HttpResponse {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

std::string serialize(const HttpResponse& r, bool head_only) {
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + status_text(r.status) + "\r\n";
    out += "Content-Type: " + r.content_type + "\r\n";
    out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    if (r.status == 405) out += "Allow: GET, HEAD\r\n";
    out += "Cache-Control: no-store\r\nConnection: close\r\n\r\n";
    if (!head_only) out += r.body;
    return out;
}

// ---- Datapath view over NodeDatapath --------------------------------------------------------------

class NodeDatapathView final : public DatapathView {
public:
    NodeDatapathView(NodeDatapath& dp, LbCounters counters, int ct_fd) : dp_(&dp), counters_(counters), ct_fd_(ct_fd) {}

    std::vector<ServiceView> services() const override {
        std::vector<ServiceView> out;
        out.reserve(dp_->programmer().service_count());
        for (const auto& [fe, st] : dp_->programmer().services()) {
            ServiceView v;
            v.label = fe.str();
            v.id = st.id;
            v.socket_lb = (st.spec.flags & KXLB_SVC_F_SOCKET_LB) != 0;
            for (std::size_t i = 0; i < st.spec.backends.size() && i < st.backend_ids.size(); ++i)
                v.backends.push_back({st.spec.backends[i].str(), st.backend_ids[i]});
            out.push_back(std::move(v));
        }
        return out;
    }
    Result<std::array<kxlb_counter, kReasonCount>> reasons() const override { return counters_.reasons(); }
    Result<kxlb_lb_counter> service_counters(std::uint32_t id) const override { return counters_.service(id); }
    Result<kxlb_lb_counter> backend_counters(std::uint32_t id) const override { return counters_.backend(id); }
    Result<std::uint64_t> count_conntrack_entries() const override {
        return count_map_entries(ct_fd_, sizeof(kxlb_flow_key), sizeof(kxlb_ct_value));
    }
    Result<std::uint64_t> conntrack_capacity() const override {
        bpf_map_info info{};
        __u32 len = sizeof(info);
        if (bpf_obj_get_info_by_fd(ct_fd_, &info, &len) != 0) return Error::from_errno(errno, "conntrack map info");
        return static_cast<std::uint64_t>(info.max_entries);
    }
    Result<std::optional<kxlb_flow_cache_counters>> flow_cache_counters() const override {
        return counters_.flow_cache();
    }
    bool has_socket_lb() const override { return dp_->sock() != nullptr; }
    Result<LocalRevReasons> local_rev_reasons() const override { return dp_->local_rev().reasons(); }
    Result<std::array<std::uint64_t, kSockReasonCount>> socket_lb_reasons() const override {
        return dp_->sock()->reasons();
    }
    Result<std::uint64_t> socket_lb_service_connections(std::uint32_t id) const override {
        return dp_->sock()->service_connections(id);
    }
    Result<std::uint64_t> socket_lb_backend_connections(std::uint32_t id) const override {
        return dp_->sock()->backend_connections(id);
    }

private:
    NodeDatapath* dp_;
    LbCounters counters_;
    int ct_fd_;
};

std::string backend_label(const BackendIdentity& b) {
    IpAddr addr;
    addr.family = b.family;
    addr.bytes = b.addr;
    return BackendSpec{addr, b.port}.str();
}

prometheus::Labels backend_labels(const BackendRef& ref) {
    return {{"service", ref.service}, {"backend", backend_label(ref.backend)}};
}

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type) {
    prometheus::MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = type;
    return f;
}

void add_sample(prometheus::MetricFamily& f, std::vector<prometheus::ClientMetric::Label> labels, double value) {
    prometheus::ClientMetric m;
    m.label = std::move(labels);
    if (f.type == prometheus::MetricType::Counter) m.counter.value = value;
    else m.gauge.value = value;
    f.metric.push_back(std::move(m));
}

// A counter family with one series per reason name: the packets of counters[i] under names[i].
template <std::size_t N>
prometheus::MetricFamily reason_family(std::string name, std::string help, const std::array<std::string_view, N>& names,
                                       const std::array<kxlb_counter, N>& counters) {
    auto f = family(std::move(name), std::move(help), prometheus::MetricType::Counter);
    for (std::size_t i = 0; i < N; ++i)
        add_sample(f, {{"reason", std::string(names[i])}}, static_cast<double>(counters[i].packets));
    return f;
}

// Buckets (seconds). Probes: from a LAN connect (sub-millisecond) to a TLS handshake near its
// timeout. Reconcile: a no-op apply (microseconds) to rewriting many Maglev tables.
const prometheus::Histogram::BucketBoundaries kProbeBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                               0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const prometheus::Histogram::BucketBoundaries kReconcileBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

}  // namespace

ReasonKind reason_kind(std::size_t reason) { return *classify(kReasonNames.at(reason)); }

// ---- Listen address -------------------------------------------------------------------------------

Result<ListenAddress> parse_listen_address(std::string_view text) {
    const auto bad = [&](std::string_view why) {
        return Error::invalid("metrics address \"" + std::string(text) + "\": " + std::string(why) +
                              " (want IPv4:port or [IPv6]:port)");
    };
    std::string host;
    std::string_view port_text;
    if (!text.empty() && text[0] == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return bad("malformed bracketed IPv6 address");
        host = std::string(text.substr(1, close - 1));
        port_text = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) return bad("no port");
        host = std::string(text.substr(0, colon));
        port_text = text.substr(colon + 1);
        if (host.find(':') != std::string::npos) return bad("IPv6 addresses must be in brackets");
    }
    unsigned port = 0;
    const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535)
        return bad("port must be 0..65535");
    ListenAddress out;
    if (text[0] == '[') {
        auto* sa = reinterpret_cast<sockaddr_in6*>(&out.addr);
        if (::inet_pton(AF_INET6, host.c_str(), &sa->sin6_addr) != 1) return bad("invalid IPv6 address");
        sa->sin6_family = AF_INET6;
        sa->sin6_port = htons(static_cast<std::uint16_t>(port));
        out.len = sizeof(sockaddr_in6);
    } else {
        auto* sa = reinterpret_cast<sockaddr_in*>(&out.addr);
        if (::inet_pton(AF_INET, host.c_str(), &sa->sin_addr) != 1) return bad("invalid IPv4 address");
        sa->sin_family = AF_INET;
        sa->sin_port = htons(static_cast<std::uint16_t>(port));
        out.len = sizeof(sockaddr_in);
    }
    return out;
}

// ---- Request head parsing -----------------------------------------------------------------------

HttpRequestHead parse_request_head(std::string_view data, std::size_t max_bytes) {
    HttpRequestHead out;
    const auto bad = [&](std::string why) {
        out.state = HttpRequestHead::State::Bad;
        out.method.clear();
        out.path.clear();
        out.error = std::move(why);
        return out;
    };
    std::size_t pos = 0;
    bool first = true;
    for (;;) {
        const auto nl = data.find('\n', pos);
        if (nl == std::string_view::npos) break;
        if (nl + 1 > max_bytes) return bad("request head larger than " + std::to_string(max_bytes) + " bytes");
        auto line = data.substr(pos, nl - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        for (char c : line)
            if (c == '\0' || c == '\r') return bad("invalid character in request head");
        pos = nl + 1;
        if (first) {
            if (auto err = parse_request_line(line, out)) return bad(*err);
            first = false;
            continue;
        }
        if (line.empty()) {
            out.state = HttpRequestHead::State::Complete;
            return out;
        }
        if (auto err = check_header_line(line)) return bad(*err);
    }
    if (data.size() > max_bytes) return bad("request head larger than " + std::to_string(max_bytes) + " bytes");
    // An unfinished line is judged by what it holds so far, so that binary garbage (a TLS hello,
    // say) is answered at once instead of waiting for a line end that never comes.
    for (char c : data.substr(pos)) {
        const auto u = static_cast<unsigned char>(c);
        const bool control = (u < 0x20 && c != '\r' && c != '\t') || u == 0x7f;
        if (control || (first && (u >= 0x80 || c == '\t'))) return bad("invalid character in request head");
    }
    out.method.clear();
    out.path.clear();
    return out;
}

// ---- Counting map entries -----------------------------------------------------------------------

namespace {

Result<std::uint64_t> count_by_key_walk(int fd, std::size_t key_size) {
    std::vector<unsigned char> key(key_size), next(key_size);
    std::uint64_t n = 0;
    const void* cur = nullptr;
    while (bpf_map_get_next_key(fd, cur, next.data()) == 0) {
        ++n;
        key.swap(next);
        cur = key.data();
    }
    if (errno != ENOENT) return Error::from_errno(errno, "walking map keys");
    return n;
}

}  // namespace

Result<std::uint64_t> count_map_entries(int map_fd, std::size_t key_size, std::size_t value_size) {
    constexpr std::uint32_t kBatch = 1024;
    std::vector<unsigned char> keys(kBatch * key_size), values(kBatch * value_size);
    // The batch token is a bucket index for hash maps; room for a key to be safe.
    std::vector<unsigned char> in(std::max<std::size_t>(key_size, 8)), out(in.size());
    std::uint64_t total = 0;
    bool first = true;
    for (;;) {
        std::uint32_t count = kBatch;
        LIBBPF_OPTS(bpf_map_batch_opts, opts);
        const int r = bpf_map_lookup_batch(map_fd, first ? nullptr : in.data(), out.data(), keys.data(), values.data(),
                                           &count, &opts);
        const int err = r < 0 ? errno : 0;
        if (r == 0 || err == ENOENT) total += count;
        if (r == 0) {
            in.swap(out);
            first = false;
            continue;
        }
        if (err == ENOENT) return total;
        // Batches unsupported by this kernel/map, or one bucket larger than a batch: walk keys.
        if (err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP || err == ENOSPC)
            return count_by_key_walk(map_fd, key_size);
        return Error::from_errno(err, "batch lookup of map entries");
    }
}

Result<std::unique_ptr<DatapathView>> make_datapath_view(NodeDatapath& dp) {
    const auto fds = dp.map_fds();
    auto counters = LbCounters::bind(fds);
    if (!counters) return counters.error();
    auto ct = TypedMap<kxlb_flow_key, kxlb_ct_value>::bind(fds.ct);  // layout check
    if (!ct) return ct.error();
    return std::unique_ptr<DatapathView>(std::make_unique<NodeDatapathView>(dp, *counters, fds.ct));
}

// ---- The HTTP server ----------------------------------------------------------------------------

class AgentMetrics::Server {
public:
    using Handler = std::function<HttpResponse(const HttpRequestHead&)>;

    Server(EventLoop& loop, UniqueFd listener, std::uint16_t port, const MetricsOptions& opts, Handler handler)
        : loop_(&loop), listener_(std::move(listener)), port_(port), opts_(opts), handler_(std::move(handler)) {}

    ~Server() {
        if (pause_timer_) loop_->cancel_timer(*pause_timer_);
        loop_->remove_fd(listener_.get());
        for (auto& [fd, c] : conns_) {
            loop_->remove_fd(fd);
            if (c.timer) loop_->cancel_timer(c.timer);
        }
    }

    Status start() {
        return loop_->add_fd(listener_.get(), EPOLLIN, [this](std::uint32_t) { on_accept(); });
    }
    std::uint16_t port() const { return port_; }

private:
    enum class Phase { Reading, Writing, Draining };
    struct Conn {
        UniqueFd fd;
        Phase phase = Phase::Reading;
        std::string in;
        std::string out;
        std::size_t sent = 0;
        std::size_t drained = 0;
        EventLoop::TimerId timer = 0;
    };
    static constexpr std::size_t kMaxAcceptsPerWakeup = 64;
    static constexpr std::size_t kMaxDrainBytes = 64 * 1024;
    static constexpr std::chrono::milliseconds kLinger{1000};

    void on_accept() {
        for (std::size_t i = 0; i < kMaxAcceptsPerWakeup; ++i) {
            if (conns_.size() >= opts_.max_connections) {
                // Full: leave further clients in the kernel's accept queue (backpressure, not
                // refusal) until a connection ends; the per-connection deadline bounds the wait.
                spdlog::debug("metrics endpoint: {} connections open; not accepting more for now", conns_.size());
                set_accepting(false);
                return;
            }
            UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!fd.valid()) {
                const int err = errno;
                if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
                if (err == EAGAIN || err == EWOULDBLOCK) return;
                // Out of fds or memory: the listener stays readable, so stop watching it for a
                // moment instead of spinning.
                spdlog::warn("metrics endpoint: accept: {}; pausing for 1 s", std::strerror(err));
                pause_accepting();
                return;
            }
            const int raw = fd.get();
            if (auto st = loop_->add_fd(raw, EPOLLIN, [this, raw](std::uint32_t) { on_event(raw); }); !st) {
                spdlog::warn("metrics endpoint: {}", st.error().message);
                continue;
            }
            Conn& c = conns_[raw];
            c.fd = std::move(fd);
            c.timer = loop_->add_timer(opts_.connection_timeout, [this, raw] { expire(raw); });
        }
    }

    void set_accepting(bool on) {
        if (accepting_ == on) return;
        if (auto st = loop_->modify_fd(listener_.get(), on ? std::uint32_t{EPOLLIN} : 0u); !st) {
            spdlog::error("metrics endpoint: {}", st.error().message);
            return;
        }
        accepting_ = on;
    }

    void pause_accepting() {
        if (pause_timer_) return;
        set_accepting(false);
        pause_timer_ = loop_->add_timer(std::chrono::milliseconds(1000), [this] {
            pause_timer_.reset();
            if (conns_.size() < opts_.max_connections) set_accepting(true);
        });
    }

    void expire(int fd) {
        auto it = conns_.find(fd);
        if (it == conns_.end()) return;
        it->second.timer = 0;  // this timer has run
        close(fd);
    }

    void close(int fd) {
        auto it = conns_.find(fd);
        if (it == conns_.end()) return;
        loop_->remove_fd(fd);
        if (it->second.timer) loop_->cancel_timer(it->second.timer);
        conns_.erase(it);  // closes the socket
        if (!pause_timer_ && conns_.size() < opts_.max_connections) set_accepting(true);
    }

    void on_event(int fd) {
        auto it = conns_.find(fd);
        if (it == conns_.end()) return;
        Conn& c = it->second;
        switch (c.phase) {
            case Phase::Reading: read_request(fd, c); break;
            case Phase::Writing: write_response(fd, c); break;
            case Phase::Draining: drain(fd, c); break;
        }
    }

    void read_request(int fd, Conn& c) {
        // Read at most one byte past the limit: enough to know the head is too large.
        const std::size_t limit = opts_.max_request_bytes + 1;
        bool eof = false;
        char buf[4096];
        while (c.in.size() < limit) {
            const ssize_t n = ::recv(fd, buf, std::min(sizeof(buf), limit - c.in.size()), 0);
            if (n > 0) {
                c.in.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (n < 0) return close(fd);  // reset by the peer
            eof = true;
            break;
        }
        const auto head = parse_request_head(c.in, opts_.max_request_bytes);
        if (head.state == HttpRequestHead::State::Incomplete) {
            if (eof) close(fd);  // the client gave up before finishing its request
            return;
        }
        c.out = serialize(handler_(head), head.state == HttpRequestHead::State::Complete && head.method == "HEAD");
        c.in.clear();
        c.phase = Phase::Writing;
        if (auto st = loop_->modify_fd(fd, EPOLLOUT); !st) return close(fd);
        write_response(fd, c);
    }

    void write_response(int fd, Conn& c) {
        while (c.sent < c.out.size()) {
            const ssize_t n = ::send(fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
            if (n > 0) {
                c.sent += static_cast<std::size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // wait for EPOLLOUT
            return close(fd);
        }
        // Done: half-close, then read (and discard) until the client closes, so that unread request
        // bytes do not make the kernel answer with a RST that could destroy the response in flight.
        ::shutdown(fd, SHUT_WR);
        c.out = std::string();
        c.phase = Phase::Draining;
        if (auto st = loop_->modify_fd(fd, EPOLLIN); !st) return close(fd);
        if (c.timer) loop_->cancel_timer(c.timer);
        c.timer = loop_->add_timer(std::min(kLinger, opts_.connection_timeout), [this, fd] { expire(fd); });
        drain(fd, c);
    }

    void drain(int fd, Conn& c) {
        char buf[4096];
        for (;;) {
            const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
            if (n > 0) {
                c.drained += static_cast<std::size_t>(n);
                if (c.drained > kMaxDrainBytes) return close(fd);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            return close(fd);  // EOF or error
        }
    }

    EventLoop* loop_;
    UniqueFd listener_;
    std::uint16_t port_;
    MetricsOptions opts_;
    Handler handler_;
    std::unordered_map<int, Conn> conns_;
    bool accepting_ = true;                          // the listener is watched for EPOLLIN
    std::optional<EventLoop::TimerId> pause_timer_;  // set while paused after an accept error
};

// ---- AgentMetrics ------------------------------------------------------------------------------

struct AgentMetrics::Families {
    prometheus::Family<prometheus::Histogram>& probe_duration;
    prometheus::Family<prometheus::Counter>& probe_failures;
    prometheus::Family<prometheus::Gauge>& backend_healthy;
    prometheus::Histogram& reconcile_duration;
    prometheus::Counter& map_errors;
    prometheus::Counter& reloads_ok;
    prometheus::Counter& reloads_failed;
};

AgentMetrics::AgentMetrics(MetricsOptions opts)
    : opts_(std::move(opts)), registry_(std::make_shared<prometheus::Registry>()) {
    auto& r = *registry_;
    prometheus::BuildGauge()
        .Name("kxlb_build_info")
        .Help("Build of the running kxlb-agent (always 1)")
        .Register(r)
        .Add({{"version", opts_.version}})
        .Set(1);
    auto& reloads = prometheus::BuildCounter()
                        .Name("kxlb_config_reloads_total")
                        .Help("Configuration reload attempts (SIGHUP or a change of the file), by result")
                        .Register(r);
    fam_ = std::unique_ptr<Families>(new Families{
        prometheus::BuildHistogram()
            .Name("kxlb_probe_duration_seconds")
            .Help("Duration of completed health probes (socket creation to verdict), successful or not")
            .Register(r),
        prometheus::BuildCounter()
            .Name("kxlb_probe_failures_total")
            .Help("Health probes that failed (refused, timed out, wrong status, TLS error)")
            .Register(r),
        prometheus::BuildGauge()
            .Name("kxlb_backend_healthy")
            .Help("1 if the backend passes its service's health check, 0 if it is drained")
            .Register(r),
        prometheus::BuildHistogram()
            .Name("kxlb_reconcile_duration_seconds")
            .Help("Duration of applying the desired services to the BPF maps")
            .Register(r)
            .Add({}, kReconcileBuckets),
        prometheus::BuildCounter()
            .Name("kxlb_map_operation_errors_total")
            .Help("Frontends whose BPF map update failed during a reconcile (each is retried)")
            .Register(r)
            .Add({}),
        reloads.Add({{"result", "ok"}}),
        reloads.Add({{"result", "failed"}}),
    });
    auto& writes = prometheus::BuildCounter()
                       .Name("kxlb_datapath_frontend_writes_total")
                       .Help("Frontends written to (upsert) or removed from (remove) the BPF maps by reconciles")
                       .Register(r);
    writes_upsert_ = &writes.Add({{"op", "upsert"}});
    writes_remove_ = &writes.Add({{"op", "remove"}});
}

void AgentMetrics::observe_writes(std::size_t upserted, std::size_t removed) {
    if (upserted) writes_upsert_->Increment(static_cast<double>(upserted));
    if (removed) writes_remove_->Increment(static_cast<double>(removed));
}

void AgentMetrics::set_kubernetes(bool synced, std::size_t services, std::uint64_t watch_failures,
                                  std::uint64_t relists) {
    if (!k8s_) {
        auto& r = *registry_;
        K8sSeries k;
        k.synced = &prometheus::BuildGauge()
                        .Name("kxlb_k8s_synced")
                        .Help("1 once the initial lists of Services and EndpointSlices completed")
                        .Register(r)
                        .Add({});
        k.services = &prometheus::BuildGauge()
                          .Name("kxlb_k8s_services")
                          .Help("Service configurations mapped from Kubernetes (per service, port, family and role)")
                          .Register(r)
                          .Add({});
        k.watch_failures = &prometheus::BuildCounter()
                                .Name("kxlb_k8s_watch_failures_total")
                                .Help("Failed Kubernetes lists and watches (each retried with backoff)")
                                .Register(r)
                                .Add({});
        k.relists = &prometheus::BuildCounter()
                         .Name("kxlb_k8s_relists_total")
                         .Help("Complete Kubernetes relists after the initial ones (410 Gone, reconnects)")
                         .Register(r)
                         .Add({});
        k8s_ = k;
    }
    k8s_->synced->Set(synced ? 1 : 0);
    k8s_->services->Set(static_cast<double>(services));
    if (watch_failures > k8s_->failures_seen)
        k8s_->watch_failures->Increment(static_cast<double>(watch_failures - k8s_->failures_seen));
    if (relists > k8s_->relists_seen) k8s_->relists->Increment(static_cast<double>(relists - k8s_->relists_seen));
    k8s_->failures_seen = std::max(k8s_->failures_seen, watch_failures);
    k8s_->relists_seen = std::max(k8s_->relists_seen, relists);
}

AgentMetrics::~AgentMetrics() { server_.reset(); }

Status AgentMetrics::serve(EventLoop& loop, const std::string& address) {
    if (server_) return Error{EALREADY, "metrics endpoint already serving"};
    auto addr = parse_listen_address(address);
    if (!addr) return addr.error();
    const int family = addr->addr.ss_family;
    UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return Error::from_errno(errno, "metrics endpoint socket");
    const int one = 1;
    (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr->addr), addr->len) != 0)
        return Error::from_errno(errno, "metrics endpoint: bind " + address);
    if (::listen(fd.get(), 64) != 0) return Error::from_errno(errno, "metrics endpoint: listen on " + address);
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0)
        return Error::from_errno(errno, "metrics endpoint: getsockname");
    const std::uint16_t port = ntohs(family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                                        : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
    auto server = std::make_unique<Server>(loop, std::move(fd), port, opts_, [this](const HttpRequestHead& req) {
        if (req.state == HttpRequestHead::State::Bad)
            return HttpResponse{400, "text/plain; charset=utf-8", "bad request: " + req.error + "\n"};
        if (req.method != "GET" && req.method != "HEAD")
            return HttpResponse{405, "text/plain; charset=utf-8", "method not allowed: use GET\n"};
        if (req.path == "/metrics") return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", render()};
        if (req.path == "/healthz") return HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
        if (req.path == "/readyz")
            return ready_ ? HttpResponse{200, "text/plain; charset=utf-8", "ready\n"}
                          : HttpResponse{503, "text/plain; charset=utf-8", "not ready: " + not_ready_reason_ + "\n"};
        return HttpResponse{404, "text/plain; charset=utf-8", "not found: try /metrics, /healthz or /readyz\n"};
    });
    if (auto st = server->start(); !st) return st;
    server_ = std::move(server);
    spdlog::info("metrics endpoint listening on {} (port {}): /metrics /healthz /readyz", address, port);
    return {};
}

std::optional<std::uint16_t> AgentMetrics::port() const {
    if (!server_) return std::nullopt;
    return server_->port();
}

void AgentMetrics::set_datapath(std::unique_ptr<DatapathView> view) {
    view_ = std::move(view);
    ct_entries_.reset();
}

void AgentMetrics::observe_probe(const BackendRef& ref, const ProbeResult& result) {
    auto& s = backends_[ref];
    if (!s.probe_duration) {
        const auto labels = backend_labels(ref);
        s.probe_duration = &fam_->probe_duration.Add(labels, kProbeBuckets);
        s.probe_failures = &fam_->probe_failures.Add(labels);
    }
    s.probe_duration->Observe(std::chrono::duration<double>(result.duration).count());
    if (!result.ok) s.probe_failures->Increment();
}

void AgentMetrics::set_backend_health(const BackendRef& ref, bool healthy) {
    auto& s = backends_[ref];
    if (!s.healthy) s.healthy = &fam_->backend_healthy.Add(backend_labels(ref));
    s.healthy->Set(healthy ? 1 : 0);
}

void AgentMetrics::retain_backends(const std::set<BackendRef>& keep, const std::vector<std::string>* services) {
    // Series are ordered by service first: each service in scope is one range.
    const auto sweep = [&](auto it, auto end) {
        while (it != end) {
            if (keep.count(it->first)) {
                ++it;
                continue;
            }
            if (it->second.probe_duration) fam_->probe_duration.Remove(it->second.probe_duration);
            if (it->second.probe_failures) fam_->probe_failures.Remove(it->second.probe_failures);
            if (it->second.healthy) fam_->backend_healthy.Remove(it->second.healthy);
            it = backends_.erase(it);
        }
    };
    if (!services) return sweep(backends_.begin(), backends_.end());
    for (const auto& name : *services) {
        const auto first = backends_.lower_bound(BackendRef{name, BackendIdentity{}});
        auto last = first;
        while (last != backends_.end() && last->first.service == name) ++last;
        sweep(first, last);
    }
}

void AgentMetrics::observe_reconcile(std::chrono::nanoseconds duration, std::size_t failures) {
    fam_->reconcile_duration.Observe(std::chrono::duration<double>(duration).count());
    if (failures) fam_->map_errors.Increment(static_cast<double>(failures));
}

void AgentMetrics::config_reload(bool ok) { (ok ? fam_->reloads_ok : fam_->reloads_failed).Increment(); }

void AgentMetrics::set_ready(bool ready, std::string reason) {
    ready_ = ready;
    not_ready_reason_ = ready ? std::string() : (reason.empty() ? std::string("not ready") : std::move(reason));
}

void AgentMetrics::scrape_error(const Error& e) {
    ++scrape_errors_;
    const auto now = Clock::now();
    if (last_error_log_ && now - *last_error_log_ < std::chrono::seconds(60)) {
        spdlog::debug("metrics scrape: {}", e.message);
        return;
    }
    last_error_log_ = now;
    spdlog::warn("metrics scrape: {} (series left out; further errors within a minute are logged at debug)", e.message);
}

void AgentMetrics::collect_datapath(std::vector<prometheus::MetricFamily>& out) {
    using prometheus::MetricType;
    if (!view_) return;
    const auto services = view_->services();

    auto svc_packets =
        family("kxlb_service_packets_total", "Packets the XDP datapath translated for a frontend, both directions",
               MetricType::Counter);
    auto svc_bytes = family("kxlb_service_bytes_total",
                            "Bytes (frame lengths) the XDP datapath translated for a frontend, both directions",
                            MetricType::Counter);
    auto svc_flows = family("kxlb_service_new_flows_total",
                            "New flows (connections) the XDP datapath balanced for a frontend", MetricType::Counter);
    auto be_packets =
        family("kxlb_backend_packets_total", "Packets the XDP datapath translated to and from a backend of a frontend",
               MetricType::Counter);
    auto be_bytes =
        family("kxlb_backend_bytes_total", "Bytes the XDP datapath translated to and from a backend of a frontend",
               MetricType::Counter);
    auto be_flows = family("kxlb_backend_new_flows_total", "New flows the XDP datapath sent to a backend of a frontend",
                           MetricType::Counter);
    for (const auto& s : services) {
        if (auto c = view_->service_counters(s.id); !c) {
            scrape_error(c.error());
        } else {
            add_sample(svc_packets, {{"service", s.label}}, static_cast<double>(c->packets));
            add_sample(svc_bytes, {{"service", s.label}}, static_cast<double>(c->bytes));
            add_sample(svc_flows, {{"service", s.label}}, static_cast<double>(c->new_flows));
        }
        for (const auto& b : s.backends) {
            auto c = view_->backend_counters(b.id);
            if (!c) {
                scrape_error(c.error());
                continue;
            }
            std::vector<prometheus::ClientMetric::Label> labels = {{"backend", b.label}, {"service", s.label}};
            add_sample(be_packets, labels, static_cast<double>(c->packets));
            add_sample(be_bytes, labels, static_cast<double>(c->bytes));
            add_sample(be_flows, labels, static_cast<double>(c->new_flows));
        }
    }
    for (auto* f : {&svc_packets, &svc_bytes, &svc_flows, &be_packets, &be_bytes, &be_flows})
        if (!f->metric.empty()) out.push_back(std::move(*f));

    if (auto r = view_->reasons(); !r) {
        scrape_error(r.error());
    } else {
        auto fwd = family("kxlb_datapath_forwards_total",
                          "Frames the XDP datapath translated and transmitted, by reason", MetricType::Counter);
        auto pass =
            family("kxlb_datapath_passes_total",
                   "Frames the XDP datapath passed to the kernel stack untouched, by reason", MetricType::Counter);
        auto drop =
            family("kxlb_datapath_drops_total",
                   "Frames the XDP datapath dropped or rejected (ICMP unreachable), by reason", MetricType::Counter);
        for (std::size_t i = 0; i < kReasonCount; ++i) {
            auto& f = reason_kind(i) == ReasonKind::Forward ? fwd : reason_kind(i) == ReasonKind::Pass ? pass : drop;
            add_sample(f, {{"reason", std::string(kReasonNames[i])}}, static_cast<double>((*r)[i].packets));
        }
        out.push_back(std::move(fwd));
        out.push_back(std::move(pass));
        out.push_back(std::move(drop));
    }

    const auto now = Clock::now();
    if (!ct_entries_ || now - ct_counted_at_ >= opts_.conntrack_cache_ttl) {
        if (auto n = view_->count_conntrack_entries(); !n) {
            scrape_error(n.error());
        } else {
            ct_entries_ = *n;
            ct_counted_at_ = now;
        }
    }
    if (ct_entries_) {
        auto f = family("kxlb_conntrack_entries",
                        "Tracked flows in the conntrack map (counted at most every few seconds)", MetricType::Gauge);
        add_sample(f, {}, static_cast<double>(*ct_entries_));
        out.push_back(std::move(f));
    }
    if (auto cap = view_->conntrack_capacity(); !cap) {
        scrape_error(cap.error());
    } else {
        auto f = family("kxlb_conntrack_capacity", "Size (max_entries) of the conntrack map", MetricType::Gauge);
        add_sample(f, {}, static_cast<double>(*cap));
        out.push_back(std::move(f));
    }
    if (auto fc = view_->flow_cache_counters(); !fc) {
        scrape_error(fc.error());
    } else if (*fc) {
        const std::tuple<const char*, const char*, std::uint64_t> series[] = {
            {"kxlb_flow_cache_hits_total",
             "Frames of established full-NAT flows the XDP datapath sent from its per-CPU "
             "flow cache, without a conntrack lookup",
             (*fc)->hits},
            {"kxlb_flow_cache_misses_total",
             "Frames of established full-NAT flows the flow cache could have carried that took the conntrack path "
             "(a flow's second frame, its first on a CPU, its once-a-second refresh, a shared slot)",
             (*fc)->misses},
            {"kxlb_flow_cache_fills_total", "Flow cache entries the XDP datapath wrote", (*fc)->fills},
        };
        for (const auto& [name, help, value] : series) {
            auto f = family(name, help, MetricType::Counter);
            add_sample(f, {}, static_cast<double>(value));
            out.push_back(std::move(f));
        }
    }

    if (auto r = view_->local_rev_reasons(); !r) {
        scrape_error(r.error());
    } else {
        out.push_back(reason_family("kxlb_local_reply_packets_total",
                                    "Packets the local backends' reply translation (tc egress) saw, by reason "
                                    "(rev_local: a reply given the frontend as its source; pass_*: not a reply "
                                    "of a local flow)",
                                    kLocalRevReasonNames, *r));
    }

    if (!view_->has_socket_lb()) return;
    if (auto r = view_->socket_lb_reasons(); !r) {
        scrape_error(r.error());
    } else {
        auto f = family("kxlb_socket_lb_operations_total",
                        "Socket-LB hook outcomes (balanced, reversed, or fail_*), by reason", MetricType::Counter);
        for (std::size_t i = 0; i < kSockReasonCount; ++i)
            add_sample(f, {{"reason", std::string(kSockReasonNames[i])}}, static_cast<double>((*r)[i]));
        out.push_back(std::move(f));
    }
    auto svc_conns =
        family("kxlb_socket_lb_service_connections_total",
               "Connections (and unconnected datagrams) socket-LB balanced for a frontend", MetricType::Counter);
    auto be_conns = family("kxlb_socket_lb_backend_connections_total",
                           "Connections (and unconnected datagrams) socket-LB sent to a backend of a frontend",
                           MetricType::Counter);
    for (const auto& s : services) {
        if (!s.socket_lb) continue;
        if (auto n = view_->socket_lb_service_connections(s.id); !n) scrape_error(n.error());
        else add_sample(svc_conns, {{"service", s.label}}, static_cast<double>(*n));
        for (const auto& b : s.backends) {
            if (auto n = view_->socket_lb_backend_connections(b.id); !n) scrape_error(n.error());
            else add_sample(be_conns, {{"backend", b.label}, {"service", s.label}}, static_cast<double>(*n));
        }
    }
    for (auto* f : {&svc_conns, &be_conns})
        if (!f->metric.empty()) out.push_back(std::move(*f));
}

void AgentMetrics::collect_decap(std::vector<prometheus::MetricFamily>& out) {
    if (!decap_) return;
    auto r = decap_();
    if (!r) return scrape_error(r.error());
    out.push_back(reason_family("kxlb_dsr_decap_packets_total",
                                "Frames the DSR decapsulation program handled, by reason (decap_*: unwrapped; pass_*: "
                                "left to the kernel stack; drop_*: dropped)",
                                kDecapReasonNames, *r));
}

std::string AgentMetrics::render() {
    auto families = registry_->Collect();
    // The registry keeps series in hash order: sort them by labels for a stable, readable text.
    for (auto& f : families)
        std::stable_sort(f.metric.begin(), f.metric.end(),
                         [](const auto& a, const auto& b) { return a.label < b.label; });
    collect_datapath(families);
    collect_decap(families);
    auto errors = family("kxlb_scrape_errors_total",
                         "BPF map reads that failed while serving /metrics (the affected series were left out)",
                         prometheus::MetricType::Counter);
    add_sample(errors, {}, static_cast<double>(scrape_errors_));
    families.push_back(std::move(errors));
    std::stable_sort(families.begin(), families.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return prometheus::TextSerializer().Serialize(families);
}

}  // namespace kxlb::agent
