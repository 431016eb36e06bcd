// Unit tests for the kxlb-agent config parser: a full and a minimal document map to exact structs,
// every invalid document yields its exact error text (position, path, problem, fix), and all
// problems of a document are reported in document order.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <ostream>
#include <string>

#include "agent/config.hpp"

namespace kxlb::agent {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

IpAddr ip(std::string_view text) { return IpAddr::parse(text).value(); }

// The parse result as text: "OK" or the full error message.
std::string outcome(std::string_view yaml) {
    auto r = parse_config(yaml, "agent.yaml");
    return r ? "OK" : r.error().message;
}

constexpr std::string_view kFullExample = R"(# Every key, none at its default.
node:
  interfaces:
    - name: eth0
      allow_generic_xdp: false
    - name: eth1
      allow_generic_xdp: true
  addresses: [10.0.0.5, "fd00::5"]
datapath:
  maglev_table_size: 16381
  hash_seed: 0x5eed
  conntrack_entries: 524288
  snat_ports: 62000-64000
  udp_timeout: 2m
  dsr_source_prefixes: [10.200.0.0/24, "fd00:200::/64"]
dsr_decap:
  interfaces: [{ name: eth2 }]
  addresses: [10.0.0.6]
pin_path: /sys/fs/bpf/kxlb-test
socket_lb: { cgroup: /sys/fs/cgroup }
metrics: { address: "[::1]:9100" }
logging: { level: debug, format: json }
services:
  - name: kubernetes
    frontends:
      - { address: 10.96.0.1, port: 443, protocol: tcp }
      - { address: "fd00:96::1", port: 443 }
    mode: fullnat
    socket_lb: true
    session_affinity: { timeout: 3h }
    source_ranges: [10.0.0.0/8, "fd00::/8"]
    all_backends_down: keep-last-healthy
    backends:
      - { address: 10.0.0.11, port: 6443, weight: 1 }
      - { address: 10.0.0.12, port: 6443, weight: 3 }
      - { address: "fd00::11", port: 6443 }
    health_check:
      type: https
      path: /readyz
      expected_status: 204
      host: kubernetes.default
      ca_file: /etc/kubernetes/pki/ca.crt
      interval: 3s
      timeout: 1500ms
      rise: 4
      fall: 5
      port: 6444
  - name: dns.udp
    frontends:
      - { address: 10.96.0.10, port: 53, protocol: udp }
    mode: dsr
    session_affinity: {}
    all_backends_down: no-backends
    backends:
      - { address: 10.0.1.2, port: 53, weight: 65535, local: true }
    health_check: { type: tcp, interval: 500ms, timeout: 200ms, rise: 1, fall: 100 }
  - name: insecure
    frontends: [{ address: 192.0.2.1, port: 8443 }]
    backends: [{ address: 192.0.2.11, port: 8443 }]
    health_check: { type: https, insecure_skip_verify: true }
  - name: no-backends-yet
    frontends: [{ address: 192.0.2.2, port: 80 }]
)";

AgentConfig full_example_expected() {
    AgentConfig c;
    c.interfaces = {{"eth0", false}, {"eth1", true}};
    c.node_addresses = {ip("10.0.0.5"), ip("fd00::5")};
    c.maglev_size = 16381;
    c.hash_seed = 0x5eed;
    c.conntrack_entries = 524288;
    c.snat_port_lo = 62000;
    c.snat_port_hi = 64000;
    c.udp_timeout = seconds(120);
    c.dsr_source_prefixes = {Cidr{ip("10.200.0.0"), 24}, Cidr{ip("fd00:200::"), 64}};
    c.dsr_decap.interfaces = {InterfaceConfig{"eth2", false}};
    c.dsr_decap.addresses = {ip("10.0.0.6")};
    c.pin_path = "/sys/fs/bpf/kxlb-test";
    c.socket_lb_cgroup = "/sys/fs/cgroup";
    c.metrics_address = "[::1]:9100";
    c.log_level = "debug";
    c.log_format = "json";

    ServiceConfig k;
    k.name = "kubernetes";
    k.frontends = {{ip("10.96.0.1"), 443, IPPROTO_TCP}, {ip("fd00:96::1"), 443, IPPROTO_TCP}};
    k.mode = ServiceMode::FullNat;
    k.socket_lb = true;
    k.affinity_timeout = hours(3);
    k.source_ranges = {{ip("10.0.0.0"), 8}, {ip("fd00::"), 8}};
    k.all_down = AllDownPolicy::KeepLastHealthy;
    k.backends = {{ip("10.0.0.11"), 6443, 1}, {ip("10.0.0.12"), 6443, 3}, {ip("fd00::11"), 6443, 1}};
    HealthCheckSpec https;
    https.type = HealthCheckSpec::Type::Https;
    https.path = "/readyz";
    https.expected_status = 204;
    https.host = "kubernetes.default";
    https.ca_file = "/etc/kubernetes/pki/ca.crt";
    https.insecure = false;
    https.interval = seconds(3);
    https.timeout = milliseconds(1500);
    https.rise = 4;
    https.fall = 5;
    https.port = 6444;
    k.health_check = https;

    ServiceConfig dns;
    dns.name = "dns.udp";
    dns.frontends = {{ip("10.96.0.10"), 53, IPPROTO_UDP}};
    dns.mode = ServiceMode::Dsr;
    dns.affinity_timeout = hours(3);  // the default of an empty session_affinity
    dns.all_down = AllDownPolicy::NoBackends;
    dns.backends = {{ip("10.0.1.2"), 53, 65535, false, true}};
    HealthCheckSpec tcp;
    tcp.interval = milliseconds(500);
    tcp.timeout = milliseconds(200);
    tcp.rise = 1;
    tcp.fall = 100;
    dns.health_check = tcp;

    ServiceConfig insecure;
    insecure.name = "insecure";
    insecure.frontends = {{ip("192.0.2.1"), 8443, IPPROTO_TCP}};
    insecure.backends = {{ip("192.0.2.11"), 8443, 1}};
    HealthCheckSpec skip;
    skip.type = HealthCheckSpec::Type::Https;
    skip.insecure = true;
    insecure.health_check = skip;

    ServiceConfig empty;
    empty.name = "no-backends-yet";
    empty.frontends = {{ip("192.0.2.2"), 80, IPPROTO_TCP}};

    c.services = {k, dns, insecure, empty};
    return c;
}

