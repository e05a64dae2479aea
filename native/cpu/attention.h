// attention.h: the CPU attention kernels (attention.cc) behind l2c_attention_forward /
// l2c_attention_backward. Arguments are validated by the C ABI (core/api_attention.cc).
#pragma once
#include <cstdint>

#include "llm2clip.h"

namespace l2c {
namespace cpu {

// Contiguous tensors: q, out, dout, dq [B,S,Hq,D]; k, v, dk, dv [B,S,Hkv,D]; lse
// [B,Hq,S] float32; mask [B,S] int32 or null. dt: the dtype of every q/k/v-shaped tensor.
struct AttentionParams {
  const void *q = nullptr, *k = nullptr, *v = nullptr;
  const int32_t *mask = nullptr;
  l2c_dtype dt = L2C_FLOAT32;
  int64_t B = 0, S = 0, Hq = 0, Hkv = 1, D = 0;
  float scale = 1;
  bool causal = false;
};

// Writes out and lse.
void attention_forward(const AttentionParams &p, void *out, float *lse);

// Reads dout, out, lse; writes dq, dk, dv.
void attention_backward(const AttentionParams &p, const void *dout, const void *out,
                        const float *lse, void *dq, void *dk, void *dv);

}  // namespace cpu
}  // namespace l2c
