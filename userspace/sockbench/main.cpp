// kxlb-sockbench: requests/s and p50/p99 latency of node-local clients reaching a backend through the
// socket-level load balancer (client in a cgroup, dialling the VIP) vs directly vs an nginx `stream` proxy
// vs haproxy (tcp mode) on the node, for short connections (connect + one request/response + close) and
// keep-alive requests, all measured in the same run. Everything runs in a netns lab (node <-> be).
// Needs root. Not a test: it reports, it does not judge. Run by scripts/bench_sock.sh.
//
// Modes of the same binary: (default) the driver; --serve IP PORT: the backend (epoll, one thread,
// answers every kMsg-byte request with kMsg bytes); --client ...: the load generator (epoll, one thread).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "lab/lab.hpp"
#include "lab/temp_dir.hpp"
#include "lib/lb_maps.hpp"
#include "lib/lb_programmer.hpp"
#include "lib/libbpf_log.hpp"
#include "lib/sock_lb_program.hpp"
#include "lib/xdp_programs.hpp"

namespace {

using namespace std::chrono_literals;

constexpr std::size_t kMsg = 64;  // request and response size
constexpr const char* kNodeIp = "10.82.0.1";
constexpr const char* kBackendIp = "10.82.0.2";
constexpr const char* kVip = "10.96.82.80";  // exists nowhere: only the socket LB can reach it
constexpr std::uint16_t kVipPort = 80;
constexpr std::uint16_t kBackendPort = 8080;
constexpr std::uint16_t kNginxPort = 9001;
constexpr std::uint16_t kHaproxyPort = 9002;
constexpr const char* kCgroupRoot = "/sys/fs/cgroup/unified";
constexpr const char* kNginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so";

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

sockaddr_in addr4(const char* ip, std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

// ---------------------------------------------------------------------------------------------------------
// --serve IP PORT: the backend. Runs until killed. Requests of 'c' bytes ask it to close after the reply
// (short connections: the server closes first, so TIME_WAIT stays in the backend namespace and cannot
// slow down the client's port allocation in later cases); requests of 'q' bytes keep the connection.
int serve(const char* ip, std::uint16_t port) {
    int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    auto a = addr4(ip, port);
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(lfd, 4096) != 0) {
        std::fprintf(stderr, "serve: bind/listen %s:%u: %s\n", ip, port, std::strerror(errno));
        return 1;
    }
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{EPOLLIN, {.fd = lfd}};
    ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    std::vector<std::uint32_t> pending(65536, 0);  // bytes of the current request, by fd
    std::vector<epoll_event> evs(256);
    char buf[16384];
    char reply[kMsg];
    std::memset(reply, 'r', sizeof(reply));
    while (true) {
        const int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), -1);
        for (int i = 0; i < n; ++i) {
            const int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (int k = 0; k < 256; ++k) {
                    int c = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break;
                    if (c >= static_cast<int>(pending.size())) {
                        ::close(c);
                        continue;
                    }
                    ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    pending[c] = 0;
                    epoll_event cev{EPOLLIN | EPOLLRDHUP, {.fd = c}};
                    ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            const ssize_t r = ::read(fd, buf, sizeof(buf));
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                ::close(fd);  // also removes it from the epoll set
                continue;
            }
            std::uint32_t total = pending[fd] + static_cast<std::uint32_t>(r);
            bool answered = false;
            for (; total >= kMsg; total -= kMsg) {
                (void)::send(fd, reply, sizeof(reply), MSG_NOSIGNAL);
                answered = true;
            }
            pending[fd] = total;
            if (answered && buf[0] == 'c') ::close(fd);  // "close" request: the server closes first
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// --client IP PORT CONNS SECONDS short|keepalive: the load generator. Prints one "RESULT ..." line.
struct ClientResult {
    std::uint64_t requests = 0;
    std::uint64_t errors = 0;
    double seconds = 0;
    double p50_us = 0;
    double p99_us = 0;
};

int client(const char* ip, std::uint16_t port, int conns, double seconds, bool keepalive) {
    enum State { kConnecting, kReading, kAwaitClose };
    struct Conn {
        int fd = -1;
        State state = kConnecting;
        std::int64_t t0 = 0;
        std::size_t got = 0;
    };
    const auto dst = addr4(ip, port);
    char req[kMsg];
    std::memset(req, keepalive ? 'q' : 'c', sizeof(req));
    char buf[4096];
    std::vector<Conn> cs(static_cast<std::size_t>(conns));
    std::vector<std::uint32_t> lat_ns;
    lat_ns.reserve(4'000'000);
    std::uint64_t errors = 0;
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    const std::int64_t start = now_ns();
    const std::int64_t warm_end = start + 300'000'000;  // the first 0.3 s are not counted
    const std::int64_t end = warm_end + static_cast<std::int64_t>(seconds * 1e9);
    std::uint64_t counted = 0;

    auto open_conn = [&](std::uint32_t i) {
        Conn& c = cs[i];
        for (int attempt = 0; attempt < 1000; ++attempt) {  // bounded: a persistent failure is counted
            c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            int one = 1;
            ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            c.t0 = now_ns();
            c.got = 0;
            c.state = kConnecting;
            if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&dst), sizeof(dst)) == 0 || errno == EINPROGRESS) {
                epoll_event ev{EPOLLOUT | EPOLLIN, {.u32 = i}};
                ::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev);
                return;
            }
            ++errors;
            ::close(c.fd);
            c.fd = -1;
        }
    };
    auto fail = [&](std::uint32_t i) {
        ++errors;
        ::close(cs[i].fd);
        open_conn(i);
    };
    for (std::uint32_t i = 0; i < cs.size(); ++i) open_conn(i);

    std::vector<epoll_event> evs(256);
    while (now_ns() < end) {
        const int n = ::epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 100);
        for (int k = 0; k < n; ++k) {
            const std::uint32_t i = evs[k].data.u32;
            Conn& c = cs[i];
            if (c.fd < 0) continue;
            if (c.state == kConnecting) {
                int err = 0;
                socklen_t l = sizeof(err);
                ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err != 0 || (evs[k].events & (EPOLLERR | EPOLLHUP))) {
                    fail(i);
                    continue;
                }
                if (::send(c.fd, req, sizeof(req), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(req))) {
                    fail(i);
                    continue;
                }
                c.state = kReading;
                epoll_event ev{EPOLLIN, {.u32 = i}};
                ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
                continue;
            }
            const ssize_t r = ::read(c.fd, buf, sizeof(buf));
            if (r < 0 && errno == EAGAIN) continue;
            if (c.state == kAwaitClose && r == 0) {  // the server closed first: no TIME_WAIT here
                ::close(c.fd);
                open_conn(i);
                continue;
            }
            if (r <= 0) {
                fail(i);
                continue;
            }
            c.got += static_cast<std::size_t>(r);
            if (c.got < kMsg) continue;
            const std::int64_t t = now_ns();
            if (c.t0 >= warm_end) {
                lat_ns.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(t - c.t0, UINT32_MAX)));
                ++counted;
            }
            if (keepalive) {
                c.got = 0;
                c.t0 = now_ns();
                if (::send(c.fd, req, sizeof(req), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(req))) fail(i);
            } else {
                c.state = kAwaitClose;
            }
        }
    }
    for (auto& c : cs)
        if (c.fd >= 0) ::close(c.fd);
    ClientResult res;
    res.requests = counted;
    res.errors = errors;
    res.seconds = static_cast<double>(end - warm_end) / 1e9;
    if (!lat_ns.empty()) {
        auto pct = [&](double p) {
            auto it = lat_ns.begin() + static_cast<std::ptrdiff_t>(p * static_cast<double>(lat_ns.size() - 1));
            std::nth_element(lat_ns.begin(), it, lat_ns.end());
            return *it / 1e3;
        };
        res.p50_us = pct(0.50);
        res.p99_us = pct(0.99);
    }
    std::printf("RESULT requests=%llu errors=%llu seconds=%.3f p50_us=%.2f p99_us=%.2f\n",
                static_cast<unsigned long long>(res.requests), static_cast<unsigned long long>(res.errors), res.seconds,
                res.p50_us, res.p99_us);
    return 0;
}