TEST(ConfigParse, FullExampleMapsToEveryField) {
    auto r = parse_config(kFullExample, "agent.yaml");
    ASSERT_TRUE(r) << r.error().message;
    const AgentConfig expected = full_example_expected();
    // Field by field first, so a mismatch names the field; then the whole struct.
    EXPECT_EQ(r->interfaces, expected.interfaces);
    EXPECT_EQ(r->node_addresses, expected.node_addresses);
    EXPECT_EQ(r->maglev_size, expected.maglev_size);
    EXPECT_EQ(r->hash_seed, expected.hash_seed);
    EXPECT_EQ(r->conntrack_entries, expected.conntrack_entries);
    EXPECT_EQ(r->snat_port_lo, expected.snat_port_lo);
    EXPECT_EQ(r->snat_port_hi, expected.snat_port_hi);
    EXPECT_EQ(r->udp_timeout, expected.udp_timeout);
    EXPECT_EQ(r->dsr_source_prefixes, expected.dsr_source_prefixes);
    EXPECT_EQ(r->dsr_decap, expected.dsr_decap);
    EXPECT_EQ(r->pin_path, expected.pin_path);
    EXPECT_EQ(r->socket_lb_cgroup, expected.socket_lb_cgroup);
    EXPECT_EQ(r->metrics_address, expected.metrics_address);
    EXPECT_EQ(r->log_level, expected.log_level);
    EXPECT_EQ(r->log_format, expected.log_format);
    ASSERT_EQ(r->services.size(), expected.services.size());
    for (std::size_t i = 0; i < expected.services.size(); ++i) {
        SCOPED_TRACE("services[" + std::to_string(i) + "]");
        const auto& got = r->services[i];
        const auto& want = expected.services[i];
        EXPECT_EQ(got.name, want.name);
        EXPECT_EQ(got.frontends, want.frontends);
        EXPECT_EQ(got.mode, want.mode);
        EXPECT_EQ(got.socket_lb, want.socket_lb);
        EXPECT_EQ(got.affinity_timeout, want.affinity_timeout);
        EXPECT_EQ(got.source_ranges, want.source_ranges);
        EXPECT_EQ(got.all_down, want.all_down);
        EXPECT_EQ(got.backends, want.backends);
        EXPECT_EQ(got.health_check, want.health_check);
    }
    EXPECT_EQ(*r, expected);
}

TEST(ConfigParse, MinimalDocumentGetsEveryDefault) {
    auto r = parse_config("node:\n  interfaces:\n    - name: eth0\n", "agent.yaml");
    ASSERT_TRUE(r) << r.error().message;
    AgentConfig expected;
    expected.interfaces = {{"eth0", false}};
    EXPECT_EQ(*r, expected);
    EXPECT_TRUE(r->node_addresses.empty());
    EXPECT_EQ(r->maglev_size, 65537u);
    EXPECT_EQ(r->hash_seed, 0u);
    EXPECT_EQ(r->conntrack_entries, static_cast<std::uint32_t>(KXLB_DEFAULT_CT_ENTRIES));
    EXPECT_EQ(r->snat_port_lo, 61000);
    EXPECT_EQ(r->snat_port_hi, 65535);
    EXPECT_EQ(r->udp_timeout, seconds(30));
    EXPECT_EQ(r->pin_path, "/sys/fs/bpf/kxlb");
    EXPECT_EQ(r->socket_lb_cgroup, "/sys/fs/cgroup/unified");
    EXPECT_EQ(r->metrics_address, "127.0.0.1:9464");
    EXPECT_EQ(r->log_level, "info");
    EXPECT_EQ(r->log_format, "text");
    EXPECT_TRUE(r->services.empty());
}

