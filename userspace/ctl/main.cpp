// kxlbctl entry point: bpftool-style `kxlbctl [-j|-p] [--pin-path PATH] OBJECT COMMAND [ARGS]` over
// the maps kxlb-agent pins (see docs/kxlbctl.md). All logic lives in kxlb_ctl_lib (app.hpp).
#include <iostream>
#include <string>
#include <vector>

#include "ctl/app.hpp"

int main(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    const int rc = kxlb::ctl::run_kxlbctl(args, std::cout, std::cerr);
    std::cout.flush();
    return rc;
}
