// Skeleton-backed owner of the DSR decapsulation program, and the C++ layout checks of its ABI
// (include/kxlb/decap.h). The skeleton header is included only here.
#include "lib/decap_program.hpp"

#include <net/if.h>
#include <netinet/in.h>

#include <cstddef>

#include "lib/bpf_map.hpp"
#include "lib/pinning.hpp"
#include "lib/skeleton.hpp"
#include "xdp_decap.skel.h"

namespace kxlb {

static_assert(sizeof(kxlb_decap_addr_key) == 20 && offsetof(kxlb_decap_addr_key, addr) == 0 &&
              offsetof(kxlb_decap_addr_key, family) == 16 && offsetof(kxlb_decap_addr_key, pad) == 17);
static_assert(sizeof(kxlb_decap_addr_value) == 4 && offsetof(kxlb_decap_addr_value, flags) == 0);
static_assert(KXLB_AF_INET == AF_INET && KXLB_AF_INET6 == AF_INET6);

KXLB_SKELETON_OPS(xdp_decap_bpf);

struct XdpDecapProgram::Impl {
    Skeleton<xdp_decap_bpf_ops> skel;
    TypedMap<kxlb_decap_addr_key, kxlb_decap_addr_value> addrs;
    PerCpuArray<kxlb_counter> reasons;
};

Result<kxlb_decap_addr_key> decap_addr_key(const IpAddr& addr) {
    if (addr.family != AF_INET && addr.family != AF_INET6)
        return Error::invalid("decap address must be IPv4 or IPv6 (family " + std::to_string(addr.family) + ")");
    kxlb_decap_addr_key key{};
    addr.to_words(key.addr);
    if (addr.family == AF_INET) key.addr[1] = key.addr[2] = key.addr[3] = 0;
    key.family = addr.family;
    return key;
}

Result<XdpDecapProgram> XdpDecapProgram::load(const std::string& pin_root) {
    auto skel = Skeleton<xdp_decap_bpf_ops>::open();
    if (!skel) return skel.error();
    if (!pin_root.empty())
        if (auto st = use_pinned_maps(skel.value()->obj, PinLayout{pin_root}); !st) return st.error();
    if (auto st = skel->load(); !st) return st.error();
    auto addrs = TypedMap<kxlb_decap_addr_key, kxlb_decap_addr_value>::bind(skel.value()->maps.kxlb_decap_addrs);
    if (!addrs) return addrs.error();
    auto reasons = PerCpuArray<kxlb_counter>::bind(skel.value()->maps.kxlb_decap_reasons);
    if (!reasons) return reasons.error();
    return XdpDecapProgram(std::make_unique<Impl>(Impl{std::move(skel).value(), *addrs, *reasons}));
}

XdpDecapProgram::XdpDecapProgram(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
XdpDecapProgram::~XdpDecapProgram() = default;
XdpDecapProgram::XdpDecapProgram(XdpDecapProgram&&) noexcept = default;
XdpDecapProgram& XdpDecapProgram::operator=(XdpDecapProgram&&) noexcept = default;

int XdpDecapProgram::prog_fd() const { return bpf_program__fd(impl_->skel->progs.kxlb_xdp_decap); }
const bpf_program* XdpDecapProgram::program() const { return impl_->skel->progs.kxlb_xdp_decap; }

Result<Link> XdpDecapProgram::attach(const std::string& ifname, XdpMode mode) const {
    const unsigned idx = ::if_nametoindex(ifname.c_str());
    if (idx == 0) return Error::from_errno(errno, "interface " + ifname);
    return attach(static_cast<int>(idx), mode);
}

Result<Link> XdpDecapProgram::attach_pinned(int ifindex, XdpMode mode, const std::string& link_path) const {
    return attach_xdp_pinned(program(), ifindex, mode, link_path);
}

Status XdpDecapProgram::add_address(const IpAddr& addr) {
    auto key = decap_addr_key(addr);
    if (!key) return key.error();
    return impl_->addrs.update(*key, kxlb_decap_addr_value{});
}

Result<bool> XdpDecapProgram::remove_address(const IpAddr& addr) {
    auto key = decap_addr_key(addr);
    if (!key) return key.error();
    return impl_->addrs.erase(*key);
}

Result<std::vector<IpAddr>> XdpDecapProgram::addresses() const {
    std::vector<IpAddr> out;
    auto st = impl_->addrs.for_each([&](const kxlb_decap_addr_key& key, const kxlb_decap_addr_value&) {
        out.push_back(IpAddr::from_words(key.family, key.addr));
    });
    if (!st) return st.error();
    return out;
}

Result<DecapReasons> XdpDecapProgram::reasons() const {
    DecapReasons out{};
    for (std::uint32_t i = 0; i < kDecapReasonCount; ++i) {
        auto per_cpu = impl_->reasons.lookup(i);
        if (!per_cpu) return per_cpu.error();
        for (const auto& c : *per_cpu) {
            out[i].packets += c.packets;
            out[i].bytes += c.bytes;
        }
    }
    return out;
}

Status XdpDecapProgram::reset_reasons() {
    for (std::uint32_t i = 0; i < kDecapReasonCount; ++i)
        if (auto st = impl_->reasons.fill(i, kxlb_counter{}); !st) return st;
    return {};
}

}  // namespace kxlb
