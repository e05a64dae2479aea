/* l2c_layers.h: C ABI of the layers kernels: elementwise ops, norms, rope, activations, softmax, dropout, reductions, pooling.
 * Part of llm2clip.h (include that). Conventions as there: contiguous row-major tensors,
 * l2c_status results, l2c_last_error() on failure; outputs are allocated by the caller. */
#ifndef L2C_LAYERS_H
#define L2C_LAYERS_H
#include "llm2clip.h"
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif /* L2C_LAYERS_H */
