#include <doctest/doctest.h>

#include "kv/transfer_plan.h"

using pdctl::Errc;
using pdctl::kv::Copy;
using pdctl::kv::plan_puts;
using pdctl::kv::PlanLimits;

namespace {
constexpr uint64_t kMiB = uint64_t{1} << 20;
PlanLimits limits(uint64_t max_put = kMiB) { return {64 * kMiB, 64 * kMiB, max_put}; }
}  // namespace

TEST_CASE("plan_puts merges copies contiguous on both sides, in any order") {
  // Pages 3,4,5 -> 10,11,12 (one run), then 7 -> 20, listed out of order.
  const uint64_t b = 4096;
  std::vector<Copy> copies = {{5 * b, 12 * b, b}, {7 * b, 20 * b, b}, {3 * b, 10 * b, b}, {4 * b, 11 * b, b}};
  auto puts = plan_puts(copies, limits());
  REQUIRE(puts.has_value());
  REQUIRE(puts->size() == 2);
  CHECK((*puts)[0] == Copy{3 * b, 10 * b, 3 * b});
  CHECK((*puts)[1] == Copy{7 * b, 20 * b, b});
}

TEST_CASE("plan_puts does not merge runs contiguous on one side only") {
  const uint64_t b = 4096;
  // Contiguous destinations, scattered sources; then contiguous sources, scattered destinations.
  std::vector<Copy> copies = {{0, 0, b}, {2 * b, b, b}, {8 * b, 4 * b, b}, {9 * b, 6 * b, b}};
  auto puts = plan_puts(copies, limits());
  REQUIRE(puts.has_value());
  CHECK(puts->size() == 4);
}

TEST_CASE("plan_puts splits runs longer than max_put_bytes") {
  std::vector<Copy> copies = {{0, 0, 5 * kMiB + 123}};
  auto puts = plan_puts(copies, limits(kMiB));
  REQUIRE(puts.has_value());
  REQUIRE(puts->size() == 6);
  uint64_t total = 0;
  for (size_t i = 0; i < puts->size(); ++i) {
    CHECK((*puts)[i].length <= kMiB);
    CHECK((*puts)[i].local_offset == i * kMiB);
    CHECK((*puts)[i].remote_offset == i * kMiB);
    total += (*puts)[i].length;
  }
  CHECK(total == 5 * kMiB + 123);
  // A merged run is split too: 4 blocks of 512 KiB merge to 2 MiB, then split in two.
  std::vector<Copy> blocks;
  for (uint64_t i = 0; i < 4; ++i) blocks.push_back({i * kMiB / 2, kMiB + i * kMiB / 2, kMiB / 2});
  auto split = plan_puts(blocks, limits(kMiB));
  REQUIRE(split.has_value());
  CHECK(split->size() == 2);
  // No limit: one put.
  auto whole = plan_puts(blocks, limits(0));
  REQUIRE(whole.has_value());
  CHECK(whole->size() == 1);
}

TEST_CASE("plan_puts refuses copies outside either region and overlapping destinations") {
  PlanLimits l{1000, 2000, 0};
  CHECK(plan_puts(std::vector<Copy>{{900, 0, 200}}, l).status().code() == Errc::kInvalidArgument);
  CHECK(plan_puts(std::vector<Copy>{{0, 1900, 200}}, l).status().code() == Errc::kInvalidArgument);
  // Offsets near 2^64 must not wrap around into range.
  CHECK(plan_puts(std::vector<Copy>{{~uint64_t{0} - 10, 0, 100}}, l).status().code() == Errc::kInvalidArgument);
  CHECK(plan_puts(std::vector<Copy>{{0, 0, 100}, {200, 50, 100}}, l).status().code() == Errc::kInvalidArgument);
  // Zero-length copies are dropped; an empty list is a valid (flush-only) write.
  auto empty = plan_puts(std::vector<Copy>{{5000, 5000, 0}}, l);
  REQUIRE(empty.has_value());
  CHECK(empty->empty());
}