// ---------------------------------------------------------------------------------------------------------
// The driver.

// A cgroup below kCgroupRoot; the destructor moves leftover processes to the root and removes it.
class BenchCgroup {
public:
    BenchCgroup() : path_(std::string(kCgroupRoot) + "/kxlb-sockbench-" + std::to_string(::getpid())) {
        ok_ = ::mkdir(path_.c_str(), 0755) == 0;
    }
    ~BenchCgroup() {
        if (!ok_) return;
        for (int attempt = 0; attempt < 100; ++attempt) {
            std::ifstream procs(path_ + "/cgroup.procs");
            std::string pid;
            while (procs >> pid) std::ofstream(std::string(kCgroupRoot) + "/cgroup.procs") << pid << std::flush;
            if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) return;
            std::this_thread::sleep_for(20ms);
        }
        std::fprintf(stderr, "kxlb-sockbench: could not remove %s\n", path_.c_str());
    }
    BenchCgroup(const BenchCgroup&) = delete;
    BenchCgroup& operator=(const BenchCgroup&) = delete;
    bool ok() const { return ok_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    bool ok_ = false;
};

struct Setup {
    std::string name;
    std::string ip;
    std::uint16_t port = 0;
    bool in_cgroup = false;
    std::string unavailable;  // non-empty: why this setup is not measured
};

