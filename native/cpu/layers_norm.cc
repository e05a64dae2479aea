// layers_norm.cc: CPU kernels of the row ops over the last dim: RMSNorm and LayerNorm
// (forward and backward, weight gradients as per-task float32 partials reduced after),
// l2 normalisation, softmax, and the masked mean pool. Rows are spread over the pool;
// each row is read as float32 (16-bit storage widened into a task buffer), computed
// with an AVX-512 or a portable row function, and rounded once on the way out.
#include <cmath>
#include <vector>

#include "backend.h"
#include "layers.h"
#include "layers_util.h"

namespace l2c {
namespace cpu {
namespace layers {
namespace {

constexpr int64_t DW_BLOCK = 64;  // rows summed into a block before it joins the partial

L2C_TARGET_AVX512 inline __mmask16 tail_mask(int64_t r) { return (__mmask16)((1u << r) - 1u); }

// ---- portable reductions (16 lanes, pairwise at the end) ----

inline float lanes_total(float *acc) {
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; l++) acc[l] += acc[l + w];
  return acc[0];
}
inline float dot_generic(const float *a, const float *b, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; l++) acc[l] += a[i + l] * b[i + l];
  for (; i < n; i++) acc[i & 15] += a[i] * b[i];
  return lanes_total(acc);
}
inline float sum_generic(const float *a, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; l++) acc[l] += a[i + l];
  for (; i < n; i++) acc[i & 15] += a[i];
  return lanes_total(acc);
}

L2C_TARGET_AVX512 float dot_avx512(const float *a, const float *b, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), a1);
  }
  for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), a0);
  if (i < n) {
    __mmask16 m = tail_mask(n - i);
    a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), a1);
  }
  return hsum512(_mm512_add_ps(a0, a1));
}
L2C_TARGET_AVX512 float sum_avx512(const float *a, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a0 = _mm512_add_ps(a0, _mm512_loadu_ps(a + i));
    a1 = _mm512_add_ps(a1, _mm512_loadu_ps(a + i + 16));
  }
  for (; i + 16 <= n; i += 16) a0 = _mm512_add_ps(a0, _mm512_loadu_ps(a + i));
  if (i < n) a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(tail_mask(n - i), a + i));
  return hsum512(_mm512_add_ps(a0, a1));
}
inline float dot(const float *a, const float *b, int64_t n) {
  return avx512() ? dot_avx512(a, b, n) : dot_generic(a, b, n);
}
inline float vsum(const float *a, int64_t n) { return avx512() ? sum_avx512(a, n) : sum_generic(a, n); }

// ---- RMSNorm rows ----

void rms_fwd_generic(const float *x, const float *w, float *y, int64_t D, float rstd) {
  if (w) for (int64_t i = 0; i < D; i++) y[i] = x[i] * rstd * w[i];
  else for (int64_t i = 0; i < D; i++) y[i] = x[i] * rstd;
}
L2C_TARGET_AVX512 void rms_fwd_avx512(const float *x, const float *w, float *y, int64_t D, float rstd) {
  const __m512 r = _mm512_set1_ps(rstd);
  int64_t i = 0;
  for (; i + 16 <= D; i += 16) {
    __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), r);
    if (w) v = _mm512_mul_ps(v, _mm512_loadu_ps(w + i));
    _mm512_storeu_ps(y + i, v);
  }
  if (i < D) {
    __mmask16 m = tail_mask(D - i);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), r);
    if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
    _mm512_mask_storeu_ps(y + i, m, v);
  }
}

