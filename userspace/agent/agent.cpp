// Agent: start-up, the event loop's handlers (probes, signals, config file, netlink) and reloads.
#include "agent/agent.hpp"

#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <tuple>

#include "agent/logging.hpp"

namespace kxlb::agent {

namespace {

auto spec_tuple(const HealthCheckSpec& s) {
    return std::tie(s.type, s.path, s.expected_status, s.host, s.ca_file, s.insecure, s.interval, s.timeout, s.rise,
                    s.fall, s.port);
}

std::string backend_str(const BackendRef& r) {
    return r.service + "/" + BackendSpec{IpAddr{r.backend.family, r.backend.addr}, r.backend.port}.str();
}

}  // namespace

bool Agent::TargetKey::operator<(const TargetKey& o) const {
    return std::tie(ref, addr, port) < std::tie(o.ref, o.addr, o.port) ||
           (std::tie(ref, addr, port) == std::tie(o.ref, o.addr, o.port) && spec_tuple(spec) < spec_tuple(o.spec));
}

LbConfig lb_config(const AgentConfig& cfg, const std::vector<LinkInfo>& links, const std::vector<AddrInfo>& addrs) {
    LbConfig c;
    c.hash_seed = cfg.hash_seed;
    c.snat_port_lo = cfg.snat_port_lo;
    c.snat_port_hi = cfg.snat_port_hi;
    c.udp_timeout_s = static_cast<std::uint32_t>(cfg.udp_timeout.count());
    for (const auto& p : cfg.dsr_source_prefixes) (p.addr.family == AF_INET ? c.encap_src_v4 : c.encap_src_v6) = p;
    std::vector<std::string> ifnames;
    for (const auto& i : cfg.interfaces) ifnames.push_back(i.name);
    for (int family : {AF_INET, AF_INET6}) {
        std::optional<IpAddr> addr;
        for (const auto& a : cfg.node_addresses)
            if (a.family == family) addr = a;
        if (cfg.node_addresses.empty()) addr = pick_node_address(family, ifnames, links, addrs);
        if (addr) (family == AF_INET ? c.snat_v4 : c.snat_v6) = *addr;
    }
    return c;
}

Result<std::unique_ptr<Agent>> Agent::start(AgentConfig cfg, std::string config_path) {
    std::unique_ptr<Agent> a(new Agent());
    if (auto st = a->init(std::move(cfg), std::move(config_path)); !st) return st.error();
    return a;
}

Agent::~Agent() {
    // Probes, watchers and loop handlers go first; pinned maps and links stay for the next agent.
    prober_.reset();
    k8s_.reset();
}

Status Agent::init(AgentConfig cfg, std::string config_path) {
    cfg_ = std::move(cfg);
    config_path_ = std::move(config_path);
    auto loop = EventLoop::create();
    if (!loop) return loop.error();
    loop_ = std::move(loop).value();
    if (!cfg_.metrics_address.empty())
        if (auto st = metrics_->serve(*loop_, cfg_.metrics_address); !st)
            return Error{st.error().code, "metrics endpoint " + cfg_.metrics_address + ": " + st.error().message};

    auto nl = NetlinkMonitor::open();
    if (!nl) return Error{nl.error().code, "netlink: " + nl.error().message};
    netlink_.emplace(std::move(nl).value());
    auto links = netlink_->links();
    if (!links) return links.error();
    links_ = std::move(links).value();
    auto addrs = netlink_->addresses();
    if (!addrs) return addrs.error();
    addrs_ = std::move(addrs).value();

    auto dp = NodeDatapath::open(datapath_options(cfg_));
    if (!dp) return dp.error();
    datapath_ = std::move(dp).value();
    if (auto v = make_datapath_view(*datapath_); v) metrics_->set_datapath(std::move(v).value());
    else spdlog::warn("metrics: no datapath counters: {}", v.error().message);
    spdlog::info("datapath loaded on {} ({} services adopted from a previous run)", datapath_->layout().root,
                 datapath_->programmer().service_count());

    sync_node_config();
    if (!lb_config_) return Error::invalid("cannot program the datapath configuration");
    if (cfg_.dsr_decap.interfaces.empty()) {
        if (int n = remove_decap_links(datapath_->layout()))
            spdlog::info("DSR decapsulation is not configured: detached it from {} interfaces", n);
    } else {
        sync_decap();
        if (!decap_) return Error::invalid("cannot load the DSR decapsulation program");
    }

    if (cfg_.kubernetes.enabled) {
        auto src = KubernetesSource::create(cfg_.kubernetes, *loop_, [this] { on_k8s_change(); });
        if (!src) return src.error();
        k8s_ = std::move(src).value();
        k8s_->set_node_addresses(node_addresses());
    }
    // Backends the previous agent had drained for failing probes stay drained until probes say
    // otherwise: a restart must not send new flows to a backend known to be down.
    rebuild_services();
    for (const auto& [name, svc] : reconciler_.services())
        for (const auto& fe : svc->frontends)
            if (const auto* st = datapath_->programmer().service(fe))
                for (const auto& be : st->spec.backends)
                    if (be.draining && svc->health_check)
                        reconciler_.set_health(BackendRef{name, be.identity()}, false);
    apply();

    prober_ = std::make_unique<Prober>(*loop_, *this, static_cast<std::uint64_t>(::getpid()) ^ cfg_.hash_seed);
    sync_probes();
    sync_interfaces();

    if (auto st = loop_->add_fd(netlink_->fd(), EPOLLIN, [this](std::uint32_t) { on_netlink(); }); !st) return st;
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&mask, s);
    if (pthread_sigmask(SIG_BLOCK, &mask, nullptr) != 0) return Error::from_errno(errno, "block signals");
    signal_fd_ = UniqueFd(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signal_fd_.valid()) return Error::from_errno(errno, "signalfd");
    if (auto st = loop_->add_fd(signal_fd_.get(), EPOLLIN, [this](std::uint32_t) { on_signal(); }); !st) return st;
    if (auto st = watch_config_file(); !st) spdlog::warn("not watching the config file: {}", st.error().message);
    // Parsing a large YAML document peaks far above what the agent keeps (yaml-cpp's node tree);
    // hand the freed heap back to the kernel instead of carrying it for the agent's lifetime.
    ::malloc_trim(0);
    started_ = true;
    update_readiness();
    if (k8s_) {
        k8s_->start();
        refresh_k8s_metrics();
    }
    return {};
}

