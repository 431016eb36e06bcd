// netlink: placeholder, being written.
#pragma once
