// Owners of the benchmark-only XDP programs (bpf/xdp_reflect, xdp_gen, xdp_sink), in the style of
// lib/xdp_programs.hpp: the skeleton headers are included only by bench_programs.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "lib/abi.hpp"
#include "lib/bpf_link.hpp"
#include "lib/result.hpp"

struct bpf_program;

namespace kxlb::bench {

// The reflector (benchmark floor): parse, swap MACs/addresses/ports, XDP_TX.
class ReflectProgram {
public:
    static Result<ReflectProgram> load();
    ~ReflectProgram();
    ReflectProgram(ReflectProgram&&) noexcept;
    ReflectProgram& operator=(ReflectProgram&&) noexcept;

    int prog_fd() const;
    Result<Link> attach(int ifindex, XdpMode mode) const;

private:
    struct Impl;
    explicit ReflectProgram(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// The receiving end: counts frames per CPU and drops them. One instance per counted interface.
class SinkProgram {
public:
    static Result<SinkProgram> load();
    ~SinkProgram();
    SinkProgram(SinkProgram&&) noexcept;
    SinkProgram& operator=(SinkProgram&&) noexcept;

    Result<Link> attach(int ifindex, XdpMode mode) const;
    // Frames and bytes counted so far, summed over CPUs.
    Result<kxlb_counter> total() const;

private:
    struct Impl;
    explicit SinkProgram(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// What the generator writes over every live frame.
struct GenTemplate {
    static constexpr std::size_t kBytes = 64;  // == GEN_TMPL_BYTES in bpf/xdp_gen.bpf.c
    std::array<std::uint8_t, kBytes> bytes{};  // frame head, with source port sport_base and its checksum
    std::uint32_t sport_off = 0;
    std::uint32_t csum_off = 0;  // 0: do not touch a checksum
    std::uint16_t sport_base = 0;
    std::uint16_t nports = 1;
};

// The live-frames generator (run with BPF_F_TEST_XDP_LIVE_FRAMES; never attached).
class GenProgram {
public:
    static Result<GenProgram> load(const GenTemplate& tmpl);
    ~GenProgram();
    GenProgram(GenProgram&&) noexcept;
    GenProgram& operator=(GenProgram&&) noexcept;

    int prog_fd() const;

private:
    struct Impl;
    explicit GenProgram(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace kxlb::bench
