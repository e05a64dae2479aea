/* l2c_lora.h: C ABI of the lora kernels: linear layers with a LoRA adapter fused in, forward and backward; merge / unmerge.
 * Part of llm2clip.h (include that). Conventions as there: contiguous row-major tensors,
 * l2c_status results, l2c_last_error() on failure; outputs are allocated by the caller. */
#ifndef L2C_LORA_H
#define L2C_LORA_H
#include "llm2clip.h"
#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif /* L2C_LORA_H */
