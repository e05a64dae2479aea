// train_params.h: the parameter structs of the train family (l2c_train.h), shared by the
// CPU kernels (cpu/train.h) and the CUDA ones (core/train_cuda.h). Plain C++, no backend.
#pragma once
#include <cstdint>

#include "llm2clip.h"

namespace l2c {

// Cross-entropy fused with the output projection (l2c_cross_entropy_args, validated).
struct CrossEntropyParams {
  const l2c_tensor *hidden = nullptr, *weight = nullptr, *bias = nullptr, *targets = nullptr;
  const l2c_tensor *loss = nullptr, *lse = nullptr;
  const l2c_tensor *dhidden = nullptr, *dweight = nullptr, *dbias = nullptr;
  int64_t ignore_index = -100;
  bool mean = true;
  int64_t chunk_size = 4096;
  double grad_loss = 1;
};

// One parameter of an AdamW step.
struct AdamWParam {
  const l2c_tensor *param, *grad, *exp_avg, *exp_avg_sq, *master;  // master may be null
  bool decay;
};
struct AdamWHyper {
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;
  double max_grad_norm;  // <= 0: none
};

}  // namespace l2c
