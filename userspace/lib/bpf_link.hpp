// RAII ownership of kernel BPF links (XDP on an interface, later cgroup hooks): closing the last
// link fd detaches the program unless the link was pinned to bpffs.
#pragma once

#include <cstdint>
#include <string>

#include "lib/result.hpp"
#include "lib/unique_fd.hpp"

struct bpf_program;

namespace kxlb {

class Link {
public:
    Link() = default;
    explicit Link(UniqueFd fd) : fd_(std::move(fd)) {}

    int fd() const { return fd_.get(); }
    bool attached() const { return fd_.valid(); }
    // Detaches now (the kernel also detaches when the fd is closed and nothing pins the link).
    void reset() { fd_.reset(); }

    // Pins the link so it (and the attachment) outlives this process.
    Status pin(const std::string& path) const;

private:
    UniqueFd fd_;
};

enum class XdpMode : std::uint8_t {
    Native,   // driver mode (XDP_FLAGS_DRV_MODE); fails if the driver has no XDP support
    Generic,  // skb mode; works everywhere, much slower
};

const char* to_string(XdpMode mode);

// Attaches prog to ifindex (in the calling thread's network namespace) through a BPF link in
// exactly the requested mode: no silent fallback from native to generic.
Result<Link> attach_xdp(const bpf_program* prog, int ifindex, XdpMode mode);

// How an XDP program is attached to ifindex right now.
struct XdpAttachState {
    std::uint32_t prog_id = 0;  // 0: nothing attached
    bool native = false;
    bool generic = false;
};
Result<XdpAttachState> query_xdp(int ifindex);

}  // namespace kxlb
