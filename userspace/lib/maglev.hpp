// Maglev consistent-hashing lookup tables with weights (Eisenbud et al., NSDI'16, §3.4).
// A table depends only on the set of (identity, weight) backends, the table size and the seed —
// never on insertion order — so every node with the same backend set builds the same table.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "lib/result.hpp"

namespace kxlb {

// Stable identity of a backend for hashing: address family, address bytes (IPv4 in the first 4)
// and port, exactly as they appear on the wire.
struct BackendIdentity {
    std::uint8_t family = 0;  // AF_INET or AF_INET6
    std::array<std::uint8_t, 16> addr{};
    std::uint16_t port = 0;  // host order
    auto operator<=>(const BackendIdentity&) const = default;
};

struct MaglevBackend {
    BackendIdentity identity;
    std::uint32_t id = 0;      // value written into the table slots (the datapath's backend id)
    std::uint32_t weight = 1;  // 0 = takes no slots
};

inline constexpr std::uint32_t kDefaultMaglevSize = 65537;

// True if n is prime (table sizes must be prime so every skip value generates a full permutation).
bool is_prime(std::uint32_t n);

// Deterministic 64-bit hash of bytes with a seed; identical on every machine and build.
std::uint64_t stable_hash64(const void* data, std::size_t len, std::uint64_t seed);

// Builds the table: size slots, each holding a backend id. Backends with weight 0 are left out;
// if none remain the table is empty (the caller treats the service as having no backend).
// Errors: size not prime or < 3, duplicate identities, size < number of usable backends.
Result<std::vector<std::uint32_t>> build_maglev_table(std::vector<MaglevBackend> backends, std::uint32_t size,
                                                      std::uint64_t seed);

}  // namespace kxlb
