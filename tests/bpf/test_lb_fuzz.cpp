// bpf tier: randomized frames through the loaded load-balancer datapath (one BPF_PROG_TEST_RUN each). A seeded
// generator mixes fully random bytes with valid client, reply and non-VIP frames (v4/v6, TCP/UDP, new and
// existing flows) and mutations of them (byte flips, truncation, length fields, flags, checksums), while the
// datapath accumulates real conntrack state. Every frame is checked against the datapath's invariants:
//   1. a frame that leaves modified (XDP_TX / XDP_REDIRECT) has valid checksums (independent validator), unless
//      its input already had checksum errors: then the incremental update must have carried the error over
//      unchanged (same one's-complement residual) -- those frames are counted and reported as skipped;
//      NAT output differs from its input only in MACs, addresses, ports and checksums; ICMP errors are exact;
//   2. XDP_PASS output is byte-identical to the input;
//   3. counters add up: per chunk, the reason counters grew by the number of frames (and by verdict class), and
//      the parser's `frames` counter by the same number;
//   4. the verdict is XDP_PASS, XDP_TX, XDP_REDIRECT or XDP_DROP (never XDP_ABORTED).
// KXLB_FUZZ_SEED overrides the seed, KXLB_FUZZ_FRAMES the frame count (default 200000). Datapath timers (next-hop
// refresh, UDP idle timeout, TIME_WAIT) make a replay with the same seed close to, not exactly, the same run.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "bpf/lb_harness.hpp"
#include "common/checksum.hpp"
#include "common/privileges.hpp"

