/* l2c_layers.h: C ABI of the layers kernels: elementwise ops, norms, rope, activations,
 * softmax, dropout, reductions, pooling, each as a forward and a backward entry.
 * Part of llm2clip.h (include that). Conventions as there: contiguous row-major tensors,
 * l2c_status results, l2c_last_error() on failure; outputs are allocated by the caller and
 * fully overwritten (never read), so they may hold garbage.
 *
 * Common rules:
 * - "float" means float32, bfloat16 or float16 storage. Every op computes in float32 and
 *   rounds each output once to its storage dtype. Unless said otherwise, the float
 *   tensors of one call share one dtype (DTYPE_MISMATCH otherwise); statistics saved for
 *   the backward (mean, rstd) and weight gradients are float32.
 * - "rows": a tensor [..., D] is read as rows = numel / D rows of D (the last dim).
 * - All tensors of a call live on one device (DEVICE_MISMATCH otherwise): the CPU or a
 *   CUDA device (the same semantics there; DEVICE_UNAVAILABLE in a build without CUDA or
 *   for a device that does not exist). Reductions are deterministic on both (fixed
 *   orders, no atomics); CPU and CUDA results agree to float32 rounding, dropout masks
 *   and outputs bit for bit.
 * - Empty tensors are fine: nothing is read, empty outputs are not written, and an output
 *   that reduces over nothing gets zeros (mean: NaN, as 0/0).
 * - Broadcasting (binary ops, mul backward, broadcast_scale): numpy rules on trailing
 *   dims: an operand's shape is right-aligned with the output's, and each of its dims
 *   equals the output's or is 1 (missing leading dims count as 1). */
