// The hot-loop wrappers of kxlb-bench part A (bpf/xdp_lb_bench.bpf.c): programs that restore their input frame
// from a template before every run, so BPF_PROG_TEST_RUN can repeat them R times per call. Loaded with every
// kxlb_* map reused from a programmed datapath instance, so bench_lb runs that instance's exact state.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "lib/result.hpp"

namespace kxlb::bench {

struct LoopTemplate {
    static constexpr std::size_t kBytes = 80;  // == BENCH_FRAME_BYTES in bpf/xdp_lb_bench.bpf.c
    std::array<std::uint8_t, kBytes> bytes{};  // the whole input frame
    bool vary = false;                         // fresh source port + address on every run
    std::uint32_t sport_off = 0;               // offset of the L4 source port
    std::uint32_t saddr_off = 0;               // offset of the source address's last 32-bit word
    std::uint32_t saddr_base = 0;              // host order: that word = saddr_base + (run >> 15)
};

class LoopPrograms {
public:
    // lb_prog_fd: a loaded kxlb_xdp_lb program; every map of the bench object whose name matches one the program
    // uses is reused (by fd), and every kxlb_* map must match. `reused` lists them, for the report. flow_cache: the
    // wrapped datapath body's flow cache knob (the loaded program's own is not visible from here).
    static Result<LoopPrograms> load(int lb_prog_fd, bool flow_cache = true);
    ~LoopPrograms();
    LoopPrograms(LoopPrograms&&) noexcept;
    LoopPrograms& operator=(LoopPrograms&&) noexcept;

    int lb_fd() const;
    int base_fd() const;
    int reflect_fd() const;
    int ct_probe_fd() const;
    // bench_ct_probe's counts of kxlb_ct lookups that missed and hit, since the load.
    std::uint64_t probe_misses() const;
    std::uint64_t probe_hits() const;
    // bench_table_read: one read of a pseudo-random 64-byte slot per run, among the first 2^bits slots (bits 1..20:
    // up to 64 MiB); its runs since the load.
    int table_read_fd() const;
    void set_table_bits(std::uint32_t bits);
    std::uint64_t table_reads() const;
    // Sets the frame every program restores (takes effect on the next run).
    void set_template(const LoopTemplate& t);
    const std::string& reused() const;

private:
    struct Impl;
    explicit LoopPrograms(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace kxlb::bench