namespace kxlb::test {
namespace {

constexpr std::uint64_t kDefaultSeed = 0x6b786c62'f022'0001ULL;
constexpr std::size_t kDefaultFrames = 200000;
constexpr std::size_t kChunk = 1000;  // frames between counter checks
constexpr int kMaxReports = 5;        // failure reports printed per invariant
constexpr std::uint16_t kBackendPort = 8080;
constexpr std::uint8_t kTcp = IPPROTO_TCP, kUdp = IPPROTO_UDP, kIcmp4 = IPPROTO_ICMP, kIcmp6 = IPPROTO_ICMPV6;

std::uint64_t env_u64(const char* name, std::uint64_t dflt) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return dflt;
    return std::strtoull(v, nullptr, 0);
}

class Rng {
public:
    explicit Rng(std::uint64_t seed) : g_(seed) {}
    std::uint64_t next() { return g_(); }
    std::uint32_t below(std::uint32_t n) { return static_cast<std::uint32_t>(next() % n); }
    bool chance(std::uint32_t percent) { return below(100) < percent; }
    std::uint8_t byte() { return static_cast<std::uint8_t>(next()); }
    std::uint16_t u16() { return static_cast<std::uint16_t>(next()); }
    template <typename T>
    const T& pick(const std::vector<T>& v) {
        return v[below(static_cast<std::uint32_t>(v.size()))];
    }
    Bytes bytes(std::size_t n) {
        Bytes b(n);
        for (auto& x : b) x = byte();
        return b;
    }

private:
    std::mt19937_64 g_;
};

// ---- a small independent view of a frame's layers (for fixing checksums after mutation, and residuals) ----

struct Layers {
    bool ok = false;  // Ethernet (+ tags) + a complete IPv4/IPv6 header whose length field fits the frame
    bool v6 = false;
    std::size_t l3 = 0, l3_end = 0, l4 = 0;
    std::uint8_t proto = 0;
    bool fragment = false;
};

std::uint16_t rd16(const Bytes& b, std::size_t o) { return static_cast<std::uint16_t>(b[o] << 8 | b[o + 1]); }
void wr16(Bytes& b, std::size_t o, std::uint16_t v) {
    b[o] = static_cast<std::uint8_t>(v >> 8);
    b[o + 1] = static_cast<std::uint8_t>(v);
}

Layers layers(const Bytes& f) {
    Layers l;
    if (f.size() < 14) return l;
    std::size_t off = 14;
    std::uint16_t type = rd16(f, 12);
    for (int i = 0; i < 2 && (type == 0x8100 || type == 0x88a8) && off + 4 <= f.size(); ++i) {
        type = rd16(f, off + 2);
        off += 4;
    }
    l.l3 = off;
    if (type == 0x0800) {
        if (off + 20 > f.size() || (f[off] >> 4) != 4) return l;
        const std::size_t ihl = (f[off] & 0xf) * 4u, tot = rd16(f, off + 2);
        if (ihl < 20 || off + ihl > f.size() || tot < ihl || off + tot > f.size()) return l;
        l.l4 = off + ihl;
        l.l3_end = off + tot;
        l.proto = f[off + 9];
        l.fragment = (rd16(f, off + 6) & 0x3fff) != 0;
        l.ok = true;
    } else if (type == 0x86dd) {
        if (off + 40 > f.size() || (f[off] >> 4) != 6) return l;
        const std::size_t plen = rd16(f, off + 4);
        if (off + 40 + plen > f.size()) return l;
        l.v6 = true;
        l.l4 = off + 40;
        l.l3_end = off + 40 + plen;
        l.proto = f[off + 6];
        l.ok = true;
    }
    return l;
}

std::uint32_t pseudo_sum(const Bytes& f, const Layers& l, std::size_t len) {
    Bytes ph;
    const std::size_t src = l.v6 ? l.l3 + 8 : l.l3 + 12, alen = l.v6 ? 16 : 4;
    ph.insert(ph.end(), f.begin() + static_cast<std::ptrdiff_t>(src),
              f.begin() + static_cast<std::ptrdiff_t>(src + 2 * alen));
    ph.insert(ph.end(), {0, l.proto, static_cast<std::uint8_t>(len >> 8), static_cast<std::uint8_t>(len)});
    return ones_complement_sum(ph);
}

// The L4 region a checksum covers, [l4, end), and the checksum field offset; false when there is none.
bool l4_region(const Bytes& f, const Layers& l, std::size_t& end, std::size_t& csum) {
    if (!l.ok || l.fragment) return false;
    const std::size_t avail = l.l3_end - l.l4;
    switch (l.proto) {
        case IPPROTO_TCP:
            if (avail < 20) return false;
            end = l.l3_end;
            csum = l.l4 + 16;
            return true;
        case IPPROTO_UDP: {
            if (avail < 8) return false;
            const std::size_t ulen = rd16(f, l.l4 + 4);
            if (ulen < 8 || ulen > avail) return false;
            end = l.l4 + ulen;
            csum = l.l4 + 6;
            return true;
        }
        case IPPROTO_ICMP:
        case IPPROTO_ICMPV6:
            if (avail < 8 || (l.proto == IPPROTO_ICMP) == l.v6) return false;
            end = l.l3_end;
            csum = l.l4 + 2;
            return true;
        default: return false;
    }
}

// Recomputes the IPv4 header and L4 checksums of a (mutated) frame where its lengths allow.
void fix_checksums(Bytes& f) {
    const Layers l = layers(f);
    if (!l.ok) return;
    if (!l.v6) {
        const std::size_t ihl = (f[l.l3] & 0xf) * 4u;
        wr16(f, l.l3 + 10, 0);
        wr16(f, l.l3 + 10, static_cast<std::uint16_t>(~ones_complement_sum(std::span(f).subspan(l.l3, ihl))));
    }
    std::size_t end = 0, csum = 0;
    if (!l4_region(f, l, end, csum)) return;
    wr16(f, csum, 0);
    const std::uint32_t ph = l.proto == IPPROTO_ICMP ? 0 : pseudo_sum(f, l, end - l.l4);
    auto c = static_cast<std::uint16_t>(~ones_complement_sum(std::span(f).subspan(l.l4, end - l.l4), ph));
    if (l.proto == IPPROTO_UDP && c == 0) c = 0xffff;
    wr16(f, csum, c);
}

// One's-complement residuals (sum including the stored checksum; 0xffff when valid, 0 normalised to 0xffff) of
// the IPv4 header and of the L4 checksum region. An incremental update must leave both unchanged.
struct Residual {
    std::uint16_t ip = 0xffff, l4 = 0xffff;
    bool l4_zero_udp4 = false;  // IPv4 UDP without a checksum
    bool operator==(const Residual&) const = default;
};

Residual residual(const Bytes& f) {
    Residual r;
    const Layers l = layers(f);
    auto norm = [](std::uint16_t v) { return v == 0 ? std::uint16_t{0xffff} : v; };
    if (!l.ok) return r;
    if (!l.v6) r.ip = norm(ones_complement_sum(std::span(f).subspan(l.l3, (f[l.l3] & 0xf) * 4u)));
    std::size_t end = 0, csum = 0;
    if (!l4_region(f, l, end, csum)) return r;
    if (l.proto == IPPROTO_UDP && !l.v6 && rd16(f, csum) == 0) {
        r.l4_zero_udp4 = true;
        return r;
    }
    r.l4 = norm(ones_complement_sum(std::span(f).subspan(l.l4, end - l.l4), pseudo_sum(f, l, end - l.l4)));
    return r;
}

// ---- frame generation ----

enum class Kind { Random, Client, Reply, Other, MutClient, MutReply, MutOther };
constexpr std::array<const char*, 7> kKindNames = {"random",         "client",        "reply",        "other",
                                                   "mutated-client", "mutated-reply", "mutated-other"};

struct Gen {
    Packet frame;
    int ingress = 0;
    Kind kind = Kind::Random;
};

// A forwarded frame as it left (toward a backend): replies are built by swapping its endpoints.
struct FlowOut {
    bool v6;
    std::uint8_t proto;
    Bytes smac, dmac;
    std::string src, dst;  // node, backend
    std::uint16_t sport, dport;
    int ingress;  // where the backend's replies arrive
};
// A client 5-tuple that was forwarded (to revisit established flows).
struct ClientTuple {
    bool v6;
    std::uint8_t proto;
    std::string src;
    std::uint16_t sport, dport;
};

std::string ip_text(const Bytes& f, std::size_t off, bool v6) {
    char buf[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(v6 ? AF_INET6 : AF_INET, f.data() + off, buf, sizeof buf);
    return buf;
}

class FrameGen {
public:
    explicit FrameGen(Rng& rng) : rng_(rng) {}

    Gen next() {
        const std::uint32_t r = rng_.below(100);
        if (r < 18) return random_frame();
        if (r < 36) return {client_frame(), 0, Kind::Client};
        if (r < 48 && !outs_.empty()) return reply_frame(Kind::Reply);
        if (r < 56) return {other_frame(), 0, Kind::Other};
        if (r < 80) return mutate({client_frame(), rng_.chance(85) ? 0 : 1, Kind::MutClient});
        if (r < 92 && !outs_.empty()) return mutate(reply_frame(Kind::MutReply));
        return mutate({other_frame(), 0, Kind::MutOther});
    }

    // Learns from a forwarded client frame (its output names the backend and SNAT port).
    void learn(const Gen& g, const Bytes& out, std::uint32_t verdict) {
        if (g.kind != Kind::Client) return;
        const Layers in = layers(g.frame.bytes), o = layers(out);
        if (!in.ok || !o.ok || in.l3 != 14 || o.l3 != 14 || in.v6 != o.v6 || in.proto != o.proto) return;
        if (o.proto != IPPROTO_TCP && o.proto != IPPROTO_UDP) return;
        const std::size_t a = o.v6 ? 16 : 4, s = o.v6 ? 22 : 26;
        FlowOut f{o.v6,
                  o.proto,
                  Bytes(out.begin() + 6, out.begin() + 12),
                  Bytes(out.begin(), out.begin() + 6),
                  ip_text(out, s, o.v6),
                  ip_text(out, s + a, o.v6),
                  rd16(out, o.l4),
                  rd16(out, o.l4 + 2),
                  verdict == XDP_REDIRECT ? 1 : 0};
        remember(outs_, std::move(f));
        remember(tuples_, ClientTuple{in.v6, in.proto, ip_text(g.frame.bytes, s, in.v6), rd16(g.frame.bytes, in.l4),
                                      rd16(g.frame.bytes, in.l4 + 2)});
    }

    std::size_t known_flows() const { return outs_.size(); }

private:
    template <typename T>
    void remember(std::vector<T>& pool, T v) {
        if (pool.size() < 4096) pool.push_back(std::move(v));
        else pool[rng_.below(4096)] = std::move(v);
    }

    std::string payload() {
        const std::uint32_t r = rng_.below(100);
        const std::size_t n = r < 30 ? 0 : r < 90 ? rng_.below(64) : rng_.below(1400);
        Bytes b = rng_.bytes(n);
        return std::string(b.begin(), b.end());
    }
    std::uint8_t tcp_flags() {
        const std::uint32_t r = rng_.below(100);
        if (r < 35) return TCP_SYN;
        if (r < 65) return rng_.chance(50) ? TCP_ACK : std::uint8_t(TCP_ACK | TCP_PSH);
        if (r < 75) return TCP_FIN | TCP_ACK;
        if (r < 82) return rng_.chance(50) ? TCP_RST : std::uint8_t(TCP_RST | TCP_ACK);
        if (r < 87) return TCP_SYN | TCP_ACK;
        return rng_.byte();
    }
    PacketBuilder& l4(PacketBuilder& b, std::uint8_t proto, std::uint16_t sport, std::uint16_t dport, bool v6) {
        if (proto == IPPROTO_TCP) {
            TcpOpts o{.flags = tcp_flags(),
                      .seq = static_cast<std::uint32_t>(rng_.next()),
                      .ack = static_cast<std::uint32_t>(rng_.next())};
            if (rng_.chance(15)) o.options = {2, 4, 0x05, 0xb4};  // MSS
            b.tcp(sport, dport, o);
        } else if (proto == IPPROTO_UDP) {
            UdpOpts o;
            if (!v6 && rng_.chance(10)) o.checksum = 0;
            b.udp(sport, dport, o);
        } else {
            b.icmp(v6 ? (rng_.chance(50) ? 128 : 1) : (rng_.chance(50) ? 8 : 3), 0,
                   static_cast<std::uint32_t>(rng_.next()));
        }
        const std::string p = payload();
        if (!p.empty()) b.payload(p);
        return b;
    }

    // Client -> (mostly) a frontend: every service kind, existing flows revisited, some non-frontend ports.
    Packet client_frame() {
        if (!tuples_.empty() && rng_.chance(30)) {
            const ClientTuple& t = rng_.pick(tuples_);
            PacketBuilder b;
            b.eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0));
            if (t.v6) b.ipv6(t.src, LbNet::kVip6);
            else b.ipv4(t.src, LbNet::kVip4);
            return l4(b, t.proto, t.sport, t.dport, t.v6).build();
        }
        const bool v6 = rng_.chance(50);
        const std::uint32_t pr = rng_.below(100);
        const std::uint8_t icmp = v6 ? kIcmp6 : kIcmp4;
        const std::uint8_t proto = pr < 48 ? kTcp : pr < 96 ? kUdp : icmp;
        static const std::vector<std::uint16_t> tcp_ports = {80, 80, 80, 81, 8000, 8001, 8002, 443};
        static const std::vector<std::uint16_t> udp_ports = {53, 53, 53, 54, 8053, 8054, 8055, 5353};
        std::uint16_t dport = proto == IPPROTO_TCP ? rng_.pick(tcp_ports) : rng_.pick(udp_ports);
        if (rng_.chance(3)) dport = rng_.u16();
        static const std::vector<std::string> src4 = {LbNet::kClient4, LbNet::kClient4, "10.0.0.101", "192.0.2.7",
                                                      "10.0.0.11"};
        static const std::vector<std::string> src6 = {LbNet::kClient6, LbNet::kClient6, "fd00::101", "2001:db8::7",
                                                      "fd00::11"};
        static const std::vector<std::string> dst4 = {LbNet::kVip4, LbNet::kVip4,  LbNet::kVip4,
                                                      LbNet::kVip4, LbNet::kNode4, "10.96.0.11"};
        static const std::vector<std::string> dst6 = {LbNet::kVip6, LbNet::kVip6,  LbNet::kVip6,
                                                      LbNet::kVip6, LbNet::kNode6, "fd96::11"};
        const std::uint16_t sport = static_cast<std::uint16_t>(1024 + rng_.below(rng_.chance(50) ? 64 : 60000));
        PacketBuilder b;
        b.eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0));
        if (v6) b.ipv6(rng_.pick(src6), rng_.pick(dst6));
        else b.ipv4(rng_.pick(src4), rng_.pick(dst4));
        return l4(b, proto, sport, dport, v6).build();
    }

    // A reply from a backend a flow was sent to (or a near miss: another port in the SNAT range).
    Gen reply_frame(Kind kind) {
        const FlowOut& f = rng_.pick(outs_);
        Mac src, dst;
        std::copy(f.dmac.begin(), f.dmac.end(), src.b.begin());
        std::copy(f.smac.begin(), f.smac.end(), dst.b.begin());
        std::uint16_t dport = f.sport;
        if (rng_.chance(10)) dport = static_cast<std::uint16_t>(61000 + rng_.below(4536));
        PacketBuilder b;
        b.eth(src, dst);
        if (f.v6) b.ipv6(f.dst, f.src);
        else b.ipv4(f.dst, f.src);
        return {l4(b, f.proto, f.dport, dport, f.v6).build(), f.ingress, kind};
    }

    // Everything that is not a frontend's TCP/UDP: ARP, other ethertypes, VLAN, options, fragments, extension
    // headers, ICMP and other protocols to VIPs, traffic for the node.
    Packet other_frame() {
        PacketBuilder b;
        b.eth(mac(LbNet::kClientMac), mac(LbNet::kNodeMac0));
        const bool v6 = rng_.chance(50);
        const std::string vip = v6 ? LbNet::kVip6 : LbNet::kVip4;
        const std::uint8_t proto = rng_.chance(50) ? IPPROTO_TCP : IPPROTO_UDP;
        const std::uint16_t port = proto == IPPROTO_TCP ? 80 : 53;
        switch (rng_.below(9)) {
            case 0:
                return b.eth_type(rng_.chance(50) ? 0x0806 : rng_.u16())
                    .payload(rng_.bytes(28 + rng_.below(40)))
                    .build();
            case 1:
                b.vlan(static_cast<std::uint16_t>(rng_.below(4096)));
                if (rng_.chance(30)) b.vlan(static_cast<std::uint16_t>(rng_.below(4096)));
                if (v6) b.ipv6(LbNet::kClient6, vip);
                else b.ipv4(LbNet::kClient4, vip);
                return l4(b, proto, 1234, port, v6).build();
            case 2: {
                Ipv4Opts o;
                o.options = rng_.bytes(1 + rng_.below(40));
                b.ipv4(LbNet::kClient4, rng_.chance(70) ? LbNet::kVip4 : LbNet::kNode4, o);
                return l4(b, proto, 1234, port, false).build();
            }
            case 3: {
                Ipv4Opts o;
                o.mf = rng_.chance(50);
                o.frag_offset = static_cast<std::uint16_t>(o.mf && rng_.chance(50) ? 0 : 1 + rng_.below(0x1fff));
                if (o.frag_offset != 0) o.protocol = proto;
                b.ipv4(LbNet::kClient4, LbNet::kVip4, o);
                if (o.frag_offset == 0) return l4(b, proto, 1234, port, false).build();
                return b.payload(rng_.bytes(8 + rng_.below(64))).build();
            }
            case 4: {
                static const std::vector<std::uint8_t> ext = {0, 43, 44, 60, 51};
                b.ipv6(LbNet::kClient6, LbNet::kVip6).ipv6_ext(rng_.pick(ext), rng_.bytes(6));
                return l4(b, proto, 1234, port, true).build();
            }
            case 5:
                if (v6)
                    b.ipv6(LbNet::kClient6, vip, Ipv6Opts{.next_header = static_cast<std::uint8_t>(rng_.below(256))});
                else b.ipv4(LbNet::kClient4, vip, Ipv4Opts{.protocol = static_cast<std::uint8_t>(rng_.below(256))});
                return b.payload(rng_.bytes(rng_.below(64))).build();
            case 6:
                if (v6) b.ipv6(LbNet::kClient6, vip);
                else b.ipv4(LbNet::kClient4, vip);
                return l4(b, v6 ? kIcmp6 : kIcmp4, 0, 0, v6).build();
            case 7:  // to the node's SNAT address and range, never forwarded
                if (v6) b.ipv6(LbNet::backend6(1 + static_cast<int>(rng_.below(3))), LbNet::kNode6);
                else b.ipv4(LbNet::backend4(1 + static_cast<int>(rng_.below(3))), LbNet::kNode4);
                return l4(b, proto, kBackendPort, static_cast<std::uint16_t>(61000 + rng_.below(4536)), v6).build();
            default:
                if (v6) b.ipv6(LbNet::kClient6, "fd00::77");
                else b.ipv4(LbNet::kClient4, "10.0.0.77");
                return l4(b, proto, 1234, 22, v6).build();
        }
    }

    // Fully random bytes; half of them get an IP-looking start (ethertype, version, addresses) to go deeper.
    Gen random_frame() {
        const std::size_t n = 14 + (rng_.chance(90) ? rng_.below(120) : rng_.below(1500));
        Bytes b = rng_.bytes(n);
        if (rng_.chance(50) && n >= 34) {
            const bool v6 = rng_.chance(50);
            wr16(b, 12, v6 ? 0x86dd : 0x0800);
            if (v6) {
                b[14] = static_cast<std::uint8_t>(0x60 | (b[14] & 0x0f));
                if (n >= 54) {
                    const auto a = ipv6_addr(LbNet::kVip6);
                    std::copy(a.begin(), a.end(), b.begin() + 38);
                    b[20] = rng_.chance(50) ? IPPROTO_TCP : IPPROTO_UDP;
                    wr16(b, 18, static_cast<std::uint16_t>(rng_.chance(50) ? n - 54 : rng_.u16() % 128));
                }
            } else {
                b[14] = 0x45;
                const auto a = ipv4_addr(LbNet::kVip4);
                std::copy(a.begin(), a.end(), b.begin() + 30);
                b[23] = rng_.chance(50) ? IPPROTO_TCP : IPPROTO_UDP;
                wr16(b, 16, static_cast<std::uint16_t>(rng_.chance(50) ? n - 14 : rng_.u16() % 128));
                wr16(b, 20, rng_.chance(80) ? 0 : rng_.u16());
            }
            if (rng_.chance(50)) fix_checksums(b);
        }
        Packet p;
        p.bytes = std::move(b);
        return {std::move(p), rng_.chance(85) ? 0 : 1, Kind::Random};
    }

    Gen mutate(Gen g) {
        Bytes& f = g.frame.bytes;
        const Layers l = layers(f);
        const int ops = 1 + static_cast<int>(rng_.below(3));
        for (int i = 0; i < ops && !f.empty(); ++i) {
            switch (rng_.below(9)) {
                case 0:  // flip bits in one byte, mostly in the headers
                case 1: {
                    const std::size_t at =
                        rng_.chance(80) ? rng_.below(static_cast<std::uint32_t>(std::min<std::size_t>(f.size(), 80)))
                                        : rng_.below(static_cast<std::uint32_t>(f.size()));
                    f[at] ^= static_cast<std::uint8_t>(1 + rng_.below(255));
                    break;
                }
                case 2:  // truncate (never below an Ethernet header)
                    f.resize(14 + rng_.below(static_cast<std::uint32_t>(f.size() - 13)));
                    break;
                case 3: {  // trailing bytes
                    const Bytes extra = rng_.bytes(1 + rng_.below(32));
                    f.insert(f.end(), extra.begin(), extra.end());
                    break;
                }
                case 4:  // an IP length field
                    if (!l.ok || l.l3 + 6 > f.size()) break;
                    if (l.v6)
                        wr16(f, l.l3 + 4,
                             rng_.chance(50) ? rng_.u16()
                                             : static_cast<std::uint16_t>(rd16(f, l.l3 + 4) + rng_.below(9) - 4));
                    else if (rng_.chance(30)) f[l.l3] = static_cast<std::uint8_t>(0x40 | rng_.below(16));
                    else
                        wr16(f, l.l3 + 2,
                             rng_.chance(50) ? rng_.u16()
                                             : static_cast<std::uint16_t>(rd16(f, l.l3 + 2) + rng_.below(9) - 4));
                    break;
                case 5:  // an L4 length field: UDP length or TCP data offset
                    if (!l.ok || l.l4 + 14 > f.size()) break;
                    if (l.proto == IPPROTO_UDP)
                        wr16(f, l.l4 + 4,
                             rng_.chance(50) ? rng_.u16()
                                             : static_cast<std::uint16_t>(rd16(f, l.l4 + 4) + rng_.below(9) - 4));
                    else if (l.proto == IPPROTO_TCP) f[l.l4 + 12] = static_cast<std::uint8_t>(rng_.below(16) << 4);
                    break;
                case 6:  // TCP flags
                    if (l.ok && l.proto == IPPROTO_TCP && l.l4 + 14 <= f.size()) f[l.l4 + 13] = rng_.byte();
                    break;
                case 7:  // a checksum field
                    if (!l.ok) break;
                    if (!l.v6 && rng_.chance(30) && l.l3 + 12 <= f.size()) wr16(f, l.l3 + 10, rng_.u16());
                    else if (l.proto == IPPROTO_TCP && l.l4 + 18 <= f.size())
                        wr16(f, l.l4 + 16, rng_.chance(20) ? 0 : rng_.u16());
                    else if (l.proto == IPPROTO_UDP && l.l4 + 8 <= f.size())
                        wr16(f, l.l4 + 6, rng_.chance(40) ? 0 : rng_.u16());
                    break;
                default:  // ethertype / IP version / protocol
                    if (rng_.chance(40)) wr16(f, 12, rng_.chance(50) ? std::uint16_t{0x8100} : rng_.u16());
                    else if (l.ok && l.l3 + 10 <= f.size()) f[l.v6 ? l.l3 + 6 : l.l3 + 9] = rng_.byte();
                    break;
            }
        }
        if (rng_.chance(50)) fix_checksums(f);
        return g;
    }

    Rng& rng_;
    std::vector<FlowOut> outs_;
    std::vector<ClientTuple> tuples_;
};