#ifndef L2C_LAYERS_H
#define L2C_LAYERS_H
#include "llm2clip.h"
#ifdef __cplusplus
extern "C" {
#endif

/* ---- elementwise ---- */

typedef enum l2c_binary_op {
  L2C_BINARY_ADD = 0, /* out = a + b */
  L2C_BINARY_SUB = 1, /* out = a - b */
  L2C_BINARY_MUL = 2  /* out = a * b */
} l2c_binary_op;

/* out = a (op) b with a and b broadcast to out's shape; a, b, out of one float dtype. */
typedef struct l2c_binary_args {
  const l2c_tensor *a;
  const l2c_tensor *b;
  const l2c_tensor *out;
  int32_t op; /* l2c_binary_op */
} l2c_binary_args;
L2C_API l2c_status l2c_binary(const l2c_binary_args *args);

/* out = alpha * x, x broadcast to out's shape (x of out's shape: a plain scale; x with
 * kept size-1 dims: the backward of sum / mean, alpha = 1 or 1 / count). x and out of
 * one float dtype; alpha finite. */
typedef struct l2c_broadcast_scale_args {
  const l2c_tensor *x;
  const l2c_tensor *out;
  double alpha;
} l2c_broadcast_scale_args;
L2C_API l2c_status l2c_broadcast_scale(const l2c_broadcast_scale_args *args);

/* Backward of out = a * b (broadcast): da = sum_to_shape(dy * b, a), db = sum_to_shape(
 * dy * a, b), the sums over the broadcast dims in float32 (pairwise). dy has the
 * broadcast shape; da has a's element count, db b's; either may be null (not computed).
 * dy, a, b, da, db of one float dtype. */
typedef struct l2c_mul_backward_args {
  const l2c_tensor *dy;
  const l2c_tensor *a;
  const l2c_tensor *b;
  const l2c_tensor *da; /* nullable */
  const l2c_tensor *db; /* nullable */
} l2c_mul_backward_args;
L2C_API l2c_status l2c_mul_backward(const l2c_mul_backward_args *args);

/* ---- reductions ---- */

/* out = alpha * (sum of x over the dims whose bit is set in reduce_mask: bit d = dim d
 * of x). out holds the kept dims in their order; any shape with that element count is
 * accepted (keepDim or not, or the target of sum_to_shape). Accumulation in float32,
 * pairwise / blocked (error grows with log n, not n). x float, out float (any of the
 * three: x's dtype or float32). Bits at or past x's ndim must be clear. */
typedef struct l2c_sum_args {
  const l2c_tensor *x;
  const l2c_tensor *out;
  uint32_t reduce_mask;
  double alpha; /* 1 for a sum, 1 / count for a mean */
} l2c_sum_args;
L2C_API l2c_status l2c_sum(const l2c_sum_args *args);

/* ---- normalisation ---- */

/* RMSNorm (Llama), over the last dim D of x: rstd[r] = 1 / sqrt(mean(x[r]^2) + eps),
 * y = x * rstd * weight. weight [D] (any float dtype, or null: 1), rstd float32 [rows]
 * (any shape with rows elements), y like x. eps >= 0 and finite. */
typedef struct l2c_rms_norm_args {
  const l2c_tensor *x;
  const l2c_tensor *weight; /* nullable */
  const l2c_tensor *y;
  const l2c_tensor *rstd;
  double eps;
} l2c_rms_norm_args;
L2C_API l2c_status l2c_rms_norm_forward(const l2c_rms_norm_args *args);

/* dx = rstd * (g - x * rstd^2 * mean(g * x)), g = dy * weight; dweight[j] = sum over rows
 * of dy * x * rstd (float32 [D], per-thread partials reduced after: race-free,
 * deterministic for a given thread count; on CUDA per-block partials, then a second
 * kernel). dy, x, dx of one dtype; weight as in the
 * forward; dweight null when weight is null (and then must be null). */
typedef struct l2c_rms_norm_backward_args {
  const l2c_tensor *dy;
  const l2c_tensor *x;
  const l2c_tensor *weight;  /* nullable */
  const l2c_tensor *rstd;    /* float32, rows elements */
  const l2c_tensor *dx;
  const l2c_tensor *dweight; /* float32 [D]; null iff weight is null */
} l2c_rms_norm_backward_args;
L2C_API l2c_status l2c_rms_norm_backward(const l2c_rms_norm_backward_args *args);

/* LayerNorm over the last dim D: mean[r], rstd[r] = 1 / sqrt(var[r] + eps) (biased
 * variance, two-pass), y = (x - mean) * rstd * weight + bias. weight, bias [D] (any float
 * dtype, each nullable), mean / rstd float32 [rows]. */
typedef struct l2c_layer_norm_args {
  const l2c_tensor *x;
  const l2c_tensor *weight; /* nullable */
  const l2c_tensor *bias;   /* nullable */
  const l2c_tensor *y;
  const l2c_tensor *mean;
  const l2c_tensor *rstd;
  double eps;
} l2c_layer_norm_args;
L2C_API l2c_status l2c_layer_norm_forward(const l2c_layer_norm_args *args);

/* xhat = (x - mean) * rstd, g = dy * weight: dx = rstd * (g - mean(g) - xhat *
 * mean(g * xhat)); dweight = sum over rows of dy * xhat, dbias = sum over rows of dy
 * (float32 [D], per-thread partials). dweight must be null iff weight is; dbias nullable. */
typedef struct l2c_layer_norm_backward_args {
  const l2c_tensor *dy;
  const l2c_tensor *x;
  const l2c_tensor *weight; /* nullable */
  const l2c_tensor *mean;   /* float32, rows elements */
  const l2c_tensor *rstd;   /* float32, rows elements */
  const l2c_tensor *dx;
  const l2c_tensor *dweight; /* float32 [D]; null iff weight is null */
  const l2c_tensor *dbias;   /* float32 [D], nullable */
} l2c_layer_norm_backward_args;
L2C_API l2c_status l2c_layer_norm_backward(const l2c_layer_norm_backward_args *args);

/* y = x / max(||x||, eps) over the last dim (torch.nn.functional.normalize, p = 2);
 * eps >= 0. Backward: with n = ||x||, n >= eps: dx = (dy - y * (y . dy)) / n; n < eps:
 * dx = dy / eps. */
typedef struct l2c_l2_normalize_args {
  const l2c_tensor *x;
  const l2c_tensor *y;
  double eps;
} l2c_l2_normalize_args;
L2C_API l2c_status l2c_l2_normalize_forward(const l2c_l2_normalize_args *args);
typedef struct l2c_l2_normalize_backward_args {
  const l2c_tensor *dy;
  const l2c_tensor *x;
  const l2c_tensor *dx;
  double eps;
} l2c_l2_normalize_backward_args;
L2C_API l2c_status l2c_l2_normalize_backward(const l2c_l2_normalize_backward_args *args);

/* ---- softmax ---- */

/* y = softmax over the last dim (max subtracted first). A row of all -inf gives NaN
 * (as torch). Backward: dx = y * (dy - sum(dy * y)). */
typedef struct l2c_softmax_args {
  const l2c_tensor *x;
  const l2c_tensor *y;
} l2c_softmax_args;
L2C_API l2c_status l2c_softmax_forward(const l2c_softmax_args *args);
typedef struct l2c_softmax_backward_args {
  const l2c_tensor *dy;
  const l2c_tensor *y;
  const l2c_tensor *dx;
} l2c_softmax_backward_args;
L2C_API l2c_status l2c_softmax_backward(const l2c_softmax_backward_args *args);

/* ---- rotary position embedding ---- */

typedef enum l2c_rope_scaling {
  L2C_ROPE_SCALING_NONE = 0,
  L2C_ROPE_SCALING_LINEAR = 1, /* inv_freq / factor */
  L2C_ROPE_SCALING_LLAMA3 = 2  /* Hugging Face _compute_llama3_parameters */
} l2c_rope_scaling;

/* Rotary embedding, Hugging Face Llama convention (rotate_half: pairs (i, i + D/2)).
 * x [B,S,H,D] (D even), positions int32 [B,S] (per sequence: left padding) or [S],
 * out like x. inv_freq[i] = theta^(-2i/D) for i < D/2, scaled by `scaling` (computed on
 * the host in float64, for CUDA too); angle = position * inv_freq[i] in float64 (exact
 * to ~1e-16 relative, so position 1e5 keeps its accuracy), cos / sin in float64 then
 * float32:
 *   out[i] = x[i] cos - x[i + D/2] sin,   out[i + D/2] = x[i + D/2] cos + x[i] sin.
 * llama3: with wavelen = 2 pi / inv_freq, lo = original_max_position_embeddings /
 * low_freq_factor, hi = ... / high_freq_factor: wavelen < hi keeps inv_freq, wavelen >
 * lo divides it by factor, between: (1 - s) inv_freq / factor + s inv_freq with s =
 * (original / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor).
 * theta > 0; factor > 0 (linear, llama3); llama3 also needs 0 < low_freq_factor <
 * high_freq_factor and original_max_position_embeddings > 0.
 * The backward entry rotates by -angle (x = dy, out = dx): the exact transpose. */
typedef struct l2c_rope_args {
  const l2c_tensor *x;
  const l2c_tensor *positions;
  const l2c_tensor *out;
  double theta;
  int32_t scaling; /* l2c_rope_scaling */
  double factor;
  double low_freq_factor;
  double high_freq_factor;
  double original_max_position_embeddings;
} l2c_rope_args;
L2C_API l2c_status l2c_rope_forward(const l2c_rope_args *args);
L2C_API l2c_status l2c_rope_backward(const l2c_rope_args *args);

/* ---- activations ---- */

typedef enum l2c_activation {
  L2C_ACT_GELU = 0,       /* 0.5 x (1 + erf(x / sqrt 2)) */
  L2C_ACT_GELU_TANH = 1,  /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (PyTorch) */
  L2C_ACT_QUICK_GELU = 2  /* x sigmoid(1.702 x) (OpenAI CLIP) */
} l2c_activation;

/* y = act(x); x, y of one dtype and element count. */
typedef struct l2c_activation_args {
  const l2c_tensor *x;
  const l2c_tensor *y;
  int32_t kind; /* l2c_activation */
} l2c_activation_args;
L2C_API l2c_status l2c_activation_forward(const l2c_activation_args *args);
/* dx = dy * act'(x). */
typedef struct l2c_activation_backward_args {
  const l2c_tensor *dy;
  const l2c_tensor *x;
  const l2c_tensor *dx;
  int32_t kind;
} l2c_activation_backward_args;
L2C_API l2c_status l2c_activation_backward(const l2c_activation_backward_args *args);

/* out = silu(gate) * up = gate * sigmoid(gate) * up (same shapes and dtype). */
typedef struct l2c_swiglu_args {
  const l2c_tensor *gate;
  const l2c_tensor *up;
  const l2c_tensor *out;
} l2c_swiglu_args;
L2C_API l2c_status l2c_swiglu_forward(const l2c_swiglu_args *args);
/* dup = dy * silu(gate); dgate = dy * up * sigmoid(gate) * (1 + gate (1 - sigmoid(gate))). */
typedef struct l2c_swiglu_backward_args {
  const l2c_tensor *dy;
  const l2c_tensor *gate;
  const l2c_tensor *up;
  const l2c_tensor *dgate;
  const l2c_tensor *dup;
} l2c_swiglu_backward_args;
L2C_API l2c_status l2c_swiglu_backward(const l2c_swiglu_backward_args *args);

/* ---- dropout ---- */

/* y[i] = keep(i) ? x[i] * scale : 0, keep(i) = dropout::keep(seed, i,
 * dropout::threshold(p)) (core/dropout.h; i the flat index), p in [0, 1) as float32,
 * scale = (float)(1 / (1 - (double)p)). The backward is the same map on dy (the mask
 * is regenerated from seed; nothing is stored). x, y of one dtype and element count. */
typedef struct l2c_dropout_args {
  const l2c_tensor *x; /* dy for the backward */
  const l2c_tensor *y; /* dx for the backward */
  float p;
  uint64_t seed;
} l2c_dropout_args;
L2C_API l2c_status l2c_dropout_forward(const l2c_dropout_args *args);
L2C_API l2c_status l2c_dropout_backward(const l2c_dropout_args *args);

/* ---- pooling ---- */

/* out[b] = sum_s w[b,s] hidden[b,s] / sum_s w[b,s] (LLM2Vec mean / weighted_mean).
 * hidden [B,S,H], mask [B,S]: int32 (w = mask != 0) or a float dtype (the weights),
 * out [B,H] of hidden's dtype. A row whose weights sum to 0 gives zeros. */
typedef struct l2c_masked_mean_pool_args {
  const l2c_tensor *hidden;
  const l2c_tensor *mask;
  const l2c_tensor *out;
} l2c_masked_mean_pool_args;
L2C_API l2c_status l2c_masked_mean_pool_forward(const l2c_masked_mean_pool_args *args);
/* dhidden[b,s] = w[b,s] / sum_s w[b,s] * dy[b] (zeros for a row of sum 0). dy [B,H],
 * dhidden [B,S,H] of dy's dtype. */
typedef struct l2c_masked_mean_pool_backward_args {
  const l2c_tensor *dy;
  const l2c_tensor *mask;
  const l2c_tensor *dhidden;
} l2c_masked_mean_pool_backward_args;
L2C_API l2c_status l2c_masked_mean_pool_backward(const l2c_masked_mean_pool_backward_args *args);

#ifdef __cplusplus
}
#endif
#endif /* L2C_LAYERS_H */
