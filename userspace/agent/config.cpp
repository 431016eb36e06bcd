// config: placeholder, being written.
#include "agent/config.hpp"
