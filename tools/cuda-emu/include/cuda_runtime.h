// Fake cuda_runtime.h for the CPU emulation of native/cuda/*.cu (see emu.h).
#pragma once
#include <cstddef>
#include <cstring>
#include "emu.h"
typedef int cudaError_t;
enum : int { cudaSuccess = 0 };
typedef void *cudaStream_t;
inline cudaError_t cudaGetDevice(int *d) { *d = 0; return 0; }
inline cudaError_t cudaSetDevice(int) { return 0; }
inline cudaError_t cudaGetLastError() { return 0; }
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { std::memset(p, v, n); return 0; }
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
template <class F>
cudaError_t cudaFuncSetAttribute(F f, cudaFuncAttribute, int v) {
  emu::set_max_dyn_smem(reinterpret_cast<const void *>(f), v);
  return 0;
}
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int) {
  *v = a == cudaDevAttrMultiProcessorCount ? emu::sm_count() : 163 * 1024;  // opt-in: the A100's
  return 0;
}