// ---- the test ----

enum Inv { kInvChecksum, kInvPassIdentical, kInvCounters, kInvVerdict, kInvNatShape, kInvIcmpShape, kInvCount };
constexpr std::array<const char*, kInvCount> kInvNames = {
    "1: modified frame has checksum errors",
    "2: XDP_PASS frame was modified",
    "3: counters do not add up",
    "4: verdict outside PASS/TX/REDIRECT/DROP",
    "1b: NAT output changed more than MACs/addresses/ports/checksums",
    "1c: ICMP error is not exact"};

struct Stats {
    std::array<std::uint64_t, kInvCount> failures{};
    std::map<std::uint32_t, std::uint64_t> verdicts;
    std::array<std::uint64_t, kKindNames.size()> kinds{};
    std::uint64_t nat_out = 0, icmp_out = 0, skipped = 0, checked_clean = 0;
};

bool is_icmp_error_out(const Bytes& in, const Bytes& out) {
    const Layers o = layers(out), i = layers(in);
    return o.ok && i.ok && ((!o.v6 && o.proto == IPPROTO_ICMP) || (o.v6 && o.proto == IPPROTO_ICMPV6)) &&
           i.proto != o.proto;
}

// Offsets a full-NAT rewrite may change: MACs, IPv4 checksum, addresses, ports, L4 checksum.
bool nat_may_change(const Layers& l, std::size_t off) {
    if (off < 12) return true;
    if (!l.v6 && ((off >= l.l3 + 10 && off < l.l3 + 12) || (off >= l.l3 + 12 && off < l.l3 + 20))) return true;
    if (l.v6 && off >= l.l3 + 8 && off < l.l3 + 40) return true;
    if (off >= l.l4 && off < l.l4 + 4) return true;
    if (l.proto == IPPROTO_TCP && off >= l.l4 + 16 && off < l.l4 + 18) return true;
    if (l.proto == IPPROTO_UDP && off >= l.l4 + 6 && off < l.l4 + 8) return true;
    return false;
}

