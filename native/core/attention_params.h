// attention_params.h: the launch parameters of the attention kernels, shared by both
// backends (cpu/attention.h, core/attention_cuda.h). Plain C++, no backend headers.
#pragma once
#include <cstdint>

#include "llm2clip.h"

namespace l2c {

// Contiguous tensors: q, out, dout, dq [B,S,Hq,D]; k, v, dk, dv [B,S,Hkv,D]; lse
// [B,Hq,S] float32; mask [B,S] int32 or null. dt: the dtype of every q/k/v-shaped tensor.
// Every pointer lives on the device the op runs on.
struct AttentionParams {
  const void *q = nullptr, *k = nullptr, *v = nullptr;
  const int32_t *mask = nullptr;
  l2c_dtype dt = L2C_FLOAT32;
  int64_t B = 0, S = 0, Hq = 0, Hkv = 1, D = 0;
  float scale = 1;
  bool causal = false;
};

}  // namespace l2c
