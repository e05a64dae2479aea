// attention_cuda.h: the CUDA attention kernels (cuda/attention_fwd.cu, attention_bwd.cu)
// behind l2c_attention_forward / l2c_attention_backward for CUDA tensors; the same
// contracts as cpu/attention.h plus the device index. Builds without CUDA link
// core/cuda_stub_attention.cc instead (DEVICE_UNAVAILABLE). Arguments are validated by
// the C ABI (core/api_attention.cc); every pointer is on `device`.
#pragma once
#include "attention_params.h"

namespace l2c {
namespace cuda {

// Writes out and lse.
void attention_forward(int device, const AttentionParams &p, void *out, float *lse);

// Reads dout, out, lse; writes dq, dk, dv.
void attention_backward(int device, const AttentionParams &p, const void *dout, const void *out,
                        const float *lse, void *dq, void *dk, void *dv);

}  // namespace cuda
}  // namespace l2c
