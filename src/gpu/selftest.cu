#include "gpu/selftest.h"

#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <vector>

namespace pdctl::gpu {
namespace {

__global__ void fill_scaled_iota(float* out, int n, float scale) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = static_cast<float>(i) * scale;
}

Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::ok();
  return Status::unavailable(std::string(what) + ": " + cudaGetErrorString(err));
}

struct DeviceFree {
  void operator()(float* p) const { cudaFree(p); }
};

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

Result<std::string> selftest(int n, float scale) {
  if (device_count() == 0) return Status::unavailable("no CUDA device");
  float* raw = nullptr;
  PDCTL_RETURN_IF_ERROR(cuda_status(cudaMalloc(&raw, sizeof(float) * n), "cudaMalloc"));
  std::unique_ptr<float, DeviceFree> buf(raw);
  const int block = 256;
  fill_scaled_iota<<<(n + block - 1) / block, block>>>(buf.get(), n, scale);
  PDCTL_RETURN_IF_ERROR(cuda_status(cudaGetLastError(), "kernel launch"));
  std::vector<float> host(n);
  PDCTL_RETURN_IF_ERROR(cuda_status(
      cudaMemcpy(host.data(), buf.get(), sizeof(float) * n, cudaMemcpyDeviceToHost), "cudaMemcpy"));
  for (int i = 0; i < n; ++i) {
    if (host[i] != static_cast<float>(i) * scale) {
      return Status::internal("selftest: wrong value at index " + std::to_string(i));
    }
  }
  cudaDeviceProp prop{};
  PDCTL_RETURN_IF_ERROR(cuda_status(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties"));
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
}

}  // namespace pdctl::gpu
