// kxlbctl entry point: bpftool-style `kxlbctl OBJECT COMMAND`, human output by default, -j for JSON.
// Current scope: `version`. Map dumps and trace come with the CLI issue.
#include <kxlb/abi.h>

#include <CLI/CLI.hpp>
#include <cstdio>

int main(int argc, char** argv) {
    CLI::App app{"kxlbctl: inspect the kxlb datapath on this node"};
    app.require_subcommand(1);
    bool json = false;
    app.add_flag("-j,--json", json, "JSON output");
    auto* version = app.add_subcommand("version", "Print the CLI version and the BPF ABI version it speaks");
    CLI11_PARSE(app, argc, argv);

    if (version->parsed()) {
        if (json) std::printf("{\"version\":\"%s\",\"abi\":%d}\n", KXLB_VERSION, KXLB_ABI_VERSION);
        else std::printf("kxlbctl %s (BPF ABI %d)\n", KXLB_VERSION, KXLB_ABI_VERSION);
    }
    return 0;
}
