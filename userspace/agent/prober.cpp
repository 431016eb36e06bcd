// prober: placeholder, being written.
#include "agent/prober.hpp"
