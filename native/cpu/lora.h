// lora.h: the CPU lora kernels (lora.cc), called by core/api_lora.cc after it has
// checked every argument. Semantics as in include/l2c_lora.h; shapes are flattened here:
// x [n, in], weight [out, in], lora_a [r, in], lora_b [out, r], y / dy [n, out].
#pragma once
#include <cstdint>

#include "llm2clip.h"
#include "lora_params.h"

namespace l2c {
namespace cpu {

using l2c::LoraDims;  // core/lora_params.h

// y = x·weightᵀ + bias + scale·(drop(x)·aᵀ)·bᵀ; bias may be null.
void lora_forward(const LoraDims &d, const void *x, const void *weight, const void *a,
                  const void *b, const void *bias, void *y);

// d_a, d_b and (when dx is non-null) dx; see l2c_lora_backward.
void lora_backward(const LoraDims &d, const void *dy, const void *x, const void *weight,
                   const void *a, const void *b, void *dx, void *d_a, void *d_b);

// weight += sign·scale·b·a (sign +1 merge, -1 unmerge), in place.
void lora_merge(const LoraDims &d, void *weight, const void *a, const void *b, int sign);

}  // namespace cpu
}  // namespace l2c
