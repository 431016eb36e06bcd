// Prober: per-target schedules (jittered timers), one ProbeAttempt state machine per probe in
// flight (non-blocking connect -> [TLS handshake] -> [send request -> read status line]), and the
// SSL_CTX cache. See prober.hpp for the contracts.
#include "agent/prober.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string_view>
#include <utility>

namespace kxlb::agent {

const char* to_string(HealthCheckSpec::Type type) {
    switch (type) {
        case HealthCheckSpec::Type::Tcp: return "tcp";
        case HealthCheckSpec::Type::Http: return "http";
        case HealthCheckSpec::Type::Https: return "https";
    }
    return "unknown";
}

bool HealthState::record(bool success) {
    if (success == healthy_) {
        streak_ = 0;  // agrees with the current state: the opposite streak is broken
        return false;
    }
    if (++streak_ < (healthy_ ? fall_ : rise_)) return false;
    healthy_ = !healthy_;
    streak_ = 0;
    return true;
}

namespace {

using std::chrono::milliseconds;

struct SslDeleter {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

struct BioMethodDeleter {
    void operator()(BIO_METHOD* m) const { BIO_meth_free(m); }
};

// OpenSSL's socket BIO writes with write(2), which raises SIGPIPE when the server has gone; this
// BIO uses send(MSG_NOSIGNAL)/recv on a non-blocking socket it does not own.
int nosig_bio_fd(BIO* bio) { return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio))); }

int nosig_bio_write(BIO* bio, const char* data, int len) {
    BIO_clear_retry_flags(bio);
    ssize_t n;
    do n = ::send(nosig_bio_fd(bio), data, static_cast<std::size_t>(len), MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(bio);
    return static_cast<int>(n);
}

int nosig_bio_read(BIO* bio, char* data, int len) {
    BIO_clear_retry_flags(bio);
    ssize_t n;
    do n = ::recv(nosig_bio_fd(bio), data, static_cast<std::size_t>(len), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(bio);
    return static_cast<int>(n);
}

long nosig_bio_ctrl(BIO* bio, int cmd, long /*num*/, void* ptr) {
    switch (cmd) {
        case BIO_CTRL_FLUSH: return 1;
        case BIO_C_GET_FD:
            if (ptr) *static_cast<int*>(ptr) = nosig_bio_fd(bio);
            return nosig_bio_fd(bio);
        default: return 0;
    }
}

BIO_METHOD* nosig_bio_method() {
    static const std::unique_ptr<BIO_METHOD, BioMethodDeleter> method = [] {
        std::unique_ptr<BIO_METHOD, BioMethodDeleter> m(
            BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "kxlb-nosigpipe-socket"));
        if (m) {
            BIO_meth_set_write(m.get(), nosig_bio_write);
            BIO_meth_set_read(m.get(), nosig_bio_read);
            BIO_meth_set_ctrl(m.get(), nosig_bio_ctrl);
        }
        return m;
    }();
    return method.get();
}

BIO* new_nosig_bio(int fd) {
    BIO_METHOD* method = nosig_bio_method();
    if (!method) return nullptr;
    BIO* bio = BIO_new(method);
    if (!bio) return nullptr;
    BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)));
    BIO_set_init(bio, 1);
    return bio;
}

// The reason of the oldest queued OpenSSL error, or `fallback`.
std::string openssl_reason(std::string_view fallback) {
    unsigned long e = ERR_peek_error();
    const char* reason = e ? ERR_reason_error_string(e) : nullptr;
    return reason ? reason : std::string(fallback);
}

