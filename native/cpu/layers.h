// layers.h: the CPU kernels of the layers family (l2c_layers.h). The C ABI entries
// (core/api_layers.cc) check every argument first; these functions trust them: shapes
// consistent, pointers valid, dtypes float32 / bfloat16 / float16 where a float is
// expected. Files: layers.cc (elementwise, broadcast, reductions), layers_norm.cc
// (rms / layer norm, l2 normalize, softmax, masked mean pool), layers_act.cc
// (activations, swiglu, rope, dropout); shared helpers in layers_util.h.
#pragma once
#include <cstdint>

#include "layers_params.h"
#include "llm2clip.h"

namespace l2c {
namespace cpu {
namespace layers {

// Elementwise op codes of binary() (core/layers_params.h, shared with the CUDA kernels).
using ::l2c::layers::EwOp;
using ::l2c::layers::EW_ADD;
using ::l2c::layers::EW_SUB;
using ::l2c::layers::EW_MUL;
using ::l2c::layers::EW_SCALE;

// out = a (op) b, or alpha * a for EW_SCALE (b null); a and b broadcast to out's shape
// (numpy rules, checked by the caller). Each tensor may have its own float dtype.
void binary(int op, const l2c_tensor &a, const l2c_tensor *b, const l2c_tensor &out, float alpha);

// out = alpha * sum of x over the dims in mask (bit d = dim d); out's elements are the
// kept dims in order. x, out of any float dtype.
void sum(const l2c_tensor &x, uint32_t mask, double alpha, const l2c_tensor &out);

// da = sum_to_shape(dy * b, a), db = sum_to_shape(dy * a, b); either may be null.
void mul_backward(const l2c_tensor &dy, const l2c_tensor &a, const l2c_tensor &b,
                  const l2c_tensor *da, const l2c_tensor *db);

// Row ops: x is rows x D of dtype dt; weights may have their own dtype (wdt).
void rms_norm_forward(const void *x, l2c_dtype dt, const void *w, l2c_dtype wdt, void *y,
                      float *rstd, int64_t rows, int64_t D, float eps);
void rms_norm_backward(const void *dy, const void *x, l2c_dtype dt, const void *w,
                       l2c_dtype wdt, const float *rstd, void *dx, float *dw, int64_t rows,
                       int64_t D);
void layer_norm_forward(const void *x, l2c_dtype dt, const void *w, l2c_dtype wdt,
                        const void *b, l2c_dtype bdt, void *y, float *mean, float *rstd,
                        int64_t rows, int64_t D, float eps);
void layer_norm_backward(const void *dy, const void *x, l2c_dtype dt, const void *w,
                         l2c_dtype wdt, const float *mean, const float *rstd, void *dx,
                         float *dw, float *db, int64_t rows, int64_t D);
void l2_normalize_forward(const void *x, l2c_dtype dt, void *y, int64_t rows, int64_t D,
                          float eps);
void l2_normalize_backward(const void *dy, const void *x, l2c_dtype dt, void *dx,
                           int64_t rows, int64_t D, float eps);
void softmax_forward(const void *x, l2c_dtype dt, void *y, int64_t rows, int64_t D);
void softmax_backward(const void *dy, const void *y, l2c_dtype dt, void *dx, int64_t rows,
                      int64_t D);

// mask: int32 (nonzero = 1) or float weights of dtype mdt. hidden / out of dtype dt.
void masked_mean_pool_forward(const void *hidden, l2c_dtype dt, const void *mask,
                              l2c_dtype mdt, void *out, int64_t B, int64_t S, int64_t H);
void masked_mean_pool_backward(const void *dy, l2c_dtype dt, const void *mask, l2c_dtype mdt,
                               void *dhidden, int64_t B, int64_t S, int64_t H);

// Activations (kind: l2c_activation), n elements.
void activation_forward(int kind, const void *x, l2c_dtype dt, void *y, int64_t n);
void activation_backward(int kind, const void *dy, const void *x, l2c_dtype dt, void *dx,
                         int64_t n);
void swiglu_forward(const void *gate, const void *up, l2c_dtype dt, void *out, int64_t n);
void swiglu_backward(const void *dy, const void *gate, const void *up, l2c_dtype dt,
                     void *dgate, void *dup, int64_t n);

// y = mask * x * scale (dropout.h rule), n elements.
void dropout(const void *x, l2c_dtype dt, void *y, int64_t n, float p, uint64_t seed);

// Rotary embedding of x [B,S,H,D]; positions [B,S] (per_batch) or [S]; inv_freq [D/2]
// in float64; sign +1 forward, -1 backward.
void rope(const void *x, l2c_dtype dt, const int32_t *positions, bool per_batch,
          const double *inv_freq, void *out, int64_t B, int64_t S, int64_t H, int64_t D,
          int sign);

// inv_freq[i], i < D/2, in float64: theta^(-2i/D) with the l2c_rope_scaling rule.
void rope_inv_freq(int64_t D, double theta, int scaling, double factor, double low_freq_factor,
                   double high_freq_factor, double original_max_pos, double *inv_freq);

}  // namespace layers
}  // namespace cpu
}  // namespace l2c
