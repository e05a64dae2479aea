// lora_cuda.h: the CUDA lora kernels (cuda/lora.cu; core/cuda_stub_lora.cc in builds
// without CUDA, where every call throws DEVICE_UNAVAILABLE), called by core/api_lora.cc
// after it has checked every argument. The same parameters as the CPU kernels
// (cpu/lora.h) plus the device index; every pointer is device memory on that device.
// Work is queued on the device's stream (asynchronous to the host).
#pragma once
#include "lora_params.h"

namespace l2c {
namespace cuda {

// y = x·weightᵀ + bias + scale·(drop(x)·aᵀ)·bᵀ; bias may be null.
void lora_forward(int device, const LoraDims &d, const void *x, const void *weight, const void *a,
                  const void *b, const void *bias, void *y);

// d_a, d_b and (when dx is non-null) dx; see l2c_lora_backward.
void lora_backward(int device, const LoraDims &d, const void *dy, const void *x, const void *weight,
                   const void *a, const void *b, void *dx, void *d_a, void *d_b);

// weight += sign·scale·b·a (sign +1 merge, -1 unmerge), in place.
void lora_merge(int device, const LoraDims &d, void *weight, const void *a, const void *b, int sign);

}  // namespace cuda
}  // namespace l2c
