// event_loop: placeholder, being written.
#pragma once
