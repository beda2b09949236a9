#include <doctest/doctest.h>

#include "gpu/selftest.h"

TEST_CASE("the trivial CUDA kernel fills and reads back a buffer") {
  if (pdctl::gpu::device_count() == 0) {
    MESSAGE("skipped: no CUDA device on this machine");
    return;
  }
  auto r = pdctl::gpu::selftest(1 << 16, 0.25f);
  REQUIRE_MESSAGE(r.has_value(), r.status().to_string());
  CHECK(!r->empty());
}
