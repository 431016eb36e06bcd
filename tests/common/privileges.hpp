// Gate for privileged tests (bpf and e2e tiers): skip when not root, unless
// KXLB_REQUIRE_PRIVILEGED=1 is set, in which case the test fails with a clear message.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace kxlb::test {

inline bool privileged_required() {
    const char* v = std::getenv("KXLB_REQUIRE_PRIVILEGED");
    return v != nullptr && std::strcmp(v, "1") == 0;
}

}  // namespace kxlb::test

// Use at the top of a privileged test body or fixture SetUp().
#define KXLB_REQUIRE_ROOT()                                                                      \
    do {                                                                                         \
        if (::geteuid() != 0) {                                                                  \
            if (::kxlb::test::privileged_required())                                             \
                FAIL() << "privileged test needs root (BPF, netns), but euid is " << ::geteuid() \
                       << " and KXLB_REQUIRE_PRIVILEGED=1 forbids skipping: run as root";        \
            GTEST_SKIP() << "needs root (BPF, netns); skipped";                                  \
        }                                                                                        \
    } while (0)