std::string icmp_error_problem(const Bytes& in, const Bytes& out) {
    const Layers i = layers(in);
    const std::size_t ip = i.v6 ? 40 : 20, want = 14 + ip + 8 + ip + 8;
    if (out.size() != want) return "size " + std::to_string(out.size()) + ", want " + std::to_string(want);
    if (!std::equal(out.begin(), out.begin() + 6, in.begin() + 6) ||
        !std::equal(out.begin() + 6, out.begin() + 12, in.begin()))
        return "MACs not swapped";
    if (!std::equal(out.begin() + static_cast<std::ptrdiff_t>(14 + ip + 8), out.end(), in.begin() + 14))
        return "quote is not the original IP header + 8 bytes";
    const std::size_t a = i.v6 ? 16 : 4, s = i.v6 ? 22 : 26;
    if (!std::equal(out.begin() + static_cast<std::ptrdiff_t>(s), out.begin() + static_cast<std::ptrdiff_t>(s + a),
                    in.begin() + static_cast<std::ptrdiff_t>(s + a)) ||
        !std::equal(out.begin() + static_cast<std::ptrdiff_t>(s + a),
                    out.begin() + static_cast<std::ptrdiff_t>(s + 2 * a), in.begin() + static_cast<std::ptrdiff_t>(s)))
        return "addresses not swapped";
    const std::uint8_t type = out[14 + ip], code = out[14 + ip + 1];
    if (i.v6 ? (type != 1 || code != 4) : (type != 3 || code != 3)) return "not a port unreachable";
    auto errs = checksum_errors(out);
    if (!errs.empty()) return errs.front();
    return "";
}

