// e2e tier: local backends (pods on the balancing node) with real traffic. A netns lab:
//
//   client 10.0.1.2 fd01::2 ── eth0 ┐
//                                    node eth0 10.0.1.1 fd01::1 (XDP kxlb, tc egress kxlb, tx checksum off)
//                                    node eth1 10.0.2.1 fd02::1 (XDP kxlb, tc egress kxlb) ── be1 10.0.2.2 fd02::2
//                                    node pod0 10.244.0.1 fd44::1 (plain veth, routed by the node's kernel)
//                                         └── pod 10.244.0.5 fd44::5 (default route via the node), nginx :8080
//
// NodePort-style frontends on the node's own address: :30080 -> the pod only (DNAT in XDP, handed to the kernel,
// replies reverse-translated by the tc egress program), :30081 -> the pod and be1 (full-NAT) together. The pod
// keeps its TX offloads (its TCP sends CHECKSUM_PARTIAL GSO super-packets); node eth0 has TX checksumming off, so
// the node segments and checksums the translated replies in software and the client verifies every checksum: a
// wrong pseudo-header update in tc breaks the 2 MB download.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "common/privileges.hpp"
#include "lab/lab.hpp"
#include "lab/lb_scenario.hpp"
#include "lab/temp_dir.hpp"
#include "lib/lb_inspect.hpp"
#include "lib/lb_maps.hpp"
#include "lib/lb_programmer.hpp"
#include "lib/local_rev_program.hpp"
#include "lib/xdp_programs.hpp"

namespace kxlb::test {
namespace {

constexpr std::uint16_t kPodPort = 8080;
constexpr std::uint16_t kNodePortLocal = 30080, kNodePortMixed = 30081;
constexpr std::size_t kBigBytes = 2 * 1024 * 1024;

struct Fam {
    bool v6;
    const char* node;  // frontend address (node eth0)
    const char* client;
    const char* pod;
    const char* be1;
    std::string url(std::uint16_t port, const std::string& path) const {
        return std::string("http://") + (v6 ? "[" : "") + node + (v6 ? "]" : "") + ":" + std::to_string(port) + path;
    }
};
const Fam kV4{false, "10.0.1.1", "10.0.1.2", "10.244.0.5", "10.0.2.2"};
const Fam kV6{true, "fd01::1", "fd01::2", "fd44::5", "fd02::2"};

std::string nginx_conf(const std::filesystem::path& dir, const std::string& name) {
    const std::string d = dir.string();
    std::string c = "worker_processes 1;\nuser root root;\npid " + d + "/nginx.pid;\nerror_log stderr warn;\n";
    c += "events { worker_connections 1024; }\nhttp {\n    access_log off;\n    default_type text/plain;\n";
    for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
        c += std::string("    ") + t + "_temp_path " + d + "/" + t + ";\n";
    c += "    server {\n        listen " + std::to_string(kPodPort) +
         ";\n        listen [::]:" + std::to_string(kPodPort) + ";\n        root " + d + "/www;\n";
    c += "        location = /name { return 200 \"" + name + "\\n\"; }\n";
    c += "        location = /peer { return 200 \"$remote_addr\\n\"; }\n    }\n}\n";
    return c;
}

class LocalBackendE2e : public ::testing::Test {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        lab::Topology t;
        t.namespaces = {"client", "node", "be1", "pod"};
        t.veths.push_back({{"client", "eth0", {"10.0.1.2/24", "fd01::2/64"}},
                           {"node", "eth0", {"10.0.1.1/24", "fd01::1/64"}},
                           true,
                           false});
        t.veths.push_back({{"node", "eth1", {"10.0.2.1/24", "fd02::1/64"}},
                           {"be1", "eth0", {"10.0.2.2/24", "fd02::2/64"}},
                           false,
                           true});
        t.veths.push_back(
            {{"node", "pod0", {"10.244.0.1/24", "fd44::1/64"}}, {"pod", "eth0", {"10.244.0.5/24", "fd44::5/64"}}});
        t.routes = {{"client", "default", "10.0.1.1", ""}, {"client", "::/0", "fd01::1", ""},
                    {"be1", "default", "10.0.2.1", ""},    {"be1", "::/0", "fd02::1", ""},
                    {"pod", "default", "10.244.0.1", ""},  {"pod", "::/0", "fd44::1", ""}};
        t.ip_forwarding = {"node"};
        auto l = lab::Lab::create(t);
        ASSERT_TRUE(l) << l.error().message;
        lab_ = std::move(l).value();
        // Senders toward XDP complete their checksums (as physical NICs deliver them); node eth0 computes the
        // translated replies' checksums in software (see the file comment). The pod keeps its offloads.
        for (const auto& [ns, dev] : {std::pair{"client", "eth0"}, {"be1", "eth0"}, {"node", "eth0"}}) {
            auto r = lab_->run(ns, {"ethtool", "-K", dev, "tx", "off"});
            ASSERT_TRUE(r && r->exit_code == 0) << "ethtool in " << ns;
        }

