// Maglev table construction (weighted round-robin over per-backend permutations).
#include "lib/maglev.hpp"

#include <algorithm>
#include <cstring>
#include <string>

namespace kxlb {

bool is_prime(std::uint32_t n) {
    if (n < 2) return false;
    if (n % 2 == 0) return n == 2;
    for (std::uint32_t d = 3; static_cast<std::uint64_t>(d) * d <= n; d += 2)
        if (n % d == 0) return false;
    return true;
}

namespace {

std::uint64_t mix64(std::uint64_t x) {  // splitmix64 finaliser: full avalanche
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

}  // namespace

std::uint64_t stable_hash64(const void* data, std::size_t len, std::uint64_t seed) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    std::uint64_t h = mix64(seed ^ (0x9e3779b97f4a7c15ULL * (len + 1)));
    std::size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        std::uint64_t w = 0;
        for (int b = 0; b < 8; ++b) w |= static_cast<std::uint64_t>(p[i + b]) << (8 * b);  // endian-independent
        h = mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
    }
    std::uint64_t tail = 0;
    for (int b = 0; i < len; ++i, ++b) tail |= static_cast<std::uint64_t>(p[i]) << (8 * b);
    return mix64(h ^ tail);
}

namespace {

std::array<std::uint8_t, 19> identity_bytes(const BackendIdentity& id) {
    std::array<std::uint8_t, 19> b{};
    b[0] = id.family;
    std::memcpy(&b[1], id.addr.data(), 16);
    b[17] = static_cast<std::uint8_t>(id.port >> 8);
    b[18] = static_cast<std::uint8_t>(id.port & 0xff);
    return b;
}

}  // namespace

Result<std::vector<std::uint32_t>> build_maglev_table(std::vector<MaglevBackend> backends, std::uint32_t size,
                                                      std::uint64_t seed) {
    if (size < 3 || !is_prime(size))
        return Error::invalid("maglev table size " + std::to_string(size) + " is not a prime >= 3");
    std::erase_if(backends, [](const MaglevBackend& b) { return b.weight == 0; });
    if (backends.empty()) return std::vector<std::uint32_t>{};
    if (backends.size() > size)
        return Error::invalid("maglev table size " + std::to_string(size) + " is smaller than the " +
                              std::to_string(backends.size()) + " backends");
    // Canonical order: the table must not depend on the order backends were given in.
    std::sort(backends.begin(), backends.end(),
              [](const MaglevBackend& a, const MaglevBackend& b) { return a.identity < b.identity; });
    for (std::size_t i = 1; i < backends.size(); ++i)
        if (backends[i].identity == backends[i - 1].identity)
            return Error::invalid("maglev: duplicate backend identity (same address and port twice)");

    const std::size_t n = backends.size();
    std::vector<std::uint32_t> offset(n), skip(n), next(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
        auto bytes = identity_bytes(backends[i].identity);
        offset[i] = static_cast<std::uint32_t>(stable_hash64(bytes.data(), bytes.size(), seed) % size);
        skip[i] = static_cast<std::uint32_t>(stable_hash64(bytes.data(), bytes.size(), ~seed) % (size - 1) + 1);
    }

    constexpr std::uint32_t kEmpty = UINT32_MAX;
    std::vector<std::uint32_t> slot_owner(size, kEmpty);  // index into backends
    std::uint32_t filled = 0;
    // Each round, backend i claims `weight` slots: shares follow weights to within one round.
    while (filled < size) {
        for (std::size_t i = 0; i < n && filled < size; ++i) {
            for (std::uint32_t w = 0; w < backends[i].weight && filled < size; ++w) {
                std::uint32_t c;
                do {  // terminates: the permutation visits every slot and some slot is still empty
                    c = static_cast<std::uint32_t>((offset[i] + static_cast<std::uint64_t>(next[i]) * skip[i]) % size);
                    ++next[i];
                } while (slot_owner[c] != kEmpty);
                slot_owner[c] = static_cast<std::uint32_t>(i);
                ++filled;
            }
        }
    }
    std::vector<std::uint32_t> table(size);
    for (std::uint32_t s = 0; s < size; ++s) table[s] = backends[slot_owner[s]].id;
    return table;
}

}  // namespace kxlb
