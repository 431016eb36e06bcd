// event_loop: placeholder, being written.
#include "agent/event_loop.hpp"
