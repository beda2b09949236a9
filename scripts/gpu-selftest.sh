#!/usr/bin/env bash
# Builds the CUDA selftest kernel with nvcc alone (no other project dependency) and runs it:
# the quickest proof that a machine's CUDA toolkit and driver can build and run pdctl's GPU code.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)/src
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/main.cpp" <<'CPP'
#include <cstdio>
#include "gpu/selftest.h"
int main() {
  const int n = pdctl::gpu::device_count();
  std::printf("CUDA devices: %d\n", n);
  if (n == 0) return 77;
  auto r = pdctl::gpu::selftest();
  if (!r) { std::printf("selftest failed: %s\n", r.status().to_string().c_str()); return 1; }
  std::printf("selftest passed on %s\n", r->c_str());
  return 0;
}
CPP
"$nvcc" -std=c++17 -O2 -I"$src" "$src/gpu/selftest.cu" "$src/common/status.cpp" "$work/main.cpp" -o "$work/gpu_selftest"
"$work/gpu_selftest"
