// LbHarness: deterministic routing environment + loaded datapath for golden-packet tests.
#include "bpf/lb_harness.hpp"

#include <bpf/bpf.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <numeric>
#include <stdexcept>

namespace kxlb::test {

LbConfig default_lb_config() {
    LbConfig c;
    c.hash_seed = 0x6b786c62;  // "kxlb"
    c.snat_v4 = IpAddr::parse(LbNet::kNode4).value();
    c.snat_v6 = IpAddr::parse(LbNet::kNode6).value();
    return c;
}

ServiceSpec make_service(const std::string& vip, std::uint16_t port, std::uint8_t proto,
                         const std::vector<std::string>& backends, std::uint16_t backend_port) {
    ServiceSpec s;
    s.frontend.addr = IpAddr::parse(vip).value();
    s.frontend.port = port;
    s.frontend.proto = proto;
    for (const auto& b : backends) s.backends.push_back(BackendSpec{IpAddr::parse(b).value(), backend_port, 1, false});
    return s;
}

namespace {

Status ip(lab::Lab& lab, const std::vector<std::string>& args) {
    std::vector<std::string> argv{"ip"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = lab.run("node", argv);
    if (!r) return r.error();
    if (r->exit_code != 0) {
        std::string cmd;
        for (const auto& a : argv) cmd += a + " ";
        return Error::invalid(cmd + "failed: " + r->err);
    }
    return {};
}

}  // namespace

Result<std::unique_ptr<LbHarness>> LbHarness::create(const LbConfig& cfg, const LbProgrammerOptions& opts,
                                                     const XdpLbLoadOptions& load_opts) {
    std::unique_ptr<LbHarness> h(new LbHarness());
    lab::Topology t;
    t.namespaces = {"node", "peer0", "peer1"};
    t.veths.push_back(
        {{"node", "eth0", {"10.0.0.1/24", "fd00::1/64"}}, {"peer0", "eth0", {"10.0.0.254/24", "fd00::fe/64"}}});
    t.veths.push_back(
        {{"node", "eth1", {"10.1.0.1/24", "fd01::1/64"}}, {"peer1", "eth0", {"10.1.0.254/24", "fd01::fe/64"}}});
    t.ip_forwarding = {"node"};
    auto lab = lab::Lab::create(t);
    if (!lab) return lab.error();
    h->lab_ = std::move(lab).value();
    auto& l = *h->lab_;

    std::vector<std::vector<std::string>> cmds = {
        {"link", "set", "dev", "eth0", "address", LbNet::kNodeMac0},
        {"link", "set", "dev", "eth1", "address", LbNet::kNodeMac1},
        {"neigh", "replace", LbNet::kClient4, "lladdr", LbNet::kClientMac, "dev", "eth0", "nud", "permanent"},
        {"neigh", "replace", LbNet::kClient6, "lladdr", LbNet::kClientMac, "dev", "eth0", "nud", "permanent"},
        {"neigh", "replace", LbNet::kFar4, "lladdr", LbNet::kFarMac, "dev", "eth1", "nud", "permanent"},
        {"neigh", "replace", LbNet::kFar6, "lladdr", LbNet::kFarMac, "dev", "eth1", "nud", "permanent"},
    };
    for (int i = 1; i <= 4; ++i) {
        cmds.push_back({"neigh", "replace", LbNet::backend4(i), "lladdr", LbNet::backend_mac(i), "dev", "eth0", "nud",
                        "permanent"});
        cmds.push_back({"neigh", "replace", LbNet::backend6(i), "lladdr", LbNet::backend_mac(i), "dev", "eth0", "nud",
                        "permanent"});
    }
    for (const auto& c : cmds)
        if (auto st = ip(l, c); !st) return st.error();

    auto e0 = l.ifindex("node", "eth0");
    auto e1 = l.ifindex("node", "eth1");
    if (!e0) return e0.error();
    if (!e1) return e1.error();
    h->eth0_ = *e0;
    h->eth1_ = *e1;

    auto prog = XdpLbProgram::load(load_opts);
    if (!prog) return prog.error();
    h->prog_.emplace(std::move(prog).value());
    const auto fds = h->prog_->lb_map_fds();
    auto maps = BpfLbMaps::bind(fds);
    if (!maps) return maps.error();
    h->maps_.emplace(std::move(maps).value());
    if (auto st = h->maps_->set_config(cfg.to_abi()); !st) return st.error();
    LbProgrammerOptions o = opts;
    o.hash_seed = cfg.hash_seed;
    auto prg = LbProgrammer::create(*h->maps_, o);
    if (!prg) return prg.error();
    h->programmer_.emplace(std::move(prg).value());
    auto counters = LbCounters::bind(fds);
    if (!counters) return counters.error();
    h->counters_.emplace(*counters);
    auto ct = Conntrack::bind(fds);
    if (!ct) return ct.error();
    h->conntrack_.emplace(*ct);
    return h;
}

Result<XdpRun> LbHarness::run(const Packet& frame, int ingress) {
    return lab_->in_ns("node", [&] { return run_in_node(frame.span(), ingress); });
}

Result<XdpRun> LbHarness::run_in_node(std::span<const std::uint8_t> frame, int ingress) {
    XdpRunOptions o;
    o.ingress_ifindex = static_cast<std::uint32_t>(ingress == 0 ? eth0_ : eth1_);
    return run_xdp(prog_->prog_fd(), frame, o);
}

Status LbHarness::remove_tx_port(int ifindex) {
    const auto key = static_cast<std::uint32_t>(ifindex);
    if (bpf_map_delete_elem(prog_->lb_map_fds().tx_ports, &key) != 0)
        return Error::from_errno(errno, "remove TX port ifindex " + std::to_string(ifindex));
    return {};
}

std::uint64_t LbHarness::reason(kxlb_reason r) {
    auto all = counters_->reasons();
    if (!all) throw std::runtime_error(all.error().message);
    return (*all)[r].packets;
}

std::array<std::uint64_t, kReasonCount> LbHarness::reason_packets() {
    auto all = counters_->reasons();
    if (!all) throw std::runtime_error(all.error().message);
    std::array<std::uint64_t, kReasonCount> out{};
    for (std::size_t i = 0; i < kReasonCount; ++i) out[i] = (*all)[i].packets;
    return out;
}

std::uint64_t LbHarness::reasons_total() {
    const auto all = reason_packets();
    return std::accumulate(all.begin(), all.end(), std::uint64_t{0});
}

ParseStats LbHarness::parse_stats() {
    auto s = prog_->parse_stats();
    if (!s) throw std::runtime_error(s.error().message);
    return *s;
}

Bytes LbHarness::run_expect(const Packet& in, std::uint32_t verdict, int ingress) {
    auto r = run(in, ingress);
    if (!r) {
        ADD_FAILURE() << r.error().message;
        return {};
    }
    EXPECT_EQ(r->verdict, verdict) << hexdump(r->data);
    return r->data;
}

namespace {

// The value stored under exactly key in a conntrack map, by direct lookup; a read error is a test failure.
template <typename V>
std::optional<V> flow_entry(int fd, const kxlb_flow_key& key) {
    V v{};
    if (bpf_map_lookup_elem(fd, &key, &v) == 0) return v;
    if (errno != ENOENT) ADD_FAILURE() << "conntrack lookup: " << std::strerror(errno);
    return std::nullopt;
}

}  // namespace

std::optional<kxlb_ct_value> LbHarness::ct_entry(const kxlb_flow_key& key) {
    return flow_entry<kxlb_ct_value>(prog_->lb_map_fds().ct, key);
}

std::optional<kxlb_nat_value> LbHarness::nat_entry(const kxlb_flow_key& key) {
    return flow_entry<kxlb_nat_value>(prog_->lb_map_fds().nat, key);
}

std::size_t LbHarness::nat_count() {
    auto n = conntrack_->nat_entries();
    if (!n) ADD_FAILURE() << n.error().message;
    return n ? n->size() : 0;
}

kxlb_lb_counter LbHarness::service_counter(const Frontend& fe) {
    const auto* st = programmer_->service(fe);
    if (!st) {
        ADD_FAILURE() << fe.str() << " is not programmed";
        return {};
    }
    auto c = counters_->service(st->id);
    if (!c) ADD_FAILURE() << c.error().message;
    return c ? *c : kxlb_lb_counter{};
}

kxlb_lb_counter LbHarness::backend_counter(const Frontend& fe, const BackendIdentity& backend) {
    auto id = programmer_->backend_id(fe, backend);
    if (!id) {
        ADD_FAILURE() << fe.str() << " has no such backend";
        return {};
    }
    auto c = counters_->backend(*id);
    if (!c) ADD_FAILURE() << c.error().message;
    return c ? *c : kxlb_lb_counter{};
}

}  // namespace kxlb::test