bool wait_listening(kxlb::lab::Lab& lab, const char* ip, std::uint16_t port) {
    const auto a = addr4(ip, port);
    for (int i = 0; i < 100; ++i) {
        auto fd = lab.socket("node", AF_INET, SOCK_STREAM);
        if (fd && ::connect(fd->get(), reinterpret_cast<const sockaddr*>(&a), sizeof(a)) == 0) return true;
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

std::optional<ClientResult> parse_result(const std::string& out) {
    auto pos = out.find("RESULT ");
    if (pos == std::string::npos) return std::nullopt;
    ClientResult r;
    unsigned long long req = 0, err = 0;
    if (std::sscanf(out.c_str() + pos, "RESULT requests=%llu errors=%llu seconds=%lf p50_us=%lf p99_us=%lf", &req, &err,
                    &r.seconds, &r.p50_us, &r.p99_us) != 5)
        return std::nullopt;
    r.requests = req;
    r.errors = err;
    return r;
}

int drive(bool quick, int conns, double seconds, int rounds) {
    if (::geteuid() != 0) {
        std::fprintf(stderr, "kxlb-sockbench: needs root (BPF, network namespaces, cgroups)\n");
        return 2;
    }
    kxlb::route_libbpf_log_to_spdlog();
    char self[4096];
    const ssize_t sl = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sl <= 0) return 2;
    self[sl] = '\0';

    kxlb::lab::Topology t;
    t.namespaces = {"node", "be"};
    t.veths.push_back(kxlb::lab::VethPair{{"node", "eth0", {std::string(kNodeIp) + "/24"}},
                                          {"be", "eth0", {std::string(kBackendIp) + "/24"}},
                                          false,
                                          false,
                                          0});
    auto lab_r = kxlb::lab::Lab::create(t);
    if (!lab_r) {
        std::fprintf(stderr, "kxlb-sockbench: lab: %s\n", lab_r.error().message.c_str());
        return 2;
    }
    auto lab = std::move(lab_r).value();
    for (const char* ns : {"node", "be"}) {
        (void)lab->sysctl(ns, "net.core.somaxconn", "8192");
        (void)lab->sysctl(ns, "net.ipv4.tcp_max_syn_backlog", "8192");
        (void)lab->sysctl(ns, "net.ipv4.ip_local_port_range", "1024 65535");
        (void)lab->sysctl(ns, "net.ipv4.tcp_tw_reuse", "1");
    }

    // The socket LB: VIP -> the backend, for processes in the bench cgroup.
    BenchCgroup cg;
    if (!cg.ok()) {
        std::fprintf(stderr, "kxlb-sockbench: mkdir %s: %s\n", cg.path().c_str(), std::strerror(errno));
        return 2;
    }
    auto xdp = kxlb::XdpLbProgram::load();
    if (!xdp) return std::fprintf(stderr, "kxlb-sockbench: %s\n", xdp.error().message.c_str()), 2;
    auto sock = kxlb::SockLbProgram::load(xdp->lb_map_fds());
    if (!sock) return std::fprintf(stderr, "kxlb-sockbench: %s\n", sock.error().message.c_str()), 2;
    auto maps = kxlb::BpfLbMaps::bind(xdp->lb_map_fds());
    if (!maps) return std::fprintf(stderr, "kxlb-sockbench: %s\n", maps.error().message.c_str()), 2;
    kxlb::LbProgrammerOptions opts;
    opts.maglev_size = 251;
    auto lb = kxlb::LbProgrammer::create(*maps, opts);
    if (!lb) return std::fprintf(stderr, "kxlb-sockbench: %s\n", lb.error().message.c_str()), 2;
    kxlb::ServiceSpec svc;
    svc.frontend = kxlb::Frontend{kxlb::IpAddr::parse(kVip).value(), kVipPort, IPPROTO_TCP};
    svc.flags = KXLB_SVC_F_SOCKET_LB;
    svc.backends.push_back(kxlb::BackendSpec{kxlb::IpAddr::parse(kBackendIp).value(), kBackendPort, 1, false});
    if (auto id = lb->upsert_service(svc); !id)
        return std::fprintf(stderr, "kxlb-sockbench: %s\n", id.error().message.c_str()), 2;
    auto links = sock->attach(cg.path());
    if (!links) return std::fprintf(stderr, "kxlb-sockbench: attach: %s\n", links.error().message.c_str()), 2;

    // Backend + proxies.
    kxlb::lab::TempDir dir{"sockbench"};
    auto backend = lab->spawn("be", {self, "--serve", kBackendIp, std::to_string(kBackendPort)});
    if (!backend || !wait_listening(*lab, kBackendIp, kBackendPort)) {
        std::fprintf(stderr, "kxlb-sockbench: backend did not start\n");
        return 2;
    }
    std::vector<Setup> setups = {
        {"direct", kBackendIp, kBackendPort, false, ""},
        {"socket-lb", kVip, kVipPort, true, ""},
        {"nginx-stream", kNodeIp, kNginxPort, false, ""},
        {"haproxy-tcp", kNodeIp, kHaproxyPort, false, ""},
    };
    const std::string be = std::string(kBackendIp) + ":" + std::to_string(kBackendPort);
    if (!std::filesystem::exists(kNginxStreamModule)) {
        setups[2].unavailable = "nginx stream module missing (apt-get install libnginx-mod-stream)";
    } else {
        std::ofstream(dir.path() + "/nginx.conf")
            << "load_module " << kNginxStreamModule << ";\nworker_processes 1;\npid " << dir.path()
            << "/nginx.pid;\nerror_log " << dir.path() << "/nginx.err warn;\n"
            << "events { worker_connections 16384; }\n"
            << "stream {\n  upstream be { server " << be << "; }\n"
            << "  server { listen " << kNodeIp << ":" << kNginxPort << " backlog=8192; proxy_pass be; }\n}\n";
        auto p = lab->spawn("node", {"/usr/sbin/nginx", "-e", dir.path() + "/nginx.err", "-p", dir.path(), "-c",
                                     dir.path() + "/nginx.conf", "-g", "daemon off;"});
        if (!p || !wait_listening(*lab, kNodeIp, kNginxPort))
            setups[2].unavailable = "nginx did not start: " + (p ? (*p)->output() : p.error().message);
    }
    if (!std::filesystem::exists("/usr/sbin/haproxy")) {
        setups[3].unavailable = "/usr/sbin/haproxy missing";
    } else {
        std::ofstream(dir.path() + "/haproxy.cfg")
            << "global\n  maxconn 8000\n  nbthread 1\n"
            << "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
            << "listen lb\n  bind " << kNodeIp << ":" << kHaproxyPort << "\n  server be " << be << "\n";
        auto p = lab->spawn("node", {"/usr/sbin/haproxy", "-db", "-f", dir.path() + "/haproxy.cfg"});
        if (!p || !wait_listening(*lab, kNodeIp, kHaproxyPort))
            setups[3].unavailable = "haproxy did not start: " + (p ? (*p)->output() : p.error().message);
    }

    std::printf(
        "kxlb-sockbench%s: %d concurrent connections, %d interleaved rounds x %.1f s per case (+0.3 s "
        "warm-up; median round by req/s shown), %zu-byte request/response, 1 backend (1 epoll thread), proxies "
        "with 1 worker, %u CPUs\n",
        quick ? " --quick" : "", conns, rounds, seconds, kMsg, std::thread::hardware_concurrency());
    struct Row {
        std::string setup, workload;
        std::optional<ClientResult> r;
        std::string note;
    };
    std::vector<Row> rows;
    for (const char* workload : {"short", "keepalive"}) {
        std::vector<std::vector<ClientResult>> samples(setups.size());
        std::vector<std::string> notes(setups.size());
        for (int round = 0; round < rounds; ++round) {
            for (std::size_t si = 0; si < setups.size(); ++si) {
                const auto& s = setups[si];
                if (!s.unavailable.empty()) {
                    notes[si] = s.unavailable;
                    continue;
                }
                std::vector<std::string> argv = {
                    self,    "--client", s.ip, std::to_string(s.port), std::to_string(conns), std::to_string(seconds),
                    workload};
                if (s.in_cgroup) {
                    argv.insert(argv.begin(),
                                {"sh", "-c", "echo $$ > " + cg.path() + "/cgroup.procs && exec \"$0\" \"$@\""});
                }
                auto res = lab->run("node", argv, std::chrono::milliseconds(static_cast<int>(seconds * 1000) + 15000));
                std::optional<ClientResult> r;
                if (!res) {
                    notes[si] = res.error().message;
                } else if (!(r = parse_result(res->out))) {
                    notes[si] = "client failed: " + res->out + res->err;
                } else {
                    samples[si].push_back(*r);
                    std::fprintf(stderr,
                                 "  round %d %-12s %-9s %10.0f req/s  p50 %7.1f us  p99 %7.1f us  errors %llu\n",
                                 round + 1, s.name.c_str(), workload, r->requests / r->seconds, r->p50_us, r->p99_us,
                                 static_cast<unsigned long long>(r->errors));
                }
            }
        }
        for (std::size_t si = 0; si < setups.size(); ++si) {
            Row row{setups[si].name, workload, std::nullopt, notes[si]};
            auto& v = samples[si];
            if (!v.empty()) {
                std::sort(v.begin(), v.end(), [](const ClientResult& a, const ClientResult& b) {
                    return a.requests / a.seconds < b.requests / b.seconds;
                });
                row.r = v[v.size() / 2];
            }
            rows.push_back(std::move(row));
        }
    }

    std::printf(
        "\n| workload  | setup        |    req/s | p50 us | p99 us | errors | req/s vs direct | p99 vs direct |\n");
    std::printf(
        "|-----------|--------------|---------:|-------:|-------:|-------:|----------------:|--------------:|\n");
    for (const auto& row : rows) {
        const ClientResult* direct = nullptr;
        for (const auto& d : rows)
            if (d.workload == row.workload && d.setup == "direct" && d.r) direct = &*d.r;
        if (!row.r) {
            std::printf("| %-9s | %-12s | n/a: %s |\n", row.workload.c_str(), row.setup.c_str(), row.note.c_str());
            continue;
        }
        const double rps = row.r->requests / row.r->seconds;
        const double drps = direct ? direct->requests / direct->seconds : 0;
        std::printf("| %-9s | %-12s | %8.0f | %6.1f | %6.1f | %6llu | %14.2fx | %12.2fx |\n", row.workload.c_str(),
                    row.setup.c_str(), rps, row.r->p50_us, row.r->p99_us,
                    static_cast<unsigned long long>(row.r->errors), drps > 0 ? rps / drps : 0,
                    direct && direct->p99_us > 0 ? row.r->p99_us / direct->p99_us : 0);
    }
    std::fflush(stdout);
    return 0;
}

void usage(std::FILE* f) {
    std::fprintf(f,
                 "usage: kxlb-sockbench [--quick] [--seconds S] [--rounds N] [--conns N]\n"
                 "  --quick      2 rounds x 1 s per case (default 3 rounds x 3 s)\n"
                 "  --rounds N   interleaved rounds per case; the median round is reported (1..9)\n"
                 "  --seconds S  measured seconds per case (0.5..20)\n"
                 "  --conns N    concurrent client connections (1..1024, default 32)\n"
                 "internal: --serve IP PORT | --client IP PORT CONNS SECONDS short|keepalive\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 4 && std::string_view(argv[1]) == "--serve")
        return serve(argv[2], static_cast<std::uint16_t>(std::atoi(argv[3])));
    if (argc >= 7 && std::string_view(argv[1]) == "--client")
        return client(argv[2], static_cast<std::uint16_t>(std::atoi(argv[3])), std::clamp(std::atoi(argv[4]), 1, 1024),
                      std::clamp(std::atof(argv[5]), 0.1, 20.0), std::string_view(argv[6]) == "keepalive");
    bool quick = false;
    double seconds = 3.0;
    int rounds = 3;
    int conns = 32;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--quick") {
            quick = true;
            seconds = 1.0;
            rounds = 2;
        } else if (a == "--seconds" && i + 1 < argc) {
            seconds = std::clamp(std::atof(argv[++i]), 0.5, 20.0);
        } else if (a == "--rounds" && i + 1 < argc) {
            rounds = std::clamp(std::atoi(argv[++i]), 1, 9);
        } else if (a == "--conns" && i + 1 < argc) {
            conns = std::clamp(std::atoi(argv[++i]), 1, 1024);
        } else if (a == "--help" || a == "-h") {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    return drive(quick, conns, seconds, rounds);
}
