// XDP attach/query through BPF links.
#include "lib/bpf_link.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>

namespace kxlb {

Status Link::pin(const std::string& path) const {
    if (bpf_obj_pin(fd_.get(), path.c_str()) != 0) return Error::from_errno(errno, "pin link at " + path);
    return {};
}

const char* to_string(XdpMode mode) {
    switch (mode) {
        case XdpMode::Native: return "native";
        case XdpMode::Generic: return "generic";
    }
    return "?";
}

Result<Link> attach_xdp(const bpf_program* prog, int ifindex, XdpMode mode) {
    LIBBPF_OPTS(bpf_link_create_opts, opts);
    opts.flags = mode == XdpMode::Native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
    int fd = bpf_link_create(bpf_program__fd(prog), ifindex, BPF_XDP, &opts);
    if (fd < 0)
        return Error::from_errno(
            errno, std::string("attach XDP (") + to_string(mode) + ") to ifindex " + std::to_string(ifindex));
    return Link(UniqueFd(fd));
}

Result<XdpAttachState> query_xdp(int ifindex) {
    LIBBPF_OPTS(bpf_xdp_query_opts, opts);
    if (int err = bpf_xdp_query(ifindex, 0, &opts); err != 0)
        return Error::from_errno(err, "query XDP on ifindex " + std::to_string(ifindex));
    XdpAttachState st;
    st.prog_id = opts.prog_id;
    st.native = opts.attach_mode == XDP_ATTACHED_DRV || opts.drv_prog_id != 0;
    st.generic = opts.attach_mode == XDP_ATTACHED_SKB || opts.skb_prog_id != 0;
    return st;
}

}  // namespace kxlb
