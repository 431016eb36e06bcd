// Common base of the e2e fixtures that run the real kxlb-agent in an LbScenario lab: the lab, a bpffs
// pin path and a temp directory of the test's own, all removed again after each test (also a failed one).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "lab/lb_scenario.hpp"
#include "lib/pinning.hpp"

namespace kxlb::test {

class AgentLabTest : public ::testing::Test {
protected:
    // Creates `backends` nginx backends behind `vip` (no datapath of the lab's own: the agent brings it),
    // the pin path /sys/fs/bpf/kxlb-e2e-<tag>-<pid> (emptied first) and the directory <tmp>/kxlb-<tag>-e2e-<pid>.
    // A failure is fatal: callers check HasFatalFailure() afterwards.
    void open_lab(const std::string& tag, int backends, const char* vip) {
        pin_ = "/sys/fs/bpf/kxlb-e2e-" + tag + "-" + std::to_string(::getpid());
        (void)remove_pinned(PinLayout{pin_});
        auto sc = lab::LbScenario::create(backends, {vip}, lab::LbScenario::Datapath::None);
        ASSERT_TRUE(sc) << sc.error().message;
        sc_ = std::move(sc).value();
        dir_ = std::filesystem::temp_directory_path() / ("kxlb-" + tag + "-e2e-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override {
        sc_.reset();  // kills the agent(s) and every other lab process, deletes the namespaces
        if (!pin_.empty()) (void)remove_pinned(PinLayout{pin_});
        if (!dir_.empty()) std::filesystem::remove_all(dir_);
    }

    std::string pin_;
    std::filesystem::path dir_;
    std::unique_ptr<lab::LbScenario> sc_;
};

}  // namespace kxlb::test
