#pragma once
// A trivial kernel that proves the CUDA build path and a device work end to end.
#include <string>

#include "common/status.h"

namespace pdctl::gpu {

// Number of visible CUDA devices (0 when no driver or device).
int device_count();

// Fills a device buffer with i*scale on the GPU, copies it back and checks every value.
// Returns a one-line description of the device on success.
Result<std::string> selftest(int n = 1 << 20, float scale = 0.5f);

}  // namespace pdctl::gpu
