#include <doctest/doctest.h>

#include <cmath>
#include <random>
#ifdef __F16C__
#include <immintrin.h>
#endif

#include "engine/dtype.h"

using namespace pdctl::engine;

TEST_CASE("fp16: every half converts to float and back unchanged") {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      CHECK((fp32_to_fp16(f) & 0x7c00) == 0x7c00);
      continue;
    }
    REQUIRE(fp32_to_fp16(f) == h);
#ifdef __F16C__
    REQUIRE(_cvtsh_ss(static_cast<uint16_t>(h)) == f);
#endif
  }
}

#ifdef __F16C__
TEST_CASE("fp16: float to half rounds like the hardware (F16C, nearest even)") {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000000; ++i) {
    uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, 4);
    if (std::isnan(f)) continue;
    REQUIRE(fp32_to_fp16(f) == _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
  }
  // Around the subnormal and overflow edges.
  for (float f : {5.96e-8f, 2.98e-8f, 2.9802322e-8f, 6.1035156e-5f, 6.1e-5f, 65504.f, 65519.f, 65520.f}) {
    CHECK(fp32_to_fp16(f) == _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
    CHECK(fp32_to_fp16(-f) == _cvtss_sh(-f, _MM_FROUND_TO_NEAREST_INT));
  }
}
#endif

TEST_CASE("bf16: round trip and rounding") {
  CHECK(bf16_to_fp32(fp32_to_bf16(1.0f)) == 1.0f);
  CHECK(bf16_to_fp32(fp32_to_bf16(-2.5f)) == -2.5f);
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1+2^-7: ties to even (1).
  CHECK(bf16_to_fp32(fp32_to_bf16(1.0f + 1.0f / 256)) == 1.0f);
  CHECK(std::isnan(bf16_to_fp32(fp32_to_bf16(NAN))));
}
