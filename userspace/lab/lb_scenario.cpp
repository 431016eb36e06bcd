// LbScenario: builds the standard load-balancer lab and brings its servers and datapath up.
#include "lab/lb_scenario.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

namespace kxlb::lab {

namespace {

std::string nginx_conf(const std::filesystem::path& dir, const std::string& name, std::uint16_t port,
                       const std::string& cert, const std::string& key) {
    const std::string d = dir.string();
    std::string c;
    c += "worker_processes 1;\nuser root root;\npid " + d + "/nginx.pid;\nerror_log stderr warn;\n";
    c += "events { worker_connections 1024; }\nhttp {\n    access_log off;\n    default_type text/plain;\n";
    for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
        c += std::string("    ") + t + "_temp_path " + d + "/" + t + ";\n";
    c += "    server {\n        listen " + std::to_string(port) + ";\n        listen [::]:" + std::to_string(port) +
         ";\n";
    c += "        location = /readyz { return 200 \"" + name + "\\n\"; }\n";
    c += "        location / { return 200 \"" + name + "\\n\"; }\n    }\n";
    // The same answers over TLS, as an apiserver would serve /readyz.
    const std::string tls = std::to_string(LbScenario::kHttpsPort);
    c += "    server {\n        listen " + tls + " ssl;\n        listen [::]:" + tls + " ssl;\n";
    c += "        ssl_certificate " + cert + ";\n        ssl_certificate_key " + key + ";\n";
    c += "        location = /readyz { return 200 \"" + name + "\\n\"; }\n";
    c += "        location / { return 200 \"" + name + "\\n\"; }\n    }\n}\n";
    return c;
}

Status must(Result<CommandResult> r, const std::string& what) {
    if (!r) return r.error();
    if (r->exit_code != 0) return Error::invalid(what + ": " + r->err);
    return {};
}

}  // namespace

bool tcp_probe(Lab& lab, std::string_view ns, const std::string& ip, std::uint16_t port, int timeout_ms) {
    const bool v6 = ip.find(':') != std::string::npos;
    auto s = lab.socket(ns, v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK);
    if (!s) return false;
    sockaddr_storage ss{};
    socklen_t len;
    if (v6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
        len = sizeof(*a);
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
        len = sizeof(*a);
    }
    if (::connect(s->get(), reinterpret_cast<sockaddr*>(&ss), len) == 0) return true;
    if (errno != EINPROGRESS) return false;
    pollfd p{s->get(), POLLOUT, 0};
    if (::poll(&p, 1, timeout_ms) != 1) return false;
    int err = 0;
    socklen_t el = sizeof(err);
    ::getsockopt(s->get(), SOL_SOCKET, SO_ERROR, &err, &el);
    return err == 0;
}

Result<std::unique_ptr<LbScenario>> LbScenario::create(int backends, const std::vector<std::string>& vips,
                                                       Datapath datapath) {
    if (backends < 1 || backends > 9) return Error::invalid("LbScenario: 1..9 backends");
    std::unique_ptr<LbScenario> sc(new LbScenario());
    sc->n_ = backends;
    if (sc->dir_.path().empty()) return Error::from_errno(errno, "create a temporary directory");

    Topology t;
    t.namespaces = {"sw", "client", "node"};
    t.switches = {Switch{"sw", "br0"}};
    t.ip_forwarding = {"node"};
    t.veths.push_back(
        {{"client", "eth0", {std::string(kClient4) + "/24", std::string(kClient6) + "/64"}}, {"sw", "p-client", {}}});
    // The node transmits into the switch with XDP_TX: its peer needs an XDP program.
    t.veths.push_back({{"node", "eth0", {std::string(kNode4) + "/24", std::string(kNode6) + "/64"}},
                       {"sw", "p-node", {}},
                       false,
                       true});
    for (int i = 1; i <= backends; ++i) {
        t.namespaces.push_back(backend_ns(i));
        t.veths.push_back({{backend_ns(i), "eth0", {backend4(i) + "/24", backend6(i) + "/64"}},
                           {"sw", "p-be" + std::to_string(i), {}}});
    }
    for (const auto& vip : vips)
        t.routes.push_back({"client", vip + (vip.find(':') != std::string::npos ? "/128" : "/32"),
                            vip.find(':') != std::string::npos ? kNode6 : kNode4, "eth0"});
    auto lab = Lab::create(t);
    if (!lab) return lab.error();
    sc->lab_ = std::move(lab).value();

    std::vector<std::string> senders = {"client"};
    for (int i = 1; i <= backends; ++i) senders.push_back(backend_ns(i));
    for (const auto& ns : senders)
        if (auto st = must(sc->lab_->run(ns, {"ethtool", "-K", "eth0", "tx", "off"}), "ethtool in " + ns); !st)
            return st.error();

    // One self-signed certificate for every backend and VIP (its own CA), like a cluster CA's
    // apiserver certificate with IP SANs.
    std::string sans = "subjectAltName=IP:" + std::string(kNode4);
    for (int i = 1; i <= backends; ++i) sans += ",IP:" + backend4(i) + ",IP:" + backend6(i);
    for (const auto& vip : vips) sans += ",IP:" + vip;
    const auto cert = (std::filesystem::path(sc->dir_.path()) / "tls.crt").string();
    const auto key = (std::filesystem::path(sc->dir_.path()) / "tls.key").string();
    if (auto st = must(run_command({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                                    "/CN=kxlb-lab-apiserver", "-addext", sans, "-keyout", key, "-out", cert}),
                       "openssl req");
        !st)
        return st.error();
    sc->cert_ = cert;
    sc->key_ = key;
    sc->nginx_.assign(static_cast<std::size_t>(backends) + 1, nullptr);
    for (int i = 1; i <= backends; ++i)
        if (auto st = sc->start_backend(i); !st) return st.error();
    if (datapath == Datapath::None) {
        if (auto st = sc->warm_neighbours(); !st) return st.error();
        return sc;
    }

    auto prog = XdpLbProgram::load();
    if (!prog) return prog.error();
    sc->prog_.emplace(std::move(prog).value());
    auto maps = BpfLbMaps::bind(sc->prog_->lb_map_fds());
    if (!maps) return maps.error();
    sc->maps_.emplace(std::move(maps).value());
    LbConfig cfg;
    cfg.hash_seed = 0x6b786c62;
    cfg.snat_v4 = IpAddr::parse(kNode4).value();
    cfg.snat_v6 = IpAddr::parse(kNode6).value();
    if (auto st = sc->maps_->set_config(cfg.to_abi()); !st) return st.error();
    LbProgrammerOptions opts;
    opts.hash_seed = cfg.hash_seed;
    auto prg = LbProgrammer::create(*sc->maps_, opts);
    if (!prg) return prg.error();
    sc->programmer_.emplace(std::move(prg).value());

    auto idx = sc->lab_->ifindex("node", "eth0");
    if (!idx) return idx.error();
    auto& p = *sc->prog_;
    auto link = sc->lab_->in_ns("node", [&] { return p.attach(*idx, XdpMode::Native); });
    if (!link) return link.error();
    sc->link_ = std::move(link).value();
    if (auto st = sc->warm_neighbours(); !st) return st.error();
    return sc;
}

LbScenario::~LbScenario() {
    link_.reset();
    lab_.reset();  // kills nginx, deletes namespaces; dir_ goes last
}

Status LbScenario::warm_neighbours() {
    std::vector<std::string> peers = {kClient4, kClient6};
    for (int i = 1; i <= n_; ++i) {
        peers.push_back(backend4(i));
        peers.push_back(backend6(i));
    }
    for (const auto& ip : peers)
        if (auto st = must(lab_->run("node", {"ping", "-c", "1", "-W", "2", ip}), "ping " + ip); !st) return st;
    return {};
}

void LbScenario::stop_backend(int i) {
    if (nginx_[static_cast<std::size_t>(i)]) {
        nginx_[static_cast<std::size_t>(i)]->kill(SIGKILL);
        (void)nginx_[static_cast<std::size_t>(i)]->wait(std::chrono::seconds(2));
    }
}

Status LbScenario::start_backend(int i) {
    const auto dir = std::filesystem::path(dir_.path()) / backend_ns(i);
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "nginx.conf") << nginx_conf(dir, backend_ns(i), kHttpPort, cert_, key_);
    auto p = lab_->spawn(backend_ns(i), {"/usr/sbin/nginx", "-p", dir.string() + "/", "-c",
                                         (dir / "nginx.conf").string(), "-g", "daemon off;"});
    if (!p) return p.error();
    nginx_[static_cast<std::size_t>(i)] = *p;
    for (int tries = 0; tries < 100; ++tries) {  // up to ~5 s
        if (tcp_probe(*lab_, backend_ns(i), backend4(i), kHttpPort, 50)) return {};
        if (!(*p)->running()) return Error::invalid(backend_ns(i) + " nginx exited: " + (*p)->output());
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return Error{ETIMEDOUT, backend_ns(i) + " nginx did not start listening within 5 s"};
}

}  // namespace kxlb::lab