// dx = rstd (g - x rstd^2 c), g = dy w, c = mean(g x); dwb += dy x rstd.
void rms_bwd_generic(const float *dy, const float *x, const float *w, float rstd, float *dx,
                     float *dwb, int64_t D) {
  float acc[16] = {0};
  for (int64_t i = 0; i < D; i++) acc[i & 15] += (w ? dy[i] * w[i] : dy[i]) * x[i];
  float c = lanes_total(acc) / (float)D;
  float k = rstd * rstd * c;
  for (int64_t i = 0; i < D; i++) {
    float g = w ? dy[i] * w[i] : dy[i];
    dx[i] = rstd * (g - x[i] * k);
  }
  if (dwb)
    for (int64_t i = 0; i < D; i++) dwb[i] += dy[i] * x[i] * rstd;
}
L2C_TARGET_AVX512 void rms_bwd_avx512(const float *dy, const float *x, const float *w, float rstd,
                                      float *dx, float *dwb, int64_t D) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i < D; i += 16) {
    __mmask16 m = D - i >= 16 ? (__mmask16)0xFFFF : tail_mask(D - i);
    __m512 g = _mm512_maskz_loadu_ps(m, dy + i);
    if (w) g = _mm512_mul_ps(g, _mm512_maskz_loadu_ps(m, w + i));
    acc = _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(m, x + i), acc);
  }
  float c = hsum512(acc) / (float)D;
  const __m512 k = _mm512_set1_ps(rstd * rstd * c), r = _mm512_set1_ps(rstd);
  for (i = 0; i < D; i += 16) {
    __mmask16 m = D - i >= 16 ? (__mmask16)0xFFFF : tail_mask(D - i);
    __m512 d = _mm512_maskz_loadu_ps(m, dy + i), xv = _mm512_maskz_loadu_ps(m, x + i);
    __m512 g = w ? _mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, w + i)) : d;
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(r, _mm512_fnmadd_ps(xv, k, g)));
    if (dwb)
      _mm512_mask_storeu_ps(dwb + i, m, _mm512_fmadd_ps(_mm512_mul_ps(d, xv), r, _mm512_maskz_loadu_ps(m, dwb + i)));
  }
}

// ---- LayerNorm rows ----

void ln_fwd_generic(const float *x, const float *w, const float *b, float *y, int64_t D, float mean, float rstd) {
  for (int64_t i = 0; i < D; i++) {
    float v = (x[i] - mean) * rstd;
    if (w) v *= w[i];
    if (b) v += b[i];
    y[i] = v;
  }
}
L2C_TARGET_AVX512 void ln_fwd_avx512(const float *x, const float *w, const float *b, float *y, int64_t D,
                                     float mean, float rstd) {
  const __m512 mu = _mm512_set1_ps(mean), r = _mm512_set1_ps(rstd);
  for (int64_t i = 0; i < D; i += 16) {
    __mmask16 m = D - i >= 16 ? (__mmask16)0xFFFF : tail_mask(D - i);
    __m512 v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mu), r);
    if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
    if (b) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i));
    _mm512_mask_storeu_ps(y + i, m, v);
  }
}
// Sum of (x - mean)^2.
float sq_dev_generic(const float *x, int64_t D, float mean) {
  float acc[16] = {0};
  for (int64_t i = 0; i < D; i++) {
    float d = x[i] - mean;
    acc[i & 15] += d * d;
  }
  return lanes_total(acc);
}
L2C_TARGET_AVX512 float sq_dev_avx512(const float *x, int64_t D, float mean) {
  const __m512 mu = _mm512_set1_ps(mean);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < D; i += 16) {
    __mmask16 m = D - i >= 16 ? (__mmask16)0xFFFF : tail_mask(D - i);
    __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + i), mu);
    acc = _mm512_fmadd_ps(d, d, acc);
  }
  return hsum512(acc);
}

