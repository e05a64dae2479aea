// infonce_params.h: the launch parameters of the infonce kernels, shared by the CPU
// (native/cpu/infonce.cc) and CUDA (native/cuda/infonce.cu) backends. Semantics:
// l2c_infonce.h. Filled by core/api_infonce.cc once the arguments are validated.
#pragma once
#include <cstdint>

#include "llm2clip.h"

namespace l2c {

struct InfonceParams {
  const void *a = nullptr;  // [N,d] row-major, dtype
  const void *b = nullptr;  // [M,d]
  l2c_dtype dtype = L2C_FLOAT32;
  int64_t N = 0, M = 0, d = 0;  // M >= N; symmetric: M == N
  // The logit scale. CPU: `scale` always (a scale tensor is read on the host by the API).
  // CUDA: `scale_dev` (a one-element float32 tensor on the device, read by the kernels)
  // when not null, else `scale`.
  float scale = 1.0f;
  const float *scale_dev = nullptr;
  bool symmetric = false;

  // Forward outputs.
  float *loss = nullptr;      // one element
  float *lse_rows = nullptr;  // [N]
  float *lse_cols = nullptr;  // [M], symmetric only

  // Backward inputs / outputs.
  const float *lse_rows_in = nullptr;  // [N]
  const float *lse_cols_in = nullptr;  // [M], symmetric only
  float grad_loss = 1.0f;              // CUDA: grad_loss_dev instead when not null
  const float *grad_loss_dev = nullptr;
  void *da = nullptr;         // [N,d], dtype
  void *db = nullptr;         // [M,d], dtype
  float *dscale = nullptr;    // one element
};

}  // namespace l2c
