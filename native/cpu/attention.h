// attention.h: the CPU attention kernels (attention.cc) behind l2c_attention_forward /
// l2c_attention_backward. Arguments are validated by the C ABI (core/api_attention.cc).
#pragma once
#include <cstdint>

#include "attention_params.h"
#include "llm2clip.h"

namespace l2c {
namespace cpu {

// The parameters (core/attention_params.h) are shared with the CUDA backend.
using ::l2c::AttentionParams;

// Writes out and lse.
void attention_forward(const AttentionParams &p, void *out, float *lse);

// Reads dout, out, lse; writes dq, dk, dv.
void attention_backward(const AttentionParams &p, const void *dout, const void *out,
                        const float *lse, void *dq, void *dk, void *dv);

}  // namespace cpu
}  // namespace l2c
