#include "kv/transfer_plan.h"

#include <algorithm>
#include <string>

namespace pdctl::kv {

namespace {

bool fits(uint64_t offset, uint64_t length, uint64_t size) {
  return offset <= size && length <= size - offset;  // no overflow
}

std::string describe(const Copy& c) {
  return "copy {local " + std::to_string(c.local_offset) + ", remote " + std::to_string(c.remote_offset) +
         ", length " + std::to_string(c.length) + "}";
}

}  // namespace

Result<std::vector<Copy>> plan_puts(std::span<const Copy> copies, const PlanLimits& limits) {
  std::vector<Copy> sorted;
  sorted.reserve(copies.size());
  for (const Copy& c : copies) {
    if (c.length == 0) continue;
    if (!fits(c.local_offset, c.length, limits.local_size)) {
      return Status::invalid_argument(describe(c) + " is outside the local region of " +
                                      std::to_string(limits.local_size) + " bytes");
    }
    if (!fits(c.remote_offset, c.length, limits.remote_size)) {
      return Status::invalid_argument(describe(c) + " is outside the remote region of " +
                                      std::to_string(limits.remote_size) + " bytes");
    }
    sorted.push_back(c);
  }
  // Sorting by destination finds every run that is contiguous on both sides, whatever order
  // the caller listed the blocks in (layer-major or page-major).
  std::sort(sorted.begin(), sorted.end(),
            [](const Copy& a, const Copy& b) { return a.remote_offset < b.remote_offset; });

  std::vector<Copy> merged;
  for (const Copy& c : sorted) {
    if (!merged.empty()) {
      Copy& last = merged.back();
      if (last.remote_offset + last.length > c.remote_offset) {
        return Status::invalid_argument(describe(c) + " overlaps the destination of another copy");
      }
      if (last.remote_offset + last.length == c.remote_offset &&
          last.local_offset + last.length == c.local_offset) {
        last.length += c.length;
        continue;
      }
    }
    merged.push_back(c);
  }
  if (limits.max_put_bytes == 0) return merged;

  std::vector<Copy> puts;
  puts.reserve(merged.size());
  for (const Copy& run : merged) {
    for (uint64_t done = 0; done < run.length; done += limits.max_put_bytes) {
      puts.push_back({run.local_offset + done, run.remote_offset + done,
                      std::min(limits.max_put_bytes, run.length - done)});
    }
  }
  return puts;
}

}  // namespace pdctl::kv