// xhat = (x - mean) rstd, g = dy w: dx = rstd (g - mean(g) - xhat mean(g xhat));
// dwb += dy xhat, dbb += dy.
void ln_bwd_generic(const float *dy, const float *x, const float *w, float mean, float rstd, float *dx,
                    float *dwb, float *dbb, int64_t D) {
  float sg[16] = {0}, sgx[16] = {0};
  for (int64_t i = 0; i < D; i++) {
    float g = w ? dy[i] * w[i] : dy[i];
    sg[i & 15] += g;
    sgx[i & 15] += g * ((x[i] - mean) * rstd);
  }
  float mg = lanes_total(sg) / (float)D, mgx = lanes_total(sgx) / (float)D;
  for (int64_t i = 0; i < D; i++) {
    float g = w ? dy[i] * w[i] : dy[i];
    float xh = (x[i] - mean) * rstd;
    dx[i] = rstd * (g - mg - xh * mgx);
    if (dwb) dwb[i] += dy[i] * xh;
    if (dbb) dbb[i] += dy[i];
  }
}
L2C_TARGET_AVX512 void ln_bwd_avx512(const float *dy, const float *x, const float *w, float mean, float rstd,
                                     float *dx, float *dwb, float *dbb, int64_t D) {
  const __m512 mu = _mm512_set1_ps(mean), r = _mm512_set1_ps(rstd);
  __m512 sg = _mm512_setzero_ps(), sgx = sg;
  for (int64_t i = 0; i < D; i += 16) {
    __mmask16 m = D - i >= 16 ? (__mmask16)0xFFFF : tail_mask(D - i);
    __m512 g = _mm512_maskz_loadu_ps(m, dy + i);
    if (w) g = _mm512_mul_ps(g, _mm512_maskz_loadu_ps(m, w + i));
    __m512 xh = _mm512_maskz_mul_ps(m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mu), r);
    sg = _mm512_add_ps(sg, g);
    sgx = _mm512_fmadd_ps(g, xh, sgx);
  }
  const __m512 mg = _mm512_set1_ps(hsum512(sg) / (float)D), mgx = _mm512_set1_ps(hsum512(sgx) / (float)D);
  for (int64_t i = 0; i < D; i += 16) {
    __mmask16 m = D - i >= 16 ? (__mmask16)0xFFFF : tail_mask(D - i);
    __m512 d = _mm512_maskz_loadu_ps(m, dy + i);
    __m512 g = w ? _mm512_mul_ps(d, _mm512_maskz_loadu_ps(m, w + i)) : d;
    __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mu), r);
    __m512 v = _mm512_fnmadd_ps(xh, mgx, _mm512_sub_ps(g, mg));
    _mm512_mask_storeu_ps(dx + i, m, _mm512_mul_ps(r, v));
    if (dwb) _mm512_mask_storeu_ps(dwb + i, m, _mm512_fmadd_ps(d, xh, _mm512_maskz_loadu_ps(m, dwb + i)));
    if (dbb) _mm512_mask_storeu_ps(dbb + i, m, _mm512_add_ps(d, _mm512_maskz_loadu_ps(m, dbb + i)));
  }
}

// ---- softmax rows ----

void softmax_fwd_generic(const float *x, float *y, int64_t D) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < D; i++) mx = std::max(mx, x[i]);
  float acc[16] = {0};
  for (int64_t i = 0; i < D; i++) {
    float e = std::exp(x[i] - mx);
    y[i] = e;
    acc[i & 15] += e;
  }
  float inv = 1.0f / lanes_total(acc);
  for (int64_t i = 0; i < D; i++) y[i] *= inv;
}
L2C_TARGET_AVX512 void softmax_fwd_avx512(const float *x, float *y, int64_t D) {
  __m512 mx = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 16 <= D; i += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(x + i));
  if (i < D) mx = _mm512_mask_max_ps(mx, tail_mask(D - i), mx, _mm512_maskz_loadu_ps(tail_mask(D - i), x + i));
  // max_ps drops NaN lanes: a NaN anywhere in the row must still give NaN.
  float m = hmax512(mx);
  const __m512 vm = _mm512_set1_ps(m);
  __m512 acc = _mm512_setzero_ps();
  for (i = 0; i < D; i += 16) {
    __mmask16 k = D - i >= 16 ? (__mmask16)0xFFFF : tail_mask(D - i);
    __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vm));
    e = _mm512_maskz_mov_ps(k, e);
    _mm512_mask_storeu_ps(y + i, k, e);
    acc = _mm512_add_ps(acc, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / hsum512(acc));
  for (i = 0; i < D; i += 16) {
    __mmask16 k = D - i >= 16 ? (__mmask16)0xFFFF : tail_mask(D - i);
    _mm512_mask_storeu_ps(y + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, y + i), inv));
  }
}

