/* l2c_train.h: C ABI of the train kernels: embedding, chunked cross-entropy fused with the
 * output projection, AdamW with global gradient clipping, layout ops (permute, concat /
 * split, slice) and ViT patchify.
 * Part of llm2clip.h (include that). Conventions as there: contiguous row-major tensors,
 * l2c_status results, l2c_last_error() on failure; outputs are allocated by the caller and
 * every element of an output is written. "float" below means float32, bfloat16 or float16
 * storage; the arithmetic is float32 (float64 where said). CPU or CUDA tensors (all of
 * one call's tensors on one device: DEVICE_MISMATCH otherwise). On CUDA the work is queued
 * on the device's stream; a call waits for it only where a result must reach the host:
 * the ids / targets check (an INVALID_ARGUMENT must be returned by the call itself), and
 * AdamW's / grad_norm's norm and skip flag. */
#ifndef L2C_TRAIN_H
#define L2C_TRAIN_H
#include "llm2clip.h"
#ifdef __cplusplus
extern "C" {
#endif

/* ---- embedding ----
 * forward:  out[..., :] = weight[ids[...], :]. weight float [V,H]; ids int32 of any shape
 *           [...]; out [..., H] of weight's dtype (a copy, no rounding). An id outside
 *           [0, V) is INVALID_ARGUMENT naming the first one and its position; nothing is
 *           written then.
 * backward: dweight[v, :] = sum of dy[p, :] over the positions p with ids[p] == v, in
 *           position order (deterministic: each vocabulary row is owned by one thread);
 *           rows never used are 0, and so is row padding_idx when has_padding_idx.
 *           dy float [..., H] (ids' shape + H); dweight float32 [V,H]. */
typedef struct l2c_embedding_args {
  const l2c_tensor *weight;  /* forward: [V,H] */
  const l2c_tensor *ids;     /* int32 [...] */
  const l2c_tensor *out;     /* forward: [..., H], weight's dtype */
  const l2c_tensor *dy;      /* backward: [..., H] */
  const l2c_tensor *dweight; /* backward: float32 [V,H] */
  int32_t has_padding_idx;   /* backward */
  int64_t padding_idx;       /* backward: in [0, V) when has_padding_idx */
} l2c_embedding_args;
L2C_API l2c_status l2c_embedding_forward(const l2c_embedding_args *args);
L2C_API l2c_status l2c_embedding_backward(const l2c_embedding_args *args);

/* ---- cross-entropy fused with the output projection ----
 * logits = hidden . weight^T (+ bias): hidden float [N,H], weight float [V,H] (an lm head,
 * possibly the embedding), bias float [V] or null, targets int32 [N]. Rows whose target is
 * ignore_index are ignored; any other target outside [0, V) is INVALID_ARGUMENT.
 * Only vocabulary chunks of at most chunk_size columns (0: 4096; narrower when that evens
 * out the threads' work) and blocks of 512 tokens are ever materialised (an online max /
 * sum of exp per row), so memory is O(N + threads x 512 x (chunk + H)), never [N,V].
 * forward:  lse[n] = logsumexp_v logits[n,v] (float32 [N]; ignored rows 0);
 *           loss (float32, one element) = sum over non-ignored rows of
 *           lse[n] - logits[n, targets[n]], divided by their count when reduction is
 *           mean (0 when there are none).
 * backward: with dlogits[n,v] = s (softmax[n,v] - [v == targets[n]]) for non-ignored rows
 *           (0 for ignored ones), s = grad_loss / count (mean) or grad_loss (sum), and the
 *           softmax recomputed chunk by chunk from lse:
 *           dhidden = dlogits . weight (hidden's dtype [N,H]),
 *           dweight = dlogits^T . hidden (float32 [V,H]; may be null: a frozen head),
 *           dbias = column sums of dlogits (float32 [V]; null iff bias is null).
 * Results are deterministic for a given thread count (on CUDA: always; there the token
 * blocks have up to 4096 rows and the chunks are exactly chunk_size wide, the last one
 * narrower, and the loss is reduced on the device). */
typedef enum l2c_reduction { L2C_REDUCTION_MEAN = 0, L2C_REDUCTION_SUM = 1 } l2c_reduction;
typedef struct l2c_cross_entropy_args {
  const l2c_tensor *hidden;  /* [N,H] */
  const l2c_tensor *weight;  /* [V,H] */
  const l2c_tensor *bias;    /* [V] or null */
  const l2c_tensor *targets; /* int32 [N] */
  const l2c_tensor *loss;    /* forward: float32, one element */
  const l2c_tensor *lse;     /* float32 [N]: written by the forward, read by the backward */
  const l2c_tensor *dhidden; /* backward: [N,H], hidden's dtype */
  const l2c_tensor *dweight; /* backward: float32 [V,H] or null */
  const l2c_tensor *dbias;   /* backward: float32 [V] when bias is given, else null */
  int64_t ignore_index;
  l2c_reduction reduction;
  int64_t chunk_size; /* vocabulary columns per chunk; 0 = default (4096) */
  double grad_loss;   /* backward: d(final loss) / d(loss) */
} l2c_cross_entropy_args;
L2C_API l2c_status l2c_cross_entropy_forward(const l2c_cross_entropy_args *args);
L2C_API l2c_status l2c_cross_entropy_backward(const l2c_cross_entropy_args *args);

/* ---- AdamW (PyTorch semantics) with global gradient-norm clipping, in place ----
 * For each parameter i (all n in one call): g = grads[i] * c, where c = 1, or with
 * max_grad_norm > 0, c = min(1, max_grad_norm / (norm + 1e-6)) with norm the 2-norm of
 * all grads together (accumulated in float64), as torch.nn.utils.clip_grad_norm_; then
 *   p *= 1 - lr * weight_decay            (when decay is null or decay[i] != 0)
 *   m = m + (1 - beta1) (g - m);  v = beta2 v + (1 - beta2) g^2
 *   p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
 * p is master[i] (float32) when master && master[i], and params[i] is then set to p rounded
 * to its dtype; else params[i] itself, which must be float32. grads float of params' shape;
 * exp_avg (m), exp_avg_sq (v) float32. A non-finite norm skips the step: nothing is written
 * and *skipped = 1. *grad_norm = the norm (before clipping). */
typedef struct l2c_adamw_args {
  int32_t n;
  const l2c_tensor *params;       /* n tensors */
  const l2c_tensor *grads;        /* n tensors */
  const l2c_tensor *exp_avg;      /* n float32 tensors */
  const l2c_tensor *exp_avg_sq;   /* n float32 tensors */
  const l2c_tensor *const *master; /* null, or n pointers (each null or float32) */
  const uint8_t *decay;           /* null (all decay) or n flags */
  double lr, beta1, beta2, eps, weight_decay;
  int64_t step;         /* >= 1 */
  double max_grad_norm; /* <= 0: no clipping */
  double *grad_norm;    /* out */
  int32_t *skipped;     /* out */
} l2c_adamw_args;
L2C_API l2c_status l2c_adamw(const l2c_adamw_args *args);
/* *out = the 2-norm of all n tensors together (float64 accumulation; deterministic). */
L2C_API l2c_status l2c_grad_norm(int32_t n, const l2c_tensor *grads, double *out);

/* ---- layout ops: copies into new contiguous tensors (any dtype, int32 included) ---- */
/* out = x with its dims permuted: out.shape[i] = x.shape[dims[i]]. */
typedef struct l2c_permute_args {
  const l2c_tensor *x;
  const l2c_tensor *out;
  int32_t dims[L2C_MAX_DIMS]; /* a permutation of [0, x.ndim) */
} l2c_permute_args;
L2C_API l2c_status l2c_permute(const l2c_permute_args *args);

/* concat: out = the n parts joined along dim (same ndim, equal sizes off dim).
 * split: the reverse: parts[i] = the i-th consecutive piece of x along dim. */
typedef struct l2c_concat_args {
  int32_t n;
  const l2c_tensor *parts; /* n tensors */
  const l2c_tensor *whole;
  int32_t dim; /* in [0, ndim) */
} l2c_concat_args;
L2C_API l2c_status l2c_concat(const l2c_concat_args *args);
L2C_API l2c_status l2c_split(const l2c_concat_args *args);

/* forward: part = whole[..., start:start+part.shape[dim], ...] along dim.
 * backward: whole = 0 except whole[..., start:start+part.shape[dim], ...] = part. */
typedef struct l2c_slice_args {
  const l2c_tensor *whole;
  const l2c_tensor *part;
  int32_t dim;
  int64_t start;
} l2c_slice_args;
L2C_API l2c_status l2c_slice_forward(const l2c_slice_args *args);
L2C_API l2c_status l2c_slice_backward(const l2c_slice_args *args);

/* ViT patches: images [B,C,H,W] (H, W multiples of p) <-> patches [B,(H/p)(W/p),C p p]:
 * patch g = gy (W/p) + gx, element (c, py, px) at c p p + py p + px holds
 * images[b, c, gy p + py, gx p + px] (a Conv2d weight [width,C,p,p] reshaped to
 * [width, C p p] then embeds patches . W^T). forward writes patches, backward images. */
typedef struct l2c_patchify_args {
  const l2c_tensor *images;
  const l2c_tensor *patches;
  int64_t patch_size;
} l2c_patchify_args;
L2C_API l2c_status l2c_patchify_forward(const l2c_patchify_args *args);
L2C_API l2c_status l2c_patchify_backward(const l2c_patchify_args *args);

#ifdef __cplusplus
}
#endif
#endif /* L2C_TRAIN_H */