bool is_ip_literal(const std::string& s) {
    unsigned char buf[sizeof(in6_addr)];
    return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// Printable, bounded excerpt of untrusted bytes for error messages.
std::string excerpt(std::string_view s) {
    std::string out;
    for (char c : s.substr(0, 40)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    if (s.size() > 40) out += "...";
    return out;
}

// Outcome of parsing the start of an HTTP response.
struct StatusParse {
    enum { NeedMore, Done, Malformed, TooLong } state = NeedMore;
    int status = 0;
};

// Parses "HTTP/<version> <3 digits>[ <reason>]\r\n" from the bytes received so far; rejects
// garbage as soon as the prefix cannot be a status line.
StatusParse parse_status_line(std::string_view head, std::size_t max_bytes) {
    constexpr std::string_view kPrefix = "HTTP/";
    std::size_t n = std::min(head.size(), kPrefix.size());
    if (head.substr(0, n) != kPrefix.substr(0, n)) return {StatusParse::Malformed};
    std::size_t eol = head.find('\n');
    if (eol == std::string_view::npos) return {head.size() >= max_bytes ? StatusParse::TooLong : StatusParse::NeedMore};
    std::string_view line = head.substr(0, eol);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    std::size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == kPrefix.size()) return {StatusParse::Malformed};
    for (char c : line.substr(kPrefix.size(), sp - kPrefix.size())) {
        if (!((c >= '0' && c <= '9') || c == '.')) return {StatusParse::Malformed};
    }
    std::string_view code = line.substr(sp + 1);
    if (code.size() < 3 || (code.size() > 3 && code[3] != ' ')) return {StatusParse::Malformed};
    int status = 0;
    for (char c : code.substr(0, 3)) {
        if (c < '0' || c > '9') return {StatusParse::Malformed};
        status = status * 10 + (c - '0');
    }
    return {StatusParse::Done, status};
}

// Everything about how to probe one target, fixed when the target is added.
struct Endpoint {
    HealthCheckSpec::Type type = HealthCheckSpec::Type::Tcp;
    sockaddr_storage addr{};
    socklen_t addr_len = 0;
    milliseconds timeout{1000};
    std::string request;  // http/https
    int expected_status = 200;
    std::shared_ptr<SSL_CTX> tls_ctx;  // https
    bool tls_verify = true;
    std::string sni;          // empty: no SNI
    std::string verify_name;  // DNS name or IP literal the certificate must match
};

// One probe of one endpoint: a state machine advanced by fd readiness and ended by a verdict or
// its timeout timer. It reports exactly once through `done`, which may destroy the attempt: all
// paths funnel into deliver(), which is always the last thing a callback does.
class ProbeAttempt {
public:
    using Done = std::function<void(ProbeResult)>;

    ProbeAttempt(EventLoop& loop, const Endpoint& ep, Done done) : loop_(loop), ep_(ep), done_(std::move(done)) {}
    ~ProbeAttempt() {
        if (fd_.valid()) loop_.remove_fd(fd_.get());
        if (timer_) loop_.cancel_timer(timer_);
        ssl_.reset();  // before the socket closes
    }
    ProbeAttempt(const ProbeAttempt&) = delete;
    ProbeAttempt& operator=(const ProbeAttempt&) = delete;

    // Starts the probe; may report (and so destroy this) before returning.
    void start() {
        start_ = loop_.now();
        begin();
        if (verdict_) deliver();
    }

private:
    enum class Phase { Connect, TlsHandshake, Send, Receive };

    static const char* phase_name(Phase p) {
        switch (p) {
            case Phase::Connect: return "connect";
            case Phase::TlsHandshake: return "tls handshake";
            case Phase::Send: return "sending request";
            case Phase::Receive: return "waiting for status line";
        }
        return "?";
    }

    void begin() {
        fd_.reset(::socket(ep_.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!fd_.valid()) return fail_errno("socket", errno);
        timer_ = loop_.add_timer(start_ + ep_.timeout, [this] { on_timeout(); });
        if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&ep_.addr), ep_.addr_len) == 0) return connected();
        if (errno != EINPROGRESS) return fail_errno("connect", errno);
        watch(EPOLLOUT);
    }

    // Readiness (including EPOLLERR/EPOLLHUP) only means "retry the current step": the socket and
    // SSL calls themselves tell what happened.
    void on_event() {
        step();
        if (verdict_) deliver();
    }

    void on_timeout() {
        timer_ = 0;  // fired: nothing to cancel
        fail("timeout after " + std::to_string(ep_.timeout.count()) + "ms (" + phase_name(phase_) + ")");
        deliver();
    }

    void step() {
        switch (phase_) {
            case Phase::Connect: {
                int err = 0;
                socklen_t len = sizeof err;
                if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
                if (err != 0) return fail_errno("connect", err);
                return connected();
            }
            case Phase::TlsHandshake: return handshake();
            case Phase::Send: return ssl_ ? send_tls() : send_plain();
            case Phase::Receive: return ssl_ ? receive_tls() : receive_plain();
        }
    }

    void connected() {
        switch (ep_.type) {
            case HealthCheckSpec::Type::Tcp: {
                // Reset instead of FIN: a connect check every few seconds must not pile up TIME_WAIT.
                linger lg{1, 0};
                (void)::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                return succeed();
            }
            case HealthCheckSpec::Type::Http: phase_ = Phase::Send; return send_plain();
            case HealthCheckSpec::Type::Https: return start_tls();
        }
    }

    void start_tls() {
        phase_ = Phase::TlsHandshake;
        ssl_.reset(SSL_new(ep_.tls_ctx.get()));
        if (!ssl_) return fail("tls: " + openssl_reason("SSL_new failed"));
        BIO* bio = new_nosig_bio(fd_.get());
        if (!bio) return fail("tls: cannot create BIO");
        SSL_set_bio(ssl_.get(), bio, bio);  // the SSL owns the BIO (not the fd)
        if (!ep_.sni.empty() && SSL_set_tlsext_host_name(ssl_.get(), ep_.sni.c_str()) != 1) {
            return fail("tls: cannot set SNI " + ep_.sni);
        }
        if (ep_.tls_verify) {
            X509_VERIFY_PARAM* param = SSL_get0_param(ssl_.get());
            X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            int rc = is_ip_literal(ep_.verify_name) ? X509_VERIFY_PARAM_set1_ip_asc(param, ep_.verify_name.c_str())
                                                    : X509_VERIFY_PARAM_set1_host(param, ep_.verify_name.c_str(), 0);
            if (rc != 1) return fail("tls: cannot set verification name " + ep_.verify_name);
        }
        handshake();
    }

    void handshake() {
        ERR_clear_error();
        int rc = SSL_connect(ssl_.get());
        if (rc == 1) {
            phase_ = Phase::Send;
            return send_tls();
        }
        ssl_failed(rc, errno);
    }

    void send_plain() {
        while (sent_ < ep_.request.size()) {
            ssize_t n = ::send(fd_.get(), ep_.request.data() + sent_, ep_.request.size() - sent_, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return watch(EPOLLOUT);
                return fail_errno("http: send", errno);
            }
            sent_ += static_cast<std::size_t>(n);
        }
        phase_ = Phase::Receive;
        watch(EPOLLIN);
    }

    void receive_plain() {
        char buf[1024];
        for (;;) {
            std::size_t room = std::min(sizeof buf, Prober::kMaxResponseBytes - head_.size());
            ssize_t n = ::recv(fd_.get(), buf, room, 0);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) return;  // still watching EPOLLIN
                return fail_errno("http: recv", errno);
            }
            if (n == 0) return fail("http: connection closed before status line");
            if (got_bytes(buf, static_cast<std::size_t>(n))) return;
        }
    }

    void send_tls() {
        // Without SSL_MODE_ENABLE_PARTIAL_WRITE, SSL_write sends everything or asks to be retried
        // with the same arguments.
        ERR_clear_error();
        int rc = SSL_write(ssl_.get(), ep_.request.data(), static_cast<int>(ep_.request.size()));
        if (rc <= 0) return ssl_failed(rc, errno);
        sent_ = ep_.request.size();
        phase_ = Phase::Receive;
        receive_tls();  // records may already be buffered inside the SSL, which epoll cannot see
    }

    void receive_tls() {
        char buf[1024];
        for (;;) {
            std::size_t room = std::min(sizeof buf, Prober::kMaxResponseBytes - head_.size());
            ERR_clear_error();
            int rc = SSL_read(ssl_.get(), buf, static_cast<int>(room));
            if (rc <= 0) return ssl_failed(rc, errno);
            if (got_bytes(buf, static_cast<std::size_t>(rc))) return;
        }
    }

    // Appends received bytes and decides if the status line allows it; true once there is a verdict.
    bool got_bytes(const char* data, std::size_t n) {
        head_.append(data, n);
        StatusParse p = parse_status_line(head_, Prober::kMaxResponseBytes);
        switch (p.state) {
            case StatusParse::NeedMore: return false;
            case StatusParse::Malformed: fail("http: malformed status line: \"" + excerpt(head_) + "\""); break;
            case StatusParse::TooLong:
                fail("http: no status line in the first " + std::to_string(Prober::kMaxResponseBytes) + " bytes");
                break;
            case StatusParse::Done:
                if (p.status == ep_.expected_status) {
                    succeed();
                } else {
                    fail("http status " + std::to_string(p.status) + " (want " + std::to_string(ep_.expected_status) +
                         ")");
                }
                break;
        }
        return true;
    }

    // An SSL_* call returned `rc` <= 0 (errno captured right after it): wait or fail.
    void ssl_failed(int rc, int saved_errno) {
        ssl_failed_reason(rc, saved_errno);
        ERR_clear_error();  // leave no stale errors on the loop thread
    }

    void ssl_failed_reason(int rc, int saved_errno) {
        int err = SSL_get_error(ssl_.get(), rc);
        switch (err) {
            case SSL_ERROR_WANT_READ: return watch(EPOLLIN);
            case SSL_ERROR_WANT_WRITE: return watch(EPOLLOUT);
            case SSL_ERROR_ZERO_RETURN:
                return fail(phase_ == Phase::TlsHandshake ? "tls: connection closed during handshake"
                                                          : "http: connection closed before status line");
            case SSL_ERROR_SYSCALL:
                if (saved_errno != 0 && ERR_peek_error() == 0) return fail_errno("tls", saved_errno);
                return fail("tls: " + openssl_reason("connection closed"));
            default: {
                long verify = SSL_get_verify_result(ssl_.get());
                if (phase_ == Phase::TlsHandshake && ep_.tls_verify && verify != X509_V_OK) {
                    return fail(std::string("tls: certificate verify failed: ") +
                                X509_verify_cert_error_string(verify));
                }
                return fail("tls: " + openssl_reason("error " + std::to_string(err)));
            }
        }
    }

    void watch(std::uint32_t events) {
        if (!registered_) {
            Status st = loop_.add_fd(fd_.get(), events, [this](std::uint32_t) { on_event(); });
            if (!st) return fail("event loop: " + st.error().message);
            registered_ = true;
        } else if (events != events_) {
            if (Status st = loop_.modify_fd(fd_.get(), events); !st) return fail("event loop: " + st.error().message);
        }
        events_ = events;
    }

    void succeed() { set_verdict(true, {}); }
    void fail(std::string error) { set_verdict(false, std::move(error)); }
    void fail_errno(std::string_view what, int err) { fail(std::string(what) + ": " + std::strerror(err)); }

    void set_verdict(bool ok, std::string error) {
        if (verdict_) return;  // the first verdict wins
        verdict_ = ProbeResult{ok, loop_.now() - start_, std::move(error)};
    }

    // Reports the verdict; `this` may be destroyed by `done`, so nothing may follow.
    void deliver() {
        ProbeResult result = std::move(*verdict_);
        Done done = std::move(done_);
        done(std::move(result));
    }

    EventLoop& loop_;
    const Endpoint& ep_;  // owned by the target, which outlives its attempts
    Done done_;
    EventLoop::TimePoint start_;
    Phase phase_ = Phase::Connect;
    UniqueFd fd_;
    SslPtr ssl_;  // declared after fd_: freed before the socket closes
    bool registered_ = false;
    std::uint32_t events_ = 0;
    EventLoop::TimerId timer_ = 0;
    std::size_t sent_ = 0;
    std::string head_;
    std::optional<ProbeResult> verdict_;
};