// ---- row driver ----

// Runs fn(r, buffers) for every row, rows spread over the pool; each task gets `nbuf`
// buffers of D floats.
template <class F>
int64_t for_rows(int64_t rows, int64_t D, int nbuf, F &&fn) {
  return chunked(rows, row_grain(D), [&](int64_t c, int64_t b, int64_t e) {
    std::vector<float> buf((size_t)(D * nbuf));
    for (int64_t r = b; r < e; r++) fn(c, r, b, buf.data());
  });
}

// dw[j] = sum over chunks of part[c][j].
void reduce_partials(const std::vector<float> &part, int64_t C, int64_t D, float *dw) {
  for (int64_t j = 0; j < D; j++) {
    float s = 0;
    for (int64_t c = 0; c < C; c++) s += part[(size_t)(c * D + j)];
    dw[j] = s;
  }
}

}  // namespace

void rms_norm_forward(const void *x, l2c_dtype dt, const void *w, l2c_dtype wdt, void *y,
                      float *rstd, int64_t rows, int64_t D, float eps) {
  Widened W(w, wdt, D);
  const bool vec = avx512();
  for_rows(rows, D, 2, [&](int64_t, int64_t r, int64_t, float *buf) {
    const float *xr = row_in(x, dt, r, D, buf);
    float *yr = row_out(y, dt, r, D, buf + D);
    double ss = dot(xr, xr, D);
    float rs = D > 0 ? (float)(1.0 / std::sqrt(ss / (double)D + (double)eps)) : (float)(1.0 / std::sqrt((double)eps));
    rstd[r] = rs;
    if (vec) rms_fwd_avx512(xr, W.p, yr, D, rs);
    else rms_fwd_generic(xr, W.p, yr, D, rs);
    row_out_commit(yr, y, dt, r, D);
  });
}

void rms_norm_backward(const void *dy, const void *x, l2c_dtype dt, const void *w, l2c_dtype wdt,
                       const float *rstd, void *dx, float *dw, int64_t rows, int64_t D) {
  Widened W(w, wdt, D);
  const bool vec = avx512();
  const int64_t C = num_chunks(rows, row_grain(D));
  std::vector<float> part(dw ? (size_t)(C * D) : 0);
  chunked(rows, row_grain(D), [&](int64_t c, int64_t b, int64_t e) {
    std::vector<float> buf((size_t)(D * (dw ? 4 : 3)));
    float *bdy = buf.data(), *bx = bdy + D, *bdx = bx + D, *blk = dw ? bdx + D : nullptr;
    float *pc = dw ? &part[(size_t)(c * D)] : nullptr;
    if (blk) std::fill(blk, blk + D, 0.0f);
    for (int64_t r = b; r < e; r++) {
      if (blk && r > b && (r - b) % DW_BLOCK == 0) {
        for (int64_t j = 0; j < D; j++) { pc[j] += blk[j]; blk[j] = 0; }
      }
      const float *dyr = row_in(dy, dt, r, D, bdy), *xr = row_in(x, dt, r, D, bx);
      float *dxr = row_out(dx, dt, r, D, bdx);
      if (vec) rms_bwd_avx512(dyr, xr, W.p, rstd[r], dxr, blk, D);
      else rms_bwd_generic(dyr, xr, W.p, rstd[r], dxr, blk, D);
      row_out_commit(dxr, dx, dt, r, D);
    }
    if (blk)
      for (int64_t j = 0; j < D; j++) pc[j] += blk[j];
  });
  if (dw) reduce_partials(part, C, D, dw);
}

