// prober: placeholder, being written.
#pragma once
