// Userspace vocabulary of the load balancer: addresses, frontends, backends, services and the
// datapath configuration, with conversion to the ABI structs in include/kxlb/abi.h.
#pragma once

#include <netinet/in.h>

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lib/abi.hpp"
#include "lib/maglev.hpp"
#include "lib/result.hpp"

namespace kxlb {

// An IPv4 or IPv6 address; IPv4 occupies bytes[0..3] and leaves the rest zero (as in the ABI).
struct IpAddr {
    std::uint8_t family = 0;  // AF_INET or AF_INET6
    std::array<std::uint8_t, 16> bytes{};

    static Result<IpAddr> parse(std::string_view text);  // "10.0.0.1", "fd00::1"
    static IpAddr v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d);
    std::string str() const;
    bool is_zero() const;
    // ABI form: four network-order words.
    void to_words(__be32 out[4]) const;
    static IpAddr from_words(std::uint8_t family, const __be32 in[4]);
    auto operator<=>(const IpAddr&) const = default;
};

// An address prefix (source ranges). Services carry only prefixes without host bits.
struct Cidr {
    IpAddr addr;
    std::uint8_t prefix_len = 0;  // 0..32 (IPv4) or 0..128 (IPv6)
    std::string str() const;      // "10.0.0.0/8", "fd00::/8"
    Cidr network() const;         // the same prefix with host bits cleared
    bool host_bits_zero() const { return network() == *this; }
    auto operator<=>(const Cidr&) const = default;
};

const char* proto_name(std::uint8_t proto);  // "tcp", "udp", "proto-N"

// One frontend: what clients dial (VIP, LoadBalancer IP, externalIP, or node address for NodePorts).
struct Frontend {
    IpAddr addr;
    std::uint16_t port = 0;  // host order
    std::uint8_t proto = IPPROTO_TCP;
    kxlb_vip_key key() const;
    static Frontend from_key(const kxlb_vip_key& key);
    std::string str() const;  // "10.0.0.1:443/tcp", "[fd00::1]:443/tcp"
    auto operator<=>(const Frontend&) const = default;
};

struct BackendSpec {
    IpAddr addr;
    std::uint16_t port = 0;  // host order
    std::uint32_t weight = 1;
    bool draining = false;  // keeps existing flows, gets no new ones
    // Lives on this node (a pod routed by the node's kernel): KXLB_BE_F_LOCAL, DNAT-only flows handed
    // to the kernel, replies translated by LocalRevProgram on the node NICs. Not part of identity():
    // changing it rewrites the backend in place (a spec change, same id).
    bool local = false;
    BackendIdentity identity() const;
    std::string str() const;
    bool operator==(const BackendSpec&) const = default;
};

struct ServiceSpec {
    Frontend frontend;
    std::uint32_t flags = 0;  // KXLB_SVC_F_SOCKET_LB / KXLB_SVC_F_DSR (KXLB_SVC_F_SOURCE_RANGES is derived)
    std::uint32_t affinity_timeout_s = 0;  // session affinity by client address; 0: off
    // Clients allowed to open flows; empty: everyone. Sorted, no duplicates, no host bits (validate).
    std::vector<Cidr> source_ranges;
    std::vector<BackendSpec> backends;
    bool operator==(const ServiceSpec&) const = default;
};

// The kxlb_src_range_key of one of service svc_id's source ranges, and back (nullopt: not a key
// kxlb writes).
kxlb_src_range_key source_range_key(std::uint32_t svc_id, const Cidr& range);
std::optional<std::pair<std::uint32_t, Cidr>> source_range_from_key(const kxlb_src_range_key& key);

// The kxlb_services value of a service programmed under id (flags incl. the derived ones).
kxlb_service service_value(std::uint32_t id, const ServiceSpec& spec);

// Checks a service for what the datapath can carry; every problem is reported, one per line.
Status validate(const ServiceSpec& svc);

// Datapath-wide settings (kxlb_config).
struct LbConfig {
    std::uint64_t hash_seed = 0;
    IpAddr snat_v4;                      // family 0: IPv4 full-NAT disabled
    IpAddr snat_v6;                      // family 0: IPv6 full-NAT disabled
    std::uint16_t snat_port_lo = 61000;  // outside Linux's default ephemeral range 32768-60999
    std::uint16_t snat_port_hi = 65535;
    std::uint32_t udp_timeout_s = 30;
    std::uint32_t tcp_timewait_s = 60;  // Linux TIME_WAIT length
    // DSR outer source prefixes (kxlb_config.encap_src_*): each flow's outer source is the prefix
    // with host bits from the flow hash, spreading flows over the backends' RX queues. Address
    // family 0: not set, the outer source is snat_v4 / snat_v6. IPv4 /8../32, IPv6 /64../128,
    // no host bits (validate).
    Cidr encap_src_v4;
    Cidr encap_src_v6;
    kxlb_config to_abi() const;
    bool operator==(const LbConfig&) const = default;
};

Status validate(const LbConfig& cfg);

}  // namespace kxlb