Status validate_spec(const HealthCheckSpec& spec, std::uint16_t port) {
    if (spec.interval.count() <= 0) return Error::invalid("health check: interval must be positive");
    if (spec.timeout.count() <= 0 || spec.timeout >= spec.interval) {
        return Error::invalid("health check: timeout must be positive and shorter than the interval");
    }
    if (port == 0) return Error::invalid("health check: no port");
    if (spec.type == HealthCheckSpec::Type::Tcp) return {};
    auto clean = [](const std::string& s) {
        return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
    };
    if (spec.path.empty() || spec.path[0] != '/' || !clean(spec.path)) {
        return Error::invalid("health check: path must start with '/' and contain no spaces or control characters");
    }
    if (!clean(spec.host) || spec.host.find('/') != std::string::npos) {
        return Error::invalid("health check: host must contain no spaces, '/' or control characters");
    }
    if (spec.expected_status < 100 || spec.expected_status > 599) {
        return Error::invalid("health check: expected status must be 100..599");
    }
    return {};
}

// The Host header value: spec.host or the address literal, with the port unless it is the default.
std::string host_header(const HealthCheckSpec& spec, const IpAddr& addr, std::uint16_t port) {
    std::string host = spec.host.empty() ? addr.str() : spec.host;
    unsigned char buf[sizeof(in6_addr)];
    if (inet_pton(AF_INET6, host.c_str(), buf) == 1) host = "[" + host + "]";
    std::uint16_t default_port = spec.type == HealthCheckSpec::Type::Https ? 443 : 80;
    if (port != default_port) host += ":" + std::to_string(port);
    return host;
}

}  // namespace