        start_nginx("pod", "pod", kV4.pod);
        start_nginx("be1", "be1", kV4.be1);

        auto prog = XdpLbProgram::load();
        ASSERT_TRUE(prog) << prog.error().message;
        prog_.emplace(std::move(prog).value());
        auto rev = LocalRevProgram::load(prog_->lb_map_fds());
        ASSERT_TRUE(rev) << rev.error().message;
        rev_.emplace(std::move(rev).value());
        auto maps = BpfLbMaps::bind(prog_->lb_map_fds());
        ASSERT_TRUE(maps) << maps.error().message;
        maps_.emplace(std::move(maps).value());
        LbConfig cfg;
        cfg.hash_seed = 0x6b786c62;
        cfg.snat_v4 = IpAddr::parse(kV4.node).value();
        cfg.snat_v6 = IpAddr::parse(kV6.node).value();
        ASSERT_TRUE(maps_->set_config(cfg.to_abi()));
        LbProgrammerOptions opts;
        opts.hash_seed = cfg.hash_seed;
        auto prg = LbProgrammer::create(*maps_, opts);
        ASSERT_TRUE(prg) << prg.error().message;
        programmer_.emplace(std::move(prg).value());
        auto counters = LbCounters::bind(prog_->lb_map_fds());
        ASSERT_TRUE(counters) << counters.error().message;
        counters_.emplace(*counters);

        for (const char* dev : {"eth0", "eth1"}) {
            auto idx = lab_->ifindex("node", dev);
            ASSERT_TRUE(idx) << idx.error().message;
            auto st = lab_->in_ns("node", [&]() -> Status {
                if (auto s = maps_->add_tx_port(static_cast<std::uint32_t>(*idx)); !s) return s;
                auto link = prog_->attach(*idx, XdpMode::Native);
                if (!link) return link.error();
                links_.push_back(std::move(link).value());
                auto f = rev_->attach(*idx);
                if (!f) return f.error();
                filters_.push_back(std::move(f).value());
                return {};
            });
            ASSERT_TRUE(st) << dev << ": " << st.error().message;
        }
        for (const Fam* f : {&kV4, &kV6}) {
            upsert(*f, kNodePortLocal, {{f->pod, true}});
            upsert(*f, kNodePortMixed, {{f->pod, true}, {f->be1, false}});
        }
        // Neighbours warm, so the first flows do not start with pass_no_neigh.
        for (const char* ip : {kV4.client, kV4.be1, kV4.pod, kV6.client, kV6.be1, kV6.pod})
            (void)lab_->run("node", {"ping", "-c", "1", "-W", "2", ip});
    }

