// Stable numeric ids (services, backends): lowest free id first, so ids stay compact and the
// datapath's id-indexed arrays stay small; released ids are reused.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "lib/result.hpp"

namespace kxlb {

class IdAllocator {
public:
    // Ids in [first, capacity).
    explicit IdAllocator(std::uint32_t capacity, std::uint32_t first = 0) : capacity_(capacity), next_(first) {}

    Result<std::uint32_t> allocate() {
        if (!free_.empty()) {
            auto id = *free_.begin();
            free_.erase(free_.begin());
            return id;
        }
        if (next_ >= capacity_) return Error{ENOSPC, "all " + std::to_string(capacity_) + " ids are in use"};
        return next_++;
    }

    // Precondition: id came from allocate() and was not released since.
    void release(std::uint32_t id) {
        if (id + 1 == next_) {
            --next_;
            while (!free_.empty() && *free_.rbegin() + 1 == next_) {
                free_.erase(std::prev(free_.end()));
                --next_;
            }
        } else {
            free_.insert(id);
        }
    }

    // Marks a specific id as allocated (adopting ids a previous process handed out).
    // Fails if it is out of range or already allocated.
    Status reserve(std::uint32_t id) {
        if (id >= capacity_) return Error{ERANGE, "id " + std::to_string(id) + " is out of range"};
        if (id >= next_) {
            for (auto i = next_; i < id; ++i) free_.insert(i);
            next_ = id + 1;
            return {};
        }
        if (free_.erase(id) == 0) return Error{EEXIST, "id " + std::to_string(id) + " is already allocated"};
        return {};
    }
    std::uint32_t capacity() const { return capacity_; }

private:
    std::uint32_t capacity_;
    std::uint32_t next_;
    std::set<std::uint32_t> free_;
};

}  // namespace kxlb
