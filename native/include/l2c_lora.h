/* l2c_lora.h: C ABI of the lora kernels: linear layers with a LoRA adapter fused in, forward and backward; merge / unmerge.
 * Part of llm2clip.h (include that). Conventions as there: contiguous row-major tensors,
 * l2c_status results, l2c_last_error() on failure; outputs are allocated by the caller.
 *
 * Shapes (PEFT's layout): x [..., in] (any leading dims, N = their product; a 1-D x is
 * one row), weight [out, in] (frozen), lora_a [r, in], lora_b [out, r], bias [out],
 * y / dy [..., out] with x's leading dims. r = 0, N = 0, in = 0 or out = 0 are allowed
 * (empty products are zero).
 * Dtypes: x, weight, bias, y, dy and dx share one float dtype (float32 / bfloat16 /
 * float16); lora_a, lora_b, d_a and d_b share one float dtype that may differ from it
 * (e.g. float32 adapters over a bfloat16 base). All products accumulate in float32; each
 * output element is rounded once to its storage dtype.
 *
 * Dropout (the LoRA path only, as in PEFT): with probability p in [0, 1) and seed s,
 *   drop(x)[i] = x[i] * (keep(s, i) ? 1.0f / (1.0f - p) : 0)   (float32 arithmetic)
 * for the flat index i = n*in + k of x, keep() as in dropout.h (the Philox rule that
 * ops.dropout and the CUDA kernels use). drop(x) stays in float32 (it is not rounded to
 * x's dtype). p = 0 is exactly no dropout. The backward regenerates the mask from the
 * seed: nothing is stored between forward and backward.
 * Devices: all tensors on one device (DEVICE_MISMATCH otherwise), the CPU or a CUDA GPU.
 * CPU: the thread pool; results do not depend on timing, only on the thread count
 * (d_a / d_b are sums of per-thread partials). CUDA: queued on the device's stream;
 * deterministic (d_a / d_b are fixed-order sums of per-split partials); the dropout mask
 * is the CPU's bit for bit; results agree with the CPU's up to float32 summation order. */
#ifndef L2C_LORA_H
#define L2C_LORA_H
#include "llm2clip.h"
#ifdef __cplusplus
extern "C" {
#endif

/* y = x·weightᵀ + bias + scale·(drop(x)·lora_aᵀ)·lora_bᵀ.
 * bias may be null (no bias). scale is PEFT's alpha / r and must be finite. */
typedef struct l2c_lora_forward_args {
  const l2c_tensor *x;      /* [..., in] */
  const l2c_tensor *weight; /* [out, in] */
  const l2c_tensor *lora_a; /* [r, in] */
  const l2c_tensor *lora_b; /* [out, r] */
  const l2c_tensor *bias;   /* [out] or null */
  const l2c_tensor *y;      /* [..., out], written */
  float scale;
  float dropout_p; /* [0, 1) */
  uint64_t seed;   /* the dropout mask's seed (unused when dropout_p == 0) */
} l2c_lora_forward_args;
L2C_API l2c_status l2c_lora_forward(const l2c_lora_forward_args *args);

/* Gradients of the forward above given dy = dL/dy, with the same scale, dropout_p and
 * seed as the forward (the mask is regenerated):
 *   t = drop(x)·lora_aᵀ [N, r],  g = scale·dy·lora_b [N, r]
 *   d_b = scale·dyᵀ·t            [out, r]
 *   d_a = gᵀ·drop(x)             [r, in]
 *   dx  = dy·weight + drop'(g·lora_a)   [..., in]   (drop' = the same mask and 1/(1-p))
 * dx may be null (input gradient not needed: dy·weight is skipped). The weight and bias
 * gradients are not computed (the base layer is frozen; d bias = column sums of dy). */
typedef struct l2c_lora_backward_args {
  const l2c_tensor *dy;     /* [..., out] */
  const l2c_tensor *x;      /* [..., in] */
  const l2c_tensor *weight; /* [out, in] */
  const l2c_tensor *lora_a; /* [r, in] */
  const l2c_tensor *lora_b; /* [out, r] */
  const l2c_tensor *dx;     /* [..., in] or null, written */
  const l2c_tensor *d_a;    /* [r, in], written */
  const l2c_tensor *d_b;    /* [out, r], written */
  float scale;
  float dropout_p;
  uint64_t seed;
} l2c_lora_backward_args;
L2C_API l2c_status l2c_lora_backward(const l2c_lora_backward_args *args);

/* In place on weight: merge adds, unmerge subtracts scale·lora_b·lora_a.
 * Δ = lora_b·lora_a accumulates in float32; each weight element is then updated with
 * one rounding to its dtype: round(w ± scale·Δ) with w ± scale·Δ evaluated in double
 * (float32 weights: one fused multiply-add). So merge then unmerge gives back the
 * weight only up to that rounding (not bit-exact, notably for bfloat16 weights). */
typedef struct l2c_lora_merge_args {
  const l2c_tensor *weight; /* [out, in], updated */
  const l2c_tensor *lora_a; /* [r, in] */
  const l2c_tensor *lora_b; /* [out, r] */
  float scale;
} l2c_lora_merge_args;
L2C_API l2c_status l2c_lora_merge(const l2c_lora_merge_args *args);
L2C_API l2c_status l2c_lora_unmerge(const l2c_lora_merge_args *args);

#ifdef __cplusplus
}
#endif
#endif /* L2C_LORA_H */
