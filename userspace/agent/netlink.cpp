// netlink: placeholder, being written.
#include "agent/netlink.hpp"
