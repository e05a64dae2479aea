/* l2c_train.h: C ABI of the train kernels: embedding, chunked cross-entropy fused with the output projection, adamw with clipping, layout ops, patchify.
 * Part of llm2clip.h (include that). Conventions as there: contiguous row-major tensors,
 * l2c_status results, l2c_last_error() on failure; outputs are allocated by the caller. */
#ifndef L2C_TRAIN_H
#define L2C_TRAIN_H
#include "llm2clip.h"
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif /* L2C_TRAIN_H */