void layer_norm_forward(const void *x, l2c_dtype dt, const void *w, l2c_dtype wdt, const void *b,
                        l2c_dtype bdt, void *y, float *mean, float *rstd, int64_t rows, int64_t D,
                        float eps) {
  Widened W(w, wdt, D), Bv(b, bdt, D);
  const bool vec = avx512();
  for_rows(rows, D, 2, [&](int64_t, int64_t r, int64_t, float *buf) {
    const float *xr = row_in(x, dt, r, D, buf);
    float *yr = row_out(y, dt, r, D, buf + D);
    float mu = D > 0 ? vsum(xr, D) / (float)D : 0.0f;
    double var = D > 0 ? (double)(vec ? sq_dev_avx512(xr, D, mu) : sq_dev_generic(xr, D, mu)) / (double)D : 0.0;
    float rs = (float)(1.0 / std::sqrt(var + (double)eps));
    mean[r] = mu;
    rstd[r] = rs;
    if (vec) ln_fwd_avx512(xr, W.p, Bv.p, yr, D, mu, rs);
    else ln_fwd_generic(xr, W.p, Bv.p, yr, D, mu, rs);
    row_out_commit(yr, y, dt, r, D);
  });
}

void layer_norm_backward(const void *dy, const void *x, l2c_dtype dt, const void *w, l2c_dtype wdt,
                         const float *mean, const float *rstd, void *dx, float *dw, float *db,
                         int64_t rows, int64_t D) {
  Widened W(w, wdt, D);
  const bool vec = avx512();
  const int64_t C = num_chunks(rows, row_grain(D));
  std::vector<float> pw(dw ? (size_t)(C * D) : 0), pb(db ? (size_t)(C * D) : 0);
  chunked(rows, row_grain(D), [&](int64_t c, int64_t b, int64_t e) {
    std::vector<float> buf((size_t)(D * 5));
    float *bdy = buf.data(), *bx = bdy + D, *bdx = bx + D;
    float *bw = dw ? bdx + D : nullptr, *bb = db ? bdx + 2 * D : nullptr;
    float *pcw = dw ? &pw[(size_t)(c * D)] : nullptr, *pcb = db ? &pb[(size_t)(c * D)] : nullptr;
    if (bw) std::fill(bw, bw + D, 0.0f);
    if (bb) std::fill(bb, bb + D, 0.0f);
    auto flush = [&] {
      for (int64_t j = 0; j < D; j++) {
        if (bw) { pcw[j] += bw[j]; bw[j] = 0; }
        if (bb) { pcb[j] += bb[j]; bb[j] = 0; }
      }
    };
    for (int64_t r = b; r < e; r++) {
      if (r > b && (r - b) % DW_BLOCK == 0) flush();
      const float *dyr = row_in(dy, dt, r, D, bdy), *xr = row_in(x, dt, r, D, bx);
      float *dxr = row_out(dx, dt, r, D, bdx);
      if (vec) ln_bwd_avx512(dyr, xr, W.p, mean[r], rstd[r], dxr, bw, bb, D);
      else ln_bwd_generic(dyr, xr, W.p, mean[r], rstd[r], dxr, bw, bb, D);
      row_out_commit(dxr, dx, dt, r, D);
    }
    flush();
  });
  if (dw) reduce_partials(pw, C, D, dw);
  if (db) reduce_partials(pb, C, D, db);
}

void l2_normalize_forward(const void *x, l2c_dtype dt, void *y, int64_t rows, int64_t D, float eps) {
  for_rows(rows, D, 2, [&](int64_t, int64_t r, int64_t, float *buf) {
    const float *xr = row_in(x, dt, r, D, buf);
    float *yr = row_out(y, dt, r, D, buf + D);
    double n = std::sqrt((double)dot(xr, xr, D));
    float inv = (float)(1.0 / std::max(n, (double)eps));
    for (int64_t i = 0; i < D; i++) yr[i] = xr[i] * inv;
    row_out_commit(yr, y, dt, r, D);
  });
}

