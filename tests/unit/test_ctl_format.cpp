// Unit tests for kxlbctl (no privileges): every object rendered as a table and as JSON from
// hand-built views (exact strings), the trace frame builder (checksums verified independently),
// argument values, and the CLI's argument errors (exact messages, exit code 2, JSON error shape).
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/checksum.hpp"
#include "ctl/app.hpp"
#include "ctl/args.hpp"
#include "ctl/cli.hpp"
#include "ctl/format.hpp"
#include "ctl/packet.hpp"
#include "ctl/table.hpp"

namespace kxlb::ctl {
namespace {

IpAddr ip(const char* text) { return IpAddr::parse(text).value(); }

// ---- fixtures ------------------------------------------------------------------------------------

ServiceRow service_v4() {
    ServiceRow s;
    s.id = 1;
    s.frontend = Frontend{ip("10.96.0.1"), 443, IPPROTO_TCP};
    s.flags = KXLB_SVC_F_SOCKET_LB;
    s.backend_count = 3;
    s.active_backends = 2;
    s.traffic = Traffic{12, 1500, 3};
    s.sock_connections = 5;
    return s;
}

ServiceRow service_v6() {
    ServiceRow s;
    s.id = 2;
    s.frontend = Frontend{ip("fd00::53"), 53, IPPROTO_UDP};
    return s;
}

BackendRow backend_live() {
    BackendRow b;
    b.id = 4;
    b.svc_id = 1;
    b.frontend = service_v4().frontend;
    b.endpoint = Endpoint{ip("10.0.1.11"), 8080};
    b.weight = 1;
    b.gen = 7;
    b.traffic = Traffic{10, 1000, 2};
    b.sock_connections = 3;
    return b;
}

BackendRow backend_orphan_draining() {
    BackendRow b;
    b.id = 5;
    b.svc_id = 9;
    b.endpoint = Endpoint{ip("fd00::12"), 8443};
    b.weight = 100;
    b.draining = true;
    b.gen = 8;
    return b;
}

MaglevView maglev_view(bool full) {
    MaglevView m;
    m.svc_id = 1;
    m.frontend = service_v4().frontend;
    m.size = 7;
    m.shares = {{4, Endpoint{ip("10.0.1.11"), 8080}, 4}, {6, std::nullopt, 3}};
    m.full = full;
    if (full) m.table = {4, 6, 4, 6, 4, 6, 4};
    return m;
}

FlowList flow_list() {
    FlowRow open;
    open.client = Endpoint{ip("10.0.0.9"), 40000};
    open.frontend = service_v4().frontend;
    open.svc_id = 1;
    open.backend_id = 4;
    open.backend = Endpoint{ip("10.0.1.11"), 8080};
    open.snat_port = 61234;
    open.age_ms = 1234;
    FlowRow closed;
    closed.client = Endpoint{ip("fd00::9"), 5353};
    closed.frontend = service_v6().frontend;
    closed.svc_id = 2;
    closed.backend_id = 9;
    closed.flags = KXLB_CT_F_CLOSED | KXLB_CT_F_FIN_CLIENT;
    closed.age_ms = 3'723'000;
    return FlowList{{open, closed}, 5};
}

StatsView stats_view() {
    StatsView s;
    s.reasons[KXLB_R_FWD_TX] = {10, 1000};
    s.reasons[KXLB_R_DROP_TCP_NO_FLOW] = {2, 120};
    std::array<kxlb_counter, kParseStatCount> parse{};
    parse[KXLB_PS_FRAMES] = {12, 1120};
    parse[KXLB_PS_TCP] = {12, 1120};
    s.parse = parse;
    std::array<std::uint64_t, kSockReasonCount> sock{};
    sock[KXLB_SR_CONNECT] = 5;
    s.sock = sock;
    s.flow_cache = kxlb_flow_cache_counters{40, 3, 2};
    return s;
}

TraceResult trace_forward() {
    TraceResult t;
    t.in = TraceHeaders{ip("10.0.0.9"), ip("10.96.0.1"), IPPROTO_TCP, 40000, 443};
    t.tcp_flags = 0x02;
    t.ifname = "eth0";
    t.ifindex = 3;
    t.verdict = XDP_TX;
    t.reason = KXLB_R_FWD_TX;
    t.flow = TraceFlow::New;
    t.svc_id = 1;
    t.frontend = service_v4().frontend;
    t.backend_id = 4;
    t.backend = Endpoint{ip("10.0.1.11"), 8080};
    t.snat_port = 61234;
    t.out = TraceHeaders{ip("10.0.0.1"), ip("10.0.1.11"), IPPROTO_TCP, 61234, 8080};
    t.egress = "eth0";
    return t;
}

TraceResult trace_pass() {
    TraceResult t;
    t.in = TraceHeaders{ip("fd00::9"), ip("fd00::99"), IPPROTO_UDP, 1000, 53};
    t.verdict = XDP_PASS;
    t.reason = KXLB_R_PASS_NOT_VIP;
    return t;
}

// ---- table layout --------------------------------------------------------------------------------

TEST(CtlFormatTable, AlignsColumnsAndTrimsTrailingBlanks) {
    Table t({{"NAME"}, {"N", Table::Align::Right}, {"LAST"}});
    t.add({"a", "1", ""});
    t.add({"longer", "100", "x"});
    EXPECT_EQ(t.str(),
              "NAME      N  LAST\n"
              "a         1\n"
              "longer  100  x\n");
}

TEST(CtlFormatTable, KeyValuesPadKeys) {
    KeyValues kv;
    kv.add("a", "1");
    kv.add("longer", "2");
    EXPECT_EQ(kv.str("  "), "  a:      1\n  longer: 2\n");
}

TEST(CtlFormatVocabulary, Words) {
    EXPECT_EQ(service_flags_str(0), "-");
    EXPECT_EQ(service_flags_str(KXLB_SVC_F_SOCKET_LB | KXLB_SVC_F_DSR), "socket-lb,dsr");
    EXPECT_EQ(flow_state_str(0), "open");
    EXPECT_EQ(flow_state_str(KXLB_CT_F_FIN_CLIENT), "fin-client");
    EXPECT_EQ(flow_state_str(KXLB_CT_F_FIN_BACKEND), "fin-backend");
    EXPECT_EQ(flow_state_str(KXLB_CT_F_FIN_CLIENT | KXLB_CT_F_FIN_BACKEND), "fin-both");
    EXPECT_EQ(flow_state_str(KXLB_CT_F_CLOSED | KXLB_CT_F_FIN_BACKEND), "closed");
    EXPECT_EQ(verdict_name(XDP_REDIRECT), "XDP_REDIRECT");
    EXPECT_EQ(verdict_name(9), "XDP_9");
    EXPECT_EQ(age_str(0), "0.0s");
    EXPECT_EQ(age_str(59'949), "59.9s");
    EXPECT_EQ(age_str(65'000), "1m05s");
    EXPECT_EQ(age_str(3'723'000), "1h02m");
}

// ---- services ------------------------------------------------------------------------------------

TEST(CtlFormatService, ListTable) {
    EXPECT_EQ(render(std::vector<ServiceRow>{service_v4(), service_v6()}, OutputMode::Table),
              "ID  FRONTEND           FLAGS      BACKENDS  ACTIVE  PACKETS  BYTES  NEW_FLOWS  SOCK_CONNS\n"
              " 1  10.96.0.1:443/tcp  socket-lb         3       2       12   1500          3           5\n"
              " 2  [fd00::53]:53/udp  -                 0       0        0      0          0           -\n");
}

TEST(CtlFormatService, ListJson) {
    EXPECT_EQ(render(std::vector<ServiceRow>{service_v4(), service_v6()}, OutputMode::Json),
              R"({"services":[{"id":1,"frontend":"10.96.0.1:443/tcp","address":"10.96.0.1","port":443,)"
              R"("protocol":"tcp","flags":["socket-lb"],"backend_count":3,"active_backends":2,"packets":12,)"
              R"("bytes":1500,"new_flows":3,"socket_lb_connections":5},{"id":2,"frontend":"[fd00::53]:53/udp",)"
              R"("address":"fd00::53","port":53,"protocol":"udp","flags":[],"backend_count":0,"active_backends":0,)"
              R"("packets":0,"bytes":0,"new_flows":0,"socket_lb_connections":null}]})"
              "\n");
}

TEST(CtlFormatService, EmptyListIsHeaderOrEmptyArray) {
    EXPECT_EQ(render(std::vector<ServiceRow>{}, OutputMode::Table),
              "ID  FRONTEND  FLAGS  BACKENDS  ACTIVE  PACKETS  BYTES  NEW_FLOWS  SOCK_CONNS\n");
    EXPECT_EQ(render(std::vector<ServiceRow>{}, OutputMode::Json), "{\"services\":[]}\n");
}

TEST(CtlFormatService, PrettyJsonIsIndented) {
    const auto out = render(std::vector<ServiceRow>{service_v6()}, OutputMode::JsonPretty);
    EXPECT_TRUE(out.starts_with("{\n  \"services\": [\n    {\n      \"id\": 2,\n")) << out;
    EXPECT_EQ(nlohmann::json::parse(out),
              nlohmann::json::parse(render(std::vector<ServiceRow>{service_v6()}, OutputMode::Json)));
}

TEST(CtlFormatService, ShowTable) {
    ServiceDetail d{service_v4(), 7, {backend_live()}};
    EXPECT_EQ(render(d, OutputMode::Table),
              "service 1: 10.96.0.1:443/tcp\n"
              "  flags:     socket-lb\n"
              "  backends:  3 (2 active)\n"
              "  maglev:    7 slots\n"
              "  traffic:   12 packets, 1500 bytes, 3 new flows\n"
              "  socket-lb: 5 connections\n"
              "\n"
              "ID  ADDRESS         WEIGHT  DRAINING  GEN  PACKETS  BYTES  NEW_FLOWS  SOCK_CONNS\n"
              " 4  10.0.1.11:8080       1  no          7       10   1000          2           3\n");
}

TEST(CtlFormatService, ShowTableWithoutTableOrSocketLb) {
    ServiceDetail d{service_v6(), 0, {}};
    EXPECT_EQ(render(d, OutputMode::Table),
              "service 2: [fd00::53]:53/udp\n"
              "  flags:     -\n"
              "  backends:  0 (0 active)\n"
              "  maglev:    no table (no usable backend)\n"
              "  traffic:   0 packets, 0 bytes, 0 new flows\n"
              "  socket-lb: -\n"
              "\n"
              "ID  ADDRESS  WEIGHT  DRAINING  GEN  PACKETS  BYTES  NEW_FLOWS  SOCK_CONNS\n");
}

TEST(CtlFormatService, ShowJson) {
    ServiceDetail d{service_v4(), 7, {backend_live()}};
    EXPECT_EQ(render(d, OutputMode::Json),
              R"({"service":{"id":1,"frontend":"10.96.0.1:443/tcp","address":"10.96.0.1","port":443,)"
              R"("protocol":"tcp","flags":["socket-lb"],"backend_count":3,"active_backends":2,"packets":12,)"
              R"("bytes":1500,"new_flows":3,"socket_lb_connections":5,"maglev_size":7,"backends":[{"id":4,)"
              R"("service_id":1,"frontend":"10.96.0.1:443/tcp","address":"10.0.1.11","port":8080,"weight":1,)"
              R"("draining":false,"gen":7,"packets":10,"bytes":1000,"new_flows":2,"socket_lb_connections":3}]}})"
              "\n");
}

// ---- backends ------------------------------------------------------------------------------------

TEST(CtlFormatBackend, ListTable) {
    EXPECT_EQ(render(std::vector<BackendRow>{backend_live(), backend_orphan_draining()}, OutputMode::Table),
              "ID  SVC  FRONTEND           ADDRESS          WEIGHT  DRAINING  GEN  PACKETS  BYTES  NEW_FLOWS  "
              "SOCK_CONNS\n"
              " 4    1  10.96.0.1:443/tcp  10.0.1.11:8080        1  no          7       10   1000          2  "
              "         3\n"
              " 5    9  -                  [fd00::12]:8443     100  yes         8        0      0          0  "
              "         -\n");
}

TEST(CtlFormatBackend, ListJson) {
    EXPECT_EQ(render(std::vector<BackendRow>{backend_live(), backend_orphan_draining()}, OutputMode::Json),
              R"({"backends":[{"id":4,"service_id":1,"frontend":"10.96.0.1:443/tcp","address":"10.0.1.11",)"
              R"("port":8080,"weight":1,"draining":false,"gen":7,"packets":10,"bytes":1000,"new_flows":2,)"
              R"("socket_lb_connections":3},{"id":5,"service_id":9,"frontend":null,"address":"fd00::12",)"
              R"("port":8443,"weight":100,"draining":true,"gen":8,"packets":0,"bytes":0,"new_flows":0,)"
              R"("socket_lb_connections":null}]})"
              "\n");
}

// ---- maglev --------------------------------------------------------------------------------------

TEST(CtlFormatMaglev, ShareTable) {
    EXPECT_EQ(render(maglev_view(false), OutputMode::Table),
              "service 1: 10.96.0.1:443/tcp, Maglev table of 7 slots\n"
              "BACKEND  ADDRESS         SLOTS   SHARE\n"
              "      4  10.0.1.11:8080      4  57.14%\n"
              "      6  -                   3  42.86%\n");
}

TEST(CtlFormatMaglev, FullTable) {
    EXPECT_EQ(render(maglev_view(true), OutputMode::Table),
              "service 1: 10.96.0.1:443/tcp, Maglev table of 7 slots\n"
              "BACKEND  ADDRESS         SLOTS   SHARE\n"
              "      4  10.0.1.11:8080      4  57.14%\n"
              "      6  -                   3  42.86%\n"
              "\n"
              "SLOT   BACKEND IDS\n"
              "0      4 6 4 6 4 6 4\n");
}

TEST(CtlFormatMaglev, FullTableWrapsEvery16Slots) {
    MaglevView m = maglev_view(true);
    m.size = 17;
    m.table.assign(17, 4);
    const auto out = render(m, OutputMode::Table);
    EXPECT_NE(out.find("\n0      4 4 4 4 4 4 4 4 4 4 4 4 4 4 4 4\n16     4\n"), std::string::npos) << out;
}

TEST(CtlFormatMaglev, Json) {
    EXPECT_EQ(render(maglev_view(false), OutputMode::Json),
              R"({"service_id":1,"frontend":"10.96.0.1:443/tcp","size":7,"backends":[{"id":4,)"
              R"("address":"10.0.1.11","port":8080,"slots":4,"share_pct":57.14},{"id":6,"address":null,)"
              R"("port":null,"slots":3,"share_pct":42.86}]})"
              "\n");
    EXPECT_EQ(nlohmann::json::parse(render(maglev_view(true), OutputMode::Json))["table"],
              nlohmann::json::parse("[4,6,4,6,4,6,4]"));
}

TEST(CtlFormatMaglev, NoTable) {
    MaglevView m;
    m.svc_id = 2;
    m.frontend = service_v6().frontend;
    EXPECT_EQ(render(m, OutputMode::Table), "service 2: [fd00::53]:53/udp: no Maglev table (no usable backend)\n");
    EXPECT_EQ(render(m, OutputMode::Json), R"({"service_id":2,"frontend":"[fd00::53]:53/udp","size":0,"backends":[]})"
                                           "\n");
}

// ---- conntrack -----------------------------------------------------------------------------------

TEST(CtlFormatConntrack, ListTableWithLimitFooter) {
    EXPECT_EQ(render(flow_list(), OutputMode::Table),
              "CLIENT          FRONTEND           SVC  BACKEND_ID  BACKEND         SNAT_PORT  STATE     AGE\n"
              "10.0.0.9:40000  10.96.0.1:443/tcp    1           4  10.0.1.11:8080      61234  open     1.2s\n"
              "[fd00::9]:5353  [fd00::53]:53/udp    2           9  (gone)                  -  closed  1h02m\n"
              "(2 of 5 flows shown: --limit)\n");
}

TEST(CtlFormatConntrack, ListJson) {
    EXPECT_EQ(render(flow_list(), OutputMode::Json),
              R"({"flows":[{"client":"10.0.0.9","client_port":40000,"frontend":"10.96.0.1:443/tcp",)"
              R"("protocol":"tcp","service_id":1,"backend_id":4,"backend":"10.0.1.11","backend_port":8080,)"
              R"("snat_port":61234,"state":"open","age_ms":1234},{"client":"fd00::9","client_port":5353,)"
              R"("frontend":"[fd00::53]:53/udp","protocol":"udp","service_id":2,"backend_id":9,"backend":null,)"
              R"("backend_port":null,"snat_port":null,"state":"closed","age_ms":3723000}],"matched":5})"
              "\n");
}

TEST(CtlFormatConntrack, Flush) {
    EXPECT_EQ(render(FlushResult{1u, 4}, OutputMode::Table),
              "flushed 4 conntrack entries (forward and reverse) of service 1\n");
    EXPECT_EQ(render(FlushResult{std::nullopt, 0}, OutputMode::Table),
              "flushed 0 conntrack entries (forward and reverse)\n");
    EXPECT_EQ(render(FlushResult{1u, 4}, OutputMode::Json), "{\"service_id\":1,\"removed\":4}\n");
    EXPECT_EQ(render(FlushResult{std::nullopt, 0}, OutputMode::Json), "{\"service_id\":null,\"removed\":0}\n");
}

// ---- stats ---------------------------------------------------------------------------------------

TEST(CtlFormatStats, TableShowsNonzeroCounters) {
    EXPECT_EQ(render(stats_view(), OutputMode::Table),
              "REASON            PACKETS  BYTES\n"
              "fwd_tx                 10   1000\n"
              "drop_tcp_no_flow        2    120\n"
              "\n"
              "PARSER  PACKETS  BYTES\n"
              "frames       12   1120\n"
              "tcp          12   1120\n"
              "\n"
              "FLOW_CACHE  COUNT\n"
              "hits           40\n"
              "misses          3\n"
              "fills           2\n"
              "\n"
              "SOCKET_LB         COUNT\n"
              "connect_balanced      5\n");
}

TEST(CtlFormatStats, TableAllShowsEveryReasonAndOmitsMissingSections) {
    StatsView s;
    s.all = true;
    s.reasons[KXLB_R_FWD_TX] = {10, 1000};
    const auto out = render(s, OutputMode::Table);
    EXPECT_TRUE(
        out.starts_with("REASON                 PACKETS  BYTES\n"
                        "fwd_tx                      10   1000\n"
                        "fwd_redirect                 0      0\n"))
        << out;
    EXPECT_NE(out.find("\ndrop_ct_full                 0      0\n"), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1 + static_cast<long>(kReasonCount)) << out;
    EXPECT_EQ(out.find("PARSER"), std::string::npos);
    EXPECT_EQ(out.find("SOCKET_LB"), std::string::npos);
    EXPECT_EQ(out.find("FLOW_CACHE"), std::string::npos);
}

TEST(CtlFormatStats, AllZeroSection) {
    EXPECT_EQ(render(StatsView{}, OutputMode::Table), "REASON  PACKETS  BYTES\n(all zero)\n");
}

TEST(CtlFormatStats, JsonListsEveryCounter) {
    const auto j = nlohmann::json::parse(render(stats_view(), OutputMode::Json));
    ASSERT_EQ(j["reasons"].size(), kReasonCount);
    EXPECT_EQ(j["reasons"]["fwd_tx"], nlohmann::json::parse(R"({"packets":10,"bytes":1000})"));
    EXPECT_EQ(j["reasons"]["pass_not_vip"], nlohmann::json::parse(R"({"packets":0,"bytes":0})"));
    ASSERT_EQ(j["parse"].size(), kParseStatCount);
    EXPECT_EQ(j["parse"]["frames"]["packets"], 12);
    ASSERT_EQ(j["socket_lb"].size(), kSockReasonCount);
    EXPECT_EQ(j["socket_lb"]["connect_balanced"], 5);
    EXPECT_EQ(j["socket_lb"]["fail_rev_update"], 0);
    EXPECT_EQ(j["flow_cache"], nlohmann::json::parse(R"({"hits":40,"misses":3,"fills":2})"));
    const auto bare = nlohmann::json::parse(render(StatsView{}, OutputMode::Json));
    EXPECT_TRUE(bare["parse"].is_null());
    EXPECT_TRUE(bare["socket_lb"].is_null());
    EXPECT_TRUE(bare["flow_cache"].is_null());
    // Keys keep the ABI's order.
    EXPECT_TRUE(render(StatsView{}, OutputMode::Json)
                    .starts_with(R"({"reasons":{"fwd_tx":{"packets":0,"bytes":0},)"
                                 R"("fwd_redirect":{"packets":0,"bytes":0},)"));
}

// ---- trace ---------------------------------------------------------------------------------------

TEST(CtlFormatTrace, ForwardTable) {
    EXPECT_EQ(render(trace_forward(), OutputMode::Table),
              "packet:    10.0.0.9:40000 -> 10.96.0.1:443 tcp [syn] in eth0\n"
              "verdict:   XDP_TX (fwd_tx)\n"
              "flow:      new\n"
              "service:   1 10.96.0.1:443/tcp\n"
              "backend:   4 10.0.1.11:8080\n"
              "snat port: 61234\n"
              "before:    10.0.0.9:40000 -> 10.96.0.1:443 tcp\n"
              "after:     10.0.0.1:61234 -> 10.0.1.11:8080 tcp\n"
              "egress:    eth0\n");
}

TEST(CtlFormatTrace, ForwardJson) {
    EXPECT_EQ(render(trace_forward(), OutputMode::Json),
              R"({"packet":{"src":"10.0.0.9","dst":"10.96.0.1","protocol":"tcp","sport":40000,"dport":443,)"
              R"("tcp_flags":"syn","ifname":"eth0","ifindex":3},"verdict":"XDP_TX","reason":"fwd_tx","flow":"new",)"
              R"("service":{"id":1,"frontend":"10.96.0.1:443/tcp"},"backend":{"id":4,"address":"10.0.1.11",)"
              R"("port":8080},"snat_port":61234,"before":{"src":"10.0.0.9","dst":"10.96.0.1","protocol":"tcp",)"
              R"("sport":40000,"dport":443},"after":{"src":"10.0.0.1","dst":"10.0.1.11","protocol":"tcp",)"
              R"("sport":61234,"dport":8080},"egress":"eth0"})"
              "\n");
}

TEST(CtlFormatTrace, PassTableAndJson) {
    EXPECT_EQ(render(trace_pass(), OutputMode::Table),
              "packet:    [fd00::9]:1000 -> [fd00::99]:53 udp (no ingress interface)\n"
              "verdict:   XDP_PASS (pass_not_vip)\n"
              "flow:      none\n"
              "service:   -\n"
              "backend:   -\n"
              "snat port: -\n"
              "before:    [fd00::9]:1000 -> [fd00::99]:53 udp\n"
              "after:     unchanged\n"
              "egress:    -\n");
    EXPECT_EQ(render(trace_pass(), OutputMode::Json),
              R"({"packet":{"src":"fd00::9","dst":"fd00::99","protocol":"udp","sport":1000,"dport":53,)"
              R"("tcp_flags":null,"ifname":null,"ifindex":0},"verdict":"XDP_PASS","reason":"pass_not_vip",)"
              R"("flow":"none","service":null,"backend":null,"snat_port":null,"before":{"src":"fd00::9",)"
              R"("dst":"fd00::99","protocol":"udp","sport":1000,"dport":53},"after":null,"egress":null})"
              "\n");
}

TEST(CtlFormatTrace, IcmpHeadersHaveNoPorts) {
    TraceResult t = trace_forward();
    t.verdict = XDP_TX;
    t.reason = KXLB_R_TX_UNREACH_NO_BACKEND;
    t.out = TraceHeaders{ip("10.96.0.1"), ip("10.0.0.9"), IPPROTO_ICMP, std::nullopt, std::nullopt};
    EXPECT_NE(render(t, OutputMode::Table).find("\nafter:     10.96.0.1 -> 10.0.0.9 icmp\n"), std::string::npos);
    EXPECT_EQ(nlohmann::json::parse(render(t, OutputMode::Json))["after"],
              nlohmann::json::parse(R"({"src":"10.96.0.1","dst":"10.0.0.9","protocol":"icmp","sport":null,)"
                                    R"("dport":null})"));
}

// ---- version and errors --------------------------------------------------------------------------

TEST(CtlFormatMisc, VersionAndErrors) {
    EXPECT_EQ(render_version(OutputMode::Table),
              std::string("kxlbctl ") + KXLB_VERSION + " (BPF ABI " + std::to_string(KXLB_ABI_VERSION) + ")\n");
    EXPECT_EQ(render_version(OutputMode::Json),
              std::string("{\"version\":\"") + KXLB_VERSION + "\",\"abi\":" + std::to_string(KXLB_ABI_VERSION) + "}\n");
    EXPECT_EQ(render_error("it \"broke\"", OutputMode::Json), "{\"error\":\"it \\\"broke\\\"\"}\n");
    EXPECT_EQ(render_error("it broke", OutputMode::Table), "kxlbctl: error: it broke\n");
}

// ---- trace frames --------------------------------------------------------------------------------

TEST(CtlFormatPacket, FramesHaveValidChecksumsAndParseBack) {
    for (auto [src, dst] : {std::pair{"10.0.0.9", "10.96.0.1"}, std::pair{"fd00::9", "fd96::1"}})
        for (std::uint8_t proto : {IPPROTO_TCP, IPPROTO_UDP}) {
            SCOPED_TRACE(std::string(src) + " proto " + std::to_string(proto));
            const FrameSpec spec{ip(src), ip(dst), 40000, 443, proto, 0x12};
            const auto frame = build_frame(spec);
            EXPECT_EQ(test::checksum_errors(frame), std::vector<std::string>{});
            auto h = parse_headers(frame);
            ASSERT_TRUE(h);
            EXPECT_EQ(*h, (TraceHeaders{ip(src), ip(dst), proto, 40000, 443}));
            if (proto == IPPROTO_TCP) {
                EXPECT_EQ(frame[frame.size() - 20 + 13], 0x12);  // flags byte
            }
        }
    EXPECT_FALSE(parse_headers(std::vector<std::uint8_t>(13, 0)));
    std::vector<std::uint8_t> arp(60, 0);
    arp[12] = 0x08;
    arp[13] = 0x06;
    EXPECT_FALSE(parse_headers(arp));
}

// ---- argument values -----------------------------------------------------------------------------

TEST(CtlArgsValues, ServiceRefs) {
    EXPECT_EQ(parse_service_ref("10.96.0.1:443/tcp").value(),
              (ServiceRef{Frontend{ip("10.96.0.1"), 443, IPPROTO_TCP}}));
    EXPECT_EQ(parse_service_ref("[fd00::1]:53/UDP").value(), (ServiceRef{Frontend{ip("fd00::1"), 53, IPPROTO_UDP}}));
    EXPECT_EQ(parse_service_ref("7").value(), (ServiceRef{7u}));
    EXPECT_EQ(parse_service_ref("[fd00::1]:53/udp")->str(), "[fd00::1]:53/udp");
    const std::string tail = "': expected ADDRESS:PORT/PROTO (10.96.0.1:443/tcp, [fd00::1]:53/udp) or a service id";
    for (const char* bad : {"10.96.0.1", "10.96.0.1:443", "10.96.0.1:443/sctp", "10.96.0.1:0/tcp", "10.96.0.1:x/tcp",
                            "fd00::1:53/udp", "[fd00::1]53/udp", "[10.0.0.1]:53/udp", "host:80/tcp", ""})
        EXPECT_EQ(parse_service_ref(bad).error().message, "bad service '" + std::string(bad) + tail);
    EXPECT_EQ(parse_service_ref("16384").error().message, "service id: '16384' is not a number from 0 to 16383");
}

TEST(CtlArgsValues, PortsProtocolsFlagsNumbers) {
    EXPECT_EQ(parse_port("SPORT", "65535").value(), 65535);
    EXPECT_EQ(parse_port("SPORT", "0").error().message, "SPORT: '0' is not a port (1-65535)");
    EXPECT_EQ(parse_port("SPORT", "65536").error().message, "SPORT: '65536' is not a port (1-65535)");
    EXPECT_EQ(parse_port("DPORT", "-1").error().message, "DPORT: '-1' is not a port (1-65535)");
    EXPECT_EQ(parse_proto("TCP").value(), IPPROTO_TCP);
    EXPECT_EQ(parse_proto("icmp").error().message, "bad protocol 'icmp': expected tcp or udp");
    EXPECT_EQ(parse_tcp_flags("syn").value(), 0x02);
    EXPECT_EQ(parse_tcp_flags("fin,ACK").value(), 0x11);
    EXPECT_EQ(parse_tcp_flags("syn,urg").error().message,
              "bad TCP flags 'syn,urg': expected a comma-separated list of syn, ack, fin, rst, psh");
    EXPECT_EQ(tcp_flags_str(0x12), "syn,ack");
    EXPECT_EQ(tcp_flags_str(0), "none");
    EXPECT_EQ(parse_number("--limit", "12", 100).value(), 12u);
    EXPECT_EQ(parse_number("--limit", "1x", 100).error().message, "--limit: '1x' is not a number from 0 to 100");
    EXPECT_EQ(parse_number("--limit", "", 100).error().message, "--limit: '' is not a number from 0 to 100");
}

// ---- the CLI -------------------------------------------------------------------------------------

struct CliRun {
    int code = -1;
    std::string out, err;
};

CliRun cli(const std::vector<std::string>& args) {
    std::ostringstream out, err;
    CliRun r;
    r.code = run_kxlbctl(args, out, err);
    r.out = out.str();
    r.err = err.str();
    return r;
}

constexpr const char* kUsageHint = "Run 'kxlbctl --help' for usage.\n";

// A usage error in table mode: exit 2, the message on stderr, nothing on stdout.
void expect_usage_error(const std::vector<std::string>& args, const std::string& message) {
    SCOPED_TRACE(::testing::PrintToString(args));
    const auto r = cli(args);
    EXPECT_EQ(r.code, kExitUsage);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "kxlbctl: error: " + message + "\n" + kUsageHint);
}

TEST(CtlArgsCli, UnknownAndMissingObjectsAndCommands) {
    const std::string objects = "(expected service, backend, maglev, conntrack, stats, trace, version)";
    expect_usage_error({"frobnicate"}, "unknown object 'frobnicate' " + objects);
    expect_usage_error({}, "missing object " + objects);
    expect_usage_error({"--pin-path", "/x"}, "missing object " + objects);
    const auto j = cli({"-j", "--pin-path", "/x"});
    EXPECT_EQ(j.code, kExitUsage);
    EXPECT_EQ(j.out, nlohmann::json({{"error", "missing object " + objects}}).dump() + "\n");
    expect_usage_error({"service"}, "missing command for service (expected list, show)");
    expect_usage_error({"service", "delete"}, "unknown command 'delete' for service (expected list, show)");
    expect_usage_error({"conntrack", "dump"}, "unknown command 'dump' for conntrack (expected list, flush)");
    expect_usage_error({"maglev"}, "missing command for maglev (expected show)");
    expect_usage_error({"service", "list", "--bogus"}, "unknown option '--bogus'");
    expect_usage_error({"service", "list", "extra"}, "unexpected argument 'extra'");
    expect_usage_error({"stats", "--all", "x"}, "unexpected argument 'x'");
}

TEST(CtlArgsCli, BadServiceSyntax) {
    expect_usage_error({"service", "show", "10.96.0.1:443"},
                       "bad service '10.96.0.1:443': expected ADDRESS:PORT/PROTO (10.96.0.1:443/tcp, "
                       "[fd00::1]:53/udp) or a service id");
    expect_usage_error({"service", "show"},
                       "service show: missing FRONTEND (ADDRESS:PORT/PROTO (10.96.0.1:443/tcp, [fd00::1]:53/udp) "
                       "or service id)");
    expect_usage_error({"maglev", "show"},
                       "maglev show: missing SERVICE (ADDRESS:PORT/PROTO (10.96.0.1:443/tcp, [fd00::1]:53/udp) "
                       "or service id)");
    expect_usage_error({"backend", "list", "--service", "fd00::1:53/udp"},
                       "--service: bad service 'fd00::1:53/udp': expected ADDRESS:PORT/PROTO (10.96.0.1:443/tcp, "
                       "[fd00::1]:53/udp) or a service id");
    expect_usage_error({"conntrack", "list", "--backend", "abc"}, "--backend: 'abc' is not a number from 0 to 131071");
    expect_usage_error({"conntrack", "list", "--limit", "-3"}, "--limit: '-3' is not a number from 0 to 1000000000");
}

TEST(CtlArgsCli, FlushNeedsYes) {
    const std::string msg =
        "conntrack flush deletes live flows (established TCP connections continue only if their backend and SNAT "
        "port can be recovered): add --yes to confirm";
    expect_usage_error({"conntrack", "flush"}, msg);
    expect_usage_error({"conntrack", "flush", "--service", "10.96.0.1:443/tcp"}, msg);
    // JSON mode: the error object on stdout, nothing on stderr, still exit 2.
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"-j", "conntrack", "flush"}, {"conntrack", "flush", "--json"}, {"-jp", "conntrack", "flush"}}) {
        SCOPED_TRACE(::testing::PrintToString(args));
        const auto r = cli(args);
        EXPECT_EQ(r.code, kExitUsage);
        EXPECT_EQ(r.err, "");
        const auto j = nlohmann::json::parse(r.out);
        EXPECT_EQ(j, nlohmann::json({{"error", msg}}));
    }
    EXPECT_EQ(cli({"-j", "conntrack", "flush"}).out, nlohmann::json({{"error", msg}}).dump() + "\n");
}

TEST(CtlArgsCli, TraceArguments) {
    expect_usage_error({"trace", "10.0.0.9", "10.96.0.1"},
                       "trace: missing arguments: expected SRC DST SPORT DPORT PROTO "
                       "(e.g. trace 10.0.0.9 10.96.0.1 40000 443 tcp)");
    expect_usage_error({"trace", "10.0.0.x", "10.96.0.1", "1", "2", "tcp"},
                       "SRC: '10.0.0.x' is not an IPv4 or IPv6 address");
    expect_usage_error({"trace", "10.0.0.9", "fd00::1", "1", "2", "tcp"},
                       "SRC and DST must be of the same address family");
    expect_usage_error({"trace", "10.0.0.9", "10.96.0.1", "0", "443", "tcp"}, "SPORT: '0' is not a port (1-65535)");
    expect_usage_error({"trace", "10.0.0.9", "10.96.0.1", "40000", "443", "sctp"},
                       "bad protocol 'sctp': expected tcp or udp");
    expect_usage_error({"trace", "10.0.0.9", "10.96.0.1", "40000", "53", "udp", "--flags", "syn"},
                       "--flags: only for tcp");
    expect_usage_error({"trace", "10.0.0.9", "10.96.0.1", "40000", "443", "tcp", "--flags", "bogus"},
                       "bad TCP flags 'bogus': expected a comma-separated list of syn, ack, fin, rst, psh");
    expect_usage_error({"trace", "10.0.0.9", "10.96.0.1", "40000", "443", "tcp", "6th"}, "unexpected argument '6th'");
}

TEST(CtlArgsCli, ParsesEveryCommand) {
    auto inv = [](const std::vector<std::string>& args) {
        auto out = parse_command_line(args);
        EXPECT_TRUE(std::holds_alternative<Invocation>(out)) << ::testing::PrintToString(args);
        return std::holds_alternative<Invocation>(out) ? std::get<Invocation>(out) : Invocation{};
    };
    auto i = inv({"-p", "--pin-path", "/sys/fs/bpf/x", "conntrack", "list", "--service", "3", "--backend", "7",
                  "--limit", "10"});
    EXPECT_EQ(i.global.mode, OutputMode::JsonPretty);
    EXPECT_EQ(i.global.pin_path, "/sys/fs/bpf/x");
    const auto& ct = std::get<ConntrackListCmd>(i.command);
    EXPECT_EQ(ct.service, ServiceRef{3u});
    EXPECT_EQ(ct.backend_id, 7u);
    EXPECT_EQ(ct.limit, 10u);

    i = inv({"service", "list", "-j"});  // global options may follow the command
    EXPECT_EQ(i.global.mode, OutputMode::Json);
    EXPECT_EQ(i.global.pin_path, kDefaultPinPath);
    EXPECT_TRUE(std::holds_alternative<ServiceListCmd>(i.command));

    EXPECT_EQ(std::get<MaglevShowCmd>(inv({"maglev", "show", "1", "--full"}).command).full, true);
    EXPECT_EQ(std::get<ConntrackFlushCmd>(inv({"conntrack", "flush", "--yes"}).command).service, std::nullopt);
    EXPECT_EQ(std::get<StatsCmd>(inv({"stats", "--all"}).command).all, true);

    const auto t = std::get<TraceCmd>(inv({"trace", "fd00::9", "fd96::1", "40000", "443", "tcp"}).command);
    EXPECT_EQ(t.src, ip("fd00::9"));
    EXPECT_EQ(t.dst, ip("fd96::1"));
    EXPECT_EQ(t.sport, 40000);
    EXPECT_EQ(t.dport, 443);
    EXPECT_EQ(t.proto, IPPROTO_TCP);
    EXPECT_EQ(t.tcp_flags, 0x02);  // SYN by default
    EXPECT_EQ(t.ifname, "");
    const auto u =
        std::get<TraceCmd>(inv({"trace", "10.0.0.9", "10.96.0.1", "1", "53", "udp", "--ifname", "eth1"}).command);
    EXPECT_EQ(u.tcp_flags, 0);
    EXPECT_EQ(u.ifname, "eth1");
    EXPECT_EQ(std::get<TraceCmd>(inv({"trace", "10.0.0.9", "10.96.0.1", "1", "443", "tcp", "--flags", "ack"}).command)
                  .tcp_flags,
              0x10);
}

TEST(CtlArgsCli, HelpAndVersion) {
    auto r = cli({"--help"});
    EXPECT_EQ(r.code, kExitOk);
    EXPECT_NE(r.out.find("Usage: kxlbctl [OPTIONS] [SUBCOMMAND]"), std::string::npos) << r.out;
    r = cli({"conntrack", "flush", "--help"});
    EXPECT_EQ(r.code, kExitOk);
    EXPECT_NE(r.out.find("Usage: kxlbctl conntrack flush [OPTIONS]"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--yes"), std::string::npos) << r.out;
    r = cli({"version"});
    EXPECT_EQ(r.code, kExitOk);
    EXPECT_EQ(r.out, render_version(OutputMode::Table));
    EXPECT_EQ(cli({"-j", "version"}).out, render_version(OutputMode::Json));
}

TEST(CtlArgsCli, MissingPinsIsARuntimeError) {
    const std::string msg = "no pinned kxlb maps under /nonexistent/kxlb: is kxlb-agent running? (--pin-path)";
    auto r = cli({"--pin-path", "/nonexistent/kxlb", "service", "list"});
    EXPECT_EQ(r.code, kExitRuntime);
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, "kxlbctl: error: " + msg + "\n");
    r = cli({"-j", "--pin-path", "/nonexistent/kxlb", "stats"});
    EXPECT_EQ(r.code, kExitRuntime);
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(r.out, nlohmann::json({{"error", msg}}).dump() + "\n");
}

}  // namespace
}  // namespace kxlb::ctl