TEST(ConfigParse, ServiceDefaults) {
    auto r = parse_config(
        "services:\n  - name: web\n    frontends: [{ address: 10.96.0.1, port: 80 }]\n"
        "    health_check: {}\n",
        "agent.yaml");
    ASSERT_TRUE(r) << r.error().message;
    ServiceConfig want;
    want.name = "web";
    want.frontends = {{ip("10.96.0.1"), 80, IPPROTO_TCP}};
    want.health_check = HealthCheckSpec{};  // tcp, 2s/1s, rise 2, fall 3, the backend's port
    ASSERT_EQ(r->services.size(), 1u);
    EXPECT_EQ(r->services[0], want);
    EXPECT_FALSE(r->services[0].affinity_timeout.has_value());
    EXPECT_EQ(r->services[0].mode, ServiceMode::FullNat);
    EXPECT_EQ(r->services[0].all_down, AllDownPolicy::KeepLastHealthy);
}

TEST(ConfigParse, AcceptedSpellings) {
    // An explicit empty mapping is a valid (all-default) document; only an empty file is not.
    EXPECT_EQ(outcome("{}"), "OK");
    EXPECT_EQ(outcome("datapath: { hash_seed: 18446744073709551615 }"), "OK");
    EXPECT_EQ(outcome("datapath: { hash_seed: 0xFFFFFFFFFFFFFFFF, snat_ports: 1024-1024, udp_timeout: 24h }"), "OK");
    EXPECT_EQ(outcome("node: { interfaces: [{ name: eth0, allow_generic_xdp: True }] }"), "OK");
    EXPECT_EQ(outcome("socket_lb: { cgroup: \"\" }\nmetrics: { address: \"\" }"), "OK");
    EXPECT_EQ(outcome("metrics: { address: \"0.0.0.0:1\" }"), "OK");
    EXPECT_EQ(outcome("datapath: { maglev_table_size: 7 }"), "OK");
    EXPECT_EQ(outcome("services:\n- name: a\n  frontends: [{address: 10.0.0.1, port: 1}]\n  source_ranges: [0.0.0.0/0, "
                      "\"::/0\", 10.1.2.3/32]\n"),
              "OK");
}

TEST(ConfigParse, CidrStr) {
    EXPECT_EQ((Cidr{ip("10.0.0.0"), 8}).str(), "10.0.0.0/8");
    EXPECT_EQ((Cidr{ip("fd00::"), 8}).str(), "fd00::/8");
}

struct InvalidCase {
    const char* name;
    const char* yaml;
    const char* message;
};