void l2_normalize_backward(const void *dy, const void *x, l2c_dtype dt, void *dx, int64_t rows, int64_t D,
                           float eps) {
  for_rows(rows, D, 3, [&](int64_t, int64_t r, int64_t, float *buf) {
    const float *dyr = row_in(dy, dt, r, D, buf), *xr = row_in(x, dt, r, D, buf + D);
    float *dxr = row_out(dx, dt, r, D, buf + 2 * D);
    double n = std::sqrt((double)dot(xr, xr, D));
    if (n >= (double)eps) {
      // y = x / n: dx = (dy - y (y . dy)) / n = dy / n - x (x . dy) / n^3.
      float inv = (float)(1.0 / n);
      float k = (float)((double)dot(xr, dyr, D) / (n * n * n));
      for (int64_t i = 0; i < D; i++) dxr[i] = dyr[i] * inv - xr[i] * k;
    } else {
      float inv = (float)(1.0 / (double)eps);
      for (int64_t i = 0; i < D; i++) dxr[i] = dyr[i] * inv;
    }
    row_out_commit(dxr, dx, dt, r, D);
  });
}

void softmax_forward(const void *x, l2c_dtype dt, void *y, int64_t rows, int64_t D) {
  const bool vec = avx512();
  for_rows(rows, D, 2, [&](int64_t, int64_t r, int64_t, float *buf) {
    const float *xr = row_in(x, dt, r, D, buf);
    float *yr = row_out(y, dt, r, D, buf + D);
    if (vec) {
      softmax_fwd_avx512(xr, yr, D);
      // _mm512_max_ps skips NaN: a row holding NaN gives NaN everywhere, as the
      // portable path does.
      for (int64_t i = 0; i < D; i++)
        if (xr[i] != xr[i]) { for (int64_t j = 0; j < D; j++) yr[j] = NAN; break; }
    } else {
      softmax_fwd_generic(xr, yr, D);
    }
    row_out_commit(yr, y, dt, r, D);
  });
}

void softmax_backward(const void *dy, const void *y, l2c_dtype dt, void *dx, int64_t rows, int64_t D) {
  for_rows(rows, D, 3, [&](int64_t, int64_t r, int64_t, float *buf) {
    const float *dyr = row_in(dy, dt, r, D, buf), *yr = row_in(y, dt, r, D, buf + D);
    float *dxr = row_out(dx, dt, r, D, buf + 2 * D);
    float s = dot(dyr, yr, D);
    for (int64_t i = 0; i < D; i++) dxr[i] = yr[i] * (dyr[i] - s);
    row_out_commit(dxr, dx, dt, r, D);
  });
}

namespace {

// Pooling weights of row b: w[s] and their sum (float64).
double pool_weights(const void *mask, l2c_dtype mdt, int64_t b, int64_t S, float *w) {
  if (mdt == L2C_INT32) {
    const int32_t *m = static_cast<const int32_t *>(mask) + b * S;
    double n = 0;
    for (int64_t s = 0; s < S; s++) { w[s] = m[s] != 0 ? 1.0f : 0.0f; n += w[s]; }
    return n;
  }
  load_f32(elem_ptr(mask, mdt, b * S), mdt, S, w);
  double n = 0;
  for (int64_t s = 0; s < S; s++) n += w[s];
  return n;
}

L2C_TARGET_AVX512 void axpy_avx512(float *acc, float a, const void *src, l2c_dtype dt, int64_t n) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(acc + i, _mm512_fmadd_ps(va, load16_avx512(src, dt, i), _mm512_loadu_ps(acc + i)));
  if (i < n) {
    __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(acc + i, m, _mm512_fmadd_ps(va, load16_tail_avx512(src, dt, i, n - i), _mm512_maskz_loadu_ps(m, acc + i)));
  }
}
// acc[0..n) += a * float(src[0..n)); tmp holds n floats for 16-bit sources.
void axpy(float *acc, float a, const void *src, l2c_dtype dt, int64_t n, float *tmp) {
  if (avx512()) { axpy_avx512(acc, a, src, dt, n); return; }
  const float *s = static_cast<const float *>(src);
  if (dt != L2C_FLOAT32) { load_f32(src, dt, n, tmp); s = tmp; }
  for (int64_t i = 0; i < n; i++) acc[i] += a * s[i];
}

}  // namespace

