// kxlb-sockbench: requests/s and p50/p99 latency of node-local clients reaching a backend through the
// socket-level load balancer (client in a cgroup, dialling the VIP) vs directly vs an nginx `stream` proxy
// vs haproxy (tcp mode) on the node, for short connections (connect + one request/response + close) and
// keep-alive requests, all measured in the same run. Everything runs in a netns lab (node <-> be).
// Needs root. Not a test: it reports, it does not judge. Run by scripts/bench_sock.sh.
//
// Method (the p99 of a 1 s case on a shared 2-CPU VM is set by a handful of scheduling stalls, so one case
// says little): many short rounds; in every round each setup runs once, in an order that rotates (and
// reverses every other round) so that each setup holds each position equally often; every setup's client
// is pinned to one CPU and the servers (backend, proxies) to another; every client runs in a fresh cgroup
// of the same depth (socket-lb's has the hooks, the others' has none); direct and socket-lb reach the same
// single backend. Reported: the median over rounds of each setup's req/s, p50, p99 and client CPU time per
// request, and the median (with quartiles) of the per-round ratio to direct measured in that same round.
// "direct-again" is direct measured a second time (an A/A control): its ratios show how far two identical
// setups differ on this machine, i.e. the noise floor of every other ratio.
//
// Modes of the same binary: (default) the driver; --serve IP PORT CPU: the backend (epoll, one thread,
// answers every kMsg-byte request with kMsg bytes); --client ...: the load generator (epoll, one thread).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
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
constexpr const char* kCgroupPrefix = "kxlb-sockbench-";  // + driver pid + "-lb" / "-plain"
constexpr const char* kNginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so";
constexpr double kWarmupSeconds = 0.3;   // per case, not counted
constexpr double kMaxRunSeconds = 1200;  // the driver refuses plans estimated to take longer

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);  // safe to set from a signal handler
extern "C" void on_stop_signal(int) { g_stop.store(true); }

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

// Pins the calling process to one CPU (cpu < 0: leaves it alone).
bool pin_to(int cpu) {
    if (cpu < 0) return true;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return ::sched_setaffinity(0, sizeof(set), &set) == 0;
}