// One problem per document (a few documents show how related problems are reported together).
const InvalidCase kInvalid[] = {
    // ---- the document
    {"empty", "", "agent.yaml:1:1: (document): the document is empty; start from the example in docs/agent.md"},
    {"comment_only", "# nothing yet\n",
     "agent.yaml:1:1: (document): the document is empty; start from the example in docs/agent.md"},
    {"syntax_error", "node:\n  addresses: [10.0.0.5\npin_path: /x\n",
     "agent.yaml:3:9: (document): YAML syntax error: end of sequence flow not found; check the indentation, quoting "
     "and brackets here"},
    {"bad_indentation", "node:\n  interfaces:\n  - name: eth0\n   - name: eth1\n",
     "agent.yaml:4:4: (document): YAML syntax error: end of sequence not found; check the indentation, quoting and "
     "brackets here"},
    {"undefined_alias", "pin_path: *path\n",
     "agent.yaml:1:11: (document): YAML syntax error: the referenced anchor is not defined; check the indentation, "
     "quoting and brackets here"},
    {"two_documents", "pin_path: /a\n---\npin_path: /b\n",
     "agent.yaml:3:1: (document): found 2 YAML documents; keep one document per file"},
    {"root_is_list", "- node\n",
     "agent.yaml:1:1: (document): expected a mapping, got a list; start from the example in docs/agent.md"},
    {"unknown_key_close", "servces: []\n", "agent.yaml:1:1: servces: unknown key; did you mean 'services'?"},
    {"unknown_key_far", "cluster: prod\n",
     "agent.yaml:1:1: cluster: unknown key; valid keys here: node, datapath, pin_path, socket_lb, metrics, logging, "
     "services, kubernetes, dsr_decap"},
    {"duplicate_key", "pin_path: /a\npin_path: /b\n",
     "agent.yaml:2:1: pin_path: duplicate key (first on line 1); remove one of them"},
    // ---- node
    {"interface_name_too_long", "node:\n  interfaces: [{ name: this-name-is-too-long }]\n",
     "agent.yaml:2:24: node.interfaces[0].name: \"this-name-is-too-long\" is not a valid interface name; use the "
     "kernel's interface name, e.g. eth0 (1-15 characters, no '/', ':' or spaces)"},
    {"interface_twice", "node:\n  interfaces:\n    - name: eth0\n    - name: eth0\n",
     "agent.yaml:4:13: node.interfaces[1].name: \"eth0\" is listed twice (also node.interfaces[0]); remove one of "
     "them (a NIC runs one XDP program: the balancer or the DSR decapsulation)"},
    {"decap_interface_also_balanced",
     "node:\n  interfaces: [{ name: eth0 }]\ndsr_decap:\n  interfaces: [{ name: eth0 }]\n",
     "agent.yaml:4:24: dsr_decap.interfaces[0].name: \"eth0\" is listed twice (also node.interfaces[0]); remove one "
     "of them (a NIC runs one XDP program: the balancer or the DSR decapsulation)"},
    {"decap_address_twice", "dsr_decap:\n  interfaces: [{ name: eth1 }]\n  addresses: [10.0.0.5, 10.0.0.5]\n",
     "agent.yaml:3:25: dsr_decap.addresses[1]: 10.0.0.5 is listed twice; remove one of them"},
    {"interface_name_missing", "node:\n  interfaces:\n    - allow_generic_xdp: true\n",
     "agent.yaml:3:7: node.interfaces[0].name: required key is missing; add the interface name, e.g. name: eth0"},
    {"bool_yes", "node:\n  interfaces: [{ name: eth0, allow_generic_xdp: yes }]\n",
     "agent.yaml:2:49: node.interfaces[0].allow_generic_xdp: \"yes\" is not a boolean; write true or false"},
    {"two_ipv4_node_addresses", "node:\n  addresses: [10.0.0.5, 10.0.0.6]\n",
     "agent.yaml:2:25: node.addresses[1]: a second IPv4 address (10.0.0.5 is already listed); list at most one "
     "address per family"},
    {"node_address_not_ip", "node:\n  addresses: [node1.example]\n",
     "agent.yaml:2:15: node.addresses[0]: \"node1.example\" is not an IPv4 or IPv6 address; use an address of this "
     "node, e.g. 10.0.0.5"},
    {"node_addresses_not_list", "node:\n  addresses: 10.0.0.5\n",
     "agent.yaml:2:14: node.addresses: expected a list, got \"10.0.0.5\"; list this node's addresses, e.g. "
     "[10.0.0.5]"},
    // ---- datapath and global settings
    {"maglev_not_prime", "datapath:\n  maglev_table_size: 65536\n",
     "agent.yaml:2:22: datapath.maglev_table_size: 65536 is not a prime; use a prime such as 65521 or 65537"},
    {"maglev_too_big", "datapath:\n  maglev_table_size: 131071\n",
     "agent.yaml:2:22: datapath.maglev_table_size: 131071 is out of range 7-65537; use a prime in this range, e.g. "
     "65537 or 16381"},
    {"hash_seed_negative", "datapath:\n  hash_seed: -1\n",
     "agent.yaml:2:14: datapath.hash_seed: -1 is out of range 0-18446744073709551615; write a 64-bit number, "
     "decimal or 0x hex"},
    {"hash_seed_overflow", "datapath:\n  hash_seed: 0x10000000000000000\n",
     "agent.yaml:2:14: datapath.hash_seed: 0x10000000000000000 is out of range 0-18446744073709551615; write a "
     "64-bit number, decimal or 0x hex"},
    {"conntrack_quoted", "datapath:\n  conntrack_entries: \"262144\"\n",
     "agent.yaml:2:22: datapath.conntrack_entries: \"262144\" is a quoted string, not an integer; write 262144 "
     "without quotes"},
    {"conntrack_too_small", "datapath:\n  conntrack_entries: 1000\n",
     "agent.yaml:2:22: datapath.conntrack_entries: 1000 is out of range 1024-16777216; size it for the concurrent "
     "flows through this node; the default is 262144"},
    {"snat_single_port", "datapath:\n  snat_ports: 61000\n",
     "agent.yaml:2:15: datapath.snat_ports: \"61000\" is not a port range; write LO-HI with 1024 <= LO <= HI <= "
     "65535, e.g. 61000-65535"},
    {"snat_below_1024", "datapath:\n  snat_ports: 100-2000\n",
     "agent.yaml:2:15: datapath.snat_ports: \"100-2000\" starts below 1024; write LO-HI with 1024 <= LO <= HI <= "
     "65535, e.g. 61000-65535"},
    {"snat_reversed", "datapath:\n  snat_ports: 65535-61000\n",
     "agent.yaml:2:15: datapath.snat_ports: \"65535-61000\" is empty (LO > HI); write LO-HI with 1024 <= LO <= HI "
     "<= 65535, e.g. 61000-65535"},
    {"snat_above_65535", "datapath:\n  snat_ports: 61000-70000\n",
     "agent.yaml:2:15: datapath.snat_ports: \"61000-70000\" ends above 65535; write LO-HI with 1024 <= LO <= HI <= "
     "65535, e.g. 61000-65535"},
    {"duration_without_unit", "datapath:\n  udp_timeout: 30\n",
     "agent.yaml:2:16: datapath.udp_timeout: \"30\" has no unit; write 30s (units: ms, s, m, h)"},
    {"duration_bad_unit", "datapath:\n  udp_timeout: 2d\n",
     "agent.yaml:2:16: datapath.udp_timeout: \"2d\" is not a duration; write an integer and a unit: 500ms, 2s, 1m, "
     "3h"},
    {"duration_not_whole_seconds", "datapath:\n  udp_timeout: 1500ms\n",
     "agent.yaml:2:16: datapath.udp_timeout: 1500ms is not a whole number of seconds; round it to seconds, e.g. 2s"},
    {"datapath_not_mapping", "datapath: fast\n",
     "agent.yaml:1:11: datapath: expected a mapping, got \"fast\"; write the datapath settings as a mapping"},
    {"pin_path_relative", "pin_path: bpf/kxlb\n",
     "agent.yaml:1:11: pin_path: \"bpf/kxlb\" is not an absolute path; use a directory on the BPF filesystem, e.g. "
     "/sys/fs/bpf/kxlb"},
    {"cgroup_relative", "socket_lb: { cgroup: unified }\n",
     "agent.yaml:1:22: socket_lb.cgroup: \"unified\" is not an absolute path; use the cgroup v2 mount, e.g. "
     "/sys/fs/cgroup, or \"\" to disable"},
    {"metrics_hostname", "metrics: { address: \"localhost:9464\" }\n",
     "agent.yaml:1:21: metrics.address: \"localhost:9464\" is not an IP:port address; write IP:port, e.g. "
     "127.0.0.1:9464 or [::1]:9464, or \"\" to disable"},
    {"metrics_v6_without_brackets", "metrics: { address: \"::1:9464\" }\n",
     "agent.yaml:1:21: metrics.address: \"::1:9464\" is not an IP:port address; write IP:port, e.g. "
     "127.0.0.1:9464 or [::1]:9464, or \"\" to disable"},
    {"metrics_empty_value", "metrics:\n  address:\n",
     "agent.yaml:2:3: metrics.address: expected a string, got an empty value; write IP:port, e.g. 127.0.0.1:9464 or "
     "[::1]:9464, or \"\" to disable"},
    {"log_level_unknown", "logging: { level: verbose }\n",
     "agent.yaml:1:19: logging.level: \"verbose\" is not one of trace|debug|info|warn|error; write one of them"},
    {"log_format_case", "logging: { format: JSON }\n",
     "agent.yaml:1:20: logging.format: \"JSON\" is not one of text|json; did you mean 'json'?"},
    // ---- services
    {"services_not_list", "services: {}\n",
     "agent.yaml:1:11: services: expected a list, got a mapping; list the services, each a mapping with name, "
     "frontends and backends"},
    {"service_name_invalid", "services:\n  - name: Kube_API\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n",
     "agent.yaml:2:11: services[0].name: \"Kube_API\" is not a valid service name; use lowercase letters, digits, "
     "'-' and '.', starting and ending with a letter or digit (at most 253 characters)"},
    {"service_name_missing", "services:\n  - frontends: [{ address: 10.96.0.1, port: 443 }]\n",
     "agent.yaml:2:5: services[0].name: required key is missing; add a unique name, e.g. name: kubernetes"},
    {"service_name_duplicate",
     "services:\n  - name: api\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n  - name: api\n"
     "    frontends: [{ address: 10.96.0.2, port: 443 }]\n",
     "agent.yaml:4:11: services[1].name: \"api\" is already the name of services[0]; service names must be unique"},
    {"no_frontends", "services:\n  - name: api\n    frontends: []\n",
     "agent.yaml:3:16: services[0].frontends: a service needs at least one frontend; add one, e.g. - { address: "
     "10.96.0.1, port: 443 }"},
    {"frontends_missing", "services:\n  - name: api\n",
     "agent.yaml:2:5: services[0].frontends: required key is missing; add the addresses clients dial, e.g. - { "
     "address: 10.96.0.1, port: 443 }"},
    {"frontend_port_out_of_range", "services:\n  - name: api\n    frontends: [{ address: 10.96.0.1, port: 70000 }]\n",
     "agent.yaml:3:45: services[0].frontends[0].port: 70000 is out of range 1-65535; use the port clients dial"},
    {"frontend_port_not_integer", "services:\n  - name: api\n    frontends: [{ address: 10.96.0.1, port: \"abc\" }]\n",
     "agent.yaml:3:45: services[0].frontends[0].port: \"abc\" is not an integer; use the port clients dial"},
    {"frontend_protocol_upper",
     "services:\n  - name: api\n    frontends: [{ address: 10.96.0.1, port: 53, protocol: UDP }]\n",
     "agent.yaml:3:59: services[0].frontends[0].protocol: \"UDP\" is not one of tcp|udp; did you mean 'udp'?"},
    {"frontend_address_unspecified", "services:\n  - name: api\n    frontends: [{ address: 0.0.0.0, port: 443 }]\n",
     "agent.yaml:3:28: services[0].frontends[0].address: \"0.0.0.0\" is the unspecified address; use the VIP, "
     "LoadBalancer IP, externalIP or node address clients dial"},
    {"frontend_not_mapping", "services:\n  - name: api\n    frontends: [10.96.0.1]\n",
     "agent.yaml:3:17: services[0].frontends[0]: expected a mapping, got \"10.96.0.1\"; write { address: 10.96.0.1, "
     "port: 443, protocol: tcp }"},
    {"frontend_in_two_services",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n  - name: b\n"
     "    frontends: [{ address: 10.96.0.1, port: 443, protocol: tcp }]\n",
     "agent.yaml:5:17: services[1].frontends[0]: 10.96.0.1:443/tcp is already used by services[0].frontends[0]; a "
     "frontend belongs to one service only: remove one of them"},
    {"mode_typo", "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n    mode: fulnat\n",
     "agent.yaml:4:11: services[0].mode: \"fulnat\" is not one of fullnat|dsr; did you mean 'fullnat'?"},
    {"dsr_source_prefix_too_short", "datapath:\n  dsr_source_prefixes: [10.0.0.0/7]\n",
     "agent.yaml:2:25: datapath.dsr_source_prefixes[0]: /7 is out of range /8-/32 for an IPv4 DSR source prefix; use "
     "a block no host uses, e.g. 10.200.0.0/24 (backends see these addresses only as tunnel sources)"},
    {"dsr_source_prefix_two_v6", "datapath:\n  dsr_source_prefixes: [\"fd00::/64\", \"fd01::/64\"]\n",
     "agent.yaml:2:38: datapath.dsr_source_prefixes[1]: a second IPv6 prefix (fd00::/64 is already listed); list at "
     "most one prefix per family"},
    {"dsr_port_translation",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n    mode: dsr\n"
     "    backends: [{ address: 10.0.0.11, port: 6443 }]\n",
     "agent.yaml:5:16: services[0].backends[0]: port 6443 differs from frontend 10.96.0.1:443/tcp's: mode dsr "
     "delivers the client's packet unchanged, ports included; let the backend listen on port 443 (and give every "
     "frontend that port), or use mode: fullnat"},
    {"socket_lb_quoted",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    socket_lb: \"true\"\n",
     "agent.yaml:4:16: services[0].socket_lb: \"true\" is a quoted string, not a boolean; write true without quotes"},
    {"socket_lb_hooks_disabled",
     "socket_lb: { cgroup: \"\" }\nservices:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    socket_lb: true\n",
     "agent.yaml:5:16: services[0].socket_lb: socket-LB is requested but its hooks are disabled (socket_lb.cgroup is "
     "\"\"); set socket_lb.cgroup to the cgroup v2 mount or remove this"},
    {"affinity_too_long",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    session_affinity: { timeout: 25h }\n",
     "agent.yaml:4:34: services[0].session_affinity.timeout: 25h is out of range 1s-24h; how long a client stays "
     "with its backend after its last new connection, e.g. 3h"},
    {"cidr_host_bits",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    source_ranges: [10.0.0.1/8]\n",
     "agent.yaml:4:21: services[0].source_ranges[0]: \"10.0.0.1/8\" has host bits set; use 10.0.0.0/8"},
    {"cidr_v6_host_bits",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    source_ranges: [\"fd00::1/64\"]\n",
     "agent.yaml:4:21: services[0].source_ranges[0]: \"fd00::1/64\" has host bits set; use fd00::/64"},
    {"cidr_without_prefix",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    source_ranges: [10.1.2.3]\n",
     "agent.yaml:4:21: services[0].source_ranges[0]: \"10.1.2.3\" has no prefix length; write 10.1.2.3/32"},
    {"cidr_prefix_too_long",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    source_ranges: [10.0.0.0/33]\n",
     "agent.yaml:4:21: services[0].source_ranges[0]: \"10.0.0.0/33\" has a prefix length above 32; IPv4 prefixes "
     "are 0-32"},
    {"cidr_garbage",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    source_ranges: [office]\n",
     "agent.yaml:4:21: services[0].source_ranges[0]: \"office\" is not a CIDR; write ADDRESS/PREFIX, e.g. "
     "10.0.0.0/8 or fd00::/8"},
    {"all_down_unknown",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    all_backends_down: fail-open\n",
     "agent.yaml:4:24: services[0].all_backends_down: \"fail-open\" is not one of keep-last-healthy|no-backends; "
     "write one of them"},
    {"backend_weight_zero",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    backends: [{ address: 10.0.0.11, port: 6443, weight: 0 }]\n",
     "agent.yaml:4:58: services[0].backends[0].weight: 0 is not a valid weight; remove the backend instead to send "
     "it no traffic"},
    {"backend_weight_too_big",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    backends: [{ address: 10.0.0.11, port: 6443, weight: 70000 }]\n",
     "agent.yaml:4:58: services[0].backends[0].weight: 70000 is out of range 1-65535; weights are relative shares, "
     "1-65535"},
    {"backend_port_out_of_range",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    backends:\n      - { address: 10.0.0.11, port: 70000 }\n",
     "agent.yaml:5:37: services[0].backends[0].port: 70000 is out of range 1-65535; use the backend's TCP/UDP port"},
    {"backend_twice",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    backends:\n      - { address: 10.0.0.11, port: 6443 }\n      - { address: 10.0.0.11, port: 6443, weight: 2 "
     "}\n",
     "agent.yaml:6:9: services[0].backends[1]: 10.0.0.11:6443 is listed twice (also services[0].backends[0]); "
     "remove one of them"},
    {"backend_key_typo",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    backends: [{ address: 10.0.0.11, port: 6443, weigth: 2 }]\n",
     "agent.yaml:4:50: services[0].backends[0].weigth: unknown key; did you mean 'weight'?"},
    {"backend_family_without_frontend",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    backends: [{ address: 10.0.0.11, port: 6443 }, { address: \"fd00::11\", port: 6443 }]\n",
     "agent.yaml:4:52: services[0].backends[1]: IPv6 backend but the service has no IPv6 frontend; the address "
     "family is kept end to end: add an IPv6 frontend or remove this backend"},
    {"frontend_family_without_backend",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }, { address: \"fd00::1\", port: 443 "
     "}]\n    backends: [{ address: 10.0.0.11, port: 6443 }]\n",
     "agent.yaml:3:52: services[0].frontends[1]: IPv6 frontend but the service has no IPv6 backend; the address "
     "family is kept end to end: add an IPv6 backend or remove this frontend"},
    {"more_backends_than_maglev_slots",
     "datapath: { maglev_table_size: 7 }\nservices:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 "
     "}]\n    backends: [{address: 10.0.0.1, port: 1}, {address: 10.0.0.2, port: 1}, {address: 10.0.0.3, port: 1}, "
     "{address: 10.0.0.4, port: 1}, {address: 10.0.0.5, port: 1}, {address: 10.0.0.6, port: 1}, {address: 10.0.0.7, "
     "port: 1}, {address: 10.0.0.8, port: 1}]\n",
     "agent.yaml:5:15: services[0].backends: 8 backends do not fit a Maglev table of 7 slots; raise "
     "datapath.maglev_table_size"},
    // ---- health checks
    {"https_without_trust",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { type: https }\n",
     "agent.yaml:4:19: services[0].health_check: an https check needs to know how to verify the backend's "
     "certificate; set ca_file or insecure_skip_verify: true"},
    {"https_ca_and_insecure",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { type: https, ca_file: /ca.crt, insecure_skip_verify: true }\n",
     "agent.yaml:4:74: services[0].health_check.insecure_skip_verify: true while ca_file is also set; keep one: "
     "ca_file verifies the backend's certificate, insecure_skip_verify: true skips that"},
    {"http_key_on_tcp_check",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { type: tcp, path: /healthz }\n",
     "agent.yaml:4:38: services[0].health_check.path: path applies to http and https checks only; remove it or set "
     "type: http"},
    {"ca_file_on_http_check",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { type: http, ca_file: /ca.crt }\n",
     "agent.yaml:4:42: services[0].health_check.ca_file: ca_file applies to https checks only; remove it or set "
     "type: https"},
    {"check_type_unknown",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { type: grpc }\n",
     "agent.yaml:4:27: services[0].health_check.type: \"grpc\" is not one of tcp|http|https; write one of them"},
    {"path_without_slash",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { type: http, path: readyz }\n",
     "agent.yaml:4:39: services[0].health_check.path: \"readyz\" does not start with '/'; write /readyz"},
    {"expected_status_600",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { type: http, expected_status: 600 }\n",
     "agent.yaml:4:50: services[0].health_check.expected_status: 600 is out of range 100-599; use the HTTP status a "
     "healthy backend answers with, e.g. 200"},
    {"interval_too_short",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { interval: 50ms }\n",
     "agent.yaml:4:31: services[0].health_check.interval: 50ms is out of range 100ms-1h; time between two checks of "
     "a backend, e.g. 2s"},
    {"timeout_not_below_interval",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { interval: 1s, timeout: 1s }\n",
     "agent.yaml:4:44: services[0].health_check.timeout: 1s is not shorter than the interval 1s; use a timeout below "
     "the interval"},
    {"interval_below_default_timeout",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { interval: 500ms }\n",
     "agent.yaml:4:31: services[0].health_check.interval: 500ms is not longer than the timeout 1s (default); set "
     "timeout below 500ms or use a longer interval"},
    {"rise_zero",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { rise: 0 }\n",
     "agent.yaml:4:27: services[0].health_check.rise: 0 is out of range 1-100; count consecutive results, e.g. 2 or "
     "3"},
    {"fall_too_big",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check: { fall: 101 }\n",
     "agent.yaml:4:27: services[0].health_check.fall: 101 is out of range 1-100; count consecutive results, e.g. 2 "
     "or 3"},
    {"health_check_empty_value",
     "services:\n  - name: a\n    frontends: [{ address: 10.96.0.1, port: 443 }]\n"
     "    health_check:\n",
     "agent.yaml:4:5: services[0].health_check: expected a mapping, got an empty value; write the health check as a "
     "mapping, e.g. { type: tcp }"},
};

// gtest prints the case by name instead of dumping its bytes.
void PrintTo(const InvalidCase& c, std::ostream* os) { *os << c.name; }

class ConfigInvalid : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(ConfigInvalid, ExactMessage) {
    auto r = parse_config(GetParam().yaml, "agent.yaml");
    ASSERT_FALSE(r) << "accepted:\n" << GetParam().yaml;
    EXPECT_EQ(r.error().code, EINVAL);
    EXPECT_EQ(r.error().message, GetParam().message) << "document:\n" << GetParam().yaml;
}

INSTANTIATE_TEST_SUITE_P(ConfigDocuments, ConfigInvalid, ::testing::ValuesIn(kInvalid),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ConfigErrors, EveryProblemIsReportedInDocumentOrder) {
    // Problems are found in several passes (keys, values, cross-field checks) but listed by position.
    constexpr std::string_view kDoc = R"(node:
  interfaces:
    - name: eth0
      allow_generic: true
datapath:
  maglev_table_size: 100
services:
  - name: api
    frontends:
      - { address: 10.96.0.1, port: 443 }
    backends:
      - { address: 10.0.0.11, port: 6443, weight: 0 }
    health_check:
      type: https
      interval: 1s
      timeout: 2s
  - name: api
    frontends:
      - { address: 10.96.0.1, port: 443 }
)";
    auto r = parse_config(kDoc, "/etc/kxlb/agent.yaml");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message,
              "/etc/kxlb/agent.yaml:4:7: node.interfaces[0].allow_generic: unknown key; did you mean "
              "'allow_generic_xdp'?\n"
              "/etc/kxlb/agent.yaml:6:22: datapath.maglev_table_size: 100 is not a prime; use a prime such as 97 or "
              "101\n"
              "/etc/kxlb/agent.yaml:12:51: services[0].backends[0].weight: 0 is not a valid weight; remove the backend "
              "instead to send it no traffic\n"
              "/etc/kxlb/agent.yaml:14:7: services[0].health_check: an https check needs to know how to verify the "
              "backend's certificate; set ca_file or insecure_skip_verify: true\n"
              "/etc/kxlb/agent.yaml:16:16: services[0].health_check.timeout: 2s is not shorter than the interval 1s; "
              "use a timeout below the interval\n"
              "/etc/kxlb/agent.yaml:17:11: services[1].name: \"api\" is already the name of services[0]; service "
              "names must be unique\n"
              "/etc/kxlb/agent.yaml:19:9: services[1].frontends[0]: 10.96.0.1:443/tcp is already used by "
              "services[0].frontends[0]; a frontend belongs to one service only: remove one of them");
}

TEST(ConfigErrors, FrontendLimitOfTheDatapath) {
    std::string doc = "services:\n  - name: many\n    frontends:\n";
    for (int i = 0; i <= KXLB_MAX_SERVICES; ++i)  // one more than the services map holds
        doc += "      - { address: 10.0.0.1, port: " + std::to_string(i + 1) + " }\n";
    EXPECT_EQ(
        outcome(doc),
        "agent.yaml:2:3: services: 16385 frontends exceed the datapath's limit of 16384; remove frontends: each one "
        "is an entry of the datapath's services map");
}

TEST(ConfigErrors, NeverThrowsOnHostileInput) {
    EXPECT_EQ(outcome("node: " + std::string(600, '[') + std::string(600, ']')),
              "agent.yaml:1:1207: (document): nesting is too deep (500 levels); the agent config nests only a few "
              "levels; look for runaway brackets");
    EXPECT_NE(outcome(std::string("pin_path: \"\\q\"\n")), "OK");
    EXPECT_NE(outcome(std::string("\x00\x01\xff\xfe", 4)), "OK");
    EXPECT_NE(outcome("? [a, b]\n: 1\n"), "OK");
}

// ---- load_config

std::string temp_dir() {
    std::string tmpl = ::testing::TempDir() + "kxlb-config-XXXXXX";
    const char* dir = mkdtemp(tmpl.data());
    return dir ? dir : "";
}

TEST(ConfigLoad, MissingFile) {
    const std::string dir = temp_dir();
    ASSERT_FALSE(dir.empty());
    auto r = load_config(dir + "/absent.yaml");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ENOENT);
    EXPECT_EQ(r.error().message, "reading config file " + dir + "/absent.yaml: No such file or directory");
    rmdir(dir.c_str());
}

TEST(ConfigLoad, UnreadablePaths) {
    // Both fail for root too (no permission bits involved): a directory, and a path through a file.
    const std::string dir = temp_dir();
    ASSERT_FALSE(dir.empty());
    auto r = load_config(dir);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EISDIR);
    EXPECT_EQ(r.error().message, "reading config file " + dir + ": Is a directory");

    const std::string file = dir + "/agent.yaml";
    const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ::close(fd);
    r = load_config(file + "/nested.yaml");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ENOTDIR);
    EXPECT_EQ(r.error().message, "reading config file " + file + "/nested.yaml: Not a directory");
    unlink(file.c_str());
    rmdir(dir.c_str());
}

TEST(ConfigLoad, ReadsAndParsesWithThePathAsSource) {
    const std::string dir = temp_dir();
    ASSERT_FALSE(dir.empty());
    const std::string file = dir + "/agent.yaml";
    auto write = [&](std::string_view text) {
        const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
        ::close(fd);
    };
    write(kFullExample);
    auto ok = load_config(file);
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(*ok, full_example_expected());

    write("logging:\n  level: loud\n");
    auto bad = load_config(file);
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().message,
              file + ":2:10: logging.level: \"loud\" is not one of trace|debug|info|warn|error; write one of them");
    unlink(file.c_str());
    rmdir(dir.c_str());
}

}  // namespace
}  // namespace kxlb::agent
