// config: placeholder, being written.
#pragma once