void masked_mean_pool_forward(const void *hidden, l2c_dtype dt, const void *mask, l2c_dtype mdt,
                              void *out, int64_t B, int64_t S, int64_t H) {
  if (B == 0 || H == 0) return;
  const int64_t T = num_threads();
  int64_t ncol = 1;
  if (B < 2 * T && H >= 128) ncol = std::min<int64_t>((2 * T + B - 1) / B, H / 64);
  const int64_t hc = ((H + ncol - 1) / ncol + 15) / 16 * 16;
  ncol = (H + hc - 1) / hc;
  parallel_tasks(B * ncol, [&](int64_t t) {
    const int64_t b = t / ncol, h0 = (t % ncol) * hc, hn = std::min(H, h0 + hc) - h0;
    std::vector<float> w((size_t)S), buf((size_t)(3 * hn));
    float *acc = buf.data(), *blk = acc + hn, *tmp = blk + hn;
    double wsum = pool_weights(mask, mdt, b, S, w.data());
    std::fill(acc, acc + hn, 0.0f);
    if (wsum != 0) {
      std::fill(blk, blk + hn, 0.0f);
      int64_t inblk = 0;
      for (int64_t s = 0; s < S; s++) {
        if (w[(size_t)s] == 0) continue;
        axpy(blk, w[(size_t)s], elem_ptr(hidden, dt, (b * S + s) * H + h0), dt, hn, tmp);
        if (++inblk == DW_BLOCK) {
          for (int64_t i = 0; i < hn; i++) { acc[i] += blk[i]; blk[i] = 0; }
          inblk = 0;
        }
      }
      float inv = (float)(1.0 / wsum);
      for (int64_t i = 0; i < hn; i++) acc[i] = (acc[i] + blk[i]) * inv;
    }
    store_row(acc, elem_ptr(out, dt, b * H + h0), dt, hn);
  });
}

void masked_mean_pool_backward(const void *dy, l2c_dtype dt, const void *mask, l2c_dtype mdt,
                               void *dhidden, int64_t B, int64_t S, int64_t H) {
  if (B == 0 || S == 0 || H == 0) return;
  // Per row b: the coefficients w[s] / sum(w).
  std::vector<float> coef((size_t)(B * S));
  for (int64_t b = 0; b < B; b++) {
    float *c = &coef[(size_t)(b * S)];
    double wsum = pool_weights(mask, mdt, b, S, c);
    double inv = wsum != 0 ? 1.0 / wsum : 0.0;
    for (int64_t s = 0; s < S; s++) c[s] = wsum != 0 ? (float)(c[s] * inv) : 0.0f;
  }
  chunked(B * S, row_grain(H), [&](int64_t, int64_t rb, int64_t re) {
    std::vector<float> buf((size_t)(2 * H));
    float *dyb = buf.data(), *o = dyb + H;
    int64_t loaded = -1;
    for (int64_t r = rb; r < re; r++) {
      int64_t b = r / S;
      if (b != loaded) { load_row(elem_ptr(dy, dt, b * H), dt, H, dyb); loaded = b; }
      float c = coef[(size_t)r];
      float *orow = row_out(dhidden, dt, r, H, o);
      for (int64_t i = 0; i < H; i++) orow[i] = c * dyb[i];
      row_out_commit(orow, dhidden, dt, r, H);
    }
  });
}

}  // namespace layers
}  // namespace cpu
}  // namespace l2c
