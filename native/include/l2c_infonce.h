/* l2c_infonce.h: C ABI of the infonce kernels: the InfoNCE / CLIP contrastive loss without the N x M logits, forward and backward.
 * Part of llm2clip.h (include that). Conventions as there: contiguous row-major tensors,
 * l2c_status results, l2c_last_error() on failure; outputs are allocated by the caller. */
#ifndef L2C_INFONCE_H
#define L2C_INFONCE_H
#include "llm2clip.h"
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif /* L2C_INFONCE_H */