// SSL_CTXs shared by targets with the same (ca_file, insecure); a context lives while a target
// uses it, so re-adding targets after their CA file changed reloads it.
class Prober::TlsContexts {
public:
    Result<std::shared_ptr<SSL_CTX>> get(const std::string& ca_file, bool insecure) {
        std::erase_if(cache_, [](const auto& kv) { return kv.second.expired(); });
        Key key{insecure ? std::string() : ca_file, insecure};
        if (auto it = cache_.find(key); it != cache_.end()) {
            if (auto ctx = it->second.lock()) return ctx;
        }
        ERR_clear_error();
        std::shared_ptr<SSL_CTX> ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
        if (!ctx) return Error::invalid("tls: SSL_CTX_new: " + openssl_reason("failed"));
        SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
        if (insecure) {
            SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
        } else {
            SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
            int rc = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx.get())
                                     : SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr);
            if (rc != 1) {
                std::string what = ca_file.empty() ? "default CA paths" : "CA file " + ca_file;
                std::string reason = openssl_reason("failed");
                ERR_clear_error();
                return Error::invalid("tls: loading " + what + ": " + reason);
            }
        }
        cache_[key] = ctx;
        return ctx;
    }

private:
    using Key = std::pair<std::string, bool>;
    std::map<Key, std::weak_ptr<SSL_CTX>> cache_;
};

