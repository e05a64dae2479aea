/* l2c_attention.h: C ABI of the attention kernels: fused bidirectional / causal attention (flash-style), forward and backward.
 * Part of llm2clip.h (include that). Conventions as there: contiguous row-major tensors,
 * l2c_status results, l2c_last_error() on failure; outputs are allocated by the caller.
 *
 * Shapes: q [B,S,Hq,D]; k, v [B,S,Hkv,D] (the same B and S as q); Hkv >= 1 divides Hq
 * (grouped-query attention: query head h reads key/value head h / (Hq/Hkv)); 1 <= D <= 256.
 * q, k, v (and out, dout, dq, dk, dv) share one dtype: float32, bfloat16 or float16; the
 * arithmetic is float32 and each output is rounded once to its dtype.
 *
 * Query i of head h attends key j when key_padding_mask[b, j] != 0 (no mask: every key)
 * and, when causal, j <= i. With s_ij = scale * q_i . k_j over the attendable keys:
 *   lse_i = log(sum_j exp(s_ij)),   out_i = sum_j exp(s_ij - lse_i) v_j.
 * A query with no attendable key gets out_i = 0 and lse_i = -inf (never NaN), and zero
 * gradients in the backward.
 *
 * Nothing of size [S,S] is ever held in memory: both directions run over tiles of query
 * rows x key columns with an online softmax (FlashAttention-2 math). Every tensor must
 * be on one device, the CPU or a CUDA GPU (DEVICE_MISMATCH otherwise; DEVICE_UNAVAILABLE
 * for a CUDA device that is not there or a build without CUDA). On CUDA, bfloat16 /
 * float16 with D <= 128 run on tensor cores (mma.sync, sm_80+) and round the softmax
 * probabilities (and in the backward dS) to the input dtype before their products, as
 * FlashAttention does; the backward's dq is summed with float32 atomics (the order of
 * the sums, hence the last bits, may vary from run to run). Outputs must not overlap the
 * inputs. */
#ifndef L2C_ATTENTION_H
#define L2C_ATTENTION_H
#include "llm2clip.h"
#ifdef __cplusplus
extern "C" {
#endif

/* Forward: writes out [B,S,Hq,D] (q's dtype) and lse [B,Hq,S] (float32).
 * key_padding_mask: null, or int32 [B,S] (nonzero = the key may be attended).
 * scale: any finite number (1/sqrt(D) is the usual choice; the caller passes it). */
typedef struct l2c_attention_forward_args {
  const l2c_tensor *q;
  const l2c_tensor *k;
  const l2c_tensor *v;
  const l2c_tensor *key_padding_mask; /* optional (null) */
  const l2c_tensor *out;
  const l2c_tensor *lse;
  int32_t causal;
  double scale;
} l2c_attention_forward_args;
L2C_API l2c_status l2c_attention_forward(const l2c_attention_forward_args *args);

/* Backward: from dout (= dL/dout, q's shape and dtype), the forward's inputs, its out and
 * lse (as the forward wrote them) and the same mask / causal / scale, writes dq, dk, dv
 * (the shapes and dtypes of q, k, v). Every element of dq, dk, dv is written (keys that
 * nobody attends get zeros). */
typedef struct l2c_attention_backward_args {
  const l2c_tensor *dout;
  const l2c_tensor *q;
  const l2c_tensor *k;
  const l2c_tensor *v;
  const l2c_tensor *out;
  const l2c_tensor *lse;
  const l2c_tensor *key_padding_mask; /* optional (null) */
  const l2c_tensor *dq;
  const l2c_tensor *dk;
  const l2c_tensor *dv;
  int32_t causal;
  double scale;
} l2c_attention_backward_args;
L2C_API l2c_status l2c_attention_backward(const l2c_attention_backward_args *args);

#ifdef __cplusplus
}
#endif
#endif /* L2C_ATTENTION_H */
