// Unit tests for the health prober: the rise/fall state machine, and tcp/http/https probes against
// real servers on 127.0.0.1 / ::1 run by threads of this test process (a TLS CA and server
// certificate are generated at test time). The prober itself runs on the test's thread through
// one EventLoop; SIGPIPE is left at its default there, so a probe that raised it would kill the test.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/event_loop.hpp"
#include "agent/prober.hpp"

namespace kxlb::agent {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Type = HealthCheckSpec::Type;

// ---------------------------------------------------------------------------------------------
// HealthState: pure hysteresis.

// Feeds a sequence ("S" success, "F" failure) and returns the indexes at which a transition happened.
std::vector<int> transitions(HealthState& h, const std::string& seq) {
    std::vector<int> at;
    for (int i = 0; i < static_cast<int>(seq.size()); ++i) {
        if (h.record(seq[i] == 'S')) at.push_back(i);
    }
    return at;
}

TEST(ProberHealthState, FallsAfterExactlyFallConsecutiveFailures) {
    HealthState h(true, 2, 3);
    EXPECT_EQ(transitions(h, "SSFFSFF"), std::vector<int>{});  // the success resets the failure streak
    EXPECT_TRUE(h.healthy());
    EXPECT_EQ(h.streak(), 2u);
    EXPECT_EQ(transitions(h, "F"), std::vector<int>{0});  // third consecutive failure
    EXPECT_FALSE(h.healthy());
    EXPECT_EQ(h.streak(), 0u);
    EXPECT_EQ(transitions(h, "FFFF"), std::vector<int>{});  // more failures: no repeated transition
}

TEST(ProberHealthState, RisesAfterExactlyRiseConsecutiveSuccesses) {
    HealthState h(false, 2, 3);
    EXPECT_EQ(transitions(h, "FSFSFS"), std::vector<int>{});
    EXPECT_FALSE(h.healthy());
    EXPECT_EQ(transitions(h, "S"), std::vector<int>{0});
    EXPECT_TRUE(h.healthy());
    EXPECT_EQ(transitions(h, "SSS"), std::vector<int>{});
}

TEST(ProberHealthState, FlappingNeverTransitions) {
    HealthState up(true, 2, 3);
    EXPECT_EQ(transitions(up, "FSFFSFFSFSFFS"), std::vector<int>{});  // never 3 failures in a row
    EXPECT_TRUE(up.healthy());
    HealthState down(false, 3, 2);
    EXPECT_EQ(transitions(down, "SFSSFSSFSF"), std::vector<int>{});  // never 3 successes in a row
    EXPECT_FALSE(down.healthy());
}

TEST(ProberHealthState, FullCycleAndZeroMeansOne) {
    HealthState h(true, 2, 3);
    EXPECT_EQ(transitions(h, "SFFFSSFFFSS"), (std::vector<int>{3, 5, 8, 10}));
    HealthState one(true, 0, 0);
    EXPECT_EQ(transitions(one, "FFSSF"), (std::vector<int>{0, 2, 4}));
}

TEST(ProberHealthState, TypeNames) {
    EXPECT_STREQ(to_string(Type::Tcp), "tcp");
    EXPECT_STREQ(to_string(Type::Http), "http");
    EXPECT_STREQ(to_string(Type::Https), "https");
}

// ---------------------------------------------------------------------------------------------
// Test servers.

// A listening socket on loopback served by its own thread: each accepted (blocking, 1 s I/O
// timeouts) connection is handed to `handler`, one at a time; a handler returning true keeps the
// connection open until the server stops. SIGPIPE is blocked on the server thread only.
class TestServer {
public:
    using Handler = std::function<bool(int fd)>;

    TestServer(int family, Handler handler, std::uint16_t port = 0) : handler_(std::move(handler)) {
        listen_.reset(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!listen_.valid()) return;
        int one = 1;
        ::setsockopt(listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_storage ss{};
        socklen_t len;
        if (family == AF_INET) {
            auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
            sin->sin_family = AF_INET;
            sin->sin_port = htons(port);
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            len = sizeof *sin;
        } else {
            auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons(port);
            sin6->sin6_addr = in6addr_loopback;
            len = sizeof *sin6;
        }
        if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
            ::listen(listen_.get(), SOMAXCONN) != 0 ||
            ::getsockname(listen_.get(), reinterpret_cast<sockaddr*>(&ss), &len)) {
            listen_.reset();
            return;
        }
        port_ = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                        : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
        stop_.reset(::eventfd(0, EFD_CLOEXEC));
        thread_ = std::thread([this] { serve(); });
    }
    ~TestServer() { stop(); }
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;

    bool ok() const { return port_ != 0; }
    std::uint16_t port() const { return port_; }
    int accepted() const { return accepted_.load(); }

