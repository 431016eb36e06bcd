// RAII ownership of a bpftool-generated skeleton. Two phases (open, then load) so callers can set
// const volatile rodata knobs in between. Use KXLB_SKELETON_OPS(name) to describe a skeleton.
#pragma once

#include <bpf/libbpf.h>

#include <memory>
#include <string>

#include "lib/result.hpp"

// Declares struct <skel>_ops binding the generated <skel>__open/__load/__destroy functions.
#define KXLB_SKELETON_OPS(skel)                              \
    struct skel##_ops {                                      \
        using type = struct skel;                            \
        static constexpr const char* name = #skel;           \
        static type* open() { return skel##__open(); }       \
        static int load(type* s) { return skel##__load(s); } \
        static void destroy(type* s) { skel##__destroy(s); } \
    }

namespace kxlb {

template <typename Ops>
class Skeleton {
public:
    using Type = typename Ops::type;

    // Opens (parses the embedded object, creates nothing in the kernel yet).
    static Result<Skeleton> open() {
        Type* s = Ops::open();
        if (!s) return Error::from_errno(errno, std::string("open skeleton ") + Ops::name);
        return Skeleton(s);
    }

    // Creates maps and verifies/loads programs.
    Status load() {
        if (int err = Ops::load(ptr_.get()); err != 0)
            return Error::from_errno(err, std::string("load skeleton ") + Ops::name);
        return {};
    }

    Type* operator->() const { return ptr_.get(); }
    Type* get() const { return ptr_.get(); }

private:
    struct Deleter {
        void operator()(Type* s) const { Ops::destroy(s); }
    };
    explicit Skeleton(Type* s) : ptr_(s) {}
    std::unique_ptr<Type, Deleter> ptr_;
};

// Opens and loads in one step, for skeletons without load-time knobs.
template <typename Ops>
Result<Skeleton<Ops>> open_and_load() {
    auto s = Skeleton<Ops>::open();
    if (!s) return s.error();
    if (auto st = s->load(); !st) return st.error();
    return std::move(s).value();
}

}  // namespace kxlb
