// Layout checks shared by the typed map accessors.
#include "lib/bpf_map.hpp"

#include <string>

namespace kxlb::detail {

Status check_map_layout(int fd, std::size_t key_size, std::size_t value_size, bool per_cpu) {
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return Error::from_errno(errno, "map info");
    const bool is_per_cpu = info.type == BPF_MAP_TYPE_PERCPU_ARRAY || info.type == BPF_MAP_TYPE_PERCPU_HASH ||
                            info.type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
    std::string name(info.name);
    if (is_per_cpu != per_cpu)
        return Error::invalid("map " + name + (per_cpu ? " is not per-CPU" : " is per-CPU") +
                              " but the accessor expects otherwise");
    if (info.key_size != key_size || info.value_size != value_size)
        return Error::invalid("map " + name + " layout mismatch: kernel key/value " + std::to_string(info.key_size) +
                              "/" + std::to_string(info.value_size) + " bytes, ABI " + std::to_string(key_size) + "/" +
                              std::to_string(value_size));
    return {};
}

Result<int> possible_cpus() {
    int n = libbpf_num_possible_cpus();
    if (n <= 0) return Error::from_errno(n < 0 ? n : EINVAL, "possible CPUs");
    return n;
}

}  // namespace kxlb::detail
