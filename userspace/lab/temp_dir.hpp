// A private temporary directory (configs, certificates, pid files of lab servers), removed with its
// contents on destruction.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

namespace kxlb::lab {

class TempDir {
public:
    // tag names the directory: /tmp/kxlb-<tag>-XXXXXX. path() is empty if creation failed.
    explicit TempDir(const std::string& tag) {
        std::string tmpl = "/tmp/kxlb-" + tag + "-XXXXXX";
        if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        if (!path_.empty()) std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }

private:
    std::string path_;
};

}  // namespace kxlb::lab