    // Closes the listening socket (new connections are refused) and every kept connection.
    void stop() {
        if (thread_.joinable()) {
            std::uint64_t one = 1;
            (void)!::write(stop_.get(), &one, sizeof one);
            thread_.join();
        }
        kept_.clear();
        listen_.reset();
    }

private:
    void serve() {
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
        for (;;) {
            pollfd p[2] = {{listen_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
            if (::poll(p, 2, 1000) < 0 && errno != EINTR) return;
            if (p[1].revents) return;
            if (!p[0].revents) continue;
            for (;;) {
                int c = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
                if (c < 0) break;
                ++accepted_;
                timeval tv{1, 0};
                ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                if (handler_(c)) {
                    kept_.emplace_back(c);
                } else {
                    ::close(c);
                }
            }
        }
    }

    Handler handler_;
    UniqueFd listen_;
    UniqueFd stop_;
    std::uint16_t port_ = 0;
    std::atomic<int> accepted_{0};
    std::vector<UniqueFd> kept_;  // server thread only, then stop()
    std::thread thread_;
};

// Reads an HTTP request head (until a blank line, EOF, error or the 1 s socket timeout).
std::string read_request(int fd) {
    std::string req;
    char buf[512];
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < 8192) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<std::size_t>(n));
    }
    return req;
}

void send_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0) return;  // the prober closed early: fine
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

TestServer::Handler close_at_once() {
    return [](int) { return false; };
}

TestServer::Handler respond(std::string response) {
    return [response](int fd) {
        read_request(fd);
        send_all(fd, response);
        return false;
    };
}

// A port nothing listens on: bound, then closed.
std::uint16_t refused_port(int family = AF_INET) {
    TestServer s(family, close_at_once());
    EXPECT_TRUE(s.ok());
    return s.port();
}

// ---------------------------------------------------------------------------------------------
// TLS material: two unrelated CAs; a server certificate from the first for IP 127.0.0.1, ::1 and
// DNS backend.test. PEMs live in a temp dir removed at exit.

using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;
using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)>;

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    ASSERT_NE(ext, nullptr) << value;
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

// A CA certificate (issuer == nullptr: self-signed) or a server certificate with `san`.
X509Ptr make_cert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key, const char* san, long serial) {
    X509Ptr x(X509_new(), X509_free);
    X509_set_version(x.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x.get()), serial);
    X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x.get()), 24 * 3600);
    X509_set_pubkey(x.get(), key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x.get()), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509* iss = issuer ? issuer : x.get();
    X509_set_issuer_name(x.get(), X509_get_subject_name(iss));
    if (!san) {
        add_ext(x.get(), iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
        add_ext(x.get(), iss, NID_subject_key_identifier, "hash");
    } else {
        add_ext(x.get(), iss, NID_basic_constraints, "CA:FALSE");
        add_ext(x.get(), iss, NID_ext_key_usage, "serverAuth");
        add_ext(x.get(), iss, NID_subject_alt_name, san);
    }
    EXPECT_GT(X509_sign(x.get(), issuer_key ? issuer_key : key, EVP_sha256()), 0);
    return x;
}

void write_pem(const std::filesystem::path& path, X509* cert) {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    PEM_write_X509(f, cert);
    std::fclose(f);
}

struct Pki {
    std::filesystem::path dir;
    std::string ca_file;     // signed the server certificate
    std::string other_ca;    // unrelated CA
    std::string garbage_ca;  // not PEM
    KeyPtr server_key{nullptr, EVP_PKEY_free};
    X509Ptr server_cert{nullptr, X509_free};

    Pki() {
        char tmpl[] = "/tmp/kxlb-prober-test-XXXXXX";
        dir = ::mkdtemp(tmpl);
        KeyPtr ca_key(EVP_EC_gen("P-256"), EVP_PKEY_free);
        KeyPtr other_key(EVP_EC_gen("P-256"), EVP_PKEY_free);
        server_key.reset(EVP_EC_gen("P-256"));
        X509Ptr ca = make_cert(ca_key.get(), "kxlb test CA", nullptr, nullptr, nullptr, 1);
        X509Ptr other = make_cert(other_key.get(), "kxlb other CA", nullptr, nullptr, nullptr, 2);
        server_cert =
            make_cert(server_key.get(), "backend", ca.get(), ca_key.get(), "IP:127.0.0.1,IP:::1,DNS:backend.test", 3);
        ca_file = dir / "ca.pem";
        other_ca = dir / "other-ca.pem";
        garbage_ca = dir / "garbage.pem";
        write_pem(ca_file, ca.get());
        write_pem(other_ca, other.get());
        std::ofstream(garbage_ca) << "not a certificate\n";
    }
    ~Pki() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

Pki& pki() {
    static Pki p;
    return p;
}

// A TLS server handler: handshake, read the request, answer, close. Records the SNI it saw.
struct TlsServer {
    SslCtxPtr ctx{SSL_CTX_new(TLS_server_method()), SSL_CTX_free};
    std::mutex mu;
    std::vector<std::string> sni_seen;
    std::atomic<int> handshakes{0};

