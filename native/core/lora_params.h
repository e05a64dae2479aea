// lora_params.h: the dimensions and options of one lora call, shared by the CPU kernels
// (cpu/lora.h), the CUDA kernels (core/lora_cuda.h) and the C ABI entries
// (core/api_lora.cc). Semantics in include/l2c_lora.h; shapes are flattened: x [n, in],
// weight [out, in], lora_a [r, in], lora_b [out, r], y / dy [n, out].
#pragma once
#include <cstdint>

#include "llm2clip.h"

namespace l2c {

struct LoraDims {
  int64_t n = 0, in = 0, out = 0, r = 0;
  l2c_dtype dt = L2C_FLOAT32;   // x, weight, bias, y, dy, dx
  l2c_dtype adt = L2C_FLOAT32;  // lora_a, lora_b, d_a, d_b
  float scale = 1.0f;
  float p = 0.0f;  // dropout probability, [0, 1)
  uint64_t seed = 0;
};

}  // namespace l2c