std::vector<IpAddr> Agent::node_addresses() const {
    std::vector<IpAddr> out;
    if (lb_config_)
        for (const auto& a : {lb_config_->snat_v4, lb_config_->snat_v6})
            if (a.family) out.push_back(a);
    return out;
}

void Agent::rebuild_services() {
    std::vector<ServicePtr> file, extra;
    for (const auto& s : cfg_.services) file.push_back(std::make_shared<const ServiceConfig>(s));
    if (k8s_ && k8s_->synced()) extra = k8s_->services();
    else if (k8s_)
        if (auto boot = k8s_->service(kBootstrapServiceName)) extra.push_back(boot);  // before the first sync
    auto merged = merge_services(file, extra);
    if (merged.conflicts != conflicts_) {
        for (const auto& c : merged.conflicts) spdlog::warn("{}", c);
        conflicts_ = merged.conflicts;
    }
    reconciler_.set_services(std::move(merged.services));
}

void Agent::on_k8s_change() {
    const auto t0 = std::chrono::steady_clock::now();
    const auto changes = k8s_->update();
    if (changes.empty()) return refresh_k8s_metrics();
    if (changes.all || !apply_k8s_delta(changes.names)) {
        rebuild_services();
        sync_probes();
        apply();
    }
    update_readiness();
    refresh_k8s_metrics();
    spdlog::debug("kubernetes change programmed in {} us",
                  std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
}

bool Agent::apply_k8s_delta(const std::vector<std::string>& names) {
    if (!conflicts_.empty()) return false;  // resolving a conflict is order-dependent: full merge
    std::vector<ServiceChange> delta;
    delta.reserve(names.size());
    for (const auto& n : names) delta.push_back(ServiceChange{n, k8s_->service(n)});
    const auto in_file = [&](const std::string& n) {
        return std::any_of(cfg_.services.begin(), cfg_.services.end(),
                           [&](const ServiceConfig& s) { return s.name == n; });
    };
    if (!merges_cleanly(delta, in_file, [&](const Frontend& fe) { return reconciler_.owner(fe); })) return false;
    reconciler_.update_services(delta);
    sync_probes(&names);
    apply(&names);
    return true;
}

void Agent::refresh_k8s_metrics() {
    if (!k8s_) return;
    const auto st = k8s_->stats();
    metrics_->set_kubernetes(st.synced, st.services, st.watch_failures, st.relists);
    if (k8s_timer_) loop_->cancel_timer(*k8s_timer_);
    // Until the first sync, poll for it: an empty cluster completes its lists without any change
    // that would wake the loop.
    const bool synced = st.synced;
    k8s_timer_ = loop_->add_timer(synced ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(100), [this] {
        k8s_timer_.reset();
        if (!k8s_->synced()) on_k8s_change();
        else refresh_k8s_metrics();
    });
}

Status Agent::run() {
    spdlog::info("kxlb-agent {} serving {} services on {} interfaces", KXLB_VERSION, cfg_.services.size(),
                 datapath_->attached_interfaces().size());
    return loop_->run();
}

void Agent::apply(const std::vector<std::string>* services) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto report = services ? reconciler_.apply_services(datapath_->programmer(), *services)
                                 : reconciler_.apply(datapath_->programmer());
    ++stats_.applies;
    metrics_->observe_reconcile(std::chrono::steady_clock::now() - t0, report.failures.size());
    metrics_->observe_writes(static_cast<std::size_t>(report.upserted), static_cast<std::size_t>(report.removed));
    last_apply_ok_ = report.ok();
    update_readiness();
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    if (report.upserted || report.removed)
        spdlog::info("datapath updated: {} frontends written, {} removed in {} us", report.upserted, report.removed,
                     us);
    if (report.ok()) {
        retry_delay_ = std::chrono::milliseconds(250);
        return;
    }
    stats_.map_errors += report.failures.size();
    for (const auto& f : report.failures) spdlog::error("programming {} (will retry)", f);
    schedule_retry();
}

