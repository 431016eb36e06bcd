// Tracer: seeding, running and reading back a private datapath instance.
#include "ctl/trace.hpp"

#include <arpa/inet.h>
#include <linux/bpf.h>
#include <net/if.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "ctl/packet.hpp"
#include "lib/test_run.hpp"

namespace kxlb::ctl {

namespace {

// snat_alloc probes up to 16 ports; each live collision costs one more run.
constexpr int kMaxRuns = 18;

bool same_key(const kxlb_flow_key& a, const kxlb_flow_key& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

bool contains(const std::vector<kxlb_flow_key>& keys, const kxlb_flow_key& k) {
    return std::any_of(keys.begin(), keys.end(), [&](const auto& x) { return same_key(x, k); });
}

kxlb_flow_key flow_key(const TraceCmd& c) {
    kxlb_flow_key k{};
    c.src.to_words(k.saddr);
    c.dst.to_words(k.daddr);
    k.sport = htons(c.sport);
    k.dport = htons(c.dport);
    k.proto = c.proto;
    k.family = c.src.family;
    return k;
}

// The forward (client -> frontend) key of a reverse-NAT entry.
kxlb_flow_key forward_key(const kxlb_flow_key& reply, const kxlb_nat_value& nat) {
    kxlb_flow_key k{};
    std::memcpy(k.saddr, nat.client_addr, sizeof k.saddr);
    std::memcpy(k.daddr, nat.vip_addr, sizeof k.daddr);
    k.sport = nat.client_port;
    k.dport = nat.vip_port;
    k.proto = reply.proto;
    k.family = reply.family;
    return k;
}

bool same_flow(const kxlb_ct_value& a, const kxlb_ct_value& b) {
    return a.backend_id == b.backend_id && a.backend_gen == b.backend_gen && a.snat_port == b.snat_port;
}

std::string ifname_of(std::uint32_t ifindex) {
    char buf[IF_NAMESIZE] = {};
    if (ifindex == 0 || !::if_indextoname(ifindex, buf)) return ifindex ? "ifindex " + std::to_string(ifindex) : "";
    return buf;
}

template <typename K, typename V>
Status clear(TypedMap<K, V>& map) {
    std::vector<K> keys;
    if (auto st = map.for_each([&](const K& k, const V&) { keys.push_back(k); }); !st) return st;
    for (const auto& k : keys)
        if (auto r = map.erase(k); !r) return r.error();
    return {};
}

// Copies the live entry at k (if any) into the private map.
template <typename V>
Status copy_entry(const TypedMap<kxlb_flow_key, V>& live, TypedMap<kxlb_flow_key, V>& priv, const kxlb_flow_key& k) {
    auto v = live.lookup(k);
    if (!v) return v.error();
    if (*v) return priv.update(k, **v);
    return {};
}

// The error of the first failed result, if any.
template <typename... R>
std::optional<Error> first_error(const R&... results) {
    std::optional<Error> e;
    ((e || results ? void() : void(e = results.error())), ...);
    return e;
}

}  // namespace

Result<Ingress> resolve_ingress(const std::string& ifname, const PinnedMaps& maps) {
    if (!ifname.empty()) {
        const unsigned idx = ::if_nametoindex(ifname.c_str());
        if (idx == 0) return Error{ENODEV, "--ifname: no interface '" + ifname + "' in this network namespace"};
        return Ingress{ifname, idx};
    }
    auto links = maps.xdp_links();
    if (!links) return links.error();
    if (links->size() > 1) {
        std::string names;
        for (const auto& l : *links) names += (names.empty() ? "" : ", ") + l.ifname;
        return Error::invalid("kxlb is attached to several interfaces (" + names +
                              "): choose the ingress with --ifname");
    }
    if (links->size() == 1 && ifname_of(links->front().ifindex) == links->front().ifname)
        return Ingress{links->front().ifname, links->front().ifindex};
    return Ingress{};
}

Result<Tracer> Tracer::create(const PinnedMaps& maps) {
    auto prog = TraceProgram::load(maps.lb());
    if (!prog) return prog.error();
    const LbMapFds live = maps.lb(), priv = prog->fds();
    auto live_ct = FlowMap::bind(live.ct);
    auto priv_ct = FlowMap::bind(priv.ct);
    auto live_nat = NatMap::bind(live.nat);
    auto priv_nat = NatMap::bind(priv.nat);
    auto config = TypedMap<std::uint32_t, kxlb_config>::bind(live.config);
    auto services = TypedMap<kxlb_vip_key, kxlb_service>::bind(live.services);
    auto backends = TypedMap<std::uint32_t, kxlb_backend>::bind(live.backends);
    auto reasons = PerCpuArray<kxlb_counter>::bind(priv.reasons);
    if (auto e = first_error(live_ct, priv_ct, live_nat, priv_nat, config, services, backends, reasons)) return *e;
    return Tracer(std::move(prog).value(),
                  Maps{*live_ct, *priv_ct, *live_nat, *priv_nat, *config, *services, *backends, *reasons});
}

Status Tracer::reset_private() {
    if (auto st = clear(m_.priv_ct); !st) return st;
    if (auto st = clear(m_.priv_nat); !st) return st;
    for (std::uint32_t i = 0; i < kReasonCount; ++i)
        if (auto st = m_.priv_reasons.fill(i, kxlb_counter{}); !st) return st;
    return {};
}

Status Tracer::seed(const Seeds& seeds) {
    for (const auto& k : seeds.ct)
        if (auto st = copy_entry(m_.live_ct, m_.priv_ct, k); !st) return st;
    for (const auto& k : seeds.nat)
        if (auto st = copy_entry(m_.live_nat, m_.priv_nat, k); !st) return st;
    return {};
}

Result<std::uint32_t> Tracer::counted_reason() const {
    for (std::uint32_t i = 0; i < kReasonCount; ++i) {
        auto per_cpu = m_.priv_reasons.lookup(i);
        if (!per_cpu) return per_cpu.error();
        for (const auto& c : *per_cpu)
            if (c.packets) return i;
    }
    return Error::invalid("trace: the datapath counted no outcome for the packet");
}

std::optional<kxlb_flow_key> Tracer::nat_key(const kxlb_flow_key& fk, std::uint32_t backend_id,
                                             __be16 snat_port) const {
    auto be = m_.backends.lookup(backend_id);
    auto cfg = m_.config.lookup(0);
    if (!be || !*be || (*be)->family == 0 || !cfg || !*cfg) return std::nullopt;
    kxlb_flow_key nk{};
    std::memcpy(nk.saddr, (*be)->addr, sizeof nk.saddr);
    if (fk.family == KXLB_AF_INET) nk.daddr[0] = (*cfg)->snat_v4;
    else std::memcpy(nk.daddr, (*cfg)->snat_v6, sizeof nk.daddr);
    nk.sport = (*be)->port;
    nk.dport = snat_port;
    nk.proto = fk.proto;
    nk.family = (*be)->family;
    return nk;
}

std::optional<Frontend> Tracer::frontend_of(std::uint32_t svc_id) const {
    std::optional<Frontend> out;
    (void)m_.services.for_each([&](const kxlb_vip_key& k, const kxlb_service& s) {
        if (s.id == svc_id) out = Frontend::from_key(k);
    });
    return out;
}

std::optional<Endpoint> Tracer::backend_of(std::uint32_t backend_id, std::optional<std::uint32_t> gen) const {
    auto be = m_.backends.lookup(backend_id);
    if (!be || !*be || (*be)->family == 0 || (gen && (*be)->gen != *gen)) return std::nullopt;
    return Endpoint{IpAddr::from_words((*be)->family, (*be)->addr), ntohs((*be)->port)};
}

Result<Tracer::Live> Tracer::live_entries(const kxlb_flow_key& fk) const {
    auto ct = m_.live_ct.lookup(fk);
    if (!ct) return ct.error();
    auto reply = m_.live_nat.lookup(fk);
    if (!reply) return reply.error();
    return Live{*ct, *reply};
}

Tracer::Seeds Tracer::initial_seeds(const kxlb_flow_key& fk, const Live& live) const {
    Seeds seeds;
    if (live.ct) {
        seeds.ct.push_back(fk);
        if (auto nk = nat_key(fk, live.ct->backend_id, live.ct->snat_port)) seeds.nat.push_back(*nk);
    }
    if (live.reply) {  // a backend's reply: the program also updates the forward entry
        seeds.nat.push_back(fk);
        seeds.ct.push_back(forward_key(fk, *live.reply));
    }
    return seeds;
}

Result<Tracer::Outcome> Tracer::run_private(std::span<const std::uint8_t> frame, std::uint32_t ifindex,
                                            const kxlb_flow_key& fk, const Live& live, Seeds seeds) {
    XdpRunOptions opts;
    opts.ingress_ifindex = ifindex;
    Outcome o;
    for (int attempt = 0; attempt < kMaxRuns; ++attempt) {
        if (auto st = reset_private(); !st) return st.error();
        if (auto st = seed(seeds); !st) return st.error();
        auto run = run_xdp(prog_.prog_fd(), frame, opts);
        if (!run) return run.error();
        o.run = std::move(run).value();
        auto after = m_.priv_ct.lookup(fk);
        if (!after) return after.error();
        o.after = *after;
        // A new flow took a SNAT port: if the live datapath holds that port toward the backend,
        // seed the live entry and run again, so the trace picks the port the live datapath would.
        if (live.reply || !o.after || (live.ct && same_flow(*live.ct, *o.after))) break;
        auto nk = nat_key(fk, o.after->backend_id, o.after->snat_port);
        if (!nk || contains(seeds.nat, *nk)) break;
        auto taken = m_.live_nat.lookup(*nk);
        if (!taken) return taken.error();
        if (!*taken) break;
        seeds.nat.push_back(*nk);
    }
    auto reason = counted_reason();
    if (!reason) return reason.error();
    o.reason = *reason;
    return o;
}

TraceFlow Tracer::classify(const Live& live, const kxlb_ct_value& after) const {
    if (!live.ct || same_flow(*live.ct, after)) return live.ct ? TraceFlow::Established : TraceFlow::New;
    if (!backend_of(live.ct->backend_id, live.ct->backend_gen)) return TraceFlow::Rebalanced;
    return TraceFlow::New;  // a new connection on a closed 5-tuple, or an idle UDP flow
}

// Fills what the datapath decided (flow, service, backend, SNAT port) and returns the ifindex the
// frame leaves through when redirected.
std::uint32_t Tracer::describe_flow(const kxlb_flow_key& fk, const Live& live, const Outcome& o, TraceResult& t) const {
    if (live.reply) {
        t.flow = TraceFlow::Reply;
        t.svc_id = live.reply->svc_id;
        t.backend_id = live.reply->backend_id;
        t.backend = backend_of(live.reply->backend_id, std::nullopt);
        t.snat_port = ntohs(fk.dport);
        auto now = m_.priv_nat.lookup(fk);
        return now && *now ? (*now)->nh.ifindex : 0;
    }
    if (o.after) {
        t.flow = classify(live, *o.after);
        t.svc_id = o.after->svc_id;
        t.backend_id = o.after->backend_id;
        t.backend = backend_of(o.after->backend_id, o.after->backend_gen);
        t.snat_port = ntohs(o.after->snat_port);
        return o.after->nh.ifindex;
    }
    kxlb_vip_key vk{};  // no state: still name the service the packet is addressed to
    std::memcpy(vk.addr, fk.daddr, sizeof vk.addr);
    vk.port = fk.dport;
    vk.proto = fk.proto;
    vk.family = fk.family;
    if (auto svc = m_.services.lookup(vk); svc && *svc) t.svc_id = (*svc)->id;
    return 0;
}

Result<TraceResult> Tracer::run(const TraceCmd& cmd, const Ingress& ingress) {
    const kxlb_flow_key fk = flow_key(cmd);
    auto live = live_entries(fk);
    if (!live) return live.error();
    const auto frame = build_frame(FrameSpec{cmd.src, cmd.dst, cmd.sport, cmd.dport, cmd.proto, cmd.tcp_flags});
    auto o = run_private(frame, ingress.ifindex, fk, *live, initial_seeds(fk, *live));
    if (!o) return o.error();

    TraceResult t;
    t.in = TraceHeaders{cmd.src, cmd.dst, cmd.proto, cmd.sport, cmd.dport};
    t.tcp_flags = cmd.proto == IPPROTO_TCP ? cmd.tcp_flags : 0;
    t.ifname = ingress.ifname;
    t.ifindex = ingress.ifindex;
    t.verdict = o->run.verdict;
    t.reason = o->reason;
    const std::uint32_t redirect_ifindex = describe_flow(fk, *live, *o, t);
    if (t.svc_id) t.frontend = frontend_of(*t.svc_id);
    if (auto out = parse_headers(o->run.data); out && !(*out == t.in)) t.out = *out;
    if (t.verdict == XDP_TX) t.egress = ingress.ifname.empty() ? "ingress" : ingress.ifname;
    else if (t.verdict == XDP_REDIRECT) t.egress = ifname_of(redirect_ifindex);
    return t;
}

}  // namespace kxlb::ctl