struct Prober::Target {
    TargetId id = 0;
    std::uint64_t serial = 0;  // distinguishes a re-added id from the removed one
    milliseconds interval{0};
    Endpoint endpoint;
    HealthState state{false, 1, 1};
    EventLoop::TimerId next_probe = 0;
    std::unique_ptr<ProbeAttempt> attempt;
};

Prober::Prober(EventLoop& loop, Observer& observer, std::uint64_t rng_seed)
    : loop_(&loop), observer_(&observer), rng_(rng_seed), tls_(std::make_unique<TlsContexts>()) {}

Prober::~Prober() {
    for (auto& [id, t] : targets_) stop(*t);
}

Status Prober::add(TargetId id, const IpAddr& addr, std::uint16_t port, const HealthCheckSpec& spec,
                   bool initially_healthy) {
    if (targets_.contains(id)) return Error{EEXIST, "prober: target " + std::to_string(id) + " already exists"};
    std::uint16_t probe_port = spec.port ? spec.port : port;
    if (Status st = validate_spec(spec, probe_port); !st) return st;

    auto t = std::make_unique<Target>();
    t->id = id;
    t->serial = next_serial_++;
    t->interval = spec.interval;
    t->state = HealthState(initially_healthy, spec.rise, spec.fall);
    Endpoint& ep = t->endpoint;
    ep.type = spec.type;
    ep.timeout = spec.timeout;
    ep.expected_status = spec.expected_status;
    if (addr.family == AF_INET) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&ep.addr);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(probe_port);
        std::memcpy(&sin->sin_addr, addr.bytes.data(), 4);
        ep.addr_len = sizeof(sockaddr_in);
    } else if (addr.family == AF_INET6) {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(probe_port);
        std::memcpy(&sin6->sin6_addr, addr.bytes.data(), 16);
        ep.addr_len = sizeof(sockaddr_in6);
    } else {
        return Error::invalid("prober: target " + std::to_string(id) + " has no IPv4/IPv6 address");
    }
    if (spec.type != HealthCheckSpec::Type::Tcp) {
        ep.request = "GET " + spec.path + " HTTP/1.1\r\nHost: " + host_header(spec, addr, probe_port) +
                     "\r\nConnection: close\r\nUser-Agent: kxlb-agent\r\n\r\n";
    }
    if (spec.type == HealthCheckSpec::Type::Https) {
        auto ctx = tls_->get(spec.ca_file, spec.insecure);
        if (!ctx) return ctx.error();
        ep.tls_ctx = std::move(*ctx);
        ep.tls_verify = !spec.insecure;
        if (!spec.host.empty() && !is_ip_literal(spec.host)) ep.sni = spec.host;  // RFC 6066: no IP in SNI
        ep.verify_name = spec.host.empty() ? addr.str() : spec.host;
    }

    // First probe at a random offset within the interval, so targets added together spread out.
    std::uniform_int_distribution<std::int64_t> offset(0, std::chrono::nanoseconds(spec.interval).count() - 1);
    Target& ref = *t;
    targets_.emplace(id, std::move(t));
    schedule(ref, loop_->now() + std::chrono::nanoseconds(offset(rng_)));
    return {};
}

