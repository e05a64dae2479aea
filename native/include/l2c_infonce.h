/* l2c_infonce.h: C ABI of the infonce kernels: the InfoNCE / CLIP contrastive loss without
 * the N x M logits, forward and backward.
 * Part of llm2clip.h (include that). Conventions as there: contiguous row-major tensors,
 * l2c_status results, l2c_last_error() on failure; outputs are allocated by the caller.
 *
 * Semantics. a [N,d], b [M,d] with M >= N, both float32, bfloat16 or float16 (the same
 * dtype; computed in float32). Logits L = scale * a . b^T ([N,M], never stored). Row i's
 * positive is column i; the other M-1 columns of row i are its negatives.
 *   lse_rows[i] = logsumexp_j L[i,j]                      (j < M)
 *   lse_cols[j] = logsumexp_i L[i,j]                      (symmetric only; M = N)
 *   loss = mean_i (lse_rows[i] - L[i,i])                  (not symmetric)
 *   loss = (mean_i (lse_rows[i] - L[i,i]) + mean_j (lse_cols[j] - L[j,j])) / 2
 *                                                         (symmetric: the CLIP loss)
 * N = 0 gives loss 0 (an empty mean, taken as 0 rather than NaN).
 * Log-sum-exps use an online maximum in float32 (stable for any scale); the loss is
 * accumulated in double. Extra memory is O(N + M) plus per-thread tiles (the logits are
 * computed a tile at a time, FlashAttention-style).
 * Devices: every tensor on a's device (L2C_DEVICE_MISMATCH otherwise). On CUDA the
 * kernels run on the backend's stream and read scale_tensor / grad_loss_tensor there
 * (no host round trip); loss and dscale stay on the device. bfloat16 / float16 logits
 * use tensor cores (float32 accumulation; the backward's dL tile is rounded to the
 * input dtype for them), float32 stays float32 (no TF32). Results are deterministic
 * (no atomics). Extra device memory: O(N + M), a float32 [max(N, M), d] buffer in the
 * 16-bit backward when M or N exceeds 512, and at most 256 MB of column partials in the
 * symmetric forward. Builds without CUDA give L2C_DEVICE_UNAVAILABLE. */
#ifndef L2C_INFONCE_H
#define L2C_INFONCE_H
#include "llm2clip.h"
#ifdef __cplusplus
extern "C" {
#endif

/* The logit scale: `scale_tensor` (a one-element float32 tensor on the inputs' device,
 * read natively: a learnable logit scale) when not null, else `scale` (finite). */
typedef struct l2c_infonce_args {
  const l2c_tensor *a;            /* [N,d] float32 / bfloat16 / float16 */
  const l2c_tensor *b;            /* [M,d] same dtype, M >= N */
  double scale;                   /* used when scale_tensor is null; must be finite */
  const l2c_tensor *scale_tensor; /* optional: one float32 element */
  int32_t symmetric;              /* 1: the CLIP loss (requires M = N) */
  const l2c_tensor *loss;         /* out: one float32 element */
  const l2c_tensor *lse_rows;     /* out: float32 [N] */
  const l2c_tensor *lse_cols;     /* out: float32 [M] when symmetric; must be null otherwise */
} l2c_infonce_args;
L2C_API l2c_status l2c_infonce_forward(const l2c_infonce_args *args);

/* Gradients of grad_loss * loss (the forward's loss, same a, b, scale, symmetric), given
 * the forward's log-sum-exps (logits are recomputed tile by tile). With
 *   G[i,j] = grad_loss * (P[i,j] - [i = j]) / N,   P[i,j] = exp(L[i,j] - lse_rows[i])
 * (symmetric: G[i,j] = grad_loss * (P[i,j] + exp(L[i,j] - lse_cols[j]) - 2 [i = j]) / (2N)):
 *   da = scale * G . b     db = scale * G^T . a     dscale = sum_ij G[i,j] (a_i . b_j)
 * da / db are written in a / b's dtype (rounded once from float32). */
typedef struct l2c_infonce_backward_args {
  const l2c_tensor *a;                /* [N,d] */
  const l2c_tensor *b;                /* [M,d] */
  double scale;                       /* as in the forward */
  const l2c_tensor *scale_tensor;     /* optional one-element float32 */
  int32_t symmetric;
  const l2c_tensor *lse_rows;         /* float32 [N] from the forward */
  const l2c_tensor *lse_cols;         /* float32 [M] from the forward (symmetric), else null */
  double grad_loss;                   /* used when grad_loss_tensor is null; finite */
  const l2c_tensor *grad_loss_tensor; /* optional one-element float32 */
  const l2c_tensor *da;               /* out: [N,d], a's dtype */
  const l2c_tensor *db;               /* out: [M,d], b's dtype */
  const l2c_tensor *dscale;           /* out: one float32 element */
} l2c_infonce_backward_args;
L2C_API l2c_status l2c_infonce_backward(const l2c_infonce_backward_args *args);

#ifdef __cplusplus
}
#endif
#endif /* L2C_INFONCE_H */
