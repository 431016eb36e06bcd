// C++ view of the shared ABI (include/kxlb/abi.h): layout checks and counter names.
#pragma once

#include <kxlb/abi.h>

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

namespace kxlb {

static_assert(sizeof(kxlb_counter) == 16);
static_assert(offsetof(kxlb_counter, packets) == 0);
static_assert(offsetof(kxlb_counter, bytes) == 8);

static_assert(sizeof(kxlb_vip_key) == 20 && offsetof(kxlb_vip_key, port) == 16 && offsetof(kxlb_vip_key, family) == 19);
static_assert(sizeof(kxlb_vip_addr_key) == 20);
static_assert(sizeof(kxlb_backend) == 32 && offsetof(kxlb_backend, gen) == 20 && offsetof(kxlb_backend, svc_id) == 24 &&
              offsetof(kxlb_backend, weight) == 28);
static_assert(sizeof(kxlb_flow_key) == 40 && offsetof(kxlb_flow_key, sport) == 32 &&
              offsetof(kxlb_flow_key, family) == 37);
static_assert(sizeof(kxlb_nexthop) == 16);
static_assert(sizeof(kxlb_service) == 16 && offsetof(kxlb_service, affinity_timeout_s) == 8);
static_assert(sizeof(kxlb_src_range_key) == 28 && offsetof(kxlb_src_range_key, svc_id) == 4 &&
              offsetof(kxlb_src_range_key, addr) == 12 &&
              KXLB_SRC_RANGE_KEY_BITS == 8 * (offsetof(kxlb_src_range_key, addr) - 4));
static_assert(sizeof(kxlb_affinity_key) == 24 && offsetof(kxlb_affinity_key, family) == 20);
static_assert(sizeof(kxlb_affinity_value) == 16);
static_assert(sizeof(kxlb_nh_cache_entry) == 40 && offsetof(kxlb_nh_cache_entry, nh) == 20);
static_assert(sizeof(kxlb_flow_cache_entry) == 112 && offsetof(kxlb_flow_cache_entry, expires) == 40 &&
              offsetof(kxlb_flow_cache_entry, nh) == 96);
static_assert(sizeof(kxlb_flow_cache_counters) == 24 && offsetof(kxlb_flow_cache_counters, fills) == 16);
static_assert(sizeof(kxlb_ct_value) == 48 && offsetof(kxlb_ct_value, flags) == 20 && offsetof(kxlb_ct_value, nh) == 28);
static_assert(sizeof(kxlb_nat_value) == 72 && offsetof(kxlb_nat_value, flags) == 52 &&
              offsetof(kxlb_nat_value, nh) == 56);
static_assert(sizeof(kxlb_config) == 64 && offsetof(kxlb_config, snat_port_lo) == 28 &&
              offsetof(kxlb_config, encap_src_v4) == 40 && offsetof(kxlb_config, encap_src_v6) == 44 &&
              offsetof(kxlb_config, encap_src_v4_len) == 60 && offsetof(kxlb_config, encap_src_v6_len) == 61);
static_assert(sizeof(kxlb_lb_counter) == 24);
static_assert(sizeof(kxlb_frontend_filter) == KXLB_FRONTEND_FILTER_BITS / 8);
static_assert(sizeof(kxlb_parse_counters) == sizeof(kxlb_counter) * KXLB_PARSE_STAT_MAX);
static_assert(sizeof(kxlb_sock_rev_key) == 32 && offsetof(kxlb_sock_rev_key, port) == 24);
static_assert(sizeof(kxlb_sock_rev_value) == 24 && offsetof(kxlb_sock_rev_value, svc_id) == 20);
static_assert(sizeof(kxlb_sock_peer) == 40 && offsetof(kxlb_sock_peer, svc_id) == 36);

inline constexpr std::size_t kParseStatCount = KXLB_PARSE_STAT_MAX;
inline constexpr std::size_t kReasonCount = KXLB_REASON_MAX;

// Names of enum kxlb_parse_stat, in enum order, from the ABI's X-macro.
inline constexpr std::array<std::string_view, kParseStatCount> kParseStatNames = {
#define KXLB_NAME_ENTRY_(id, name) name,
    KXLB_PARSE_STAT_LIST(KXLB_NAME_ENTRY_)
#undef KXLB_NAME_ENTRY_
};

// Names of enum kxlb_reason, in enum order.
inline constexpr std::array<std::string_view, kReasonCount> kReasonNames = {
#define KXLB_NAME_ENTRY_(id, name) name,
    KXLB_REASON_LIST(KXLB_NAME_ENTRY_)
#undef KXLB_NAME_ENTRY_
};

inline constexpr std::string_view reason_name(kxlb_reason id) {
    return static_cast<std::size_t>(id) < kReasonCount ? kReasonNames[id] : "unknown";
}

inline constexpr std::size_t kLocalRevReasonCount = KXLB_LOCAL_REV_REASON_MAX;

// Names of enum kxlb_local_rev_reason (the tc egress program of local backends), in enum order.
inline constexpr std::array<std::string_view, kLocalRevReasonCount> kLocalRevReasonNames = {
#define KXLB_NAME_ENTRY_(id, name) name,
    KXLB_LOCAL_REV_REASON_LIST(KXLB_NAME_ENTRY_)
#undef KXLB_NAME_ENTRY_
};

inline constexpr std::string_view local_rev_reason_name(kxlb_local_rev_reason id) {
    return static_cast<std::size_t>(id) < kLocalRevReasonCount ? kLocalRevReasonNames[id] : "unknown";
}

static_assert(KXLB_BE_F_LOCAL == 2 && KXLB_CT_F_LOCAL == 16, "flag bits are ABI");
static_assert(sizeof(kxlb_backend::flags) == 1 && (KXLB_BE_F_DRAINING | KXLB_BE_F_LOCAL) <= 0xff);

inline constexpr std::string_view parse_stat_name(kxlb_parse_stat id) {
    return static_cast<std::size_t>(id) < kParseStatCount ? kParseStatNames[id] : "unknown";
}

inline constexpr std::optional<kxlb_parse_stat> parse_stat_from_name(std::string_view name) {
    for (std::size_t i = 0; i < kParseStatCount; ++i)
        if (kParseStatNames[i] == name) return static_cast<kxlb_parse_stat>(i);
    return std::nullopt;
}

}  // namespace kxlb
