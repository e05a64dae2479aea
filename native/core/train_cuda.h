// train_cuda.h: the CUDA kernels of the train family (l2c_train.h): the same operations
// and semantics as cpu/train.h, on tensors of one CUDA device (`device`). Implemented by
// cuda/train*.cu, or by core/cuda_stub_train.cc (DEVICE_UNAVAILABLE) in builds without
// CUDA. The C ABI (api_train.cc) has validated shapes, dtypes and devices; these check what
// depends on the data (ids, targets; one device-to-host read each) and throw l2c::Error.
// Work is queued on l2c::cuda::stream(device); only the results that must reach the host
// (a bad id or target, the count of targets, AdamW's norm and skip flag) wait for it.
#pragma once
#include <cstdint>
#include <vector>

#include "llm2clip.h"
#include "train_params.h"

namespace l2c {
namespace cuda {

// ---- embedding (cuda/train.cu) ----
void embedding_forward(int device, const l2c_tensor &weight, const l2c_tensor &ids,
                       const l2c_tensor &out);
// padding_idx < 0: none. Deterministic: ids sorted (stable radix sort of (id, position)),
// then each vocabulary row sums its positions' rows in position order.
void embedding_backward(int device, const l2c_tensor &dy, const l2c_tensor &ids,
                        const l2c_tensor &dweight, int64_t padding_idx);

// ---- cross-entropy (cuda/train_xent.cu) ----
void cross_entropy_forward(int device, const CrossEntropyParams &p);
void cross_entropy_backward(int device, const CrossEntropyParams &p);
// Test hook: the token rows per block (0: the default). Small values make the native tests
// cover the accumulation across blocks at small N.
void set_cross_entropy_block_rows(int64_t rows);

// ---- AdamW (cuda/train.cu) ----
double grad_norm(int device, const std::vector<const l2c_tensor *> &grads);
// Returns the norm; *skipped when it is not finite (nothing written then).
double adamw(int device, const std::vector<AdamWParam> &ps, const AdamWHyper &h, bool *skipped);

// ---- layout (cuda/train_layout.cu) ----
void permute(int device, const l2c_tensor &x, const l2c_tensor &out, const int32_t *dims);
// forward: parts -> whole; backward (split): whole -> parts.
void concat(int device, const std::vector<const l2c_tensor *> &parts, const l2c_tensor &whole,
            int dim, bool split);
void slice_forward(int device, const l2c_tensor &whole, const l2c_tensor &part, int dim,
                   int64_t start);
void slice_backward(int device, const l2c_tensor &whole, const l2c_tensor &part, int dim,
                    int64_t start);
void patchify(int device, const l2c_tensor &images, const l2c_tensor &patches, int64_t p,
              bool backward);

}  // namespace cuda
}  // namespace l2c