void Prober::remove(TargetId id) {
    auto it = targets_.find(id);
    if (it == targets_.end()) return;
    stop(*it->second);
    targets_.erase(it);
}

std::optional<bool> Prober::healthy(TargetId id) const {
    auto it = targets_.find(id);
    if (it == targets_.end()) return std::nullopt;
    return it->second->state.healthy();
}

std::size_t Prober::in_flight() const {
    return static_cast<std::size_t>(
        std::count_if(targets_.begin(), targets_.end(), [](const auto& kv) { return kv.second->attempt != nullptr; }));
}

void Prober::stop(Target& t) {
    if (t.next_probe) loop_->cancel_timer(t.next_probe);
    t.next_probe = 0;
    t.attempt.reset();
}

void Prober::schedule(Target& t, EventLoop::TimePoint at) {
    TargetId id = t.id;
    t.next_probe = loop_->add_timer(at, [this, id] { start_probe(id); });
}

void Prober::start_probe(TargetId id) {
    auto it = targets_.find(id);
    if (it == targets_.end()) return;  // cannot happen: remove() cancels the timer
    Target& t = *it->second;
    t.next_probe = 0;
    t.attempt =
        std::make_unique<ProbeAttempt>(*loop_, t.endpoint, [this, id](ProbeResult r) { complete(id, std::move(r)); });
    t.attempt->start();  // may complete synchronously; `t` may be gone afterwards
}

void Prober::complete(TargetId id, ProbeResult result) {
    auto it = targets_.find(id);
    if (it == targets_.end()) return;
    Target& t = *it->second;
    t.attempt.reset();  // we are inside its last callback, which touches nothing after reporting
    bool flipped = t.state.record(result.ok);
    bool healthy = t.state.healthy();
    std::uint64_t serial = t.serial;

    // Next probe one jittered interval after this one started (never in the past).
    std::uniform_real_distribution<double> jitter(0.9, 1.1);
    auto period = std::chrono::duration_cast<std::chrono::nanoseconds>(t.interval * jitter(rng_));
    auto now = loop_->now();
    schedule(t, std::max(now, now - result.duration + period));

    observer_->on_result(id, result);
    if (!flipped) return;
    // The observer may have removed (or removed and re-added) the target in on_result.
    it = targets_.find(id);
    if (it == targets_.end() || it->second->serial != serial) return;
    observer_->on_transition(id, healthy);
}

}  // namespace kxlb::agent
