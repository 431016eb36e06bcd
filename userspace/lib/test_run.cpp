// BPF_PROG_TEST_RUN wrappers for XDP and tc programs.
#include "lib/test_run.hpp"

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <algorithm>

namespace kxlb {

Result<XdpRunInto> run_xdp_into(int prog_fd, std::span<const std::uint8_t> frame, std::span<std::uint8_t> out,
                                const XdpRunOptions& opts) {
    xdp_md ctx{};
    ctx.data_end = static_cast<__u32>(frame.size());
    ctx.ingress_ifindex = opts.ingress_ifindex;

    LIBBPF_OPTS(bpf_test_run_opts, topts);
    topts.data_in = frame.data();
    topts.data_size_in = static_cast<__u32>(frame.size());
    topts.data_out = out.data();
    topts.data_size_out = static_cast<__u32>(out.size());
    topts.repeat = opts.repeat;
    if (opts.ingress_ifindex != 0) {
        topts.ctx_in = &ctx;
        topts.ctx_size_in = sizeof(ctx);
    }
    if (bpf_prog_test_run_opts(prog_fd, &topts) != 0) return Error::from_errno(errno, "BPF_PROG_TEST_RUN");
    return XdpRunInto{topts.retval, topts.duration, std::min<std::size_t>(topts.data_size_out, out.size())};
}

Result<XdpRun> run_xdp(int prog_fd, std::span<const std::uint8_t> frame, const XdpRunOptions& opts) {
    XdpRun run;
    run.data.resize(frame.size() + opts.headroom_out);
    auto r = run_xdp_into(prog_fd, frame, run.data, opts);
    if (!r) return r.error();
    run.verdict = r->verdict;
    run.duration_ns = r->duration_ns;
    run.data.resize(r->out_bytes);
    return run;
}

Result<TcRun> run_tc(int prog_fd, std::span<const std::uint8_t> frame, std::size_t headroom_out) {
    TcRun run;
    run.data.resize(frame.size() + headroom_out);
    LIBBPF_OPTS(bpf_test_run_opts, topts);
    topts.data_in = frame.data();
    topts.data_size_in = static_cast<__u32>(frame.size());
    topts.data_out = run.data.data();
    topts.data_size_out = static_cast<__u32>(run.data.size());
    topts.repeat = 1;
    if (bpf_prog_test_run_opts(prog_fd, &topts) != 0) return Error::from_errno(errno, "BPF_PROG_TEST_RUN (tc)");
    run.verdict = static_cast<std::int32_t>(topts.retval);
    run.data.resize(std::min<std::size_t>(topts.data_size_out, run.data.size()));
    return run;
}

}  // namespace kxlb