    TlsServer() {
        EXPECT_EQ(SSL_CTX_use_certificate(ctx.get(), pki().server_cert.get()), 1);
        EXPECT_EQ(SSL_CTX_use_PrivateKey(ctx.get(), pki().server_key.get()), 1);
    }
    TestServer::Handler handler(std::string response) {
        return [this, response](int fd) {
            SSL* ssl = SSL_new(ctx.get());
            SSL_set_fd(ssl, fd);
            if (SSL_accept(ssl) == 1) {
                ++handshakes;
                const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
                {
                    std::lock_guard lock(mu);
                    sni_seen.push_back(sni ? sni : "");
                }
                std::string req;
                char buf[512];
                while (req.find("\r\n\r\n") == std::string::npos) {
                    int n = SSL_read(ssl, buf, sizeof buf);
                    if (n <= 0) break;
                    req.append(buf, static_cast<std::size_t>(n));
                }
                SSL_write(ssl, response.data(), static_cast<int>(response.size()));
                SSL_shutdown(ssl);
            }
            SSL_free(ssl);
            ERR_clear_error();  // this thread's queue
            return false;
        };
    }
};

// ---------------------------------------------------------------------------------------------
// Prober fixture: one loop, one recording observer.

struct Event {
    TargetId id;
    bool transition;  // else a probe result
    bool ok;          // result ok / new health
    std::string error;
    EventLoop::TimePoint at;
    std::chrono::nanoseconds duration;
};

class Recorder : public Prober::Observer {
public:
    explicit Recorder(EventLoop& loop) : loop_(loop) {}
    void on_result(TargetId id, const ProbeResult& r) override {
        events.push_back({id, false, r.ok, r.error, loop_.now(), r.duration});
        ++result_count;
        if (!r.ok) ++failure_count;
        if (result_hook) result_hook(id, r);
    }
    void on_transition(TargetId id, bool healthy) override {
        events.push_back({id, true, healthy, {}, loop_.now(), {}});
        ++transition_count;
        if (transition_hook) transition_hook(id, healthy);
    }
    std::vector<Event> results(TargetId id) const {
        std::vector<Event> out;
        for (const auto& e : events)
            if (e.id == id && !e.transition) out.push_back(e);
        return out;
    }

    std::vector<Event> events;
    std::size_t result_count = 0;
    std::size_t failure_count = 0;
    std::size_t transition_count = 0;
    std::function<void(TargetId, const ProbeResult&)> result_hook;
    std::function<void(TargetId, bool)> transition_hook;

private:
    EventLoop& loop_;
};

class ProberFixture : public ::testing::Test {
protected:
    ProberFixture()
        : loop_(std::move(EventLoop::create()).value()), recorder_(*loop_), prober_(*loop_, recorder_, 42) {}

    template <typename Pred>
    bool run_until(Pred pred, std::chrono::milliseconds limit = 3000ms) {
        auto end = Clock::now() + limit;
        while (!pred() && Clock::now() < end) EXPECT_TRUE(loop_->run_once(10ms).ok());
        return pred();
    }
    void run_for(std::chrono::milliseconds d) {
        auto end = Clock::now() + d;
        while (Clock::now() < end) EXPECT_TRUE(loop_->run_once(10ms).ok());
    }

    static HealthCheckSpec spec(Type type) {
        HealthCheckSpec s;
        s.type = type;
        s.interval = 100ms;
        s.timeout = 60ms;
        s.rise = 1;
        s.fall = 1;
        return s;
    }
    static IpAddr v4() { return IpAddr::v4(127, 0, 0, 1); }
    static IpAddr v6() { return *IpAddr::parse("::1"); }

    // Probes one target until `n` results arrived (bounded), removes it and returns the results.
    std::vector<Event> probe(const HealthCheckSpec& s, const IpAddr& addr, std::uint16_t port, std::size_t n = 1) {
        constexpr TargetId kId = 7;
        Status st = prober_.add(kId, addr, port, s, false);
        EXPECT_TRUE(st.ok()) << st.error().message;
        EXPECT_TRUE(run_until([&] { return recorder_.results(kId).size() >= n; })) << "no results";
        prober_.remove(kId);
        EXPECT_EQ(loop_->fd_count(), 0u);
        EXPECT_EQ(loop_->timer_count(), 0u);
        auto r = recorder_.results(kId);
        recorder_.events.clear();
        return r;
    }

    // All results ok.
    static void expect_healthy(const std::vector<Event>& results) {
        ASSERT_FALSE(results.empty());
        for (const auto& r : results) EXPECT_TRUE(r.ok) << r.error;
    }
    // All results failed with `error` in the message.
    static void expect_unhealthy(const std::vector<Event>& results, const std::string& error) {
        ASSERT_FALSE(results.empty());
        for (const auto& r : results) {
            EXPECT_FALSE(r.ok);
            EXPECT_NE(r.error.find(error), std::string::npos) << "error: " << r.error << "\nwant: " << error;
        }
    }

