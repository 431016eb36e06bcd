// Typed, non-owning accessors for BPF maps, instantiated with the ABI structs from
// include/kxlb/abi.h. Binding checks the kernel map's key/value sizes against the C++ types, so an
// ABI mismatch is an error at bind time, not silent corruption. The map fd stays owned by its
// skeleton (or pinned-map UniqueFd) and must outlive the accessor.
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "lib/result.hpp"

namespace kxlb {

namespace detail {
// Checks that the map's key/value sizes match the ABI types this accessor is instantiated with.
Status check_map_layout(int fd, std::size_t key_size, std::size_t value_size, bool per_cpu);
// Number of possible CPUs (per-CPU value arrays have this many slots), or an error.
Result<int> possible_cpus();
}  // namespace detail

template <typename K, typename V>
class TypedMap {
    static_assert(std::is_trivially_copyable_v<K> && std::is_trivially_copyable_v<V>);

public:
    static Result<TypedMap> bind(int fd) {
        if (auto st = detail::check_map_layout(fd, sizeof(K), sizeof(V), false); !st) return st.error();
        return TypedMap(fd);
    }
    static Result<TypedMap> bind(const bpf_map* map) { return bind(bpf_map__fd(map)); }

    int fd() const { return fd_; }

    // nullopt when the key is absent.
    Result<std::optional<V>> lookup(const K& key) const {
        V value{};
        if (bpf_map_lookup_elem(fd_, &key, &value) == 0) return std::optional<V>(value);
        if (errno == ENOENT) return std::optional<V>();
        return Error::from_errno(errno, "map lookup");
    }

    Status update(const K& key, const V& value, std::uint64_t flags = BPF_ANY) {
        if (bpf_map_update_elem(fd_, &key, &value, flags) != 0) return Error::from_errno(errno, "map update");
        return {};
    }

    // Ok(false) when the key was absent.
    Result<bool> erase(const K& key) {
        if (bpf_map_delete_elem(fd_, &key) == 0) return true;
        if (errno == ENOENT) return false;
        return Error::from_errno(errno, "map delete");
    }

    // Calls fn(key, value) for every entry. Entries may come and go concurrently (the datapath
    // writes too); an entry deleted between key walk and lookup is skipped.
    template <typename Fn>
    Status for_each(Fn&& fn) const {
        K key{};
        K next{};
        const K* cur = nullptr;
        while (bpf_map_get_next_key(fd_, cur, &next) == 0) {
            V value{};
            if (bpf_map_lookup_elem(fd_, &next, &value) == 0) fn(next, value);
            else if (errno != ENOENT) return Error::from_errno(errno, "map lookup during walk");
            key = next;
            cur = &key;
        }
        if (errno != ENOENT) return Error::from_errno(errno, "map walk");
        return {};
    }

private:
    explicit TypedMap(int fd) : fd_(fd) {}
    int fd_;
};

// Per-CPU array: one V per possible CPU per index.
template <typename V>
class PerCpuArray {
    static_assert(std::is_trivially_copyable_v<V>);
    // The kernel lays out per-CPU values at 8-byte strides.
    static constexpr std::size_t kStride = (sizeof(V) + 7) / 8 * 8;

public:
    static Result<PerCpuArray> bind(int fd) {
        if (auto st = detail::check_map_layout(fd, sizeof(std::uint32_t), sizeof(V), true); !st) return st.error();
        auto cpus = detail::possible_cpus();
        if (!cpus) return cpus.error();
        return PerCpuArray(fd, *cpus);
    }
    static Result<PerCpuArray> bind(const bpf_map* map) { return bind(bpf_map__fd(map)); }

    int fd() const { return fd_; }
    int cpus() const { return cpus_; }

    Result<std::vector<V>> lookup(std::uint32_t index) const {
        std::vector<unsigned char> raw(kStride * static_cast<std::size_t>(cpus_));
        if (bpf_map_lookup_elem(fd_, &index, raw.data()) != 0) return Error::from_errno(errno, "per-cpu lookup");
        std::vector<V> out(static_cast<std::size_t>(cpus_));
        for (std::size_t i = 0; i < out.size(); ++i) std::memcpy(&out[i], raw.data() + i * kStride, sizeof(V));
        return out;
    }

    // Sets every CPU's slot at index to value (e.g. zeroing counters).
    Status fill(std::uint32_t index, const V& value) {
        std::vector<unsigned char> raw(kStride * static_cast<std::size_t>(cpus_));
        for (int i = 0; i < cpus_; ++i)
            std::memcpy(raw.data() + static_cast<std::size_t>(i) * kStride, &value, sizeof(V));
        if (bpf_map_update_elem(fd_, &index, raw.data(), BPF_ANY) != 0)
            return Error::from_errno(errno, "per-cpu update");
        return {};
    }

    // Zeroes every CPU's slot of indexes [0, n).
    Status clear(std::uint32_t n) {
        for (std::uint32_t i = 0; i < n; ++i)
            if (auto st = fill(i, V{}); !st) return st;
        return {};
    }

private:
    PerCpuArray(int fd, int cpus) : fd_(fd), cpus_(cpus) {}
    int fd_;
    int cpus_;
};

}  // namespace kxlb