    void TearDown() override {
        // Filters and links first (their interfaces go with the namespaces), then the namespaces; the clsact
        // qdiscs the filters created die with the node namespace's interfaces.
        if (lab_)
            (void)lab_->in_ns("node", [&] {
                for (auto& f : filters_) {
                    const int idx = f.ifindex();
                    (void)f.detach();
                    (void)LocalRevProgram::remove_clsact(idx);
                }
                return 0;
            });
        filters_.clear();
        links_.clear();
        lab_.reset();
    }

    void start_nginx(const std::string& ns, const std::string& name, const std::string& addr) {
        const auto dir = std::filesystem::path(tmp_.path()) / ns;
        std::filesystem::create_directories(dir / "www");
        std::ofstream(dir / "nginx.conf") << nginx_conf(dir, name);
        {
            std::ofstream big(dir / "www" / "big", std::ios::binary);
            std::string chunk(4096, '\0');
            for (std::size_t i = 0; i < kBigBytes / chunk.size(); ++i) {
                for (std::size_t j = 0; j < chunk.size(); ++j) chunk[j] = static_cast<char>((i * 31 + j * 7) & 0xff);
                big.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
            }
        }
        auto p = lab_->spawn(ns, {"/usr/sbin/nginx", "-p", dir.string() + "/", "-c", (dir / "nginx.conf").string(),
                                  "-g", "daemon off;"});
        ASSERT_TRUE(p) << p.error().message;
        for (int tries = 0; tries < 100; ++tries) {
            if (lab::tcp_probe(*lab_, ns, addr, kPodPort, 50)) return;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        FAIL() << ns << " nginx did not start: " << (*p)->output();
    }

    void upsert(const Fam& f, std::uint16_t port, const std::vector<std::pair<const char*, bool>>& backends) {
        ServiceSpec s;
        s.frontend = Frontend{IpAddr::parse(f.node).value(), port, IPPROTO_TCP};
        for (const auto& [addr, local] : backends)
            s.backends.push_back(BackendSpec{IpAddr::parse(addr).value(), kPodPort, 1, false, local});
        auto r = programmer_->upsert_service(s);
        ASSERT_TRUE(r) << r.error().message;
    }

    // curl from the client; the body (or the -w output).
    std::optional<std::string> curl(const std::vector<std::string>& extra, const std::string& url) {
        std::vector<std::string> argv{"curl", "-sS", "--max-time", "10"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        argv.push_back(url);
        auto r = lab_->run("client", argv, std::chrono::seconds(15));
        EXPECT_TRUE(r) << r.error().message;
        if (!r) return std::nullopt;
        EXPECT_EQ(r->exit_code, 0) << url << ": " << r->err;
        if (r->exit_code != 0) return std::nullopt;
        return r->out;
    }

    std::uint64_t reason(kxlb_reason r) {
        auto all = counters_->reasons();
        EXPECT_TRUE(all) << all.error().message;
        return all ? (*all)[r].packets : 0;
    }
    std::uint64_t rev_reason(kxlb_local_rev_reason r) {
        auto all = rev_->reasons();
        EXPECT_TRUE(all) << all.error().message;
        return all ? (*all)[r].packets : 0;
    }

    lab::TempDir tmp_{"local-backend"};
    std::unique_ptr<lab::Lab> lab_;
    std::optional<XdpLbProgram> prog_;
    std::optional<LocalRevProgram> rev_;
    std::optional<BpfLbMaps> maps_;
    std::optional<LbProgrammer> programmer_;
    std::optional<LbCounters> counters_;
    std::vector<Link> links_;
    std::vector<TcFilter> filters_;
};

// The NodePort whose only backend is the local pod, over IPv4 and IPv6: requests reach the pod with the client's
// real address, answers come back from the frontend, a 2 MB download arrives whole, and both programs counted it.
TEST_F(LocalBackendE2e, NodePortToLocalPodWorksBothWays) {
    for (const Fam* f : {&kV4, &kV6}) {
        SCOPED_TRACE(f->v6 ? "IPv6" : "IPv4");
        const auto fwd0 = reason(KXLB_R_FWD_LOCAL);
        const auto rev0 = rev_reason(KXLB_LR_REV_LOCAL);

        EXPECT_EQ(curl({}, f->url(kNodePortLocal, "/name")).value_or(""), "pod\n");
        EXPECT_EQ(curl({}, f->url(kNodePortLocal, "/peer")).value_or(""), std::string(f->client) + "\n")
            << "the pod sees the client's own address (DNAT only)";
        // 2 MB: many GSO super-packets from the pod, translated in tc, segmented and checksummed by node eth0 in
        // software, every segment's checksum verified by the client. Compare the content too.
        auto got = curl({"-o", "/dev/stdout"}, f->url(kNodePortLocal, "/big"));
        ASSERT_TRUE(got);
        ASSERT_EQ(got->size(), kBigBytes);
        bool same = true;
        for (std::size_t i = 0; i < kBigBytes && same; ++i)
            same = static_cast<unsigned char>((*got)[i]) == (((i / 4096) * 31 + (i % 4096) * 7) & 0xff);
        EXPECT_TRUE(same) << "download content differs";

        const auto fwd = reason(KXLB_R_FWD_LOCAL) - fwd0, rev = rev_reason(KXLB_LR_REV_LOCAL) - rev0;
        std::printf("[ figures  ] %s: fwd_local=%llu rev_local=%llu\n", f->v6 ? "IPv6" : "IPv4",
                    static_cast<unsigned long long>(fwd), static_cast<unsigned long long>(rev));
        EXPECT_GE(fwd, 3u * 3u) << "three connections' client segments through XDP";
        EXPECT_GE(rev, 3u * 2u) << "three connections' replies through tc";
    }
    for (auto r : {KXLB_R_PASS_MALFORMED, KXLB_R_PASS_NO_TX_PORT, KXLB_R_DROP_TCP_NO_FLOW, KXLB_R_DROP_LOCAL_NODE_SRC,
                   KXLB_R_DROP_LOCAL_TUPLE_BUSY, KXLB_R_DROP_CT_FULL})
        EXPECT_EQ(reason(r), 0u) << reason_name(r);
    EXPECT_EQ(rev_reason(KXLB_LR_DROP_XLATE_FAILED), 0u);
    EXPECT_EQ(rev_reason(KXLB_LR_PASS_MALFORMED), 0u);
}

// A service with the local pod and a remote backend: connections spread over both, each working in both
// directions (DNAT-only via the kernel and tc for the pod, full-NAT in XDP for be1).
TEST_F(LocalBackendE2e, MixedServiceSpreadsOverLocalPodAndRemoteBackend) {
    for (const Fam* f : {&kV4, &kV6}) {
        SCOPED_TRACE(f->v6 ? "IPv6" : "IPv4");
        std::map<std::string, int> answers;
        for (int i = 0; i < 24; ++i) {
            auto body = curl({}, f->url(kNodePortMixed, "/name"));
            ASSERT_TRUE(body);
            ++answers[*body];
        }
        EXPECT_EQ(answers.size(), 2u);
        EXPECT_GT(answers["pod\n"], 0);
        EXPECT_GT(answers["be1\n"], 0);
        // be1 sees the node (full-NAT); the pod sees the client.
        std::set<std::string> peers;
        for (int i = 0; i < 24; ++i)
            if (auto b = curl({}, f->url(kNodePortMixed, "/peer"))) peers.insert(*b);
        EXPECT_EQ(peers, (std::set<std::string>{std::string(f->client) + "\n", std::string(f->node) + "\n"}));
    }
    EXPECT_GT(reason(KXLB_R_FWD_LOCAL), 0u);
    EXPECT_GT(reason(KXLB_R_FWD_REDIRECT), 0u);
    EXPECT_GT(rev_reason(KXLB_LR_REV_LOCAL), 0u);
    EXPECT_EQ(rev_reason(KXLB_LR_DROP_XLATE_FAILED), 0u);
}

}  // namespace
}  // namespace kxlb::test