class LbFuzz : public ::testing::Test {
protected:
    void SetUp() override {
        KXLB_REQUIRE_ROOT();
        auto h = LbHarness::create();
        ASSERT_TRUE(h) << h.error().message;
        h_ = std::move(h).value();
        auto& lb = h_->lb();
        for (bool v6 : {false, true}) {
            const std::string vip = v6 ? LbNet::kVip6 : LbNet::kVip4;
            std::vector<std::string> bes;
            for (int i = 1; i <= 3; ++i) bes.push_back(v6 ? LbNet::backend6(i) : LbNet::backend4(i));
            const std::string far = v6 ? LbNet::kFar6 : LbNet::kFar4, nn = v6 ? LbNet::kNoNeigh6 : LbNet::kNoNeigh4,
                              nr = v6 ? LbNet::kNoRoute6 : LbNet::kNoRoute4;
            for (auto [port, proto, backends] :
                 std::vector<std::tuple<std::uint16_t, std::uint8_t, std::vector<std::string>>>{
                     {80, IPPROTO_TCP, bes},
                     {53, IPPROTO_UDP, bes},
                     {81, IPPROTO_TCP, {}},
                     {54, IPPROTO_UDP, {}},
                     {8000, IPPROTO_TCP, {far}},
                     {8053, IPPROTO_UDP, {far}},
                     {8001, IPPROTO_TCP, {nn}},
                     {8054, IPPROTO_UDP, {nn}},
                     {8002, IPPROTO_TCP, {nr}},
                     {8055, IPPROTO_UDP, {nr}}}) {
                auto r = lb.upsert_service(make_service(vip, port, proto, backends, kBackendPort));
                ASSERT_TRUE(r) << r.error().message;
            }
        }
        // Both node NICs are kxlb ports (a node where kxlb runs on eth0 and eth1). With eth0 left out, frames of
        // eth0 flows that arrive on eth1 end in XDP_ABORTED: a known datapath bug, pinned down by
        // LbGoldenFamily.EstablishedFlowArrivingOnOtherNicIsNeverAborted, not re-reported here on every frame.
        ASSERT_TRUE(h_->add_tx_port_eth1());
        ASSERT_TRUE(h_->add_tx_port(h_->eth0()));
    }

