// train.h: the CPU kernels of the train family (l2c_train.h). The C ABI (api_train.cc)
// has validated shapes, dtypes and devices; these check what depends on the data (ids,
// targets) and throw l2c::Error.
#pragma once
#include <cstdint>
#include <vector>

#include "llm2clip.h"
#include "train_params.h"

namespace l2c {
namespace cpu {

// ---- embedding (train.cc) ----
void embedding_forward(const l2c_tensor &weight, const l2c_tensor &ids, const l2c_tensor &out);
// padding_idx < 0: none.
void embedding_backward(const l2c_tensor &dy, const l2c_tensor &ids, const l2c_tensor &dweight,
                        int64_t padding_idx);

// ---- cross-entropy (train_xent.cc) ----
using l2c::CrossEntropyParams;
void cross_entropy_forward(const CrossEntropyParams &p);
void cross_entropy_backward(const CrossEntropyParams &p);

// ---- AdamW (train.cc) ----
using l2c::AdamWParam;
using l2c::AdamWHyper;
double grad_norm(const std::vector<const l2c_tensor *> &grads);
// Returns the norm; *skipped when it is not finite (nothing written then).
double adamw(const std::vector<AdamWParam> &ps, const AdamWHyper &h, bool *skipped);

// ---- layout (train_layout.cc) ----
// dst[i0..] = src[i0..] over an nd-dimensional index space `shape`, both strided (in
// elements of esize bytes: 2 or 4). Dims of size 1 and mergeable dims are folded first;
// rows contiguous on both sides are memcpy'd, transposes go through cache tiles; threaded.
void strided_copy(void *dst, const int64_t *dst_stride, const void *src, const int64_t *src_stride,
                  const int64_t *shape, int nd, int64_t esize);
void permute(const l2c_tensor &x, const l2c_tensor &out, const int32_t *dims);
// forward: parts -> whole; backward (split): whole -> parts.
void concat(const std::vector<const l2c_tensor *> &parts, const l2c_tensor &whole, int dim,
            bool split);
void slice_forward(const l2c_tensor &whole, const l2c_tensor &part, int dim, int64_t start);
void slice_backward(const l2c_tensor &whole, const l2c_tensor &part, int dim, int64_t start);
void patchify(const l2c_tensor &images, const l2c_tensor &patches, int64_t p, bool backward);

}  // namespace cpu
}  // namespace l2c