    std::unique_ptr<EventLoop> loop_;
    Recorder recorder_;
    Prober prober_;
};

using ProberTcp = ProberFixture;
using ProberHttp = ProberFixture;
using ProberHttps = ProberFixture;
using ProberApi = ProberFixture;
using ProberTransitions = ProberFixture;
using ProberScale = ProberFixture;

// ---------------------------------------------------------------------------------------------
// tcp

TEST_F(ProberTcp, ListeningPortHealthyClosedPortRefused) {
    TestServer server(AF_INET, close_at_once());
    ASSERT_TRUE(server.ok());
    expect_healthy(probe(spec(Type::Tcp), v4(), server.port(), 2));
    expect_unhealthy(probe(spec(Type::Tcp), v4(), refused_port(), 2), "connect: Connection refused");
}

TEST_F(ProberTcp, Ipv6Loopback) {
    TestServer server(AF_INET6, close_at_once());
    if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback";
    expect_healthy(probe(spec(Type::Tcp), v6(), server.port()));
    expect_unhealthy(probe(spec(Type::Tcp), v6(), refused_port(AF_INET6)), "connect: Connection refused");
}

TEST_F(ProberTcp, SpecPortOverridesBackendPort) {
    TestServer server(AF_INET, close_at_once());
    ASSERT_TRUE(server.ok());
    HealthCheckSpec s = spec(Type::Tcp);
    s.port = server.port();
    expect_healthy(probe(s, v4(), refused_port()));
}

TEST_F(ProberTcp, UnroutableAddressTimesOut) {
    // TEST-NET-1 is not routed: either the connect fails at once (no route) or it times out.
    auto results = probe(spec(Type::Tcp), IpAddr::v4(192, 0, 2, 1), 9);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_FALSE(results[0].ok);
    EXPECT_TRUE(results[0].error.starts_with("timeout after 60ms (connect)") ||
                results[0].error.starts_with("connect: "))
        << results[0].error;
}

// ---------------------------------------------------------------------------------------------
// http

constexpr const char* kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

TEST_F(ProberHttp, Status200HealthyAndRequestFormat) {
    std::mutex mu;
    std::string request;
    TestServer server(AF_INET, [&](int fd) {
        std::string req = read_request(fd);
        {
            std::lock_guard lock(mu);
            request = req;
        }
        send_all(fd, kOk);
        return false;
    });
    ASSERT_TRUE(server.ok());
    HealthCheckSpec s = spec(Type::Http);
    s.path = "/healthz?verbose=1";
    expect_healthy(probe(s, v4(), server.port(), 2));
    std::lock_guard lock(mu);
    EXPECT_EQ(request, "GET /healthz?verbose=1 HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(server.port()) +
                           "\r\nConnection: close\r\nUser-Agent: kxlb-agent\r\n\r\n");
}

TEST_F(ProberHttp, HostHeaderFromSpec) {
    std::mutex mu;
    std::string request;
    TestServer server(AF_INET6, [&](int fd) {
        std::string req = read_request(fd);
        {
            std::lock_guard lock(mu);
            request = req;
        }
        send_all(fd, "HTTP/1.0 204 No Content\r\n\r\n");
        return false;
    });
    if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback";
    HealthCheckSpec s = spec(Type::Http);
    s.expected_status = 204;
    expect_healthy(probe(s, v6(), server.port()));
    {
        std::lock_guard lock(mu);
        EXPECT_NE(request.find("\r\nHost: [::1]:" + std::to_string(server.port()) + "\r\n"), std::string::npos)
            << request;
    }
    s.host = "api.example";
    expect_healthy(probe(s, v6(), server.port()));
    std::lock_guard lock(mu);
    EXPECT_NE(request.find("\r\nHost: api.example:" + std::to_string(server.port()) + "\r\n"), std::string::npos)
        << request;
}

TEST_F(ProberHttp, Status503Unhealthy) {
    TestServer server(AF_INET, respond("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"));
    ASSERT_TRUE(server.ok());
    expect_unhealthy(probe(spec(Type::Http), v4(), server.port()), "http status 503 (want 200)");
}

TEST_F(ProberHttp, GarbageUnhealthy) {
    TestServer server(AF_INET, respond("SSH-2.0-OpenSSH_9.2\r\n"));
    ASSERT_TRUE(server.ok());
    expect_unhealthy(probe(spec(Type::Http), v4(), server.port()), "http: malformed status line: \"SSH-2.0");
    TestServer bad_code(AF_INET, respond("HTTP/1.1 2x0 OK\r\n\r\n"));
    ASSERT_TRUE(bad_code.ok());
    expect_unhealthy(probe(spec(Type::Http), v4(), bad_code.port()), "http: malformed status line");
    TestServer binary(AF_INET, respond(std::string("HTTP\0\x01\x02", 7)));
    ASSERT_TRUE(binary.ok());
    expect_unhealthy(probe(spec(Type::Http), v4(), binary.port()), "http: malformed status line: \"HTTP???\"");
}

TEST_F(ProberHttp, SilentServerTimesOut) {
    TestServer silent(AF_INET, [](int) { return true; });  // accepts, never answers
    ASSERT_TRUE(silent.ok());
    auto results = probe(spec(Type::Http), v4(), silent.port());
    expect_unhealthy(results, "timeout after 60ms (waiting for status line)");
    for (const auto& r : results) EXPECT_GE(r.duration, 60ms);
    // Slow-loris: a partial status line, then nothing.
    TestServer loris(AF_INET, [](int fd) {
        read_request(fd);
        send_all(fd, "HTTP/1.1 2");
        return true;
    });
    ASSERT_TRUE(loris.ok());
    expect_unhealthy(probe(spec(Type::Http), v4(), loris.port()), "timeout after 60ms (waiting for status line)");
}

TEST_F(ProberHttp, MegabyteResponses) {
    // A valid status line followed by 1 MB: healthy, and only the head is read.
    TestServer big_body(AF_INET, respond(std::string("HTTP/1.1 200 OK\r\n\r\n") + std::string(1 << 20, 'x')));
    ASSERT_TRUE(big_body.ok());
    expect_healthy(probe(spec(Type::Http), v4(), big_body.port()));
    // 1 MB without a newline: fails once the cap is reached.
    TestServer endless(AF_INET, respond(std::string("HTTP/1.1 200 ") + std::string(1 << 20, 'x')));
    ASSERT_TRUE(endless.ok());
    expect_unhealthy(probe(spec(Type::Http), v4(), endless.port()), "http: no status line in the first 4096 bytes");
}

TEST_F(ProberHttp, ResetAndHalfClose) {
    TestServer reset(AF_INET, [](int fd) {
        linger lg{1, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        return false;  // closed at once with RST
    });
    ASSERT_TRUE(reset.ok());
    for (const auto& r : probe(spec(Type::Http), v4(), reset.port(), 3)) {
        EXPECT_FALSE(r.ok);
        EXPECT_TRUE(r.error.find("Connection reset by peer") != std::string::npos ||
                    r.error.find("Broken pipe") != std::string::npos ||
                    r.error == "http: connection closed before status line")
            << r.error;
    }
    TestServer half_close(AF_INET, [](int fd) {
        read_request(fd);
        ::shutdown(fd, SHUT_WR);  // FIN without an answer; the read side stays open
        char c;
        (void)::recv(fd, &c, 1, 0);  // until the prober closes (or 1 s)
        return false;
    });
    ASSERT_TRUE(half_close.ok());
    expect_unhealthy(probe(spec(Type::Http), v4(), half_close.port()), "http: connection closed before status line");
    expect_unhealthy(probe(spec(Type::Http), v4(), refused_port()), "connect: Connection refused");
}

// ---------------------------------------------------------------------------------------------
// https

TEST_F(ProberHttps, TrustedCaHealthyOverIpSan) {
    TlsServer tls;
    TestServer server(AF_INET, tls.handler(kOk));
    ASSERT_TRUE(server.ok());
    HealthCheckSpec s = spec(Type::Https);
    s.ca_file = pki().ca_file;
    expect_healthy(probe(s, v4(), server.port(), 2));
    std::lock_guard lock(tls.mu);
    ASSERT_FALSE(tls.sni_seen.empty());
    EXPECT_EQ(tls.sni_seen[0], "");  // no SNI for an IP address
}

TEST_F(ProberHttps, Ipv6AndHostName) {
    TlsServer tls;
    TestServer server(AF_INET6, tls.handler(kOk));
    if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback";
    HealthCheckSpec s = spec(Type::Https);
    s.ca_file = pki().ca_file;
    expect_healthy(probe(s, v6(), server.port()));  // IP SAN ::1
    s.host = "backend.test";
    expect_healthy(probe(s, v6(), server.port()));  // DNS SAN + SNI
    std::lock_guard lock(tls.mu);
    ASSERT_EQ(tls.sni_seen.size(), 2u);
    EXPECT_EQ(tls.sni_seen[1], "backend.test");
}

TEST_F(ProberHttps, UntrustedCaUnhealthy) {
    TlsServer tls;
    TestServer server(AF_INET, tls.handler(kOk));
    ASSERT_TRUE(server.ok());
    HealthCheckSpec s = spec(Type::Https);
    s.ca_file = pki().other_ca;
    expect_unhealthy(probe(s, v4(), server.port()), "tls: certificate verify failed: unable to get local issuer");
    EXPECT_EQ(tls.handshakes.load(), 0);
}

TEST_F(ProberHttps, WrongNameUnhealthy) {
    TlsServer tls;
    TestServer server(AF_INET, tls.handler(kOk));
    ASSERT_TRUE(server.ok());
    HealthCheckSpec s = spec(Type::Https);
    s.ca_file = pki().ca_file;
    s.host = "other.test";
    expect_unhealthy(probe(s, v4(), server.port()), "tls: certificate verify failed: hostname mismatch");
    s.host = "10.9.8.7";  // an IP literal host is checked against the IP SANs
    expect_unhealthy(probe(s, v4(), server.port()), "tls: certificate verify failed: IP address mismatch");
}

TEST_F(ProberHttps, InsecureSkipsVerification) {
    TlsServer tls;
    TestServer server(AF_INET, tls.handler("HTTP/1.1 503 Unavailable\r\n\r\n"));
    ASSERT_TRUE(server.ok());
    HealthCheckSpec s = spec(Type::Https);
    s.insecure = true;
    s.host = "other.test";
    s.ca_file = pki().other_ca;
    expect_unhealthy(probe(s, v4(), server.port()), "http status 503 (want 200)");  // got past TLS
    s.expected_status = 503;
    expect_healthy(probe(s, v4(), server.port()));
}

TEST_F(ProberHttps, HandshakeFailures) {
    HealthCheckSpec s = spec(Type::Https);
    s.ca_file = pki().ca_file;
    // A plaintext HTTP server: the ClientHello is answered with garbage.
    TestServer plain(AF_INET, [](int fd) {
        char buf[64];
        (void)::recv(fd, buf, sizeof buf, 0);
        send_all(fd, "HTTP/1.1 400 Bad Request\r\n\r\n");
        return false;
    });
    ASSERT_TRUE(plain.ok());
    for (const auto& r : probe(s, v4(), plain.port())) {
        EXPECT_FALSE(r.ok);
        EXPECT_TRUE(r.error.starts_with("tls: ")) << r.error;
    }
    // Closed mid-handshake (with the ClientHello unread: a reset), and silent.
    TestServer closes(AF_INET, [](int fd) {
        char buf[64];
        (void)::recv(fd, buf, sizeof buf, 0);
        return false;
    });
    ASSERT_TRUE(closes.ok());
    for (const auto& r : probe(s, v4(), closes.port())) {
        EXPECT_FALSE(r.ok);
        EXPECT_TRUE(r.error.starts_with("tls: ")) << r.error;
    }
    TestServer silent(AF_INET, [](int) { return true; });
    ASSERT_TRUE(silent.ok());
    expect_unhealthy(probe(s, v4(), silent.port()), "timeout after 60ms (tls handshake)");
}

// ---------------------------------------------------------------------------------------------
// API contracts

TEST_F(ProberApi, AddValidates) {
    HealthCheckSpec s = spec(Type::Http);
    ASSERT_TRUE(prober_.add(1, v4(), 80, s, true));
    Status dup = prober_.add(1, v4(), 80, s, true);
    ASSERT_FALSE(dup.ok());
    EXPECT_EQ(dup.error().code, EEXIST);

    auto rejects = [&](HealthCheckSpec bad, std::uint16_t port = 80, IpAddr addr = v4()) {
        Status st = prober_.add(2, addr, port, bad, true);
        EXPECT_FALSE(st.ok());
        return st.ok() ? std::string() : st.error().message;
    };
    HealthCheckSpec bad = s;
    bad.timeout = bad.interval;
    EXPECT_NE(rejects(bad).find("timeout"), std::string::npos);
    bad = s;
    bad.interval = 0ms;
    rejects(bad);
    EXPECT_NE(rejects(s, 0).find("port"), std::string::npos);
    bad = s;
    bad.path = "healthz";
    rejects(bad);
    bad = s;
    bad.host = "evil\r\nX-Injected: 1";
    rejects(bad);
    bad = s;
    bad.expected_status = 42;
    rejects(bad);
    rejects(s, 80, IpAddr{});
    bad = spec(Type::Https);
    bad.ca_file = pki().dir / "missing.pem";
    EXPECT_NE(rejects(bad).find("missing.pem"), std::string::npos);
    bad.ca_file = pki().garbage_ca;
    EXPECT_NE(rejects(bad).find("garbage.pem"), std::string::npos);

    EXPECT_EQ(prober_.size(), 1u);
    EXPECT_EQ(prober_.healthy(1), std::optional<bool>(true));
    EXPECT_EQ(prober_.healthy(2), std::nullopt);
    prober_.remove(1);
    prober_.remove(1);  // unknown id: no-op
    EXPECT_EQ(prober_.size(), 0u);
    EXPECT_EQ(loop_->timer_count(), 0u);
}

TEST_F(ProberApi, RemoveAndDestroyCancelInFlightProbes) {
    TestServer silent(AF_INET, [](int) { return true; });
    ASSERT_TRUE(silent.ok());
    HealthCheckSpec s = spec(Type::Http);
    s.interval = 1000ms;
    s.timeout = 900ms;
    {
        Prober local(*loop_, recorder_, 1);
        for (TargetId id = 1; id <= 3; ++id) ASSERT_TRUE(local.add(id, v4(), silent.port(), s, true));
        ASSERT_TRUE(run_until([&] { return local.in_flight() == 3 && silent.accepted() == 3; }));
        EXPECT_EQ(loop_->fd_count(), 3u);
        local.remove(2);
        EXPECT_EQ(local.in_flight(), 2u);
        EXPECT_EQ(loop_->fd_count(), 2u);
    }  // destroyed with two probes in flight
    EXPECT_EQ(loop_->fd_count(), 0u);
    EXPECT_EQ(loop_->timer_count(), 0u);
    run_for(50ms);
    EXPECT_EQ(recorder_.result_count, 0u);
}

TEST_F(ProberApi, ObserverMayRemoveTargets) {
    TestServer server(AF_INET, close_at_once());
    ASSERT_TRUE(server.ok());
    HealthCheckSpec s = spec(Type::Tcp);
    // Target 1 removes itself on its first result: no transition for it, no more results.
    // Target 2 removes itself from on_transition. Target 3 removes and re-adds itself in on_result.
    recorder_.result_hook = [&](TargetId id, const ProbeResult&) {
        if (id == 1) prober_.remove(1);
        if (id == 3 && recorder_.results(3).size() == 1) {
            prober_.remove(3);
            ASSERT_TRUE(prober_.add(3, v4(), server.port(), s, false));
        }
    };
    recorder_.transition_hook = [&](TargetId id, bool) {
        if (id == 2) prober_.remove(2);
    };
    ASSERT_TRUE(prober_.add(1, v4(), server.port(), s, false));
    ASSERT_TRUE(prober_.add(2, v4(), server.port(), s, false));
    ASSERT_TRUE(prober_.add(3, v4(), server.port(), s, false));
    ASSERT_TRUE(run_until([&] { return recorder_.results(3).size() >= 2; }));
    run_for(150ms);
    EXPECT_EQ(prober_.size(), 1u);
    EXPECT_EQ(recorder_.results(1).size(), 1u);
    EXPECT_EQ(recorder_.results(2).size(), 1u);
    std::vector<std::pair<TargetId, bool>> flips;
    for (const auto& e : recorder_.events)
        if (e.transition) flips.emplace_back(e.id, e.ok);
    std::sort(flips.begin(), flips.end());
    // Target 3's first (removing) result must not report a transition for the re-added target;
    // its second result (from the re-added target) does.
    EXPECT_EQ(flips, (std::vector<std::pair<TargetId, bool>>{{2, true}, {3, true}}));
    EXPECT_EQ(prober_.healthy(3), std::optional<bool>(true));
}

TEST_F(ProberApi, FirstProbesSpreadOverTheIntervalThenJitteredIntervals) {
    TestServer server(AF_INET, close_at_once());
    ASSERT_TRUE(server.ok());
    HealthCheckSpec s = spec(Type::Tcp);
    s.interval = 200ms;
    s.timeout = 100ms;
    constexpr TargetId kTargets = 100;
    auto t0 = loop_->now();
    for (TargetId id = 0; id < kTargets; ++id) ASSERT_TRUE(prober_.add(id, v4(), server.port(), s, true));
    ASSERT_TRUE(run_until([&] {
        for (TargetId id = 0; id < kTargets; ++id)
            if (recorder_.results(id).size() < 3) return false;
        return true;
    }));
    std::vector<double> first_ms, gaps_ms;
    for (TargetId id = 0; id < kTargets; ++id) {
        auto rs = recorder_.results(id);
        for (const auto& r : rs) EXPECT_TRUE(r.ok) << r.error;
        auto start = [](const Event& e) { return e.at - e.duration; };
        first_ms.push_back(std::chrono::duration<double, std::milli>(start(rs[0]) - t0).count());
        for (std::size_t i = 1; i < 3; ++i)
            gaps_ms.push_back(std::chrono::duration<double, std::milli>(start(rs[i]) - start(rs[i - 1])).count());
    }
    // Percentiles, so that a few wake-ups delayed by a busy machine do not matter.
    auto pct = [](std::vector<double> v, double p) {
        std::sort(v.begin(), v.end());
        return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
    };
    EXPECT_GE(pct(first_ms, 0), 0.0);
    EXPECT_LT(pct(first_ms, 0.05), 30.0);   // spread over the whole interval...
    EXPECT_GT(pct(first_ms, 0.95), 170.0);  // ...not bunched at the start
    EXPECT_LT(pct(first_ms, 0.95), 230.0);
    EXPECT_GT(pct(gaps_ms, 0.1), 170.0);  // 200 ms - 10%, give or take scheduling noise
    EXPECT_LT(pct(gaps_ms, 0.9), 230.0);  // 200 ms + 10%
    EXPECT_NEAR(pct(gaps_ms, 0.5), 200.0, 15.0);
    EXPECT_GT(pct(gaps_ms, 0.9) - pct(gaps_ms, 0.1), 10.0);  // jittered, not a fixed period
}

// ---------------------------------------------------------------------------------------------
// Transitions after exactly `fall` failures and `rise` successes.

TEST_F(ProberTransitions, ExactlyFallFailuresThenRiseSuccesses) {
    auto server = std::make_unique<TestServer>(AF_INET, close_at_once());
    ASSERT_TRUE(server->ok());
    std::uint16_t port = server->port();
    HealthCheckSpec s = spec(Type::Tcp);
    s.interval = 50ms;
    s.timeout = 40ms;
    s.rise = 2;
    s.fall = 3;
    constexpr TargetId kId = 9;
    ASSERT_TRUE(prober_.add(kId, v4(), port, s, true));
    ASSERT_TRUE(run_until([&] { return recorder_.results(kId).size() >= 3; }));
    EXPECT_EQ(recorder_.transition_count, 0u);
    EXPECT_EQ(recorder_.failure_count, 0u);

    // The observer checks the streak at the moment of the transition, synchronously.
    std::vector<std::string> streaks;
    auto streak_before = [&](bool ok) {
        std::size_t n = 0;
        for (auto it = recorder_.events.rbegin(); it != recorder_.events.rend(); ++it) {
            if (it->transition) continue;
            if (it->ok != ok) break;
            ++n;
        }
        return n;
    };
    recorder_.transition_hook = [&](TargetId, bool healthy) {
        EXPECT_EQ(prober_.healthy(kId), std::optional<bool>(healthy));
        streaks.push_back((healthy ? "up after " : "down after ") + std::to_string(streak_before(healthy)));
    };

    server->stop();  // connection refused from now on
    ASSERT_TRUE(run_until([&] { return recorder_.transition_count == 1; }));
    EXPECT_EQ(streaks, std::vector<std::string>{"down after 3"});
    EXPECT_EQ(prober_.healthy(kId), std::optional<bool>(false));

    server = std::make_unique<TestServer>(AF_INET, close_at_once(), port);  // back on the same port
    ASSERT_TRUE(server->ok());
    ASSERT_TRUE(run_until([&] { return recorder_.transition_count == 2; }));
    EXPECT_EQ(streaks, (std::vector<std::string>{"down after 3", "up after 2"}));
    EXPECT_EQ(prober_.healthy(kId), std::optional<bool>(true));
    // Each transition directly follows the result that decided it.
    for (std::size_t i = 0; i < recorder_.events.size(); ++i) {
        if (!recorder_.events[i].transition) continue;
        ASSERT_GT(i, 0u);
        EXPECT_FALSE(recorder_.events[i - 1].transition);
        EXPECT_EQ(recorder_.events[i - 1].ok, recorder_.events[i].ok);
    }
}

// ---------------------------------------------------------------------------------------------
// Thousands of targets from one thread.

int thread_count() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.starts_with("Threads:")) return std::stoi(line.substr(8));
    return -1;
}