// ---------------------------------------------------------------------------------------------------------
// --serve IP PORT CPU: the backend. Runs until killed. Requests of 'c' bytes ask it to close after the reply
// (short connections: the server closes first, so TIME_WAIT stays in the backend namespace and cannot
// slow down the client's port allocation in later cases); requests of 'q' bytes keep the connection.
int serve(const char* ip, std::uint16_t port, int cpu) {
    if (!pin_to(cpu)) std::fprintf(stderr, "serve: cannot pin to CPU %d: %s\n", cpu, std::strerror(errno));
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
    while (true) {  // until killed by the driver (the lab kills its processes)
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
// --client IP PORT CONNS SECONDS short|keepalive CGROUP CPU: the load generator. Joins CGROUP (a cgroup v2
// directory; "-": stays put) before it opens any socket, pins itself to CPU (-1: no pinning), and prints
// one "RESULT ..." line.
struct ClientResult {
    std::uint64_t requests = 0;  // also the number of latency samples
    std::uint64_t errors = 0;
    double seconds = 0;
    double p50_us = 0;
    double p99_us = 0;
    double cpu_us = 0;  // the client's own CPU time (user + system) per counted request
    double rps() const { return seconds > 0 ? static_cast<double>(requests) / seconds : 0; }
};

int client(const char* ip, std::uint16_t port, int conns, double seconds, bool keepalive, const std::string& cgroup,
           int cpu) {
    if (cgroup != "-") {
        std::ofstream procs(cgroup + "/cgroup.procs");
        procs << ::getpid() << std::flush;
        if (!procs) {
            std::fprintf(stderr, "client: cannot join %s\n", cgroup.c_str());
            return 1;
        }
    }
    if (!pin_to(cpu)) {
        std::fprintf(stderr, "client: cannot pin to CPU %d: %s\n", cpu, std::strerror(errno));
        return 1;
    }
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
    const std::int64_t warm_end = start + static_cast<std::int64_t>(kWarmupSeconds * 1e9);  // not counted
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

    auto cpu_ns = [] {
        rusage ru{};
        ::getrusage(RUSAGE_SELF, &ru);
        auto ns = [](const timeval& tv) {
            return static_cast<std::int64_t>(tv.tv_sec) * 1'000'000'000 + tv.tv_usec * 1000;
        };
        return ns(ru.ru_utime) + ns(ru.ru_stime);
    };
    std::optional<std::int64_t> cpu_at_warm_end;
    std::vector<epoll_event> evs(256);
    while (now_ns() < end) {  // bounded by the clock
        if (!cpu_at_warm_end && now_ns() >= warm_end) cpu_at_warm_end = cpu_ns();
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
    if (cpu_at_warm_end && counted > 0)
        res.cpu_us = static_cast<double>(cpu_ns() - *cpu_at_warm_end) / 1e3 / static_cast<double>(counted);
    if (!lat_ns.empty()) {
        auto pct = [&](double p) {
            auto it = lat_ns.begin() + static_cast<std::ptrdiff_t>(p * static_cast<double>(lat_ns.size() - 1));
            std::nth_element(lat_ns.begin(), it, lat_ns.end());
            return *it / 1e3;
        };
        res.p50_us = pct(0.50);
        res.p99_us = pct(0.99);
    }
    std::printf("RESULT requests=%llu errors=%llu seconds=%.3f p50_us=%.2f p99_us=%.2f cpu_us=%.3f\n",
                static_cast<unsigned long long>(res.requests), static_cast<unsigned long long>(res.errors), res.seconds,
                res.p50_us, res.p99_us, res.cpu_us);
    return 0;
}

// ---------------------------------------------------------------------------------------------------------
// The driver.

// A cgroup below kCgroupRoot; the destructor moves leftover processes to the root and removes it.
class BenchCgroup {
public:
    explicit BenchCgroup(const std::string& tag)
        : path_(std::string(kCgroupRoot) + "/" + kCgroupPrefix + std::to_string(::getpid()) + "-" + tag) {
        ok_ = ::mkdir(path_.c_str(), 0755) == 0;
    }
    ~BenchCgroup() {
        if (ok_) remove(path_);
    }
    BenchCgroup(const BenchCgroup&) = delete;
    BenchCgroup& operator=(const BenchCgroup&) = delete;
    bool ok() const { return ok_; }
    const std::string& path() const { return path_; }

    // Moves the processes still in `path` to the root cgroup and removes it; bounded (2 s).
    static void remove(const std::string& path) {
        for (int attempt = 0; attempt < 100; ++attempt) {
            std::ifstream procs(path + "/cgroup.procs");
            std::string pid;
            while (procs >> pid) std::ofstream(std::string(kCgroupRoot) + "/cgroup.procs") << pid << std::flush;
            if (::rmdir(path.c_str()) == 0 || errno == ENOENT) return;
            std::this_thread::sleep_for(20ms);
        }
        std::fprintf(stderr, "kxlb-sockbench: could not remove %s\n", path.c_str());
    }

    // Removes the cgroups of earlier drivers that died without cleaning up (SIGKILL).
    static void remove_stale() {
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(kCgroupRoot, ec)) {
            const std::string name = e.path().filename().string();
            if (!name.starts_with(kCgroupPrefix)) continue;
            const int pid = std::atoi(name.c_str() + std::strlen(kCgroupPrefix));
            if (pid > 0 && pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) remove(e.path().string());
        }
    }

private:
    std::string path_;
    bool ok_ = false;
};

struct Setup {
    std::string name;
    std::string ip;
    std::uint16_t port = 0;
    bool lb_cgroup = false;   // the client runs in the cgroup with the socket-LB hooks
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
    if (std::sscanf(out.c_str() + pos, "RESULT requests=%llu errors=%llu seconds=%lf p50_us=%lf p99_us=%lf cpu_us=%lf",
                    &req, &err, &r.seconds, &r.p50_us, &r.p99_us, &r.cpu_us) != 6)
        return std::nullopt;
    r.requests = req;
    r.errors = err;
    return r;
}

// TIME_WAIT sockets in a namespace of the lab (from /proc/net/sockstat), -1 if unknown.
long time_wait_count(kxlb::lab::Lab& lab, std::string_view ns) {
    auto r = lab.run(ns, {"cat", "/proc/net/sockstat"}, 5s);
    if (!r) return -1;
    auto pos = r->out.find(" tw ");
    return pos == std::string::npos ? -1 : std::atol(r->out.c_str() + pos + 4);
}

// The q-quantile (0..1) of v by linear interpolation; 0 for an empty v.
double quantile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const double pos = q * static_cast<double>(v.size() - 1);
    const auto lo = static_cast<std::size_t>(pos);
    const std::size_t hi = std::min(lo + 1, v.size() - 1);
    return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

struct Options {
    bool quick = false;
    int conns = 32;
    double seconds = 1.0;
    int rounds = 10;
    bool pin = true;
    bool pin_proxies = true;
    std::vector<std::string> setups;     // empty: all
    std::vector<std::string> workloads;  // empty: short and keepalive
};

// The order of the setups in round `round`: rotated by the round and reversed every other round, so
// over 2n rounds each of n setups holds each position exactly twice and follows each other setup.
std::vector<std::size_t> round_order(std::size_t n, int round) {
    std::vector<std::size_t> order(n);
    for (std::size_t k = 0; k < n; ++k) order[k] = (k + static_cast<std::size_t>(round)) % n;
    if (round % 2 == 1) std::reverse(order.begin(), order.end());
    return order;
}

int drive(const Options& o) {
    if (::geteuid() != 0) {
        std::fprintf(stderr, "kxlb-sockbench: needs root (BPF, network namespaces, cgroups)\n");
        return 2;
    }
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    kxlb::route_libbpf_log_to_spdlog();
    char self[4096];
    const ssize_t sl = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (sl <= 0) return 2;
    self[sl] = '\0';

    // CPU placement, the same for every setup: the load generator on one CPU, the servers (backend and
    // proxies) on another.
    const int ncpu = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int client_cpu = o.pin && ncpu >= 2 ? 0 : -1;
    const int server_cpu = o.pin && ncpu >= 2 ? 1 : -1;
    const int proxy_cpu = o.pin_proxies ? server_cpu : -1;
    auto pinned = [](int cpu, std::vector<std::string> argv) {
        if (cpu >= 0) argv.insert(argv.begin(), {"taskset", "-c", std::to_string(cpu)});
        return argv;
    };

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

    // Two sibling cgroups of the same depth: the socket-LB hooks are attached to "lb" only; the clients of
    // the other setups run in "plain".
    BenchCgroup::remove_stale();
    BenchCgroup cg_lb("lb");
    BenchCgroup cg_plain("plain");
    for (const BenchCgroup* cg : {&cg_lb, &cg_plain}) {
        if (!cg->ok()) {
            std::fprintf(stderr, "kxlb-sockbench: mkdir %s: %s\n", cg->path().c_str(), std::strerror(errno));
            return 2;
        }
    }
    // The socket LB: VIP -> the backend, for processes in the lb cgroup.
    auto xdp = kxlb::XdpLbProgram::load();
    if (!xdp) return std::fprintf(stderr, "kxlb-sockbench: %s\n", xdp.error().message.c_str()), 2;
    auto sock = kxlb::SockLbProgram::load(xdp->lb_map_fds());
    if (!sock) return std::fprintf(stderr, "kxlb-sockbench: %s\n", sock.error().message.c_str()), 2;
    auto maps = kxlb::BpfLbMaps::bind(xdp->lb_map_fds());
    if (!maps) return std::fprintf(stderr, "kxlb-sockbench: %s\n", maps.error().message.c_str()), 2;
    kxlb::LbProgrammerOptions popts;
    popts.maglev_size = 251;
    auto lb = kxlb::LbProgrammer::create(*maps, popts);
    if (!lb) return std::fprintf(stderr, "kxlb-sockbench: %s\n", lb.error().message.c_str()), 2;
    kxlb::ServiceSpec svc;
    svc.frontend = kxlb::Frontend{kxlb::IpAddr::parse(kVip).value(), kVipPort, IPPROTO_TCP};
    svc.flags = KXLB_SVC_F_SOCKET_LB;
    svc.backends.push_back(kxlb::BackendSpec{kxlb::IpAddr::parse(kBackendIp).value(), kBackendPort, 1, false});
    if (auto id = lb->upsert_service(svc); !id)
        return std::fprintf(stderr, "kxlb-sockbench: %s\n", id.error().message.c_str()), 2;
    auto links = sock->attach(cg_lb.path());
    if (!links) return std::fprintf(stderr, "kxlb-sockbench: attach: %s\n", links.error().message.c_str()), 2;

    // Backend + proxies.
    kxlb::lab::TempDir dir{"sockbench"};
    auto backend =
        lab->spawn("be", {self, "--serve", kBackendIp, std::to_string(kBackendPort), std::to_string(server_cpu)});
    if (!backend || !wait_listening(*lab, kBackendIp, kBackendPort)) {
        std::fprintf(stderr, "kxlb-sockbench: backend did not start\n");
        return 2;
    }
    std::vector<Setup> setups = {
        {"direct", kBackendIp, kBackendPort, false, ""},       {"socket-lb", kVip, kVipPort, true, ""},
        {"nginx-stream", kNodeIp, kNginxPort, false, ""},      {"haproxy-tcp", kNodeIp, kHaproxyPort, false, ""},
        {"direct-again", kBackendIp, kBackendPort, false, ""},
    };
    if (!o.setups.empty()) {
        for (const auto& want : o.setups) {
            if (std::none_of(setups.begin(), setups.end(), [&](const Setup& s) { return s.name == want; })) {
                std::fprintf(stderr, "kxlb-sockbench: unknown setup '%s'\n", want.c_str());
                return 2;
            }
        }
        std::erase_if(setups, [&](const Setup& s) {
            return s.name != "direct" && std::find(o.setups.begin(), o.setups.end(), s.name) == o.setups.end();
        });
    }
    auto find_setup = [&](std::string_view name) -> Setup* {
        for (auto& s : setups)
            if (s.name == name) return &s;
        return nullptr;
    };
    const std::string be = std::string(kBackendIp) + ":" + std::to_string(kBackendPort);
    if (Setup* s = find_setup("nginx-stream"); s && !std::filesystem::exists(kNginxStreamModule)) {
        s->unavailable = "nginx stream module missing (apt-get install libnginx-mod-stream)";
    } else if (s) {
        std::ofstream(dir.path() + "/nginx.conf")
            << "load_module " << kNginxStreamModule << ";\nworker_processes 1;\npid " << dir.path()
            << "/nginx.pid;\nerror_log " << dir.path() << "/nginx.err warn;\n"
            << "events { worker_connections 16384; }\n"
            << "stream {\n  upstream be { server " << be << "; }\n"
            << "  server { listen " << kNodeIp << ":" << kNginxPort << " backlog=8192; proxy_pass be; }\n}\n";
        auto p =
            lab->spawn("node", pinned(proxy_cpu, {"/usr/sbin/nginx", "-e", dir.path() + "/nginx.err", "-p", dir.path(),
                                                  "-c", dir.path() + "/nginx.conf", "-g", "daemon off;"}));
        if (!p || !wait_listening(*lab, kNodeIp, kNginxPort))
            s->unavailable = "nginx did not start: " + (p ? (*p)->output() : p.error().message);
    }
    if (Setup* s = find_setup("haproxy-tcp"); s && !std::filesystem::exists("/usr/sbin/haproxy")) {
        s->unavailable = "/usr/sbin/haproxy missing";
    } else if (s) {
        std::ofstream(dir.path() + "/haproxy.cfg")
            << "global\n  maxconn 8000\n  nbthread 1\n"
            << "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n"
            << "listen lb\n  bind " << kNodeIp << ":" << kHaproxyPort << "\n  server be " << be << "\n";
        auto p = lab->spawn("node", pinned(proxy_cpu, {"/usr/sbin/haproxy", "-db", "-f", dir.path() + "/haproxy.cfg"}));
        if (!p || !wait_listening(*lab, kNodeIp, kHaproxyPort))
            s->unavailable = "haproxy did not start: " + (p ? (*p)->output() : p.error().message);
    }
    std::vector<std::string> workloads =
        o.workloads.empty() ? std::vector<std::string>{"short", "keepalive"} : o.workloads;
    const double estimate = static_cast<double>(workloads.size()) *
                            (static_cast<double>(o.rounds * setups.size()) + 1) * (o.seconds + kWarmupSeconds + 0.15);
    if (estimate > kMaxRunSeconds) {
        std::fprintf(stderr, "kxlb-sockbench: this plan would take about %.0f s (limit %.0f s): fewer rounds/seconds\n",
                     estimate, kMaxRunSeconds);
        return 2;
    }

    std::printf(
        "kxlb-sockbench%s: %d concurrent connections, %zu-byte request/response, 1 backend (1 epoll thread) used by "
        "direct and socket-lb alike, proxies with 1 worker; %d rounds x %.1f s per case (+%.1f s warm-up), order "
        "rotated per round; CPU (-1: any) of the clients %d, backend %d, proxies %d; %d CPUs; about %.0f s\n",
        o.quick ? " --quick" : "", o.conns, kMsg, o.rounds, o.seconds, kWarmupSeconds, client_cpu, server_cpu,
        proxy_cpu, ncpu, estimate);
    std::fflush(stdout);

    auto run_case = [&](const Setup& s, const std::string& workload) -> kxlb::Result<ClientResult> {
        std::vector<std::string> argv = {self,
                                         "--client",
                                         s.ip,
                                         std::to_string(s.port),
                                         std::to_string(o.conns),
                                         std::to_string(o.seconds),
                                         workload,
                                         s.lb_cgroup ? cg_lb.path() : cg_plain.path(),
                                         std::to_string(client_cpu)};
        auto res = lab->run("node", argv, std::chrono::milliseconds(static_cast<int>(o.seconds * 1000) + 15000));
        if (!res) return res.error();
        auto r = parse_result(res->out);
        if (!r) return kxlb::Error::invalid("client failed: " + res->out + res->err);
        return *r;
    };

    struct Cell {  // one setup x workload
        std::vector<ClientResult> rounds;
        std::vector<double> rps_ratio, p99_ratio;  // vs direct in the same round
        std::string note;
    };
    std::vector<std::vector<Cell>> cells(workloads.size(), std::vector<Cell>(setups.size()));
    for (std::size_t wi = 0; wi < workloads.size() && !g_stop.load(); ++wi) {
        const std::string& workload = workloads[wi];
        // One uncounted case first, so that no setup meets a cold system in round 1.
        (void)run_case(setups[0], workload);
        for (int round = 0; round < o.rounds && !g_stop.load(); ++round) {
            std::vector<std::optional<ClientResult>> got(setups.size());
            for (std::size_t si : round_order(setups.size(), round)) {
                if (g_stop.load()) break;
                const auto& s = setups[si];
                if (!s.unavailable.empty()) {
                    cells[wi][si].note = s.unavailable;
                    continue;
                }
                const long tw = time_wait_count(*lab, "be");
                const double t_start = static_cast<double>(now_ns()) / 1e9;  // CLOCK_MONOTONIC, as perf -k mono
                auto r = run_case(s, workload);
                const double t_end = static_cast<double>(now_ns()) / 1e9;
                if (!r) {
                    cells[wi][si].note = r.error().message;
                    continue;
                }
                got[si] = *r;
                cells[wi][si].rounds.push_back(*r);
                std::fprintf(stderr,
                             "  %-9s round %2d %-12s %9.0f req/s  p50 %7.1f us  p99 %7.1f us  client CPU %5.2f us/req  "
                             "samples %7llu  errors %llu  TIME_WAIT(be) before %ld  monotonic %.3f-%.3f\n",
                             workload.c_str(), round + 1, s.name.c_str(), r->rps(), r->p50_us, r->p99_us, r->cpu_us,
                             static_cast<unsigned long long>(r->requests), static_cast<unsigned long long>(r->errors),
                             tw, t_start, t_end);
            }
            const auto& d = got[0];  // setups[0] is direct
            for (std::size_t si = 0; si < setups.size(); ++si) {
                if (!d || !got[si] || d->rps() <= 0 || d->p99_us <= 0) continue;
                cells[wi][si].rps_ratio.push_back(got[si]->rps() / d->rps());
                cells[wi][si].p99_ratio.push_back(got[si]->p99_us / d->p99_us);
            }
        }
    }
    if (g_stop.load()) {
        std::fprintf(stderr, "kxlb-sockbench: interrupted; cleaning up\n");
        return 130;
    }

    std::printf(
        "\nMedians over rounds; ratios: the median of the per-round ratio to direct in the same round, "
        "[quartiles]\n\n");
    std::printf(
        "| workload  | setup        | rounds |    req/s |  p50 us |  p99 us | client CPU us/req | req/s vs direct      "
        "| p99 vs direct        |\n");
    std::printf(
        "|-----------|--------------|-------:|---------:|--------:|--------:|------------------:|:---------------------"
        "|:---------------------|\n");
    auto ratio_cell = [](const std::vector<double>& v) {
        char b[64];
        if (v.empty()) return std::string("n/a");
        std::snprintf(b, sizeof(b), "%.2fx [%.2f-%.2f]", quantile(v, 0.5), quantile(v, 0.25), quantile(v, 0.75));
        return std::string(b);
    };
    for (std::size_t wi = 0; wi < workloads.size(); ++wi) {
        for (std::size_t si = 0; si < setups.size(); ++si) {
            const Cell& c = cells[wi][si];
            if (c.rounds.empty()) {
                std::printf("| %-9s | %-12s | n/a: %s |\n", workloads[wi].c_str(), setups[si].name.c_str(),
                            c.note.c_str());
                continue;
            }
            std::vector<double> rps, p50, p99, cpu;
            std::uint64_t errors = 0;
            for (const auto& r : c.rounds) {
                cpu.push_back(r.cpu_us);
                rps.push_back(r.rps());
                p50.push_back(r.p50_us);
                p99.push_back(r.p99_us);
                errors += r.errors;
            }
            std::printf("| %-9s | %-12s | %6zu | %8.0f | %7.1f | %7.1f | %17.2f | %-20s | %-20s |%s\n",
                        workloads[wi].c_str(), setups[si].name.c_str(), c.rounds.size(), quantile(rps, 0.5),
                        quantile(p50, 0.5), quantile(p99, 0.5), quantile(cpu, 0.5), ratio_cell(c.rps_ratio).c_str(),
                        ratio_cell(c.p99_ratio).c_str(), errors ? (" errors " + std::to_string(errors)).c_str() : "");
        }
    }
    // The targets for socket-lb, against the same-run direct baseline (informational).
    if (Setup* lbs = find_setup("socket-lb")) {
        const auto si = static_cast<std::size_t>(lbs - setups.data());
        for (std::size_t wi = 0; wi < workloads.size(); ++wi) {
            const Cell& c = cells[wi][si];
            if (c.rps_ratio.empty()) continue;
            const double rr = quantile(c.rps_ratio, 0.5), pr = quantile(c.p99_ratio, 0.5);
            std::printf(
                "socket-lb %-9s: req/s %.2fx direct (target >= 0.90x: %s), p99 %.2fx direct (target <= 1.10x: %s)\n",
                workloads[wi].c_str(), rr, rr >= 0.9 ? "met" : "NOT met", pr, pr <= 1.10 ? "met" : "NOT met");
        }
    }
    std::fflush(stdout);
    return 0;
}

std::vector<std::string> split_commas(std::string_view s) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i <= s.size() && out.size() < 16;) {  // bounded
        const std::size_t j = std::min(s.find(',', i), s.size());
        if (j > i) out.emplace_back(s.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

void usage(std::FILE* f) {
    std::fprintf(f,
                 "usage: kxlb-sockbench [--quick] [--rounds N] [--seconds S] [--conns N] [--setups A,B]\n"
                 "                      [--workloads short,keepalive] [--no-pin | --proxies-unpinned]\n"
                 "  --quick      2 rounds x 0.5 s per case, < 30 s (default 10 rounds x 1 s, < 3 min)\n"
                 "  --rounds N   rounds; each runs every setup once, order rotated per round (1..40)\n"
                 "  --seconds S  measured seconds per case (0.5..20)\n"
                 "  --conns N    concurrent client connections (1..1024, default 32)\n"
                 "  --setups     subset of direct,socket-lb,nginx-stream,haproxy-tcp,direct-again (direct always)\n"
                 "  --no-pin     leave clients, backend and proxies to the scheduler\n"
                 "  --proxies-unpinned  pin the clients and the backend only\n"
                 "internal: --serve IP PORT CPU | --client IP PORT CONNS SECONDS short|keepalive CGROUP|- CPU\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 5 && std::string_view(argv[1]) == "--serve")
        return serve(argv[2], static_cast<std::uint16_t>(std::atoi(argv[3])), std::atoi(argv[4]));
    if (argc >= 9 && std::string_view(argv[1]) == "--client")
        return client(argv[2], static_cast<std::uint16_t>(std::atoi(argv[3])), std::clamp(std::atoi(argv[4]), 1, 1024),
                      std::clamp(std::atof(argv[5]), 0.1, 20.0), std::string_view(argv[6]) == "keepalive", argv[7],
                      std::atoi(argv[8]));
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--quick") {
            o.quick = true;
            o.seconds = 0.5;
            o.rounds = 2;
        } else if (a == "--seconds" && i + 1 < argc) {
            o.seconds = std::clamp(std::atof(argv[++i]), 0.5, 20.0);
        } else if (a == "--rounds" && i + 1 < argc) {
            o.rounds = std::clamp(std::atoi(argv[++i]), 1, 40);
        } else if (a == "--conns" && i + 1 < argc) {
            o.conns = std::clamp(std::atoi(argv[++i]), 1, 1024);
        } else if (a == "--setups" && i + 1 < argc) {
            o.setups = split_commas(argv[++i]);
        } else if (a == "--workloads" && i + 1 < argc) {
            o.workloads = split_commas(argv[++i]);
            for (const auto& w : o.workloads)
                if (w != "short" && w != "keepalive") return usage(stderr), 2;
        } else if (a == "--no-pin") {
            o.pin = false;
            o.pin_proxies = false;
        } else if (a == "--proxies-unpinned") {
            o.pin_proxies = false;
        } else if (a == "--help" || a == "-h") {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    return drive(o);
}