    std::unique_ptr<LbHarness> h_;
};

TEST_F(LbFuzz, RandomAndMutatedFramesKeepInvariants) {
    KXLB_REQUIRE_ROOT();
    const std::uint64_t seed = env_u64("KXLB_FUZZ_SEED", kDefaultSeed);
    const std::size_t frames = env_u64("KXLB_FUZZ_FRAMES", kDefaultFrames);
    std::printf("[ LbFuzz   ] seed 0x%llx (KXLB_FUZZ_SEED=0x%llx to replay), %zu frames\n",
                static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed), frames);
    RecordProperty("seed", std::to_string(seed));
    Rng rng(seed);
    FrameGen gen(rng);
    Stats st;
    std::array<int, kInvCount> reported{};

    auto report = [&](Inv inv, std::size_t i, const Gen& g, std::uint32_t verdict, const Bytes& out,
                      const std::string& why) {
        ++st.failures[inv];
        if (reported[inv]++ >= kMaxReports) return;
        ADD_FAILURE() << "invariant " << kInvNames[inv] << " (seed 0x" << std::hex << seed << std::dec << ", frame #"
                      << i << ", " << kKindNames[static_cast<std::size_t>(g.kind)] << ", ingress eth" << g.ingress
                      << ", verdict " << verdict << ")\n"
                      << why << "\ninput (" << g.frame.size() << " bytes):\n"
                      << hexdump(g.frame.bytes) << "output (" << out.size() << " bytes):\n"
                      << hexdump(out);
    };

    // Mirrors the datapath's verdict for each reason, to cross-check counters against verdicts per chunk.
    // By the reason naming rule of include/kxlb/abi.h: drop_* drop, tx_* (an ICMP answer) and fwd_tx go out
    // the ingress NIC, fwd_redirect to another (and their DSR twins fwd_encap_*), fwd_local and pass_* to the
    // kernel.
    auto verdict_of = [](std::size_t reason) -> std::uint32_t {
        const std::string_view name = kReasonNames[reason];
        if (name.starts_with("drop_")) return XDP_DROP;
        if (name.starts_with("tx_") || name == "fwd_tx" || name == "fwd_encap_tx") return XDP_TX;
        if (name == "fwd_redirect" || name == "fwd_encap_redirect") return XDP_REDIRECT;
        return XDP_PASS;
    };

    const auto t0 = std::chrono::steady_clock::now();
    std::uint64_t frames_before = h_->parse_stats()[KXLB_PS_FRAMES].packets;
    auto reasons_before = h_->reason_packets();
    std::map<std::uint32_t, std::uint64_t> chunk_verdicts;
    std::size_t chunk_frames = 0;

    auto check_chunk = [&](std::size_t i) {
        const auto reasons = h_->reason_packets();
        const std::uint64_t fr = h_->parse_stats()[KXLB_PS_FRAMES].packets;
        std::uint64_t total = 0;
        std::map<std::uint32_t, std::uint64_t> by_verdict;
        for (std::size_t r = 0; r < kReasonCount; ++r) {
            total += reasons[r] - reasons_before[r];
            by_verdict[verdict_of(r)] += reasons[r] - reasons_before[r];
        }
        std::string why;
        if (total != chunk_frames)
            why += "reason counters grew by " + std::to_string(total) + ", frames run " + std::to_string(chunk_frames) +
                   "\n";
        if (fr - frames_before != chunk_frames)
            why += "parse stat frames grew by " + std::to_string(fr - frames_before) + ", frames run " +
                   std::to_string(chunk_frames) + "\n";
        for (std::uint32_t v : {XDP_PASS, XDP_TX, XDP_REDIRECT, XDP_DROP})
            if (by_verdict[v] != chunk_verdicts[v])
                why += "verdict " + std::to_string(v) + ": " + std::to_string(chunk_verdicts[v]) +
                       " frames, reasons of that class grew by " + std::to_string(by_verdict[v]) + "\n";
        if (!why.empty()) {
            ++st.failures[kInvCounters];
            if (reported[kInvCounters]++ < kMaxReports)
                ADD_FAILURE() << "invariant " << kInvNames[kInvCounters] << " in the chunk ending at frame #" << i
                              << " (seed 0x" << std::hex << seed << std::dec << "):\n"
                              << why;
        }
        reasons_before = reasons;
        frames_before = fr;
        chunk_verdicts.clear();
        chunk_frames = 0;
    };

    // Configuration phases, so the run also covers SNAT exhaustion / expiry and a family without SNAT address.
    auto apply_phase = [&](std::size_t i) {
        LbConfig cfg = default_lb_config();
        if (i == frames / 2) {
            cfg.snat_port_lo = 61000;
            cfg.snat_port_hi = 61003;
            cfg.tcp_timewait_s = 1;
            cfg.udp_timeout_s = 1;
        } else if (i == frames * 65 / 100) {
            cfg.snat_v6 = IpAddr{};
        } else if (i != frames * 8 / 10) {
            return;
        }
        if (auto st = h_->set_config(cfg); !st) ADD_FAILURE() << st.error().message;
    };

    h_->in_node([&] {
        for (std::size_t i = 0; i < frames; ++i) {
            apply_phase(i);
            const Gen g = gen.next();
            ++st.kinds[static_cast<std::size_t>(g.kind)];
            auto r = h_->run_in_node(g.frame.span(), g.ingress);
            if (!r) {
                ADD_FAILURE() << "BPF_PROG_TEST_RUN failed on frame #" << i << ": " << r.error().message << "\n"
                              << hexdump(g.frame.bytes);
                return;
            }
            ++chunk_frames;
            const std::uint32_t v = r->verdict;
            const Bytes& out = r->data;
            ++st.verdicts[v];
            ++chunk_verdicts[v];

            // 4. verdicts
            if (v != XDP_PASS && v != XDP_TX && v != XDP_REDIRECT && v != XDP_DROP)
                report(kInvVerdict, i, g, v, out, "verdict " + std::to_string(v));
            // 2. XDP_PASS leaves the frame alone
            if (v == XDP_PASS && out != g.frame.bytes)
                report(kInvPassIdentical, i, g, v, out, diff_frames(g.frame.span(), out));
            // 1. frames that leave modified
            if (v == XDP_TX || v == XDP_REDIRECT || (v == XDP_PASS && out != g.frame.bytes)) {
                if (is_icmp_error_out(g.frame.bytes, out)) {
                    ++st.icmp_out;
                    if (auto why = icmp_error_problem(g.frame.bytes, out); !why.empty())
                        report(kInvIcmpShape, i, g, v, out, why);
                } else {
                    ++st.nat_out;
                    const Layers l = layers(out);
                    std::string shape;
                    if (out.size() != g.frame.size()) shape = "size changed";
                    for (std::size_t k = 0; shape.empty() && k < out.size(); ++k)
                        if (out[k] != g.frame.bytes[k] && !nat_may_change(l, k))
                            shape = "byte " + std::to_string(k) + " (" + describe_offset(out, k) + ") changed";
                    if (!shape.empty()) report(kInvNatShape, i, g, v, out, shape);
                    if (checksum_errors(g.frame.bytes).empty()) {
                        ++st.checked_clean;
                        if (auto errs = checksum_errors(out); !errs.empty())
                            report(kInvChecksum, i, g, v, out, errs.front());
                    } else {
                        ++st.skipped;
                        const Residual a = residual(g.frame.bytes), b = residual(out);
                        if (!(a == b))
                            report(kInvChecksum, i, g, v, out,
                                   "the input's checksum error was not carried over unchanged (residuals ip " +
                                       std::to_string(a.ip) + "->" + std::to_string(b.ip) + ", l4 " +
                                       std::to_string(a.l4) + "->" + std::to_string(b.l4) + ")");
                    }
                }
                gen.learn(g, out, v);
            }
            if (chunk_frames == kChunk) check_chunk(i);
        }
        if (chunk_frames > 0) check_chunk(frames);
    });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // End-to-end totals: every frame counted once by the parser and once under a reason.
    EXPECT_EQ(h_->parse_stats()[KXLB_PS_FRAMES].packets, frames);
    EXPECT_EQ(h_->reasons_total(), frames);

    const auto reasons = h_->reason_packets();
    std::string summary = "[ LbFuzz   ] " + std::to_string(frames) + " frames in " + std::to_string(secs) + " s (" +
                          std::to_string(static_cast<long>(frames / (secs > 0 ? secs : 1))) + "/s)\n  kinds:";
    for (std::size_t k = 0; k < kKindNames.size(); ++k)
        summary += std::string(" ") + kKindNames[k] + "=" + std::to_string(st.kinds[k]);
    summary += "\n  verdicts:";
    for (auto [v, n] : st.verdicts) summary += " " + std::to_string(v) + "=" + std::to_string(n);
    summary += "\n  reasons:";
    for (std::size_t r = 0; r < kReasonCount; ++r)
        if (reasons[r] != 0)
            summary += std::string(" ") + std::string(reason_name(static_cast<kxlb_reason>(r))) + "=" +
                       std::to_string(reasons[r]);
    char frac[512];
    std::snprintf(frac, sizeof frac,
                  "\n  modified frames: %llu NAT + %llu ICMP; NAT checksums validated %llu, skipped (bad input "
                  "checksums, residual checked) %llu = %.2f%% of NAT output, %.2f%% of all frames\n",
                  static_cast<unsigned long long>(st.nat_out), static_cast<unsigned long long>(st.icmp_out),
                  static_cast<unsigned long long>(st.checked_clean), static_cast<unsigned long long>(st.skipped),
                  st.nat_out ? 100.0 * static_cast<double>(st.skipped) / static_cast<double>(st.nat_out) : 0.0,
                  100.0 * static_cast<double>(st.skipped) / static_cast<double>(frames));
    summary += frac;
    summary += "  flows learnt for replies: " + std::to_string(gen.known_flows()) + "\n";
    std::printf("%s", summary.c_str());
    RecordProperty("frames", std::to_string(frames));
    RecordProperty("skipped", std::to_string(st.skipped));

    for (std::size_t k = 0; k < kInvCount; ++k)
        EXPECT_EQ(st.failures[k], 0u) << "invariant " << kInvNames[k] << " failed " << st.failures[k] << " times";
    // The mix must actually exercise the translating paths, and skipping must stay a minority.
    EXPECT_GT(st.checked_clean, frames / 20);
    EXPECT_GT(st.icmp_out, frames / 200);
    EXPECT_LT(st.skipped, st.nat_out / 2) << "most NAT outputs were skipped: the generator is too destructive";
}

}  // namespace
}  // namespace kxlb::test