TEST_F(ProberScale, TwoThousandTcpTargetsOnOneThread) {
    std::vector<std::unique_ptr<TestServer>> servers;
    for (int i = 0; i < 4; ++i) {
        servers.push_back(std::make_unique<TestServer>(AF_INET, close_at_once()));
        ASSERT_TRUE(servers.back()->ok());
    }
    int threads_before = thread_count();
    HealthCheckSpec s = spec(Type::Tcp);
    s.interval = 1000ms;  // 2000 connects/s: affordable even for a loaded 2-core CI machine
    s.timeout = 800ms;
    s.rise = 1;
    s.fall = 3;
    constexpr TargetId kTargets = 2000;
    for (TargetId id = 0; id < kTargets; ++id) {
        ASSERT_TRUE(prober_.add(id, v4(), servers[id % servers.size()]->port(), s, false));
    }
    EXPECT_EQ(prober_.size(), kTargets);
    auto healthy_count = [&] {
        std::size_t n = 0;
        for (TargetId id = 0; id < kTargets; ++id) n += prober_.healthy(id) == std::optional<bool>(true);
        return n;
    };
    auto errors = [&] {
        std::map<std::string, int> counts;
        for (const auto& e : recorder_.events)
            if (!e.transition && !e.ok) ++counts[e.error];
        std::string out;
        for (const auto& [error, n] : counts) out += "\n  " + std::to_string(n) + "x " + error;
        return out;
    };

    // rise = 1: every target turns healthy at its first probe, within one interval of being added.
    auto t0 = Clock::now();
    ASSERT_TRUE(run_until([&] { return healthy_count() == kTargets; }, 4000ms))
        << healthy_count() << " healthy, " << recorder_.failure_count << " failures:" << errors();
    EXPECT_LT(Clock::now() - t0, 2 * s.interval);
    EXPECT_EQ(thread_count(), threads_before);  // no thread per probe

    // Another interval and a quarter: every target probed again, and all stay healthy.
    std::size_t results_before = recorder_.result_count;
    run_for(s.interval * 5 / 4);
    EXPECT_EQ(healthy_count(), kTargets);
    EXPECT_EQ(recorder_.transition_count, kTargets);  // only the initial rises
    EXPECT_GE(recorder_.result_count - results_before, kTargets);
    // A starved CI machine can delay a loopback handshake past the timeout now and then (fall = 3
    // absorbs it); more than 1% would be the prober's fault.
    EXPECT_LE(recorder_.failure_count * 100, recorder_.result_count) << errors();
    EXPECT_EQ(thread_count(), threads_before);
}

}  // namespace
}  // namespace kxlb::agent
