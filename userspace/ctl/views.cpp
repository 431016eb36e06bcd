// Small helpers of the kxlbctl view types.
#include "ctl/views.hpp"

namespace kxlb::ctl {

std::string Endpoint::str() const {
    const std::string a = addr.family == AF_INET6 ? "[" + addr.str() + "]" : addr.str();
    return a + ":" + std::to_string(port);
}

}  // namespace kxlb::ctl
