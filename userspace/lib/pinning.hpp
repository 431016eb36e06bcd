// Pinned state under bpffs: the one place that knows where kxlb keeps its maps and links, so that
// a restarted (or upgraded) agent adopts them and kxlbctl reads them while the agent is down.
//
//   <root>/maps/<map name>       every non-internal map of the embedded objects (by its BPF name;
//                                the XDP and socket-LB objects share e.g. kxlb_services by name)
//   <root>/links/xdp_<ifname>    the XDP link on an interface
//   <root>/links/decap_<ifname>  the DSR decapsulation program's XDP link on an interface
//   <root>/links/cgroup_<hook>   a cgroup socket-LB hook link (e.g. cgroup_kxlb_connect4)
#pragma once

#include <string>
#include <string_view>

#include "lib/bpf_link.hpp"
#include "lib/result.hpp"

struct bpf_object;
struct bpf_program;

namespace kxlb {

struct PinLayout {
    std::string root;  // e.g. /sys/fs/bpf/kxlb
    std::string maps_dir() const { return root + "/maps"; }
    std::string links_dir() const { return root + "/links"; }
    std::string map(std::string_view name) const { return maps_dir() + "/" + std::string(name); }
    std::string xdp_link(std::string_view ifname) const { return links_dir() + "/xdp_" + std::string(ifname); }
    std::string decap_link(std::string_view ifname) const { return links_dir() + "/decap_" + std::string(ifname); }
    std::string cgroup_link(std::string_view hook) const { return links_dir() + "/cgroup_" + std::string(hook); }
};

// Checks that root lies on a bpffs mount and creates root, maps/ and links/ (mode 0700).
Status prepare_pin_dirs(const PinLayout& layout);

// Between open and load of a skeleton: every non-internal map of obj either reuses the map pinned
// under layout.maps_dir() with its name, or is pinned there by the load. A pinned map whose type,
// key/value layout (compared member by member through BTF), size or flags differ from obj's is
// refused with a message that names the map and both layouts: kxlb never writes through a
// layout it does not understand, and never silently replaces a map that holds live flows.
Status use_pinned_maps(bpf_object* obj, const PinLayout& layout);

// The layout of a map as "type key=<...> value=<...> max_entries=N flags=F", for messages.
// Uses BTF when the map has it; sizes otherwise.
Result<std::string> describe_pinned_map(const std::string& path);

// Opens a pinned link.
Result<Link> open_pinned_link(const std::string& path);
// Points an existing link at prog in one atomic step (no moment without a program).
Status update_link(const Link& link, const bpf_program* prog);

// Attaches prog to ifindex through the link pinned at path: an existing live link on the same
// interface in the same mode is updated in place (atomic program replacement, flows undisturbed);
// a stale link (its interface is gone, or another mode was asked for) is replaced by a new link.
// The result is pinned at path.
Result<Link> attach_xdp_pinned(const bpf_program* prog, int ifindex, XdpMode mode, const std::string& path);

// Same for a cgroup hook (attach type from the program's section) on the cgroup open as cgroup_fd.
Result<Link> attach_cgroup_pinned(const bpf_program* prog, int cgroup_fd, const std::string& path);

// Removes everything under layout.root (links first: unpinning a link whose last fd is gone
// detaches its program). Missing entries are fine; returns how many objects were removed.
Result<int> remove_pinned(const PinLayout& layout);

}  // namespace kxlb