void Agent::update_readiness() {
    if (!started_ || metrics_->ready()) return;  // once ready, stays ready (a retry is not an outage)
    if (k8s_ && !k8s_->synced()) {
        metrics_->set_ready(false, "waiting for the initial Kubernetes lists of services and endpointslices");
        return;
    }
    if (last_apply_ok_) metrics_->set_ready(true);
    else metrics_->set_ready(false, "programming the services into the datapath failed; retrying");
}

void Agent::on_result(TargetId id, const ProbeResult& result) {
    if (auto it = target_refs_.find(id); it != target_refs_.end()) metrics_->observe_probe(it->second, result);
}

void Agent::schedule_retry() {
    if (retry_timer_ || !loop_) return;
    retry_timer_ = loop_->add_timer(retry_delay_, [this] {
        retry_timer_.reset();
        apply();
    });
    retry_delay_ = std::min(retry_delay_ * 2, std::chrono::milliseconds(30000));
}

void Agent::on_transition(TargetId id, bool healthy) {
    auto it = target_refs_.find(id);
    if (it == target_refs_.end()) return;
    const auto t0 = std::chrono::steady_clock::now();
    metrics_->set_backend_health(it->second, healthy);
    const bool changed = reconciler_.set_health(it->second, healthy);
    spdlog::log(healthy ? spdlog::level::info : spdlog::level::warn, "backend {} is now {}", backend_str(it->second),
                healthy ? "healthy" : "unhealthy");
    if (!changed) {
        if (!healthy)
            spdlog::warn("{}: every backend is down; keeping the last healthy one serving (policy)",
                         it->second.service);
        return;
    }
    const std::vector<std::string> one{it->second.service};
    apply(&one);
    spdlog::info("health change of {} reached the datapath in {} us", backend_str(it->second),
                 std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
}

void Agent::sync_probes(const std::vector<std::string>* services) {
    const auto in_scope = [&](const std::string& name) {
        return !services || std::binary_search(services->begin(), services->end(), name);
    };
    std::vector<const ServiceConfig*> scope;
    if (services) {
        for (const auto& n : *services)
            if (const auto* s = reconciler_.find(n)) scope.push_back(s);
    } else {
        for (const auto& [n, s] : reconciler_.services()) scope.push_back(s.get());
    }
    std::map<TargetKey, TargetId> want;
    for (const auto* svc : scope) {
        if (!svc->health_check) continue;
        for (const auto& b : svc->backends) {
            TargetKey key{BackendRef{svc->name, BackendSpec{b.addr, b.port}.identity()}, b.addr, b.port,
                          *svc->health_check};
            auto it = targets_.find(key);
            want.emplace(key, it == targets_.end() ? 0 : it->second);
        }
    }
    for (auto it = targets_.begin(); it != targets_.end();) {
        if (!in_scope(it->first.ref.service) || want.count(it->first)) {
            ++it;
            continue;
        }
        prober_->remove(it->second);
        target_refs_.erase(it->second);
        it = targets_.erase(it);
    }
    for (auto& [key, id] : want) {
        if (id != 0) continue;
        const TargetId next = next_target_++;
        if (auto st = prober_->add(next, key.addr, key.port, key.spec, reconciler_.healthy(key.ref)); !st) {
            spdlog::error("health check of {}: {}", backend_str(key.ref), st.error().message);
            continue;
        }
        id = next;
        target_refs_[id] = key.ref;
        targets_.emplace(key, id);
    }
    // Health series exist for checked backends only: the others are healthy by definition, and at
    // 10,000 Services x 10 endpoints their series would cost tens of MiB (docs/agent.md).
    std::set<BackendRef> refs;
    for (const auto* svc : scope) {
        if (!svc->health_check) continue;
        for (const auto& b : svc->backends) {
            BackendRef ref{svc->name, BackendSpec{b.addr, b.port}.identity()};
            metrics_->set_backend_health(ref, reconciler_.healthy(ref));
            refs.insert(std::move(ref));
        }
    }
    metrics_->retain_backends(refs, services);
}

void Agent::sync_interfaces() {
    // The balancer's and the decapsulation program's NICs, the same way (a name is in one list only).
    const auto sync = [&](const std::vector<InterfaceConfig>& ifaces, auto& dp, const char* what) {
        std::set<std::string> wanted;
        for (const auto& iface : ifaces) {
            wanted.insert(iface.name);
            const LinkInfo* link = nullptr;
            for (const auto& l : links_)
                if (l.name == iface.name) link = &l;
            if (!link) {
                if (dp.attached(iface.name)) {
                    spdlog::warn("interface {} disappeared; will re-attach {} when it is back", iface.name, what);
                    dp.detach(iface.name);
                } else {
                    spdlog::warn("interface {} does not exist (yet); will attach {} when it appears", iface.name, what);
                }
                continue;
            }
            if (dp.attached_ifindex(iface.name) == link->ifindex) continue;
            if (auto st = dp.attach(iface, link->ifindex); !st) spdlog::error("{}: {}", what, st.error().message);
            else spdlog::info("{} attached to {} (ifindex {})", what, iface.name, link->ifindex);
        }
        for (const auto& name : dp.attached_interfaces())
            if (!wanted.count(name)) {
                dp.detach(name);
                spdlog::info("{} detached from {} (no longer configured)", what, name);
            }
    };
    sync(cfg_.interfaces, *datapath_, "XDP");
    if (decap_) sync(cfg_.dsr_decap.interfaces, *decap_, "DSR decapsulation");
}

void Agent::sync_decap() {
    if (!decap_ && !cfg_.dsr_decap.interfaces.empty()) {
        auto d = DecapDatapath::open(datapath_->layout());
        if (!d) {
            spdlog::error("{}", d.error().message);
            return;
        }
        decap_ = std::move(d).value();
        metrics_->set_decap([this] { return decap_->program().reasons(); });
    }
    if (!decap_) return;
    const auto addrs = cfg_.dsr_decap.addresses.empty() ? node_addresses() : cfg_.dsr_decap.addresses;
    if (auto st = decap_->set_addresses(addrs); !st)
        spdlog::error("DSR decapsulation addresses: {}", st.error().message);
}

void Agent::sync_node_config() {
    std::set<IpAddr> own;
    std::vector<Cidr> via_nics;
    for (const auto& a : addrs_) {
        own.insert(a.addr);
        for (const auto& l : links_)
            if (l.ifindex == a.ifindex && std::any_of(cfg_.interfaces.begin(), cfg_.interfaces.end(),
                                                      [&](const auto& i) { return i.name == l.name; }))
                via_nics.push_back(Cidr{a.addr, a.prefix_len}.network());
    }
    if (reconciler_.set_node_addressing(std::move(own), std::move(via_nics)) && started_) apply();
    LbConfig want = lb_config(cfg_, links_, addrs_);
    if (lb_config_ && *lb_config_ == want) return;
    if (auto st = datapath_->set_config(want); !st) {
        spdlog::error("datapath configuration: {}", st.error().message);
        return;
    }
    spdlog::info("node addresses for full-NAT: ipv4 {} ipv6 {}", want.snat_v4.family ? want.snat_v4.str() : "(none)",
                 want.snat_v6.family ? want.snat_v6.str() : "(none)");
    lb_config_ = want;
    if (decap_ && cfg_.dsr_decap.addresses.empty()) sync_decap();  // it follows the node addresses
    if (k8s_ && k8s_->set_node_addresses(node_addresses()) && started_) {
        rebuild_services();
        sync_probes();
        apply();
    }
}

void Agent::on_netlink() {
    auto drained = netlink_->drain();
    if (!drained) {
        spdlog::error("netlink: {}", drained.error().message);
        return;
    }
    bool links_changed = false, addrs_changed = false;
    if (drained->resync_needed) {
        links_changed = addrs_changed = true;
    }
    for (const auto& ev : drained->events) {
        if (ev.kind == NetlinkEvent::Kind::LinkNew || ev.kind == NetlinkEvent::Kind::LinkDel) links_changed = true;
        else addrs_changed = true;
    }
    if (links_changed) {
        if (auto l = netlink_->links(); l) links_ = std::move(l).value();
        else spdlog::error("netlink link dump: {}", l.error().message);
        sync_interfaces();
    }
    if (addrs_changed || links_changed) {
        if (auto a = netlink_->addresses(); a) addrs_ = std::move(a).value();
        else spdlog::error("netlink address dump: {}", a.error().message);
        sync_node_config();
    }
}

void Agent::on_signal() {
    signalfd_siginfo si{};
    while (::read(signal_fd_.get(), &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) {
        if (si.ssi_signo == SIGHUP) {
            spdlog::info("SIGHUP: reloading {}", config_path_);
            reload();
        } else {
            spdlog::info("{}: exiting; programs and maps stay pinned under {} for the next agent",
                         strsignal(static_cast<int>(si.ssi_signo)), datapath_->layout().root);
            loop_->stop();
        }
    }
}

Status Agent::watch_config_file() {
    if (config_path_.empty()) return {};
    inotify_fd_ = UniqueFd(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    if (!inotify_fd_.valid()) return Error::from_errno(errno, "inotify_init1");
    // Watch the directory: editors and ConfigMap updates replace the file rather than write it.
    const auto dir = std::filesystem::path(config_path_).parent_path();
    const std::string d = dir.empty() ? "." : dir.string();
    if (::inotify_add_watch(inotify_fd_.get(), d.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0)
        return Error::from_errno(errno, "inotify watch " + d);
    return loop_->add_fd(inotify_fd_.get(), EPOLLIN, [this](std::uint32_t) { on_config_file_event(); });
}

void Agent::on_config_file_event() {
    alignas(inotify_event) char buf[4096];
    const std::string name = std::filesystem::path(config_path_).filename().string();
    // Kubernetes ConfigMaps swap a "..data" symlink: any change in the directory may be ours.
    bool ours = false;
    for (;;) {
        const ssize_t n = ::read(inotify_fd_.get(), buf, sizeof(buf));
        if (n <= 0) break;
        for (ssize_t off = 0; off < n;) {
            const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
            if (ev->len == 0 || name == ev->name || std::string_view(ev->name) == "..data") ours = true;
            off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
    }
    if (!ours || reload_timer_) return;
    // Debounce: an editor's write-rename sequence is one change.
    reload_timer_ = loop_->add_timer(std::chrono::milliseconds(100), [this] {
        reload_timer_.reset();
        spdlog::info("{} changed: reloading", config_path_);
        reload();
    });
}

void Agent::reload() {
    auto next = load_config(config_path_);
    if (!next) {
        ++stats_.reloads_failed;
        metrics_->config_reload(false);
        spdlog::error("config reload rejected, the running configuration keeps serving:\n{}", next.error().message);
        return;
    }
    AgentConfig cfg = std::move(next).value();
    const auto restart_only = [&](const char* key, bool changed) {
        if (changed) spdlog::warn("{} changed: takes effect when the agent restarts", key);
    };
    restart_only("pin_path", cfg.pin_path != cfg_.pin_path);
    restart_only("datapath.conntrack_entries", cfg.conntrack_entries != cfg_.conntrack_entries);
    restart_only("datapath.maglev_table_size", cfg.maglev_size != cfg_.maglev_size);
    restart_only("datapath.hash_seed", cfg.hash_seed != cfg_.hash_seed);
    restart_only("socket_lb.cgroup", cfg.socket_lb_cgroup != cfg_.socket_lb_cgroup);
    restart_only("metrics.address", cfg.metrics_address != cfg_.metrics_address);
    restart_only("kubernetes", cfg.kubernetes != cfg_.kubernetes);
    // Keep the restart-only settings of the running instance.
    cfg.pin_path = cfg_.pin_path;
    cfg.conntrack_entries = cfg_.conntrack_entries;
    cfg.maglev_size = cfg_.maglev_size;
    cfg.hash_seed = cfg_.hash_seed;
    cfg.socket_lb_cgroup = cfg_.socket_lb_cgroup;
    cfg.metrics_address = cfg_.metrics_address;
    cfg.kubernetes = cfg_.kubernetes;
    if (auto st = configure_logging(cfg.log_level, cfg.log_format); !st) spdlog::warn("{}", st.error().message);
    cfg_ = std::move(cfg);
    rebuild_services();
    sync_probes();
    sync_decap();
    sync_interfaces();
    sync_node_config();
    apply();
    ++stats_.reloads_ok;
    metrics_->config_reload(true);
    ::malloc_trim(0);  // see init()
    spdlog::info("config reloaded: {} services", cfg_.services.size());
}

}  // namespace kxlb::agent
