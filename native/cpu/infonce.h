// infonce.h: the CPU InfoNCE / CLIP loss kernels (infonce.cc), called by
// core/api_infonce.cc once the arguments are validated. Semantics: l2c_infonce.h.
#pragma once
#include <cstdint>

#include "llm2clip.h"

namespace l2c {
namespace cpu {

struct InfonceParams {
  const void *a = nullptr;  // [N,d] row-major, dtype
  const void *b = nullptr;  // [M,d]
  l2c_dtype dtype = L2C_FLOAT32;
  int64_t N = 0, M = 0, d = 0;  // M >= N; symmetric: M == N
  float scale = 1.0f;
  bool symmetric = false;

  // Forward outputs.
  float *loss = nullptr;      // one element
  float *lse_rows = nullptr;  // [N]
  float *lse_cols = nullptr;  // [M], symmetric only

  // Backward inputs / outputs.
  const float *lse_rows_in = nullptr;  // [N]
  const float *lse_cols_in = nullptr;  // [M], symmetric only
  float grad_loss = 1.0f;
  void *da = nullptr;         // [N,d], dtype
  void *db = nullptr;         // [M,d], dtype
  float *dscale = nullptr;    // one element
};

void infonce_forward(const InfonceParams &p);
void infonce_backward(const InfonceParams &p);

}  // namespace cpu
}  // namespace l2c
