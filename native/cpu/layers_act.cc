// layers_act.cc: CPU kernels of the pointwise ops: GELU (erf and tanh forms), QuickGELU,
// SwiGLU, dropout (Philox mask of core/dropout.h, eight counters per AVX-512 step), and
// the rotary embedding (angles in float64, one cos / sin table per distinct position).
#include <cmath>
#include <vector>

#include "backend.h"
#include "dropout.h"
#include "layers.h"
#include "layers_util.h"

namespace l2c {
namespace cpu {
namespace layers {
namespace {

constexpr float SQRT1_2 = 0.70710678118654752f;
constexpr float INV_SQRT_2PI = 0.39894228040143268f;
constexpr float SQRT_2_OVER_PI = 0.79788456080286536f;
constexpr float GELU_C = 0.044715f;
constexpr float QUICK_K = 1.702f;

L2C_TARGET_AVX512 inline __mmask16 tail_mask(int64_t r) { return (__mmask16)((1u << r) - 1u); }

// ---- the block driver ----

// Runs f(in[], out[], m) over blocks of at most 1024 elements, spread over the pool: each
// in[k] / out[k] is a float32 view of elements [i, i + m) (16-bit storage widened into /
// rounded from task buffers).
template <int NIN, int NOUT, class F>
void map_blocks(int64_t n, l2c_dtype dt, const void *const (&in)[NIN], void *const (&out)[NOUT], F &&f) {
  constexpr int64_t BLK = 1024;
  parallel_for(n, 16384, [&](int64_t b, int64_t e) {
    std::vector<float> buf(dt == L2C_FLOAT32 ? 0 : (size_t)(BLK * (NIN + NOUT)));
    for (int64_t i = b; i < e; i += BLK) {
      int64_t m = std::min(BLK, e - i);
      const float *pin[NIN];
      float *pout[NOUT];
      for (int k = 0; k < NIN; k++) {
        if (dt == L2C_FLOAT32) pin[k] = static_cast<const float *>(in[k]) + i;
        else { load_row(elem_ptr(in[k], dt, i), dt, m, &buf[(size_t)(k * BLK)]); pin[k] = &buf[(size_t)(k * BLK)]; }
      }
      for (int k = 0; k < NOUT; k++)
        pout[k] = dt == L2C_FLOAT32 ? static_cast<float *>(out[k]) + i : &buf[(size_t)((NIN + k) * BLK)];
      f(pin, pout, m);
      if (dt != L2C_FLOAT32)
        for (int k = 0; k < NOUT; k++) store_row(pout[k], elem_ptr(out[k], dt, i), dt, m);
    }
  });
}

// ---- activations: portable ----

inline float gelu_f(float x) { return 0.5f * x * std::erfc(-x * SQRT1_2); }
inline float gelu_d(float x) {
  return 0.5f * std::erfc(-x * SQRT1_2) + x * INV_SQRT_2PI * std::exp(-0.5f * x * x);
}
// 0.5 x (1 + tanh u) = x sigmoid(2u).
inline float gelu_tanh_f(float x) {
  float s, oms;
  sigmoid_pair(2.0f * SQRT_2_OVER_PI * (x + GELU_C * x * x * x), s, oms);
  return x * s;
}
inline float gelu_tanh_d(float x) {
  float s, oms;
  sigmoid_pair(2.0f * SQRT_2_OVER_PI * (x + GELU_C * x * x * x), s, oms);
  float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_C * x * x);
  return s + 2.0f * x * s * oms * du;
}
inline float quick_f(float x) {
  float s, oms;
  sigmoid_pair(QUICK_K * x, s, oms);
  return x * s;
}
inline float quick_d(float x) {
  float s, oms;
  sigmoid_pair(QUICK_K * x, s, oms);
  return s + QUICK_K * x * s * oms;
}

void act_generic(int kind, bool backward, const float *dy, const float *x, float *o, int64_t m) {
  switch (kind * 2 + (backward ? 1 : 0)) {
    case L2C_ACT_GELU * 2: for (int64_t i = 0; i < m; i++) o[i] = gelu_f(x[i]); break;
    case L2C_ACT_GELU * 2 + 1: for (int64_t i = 0; i < m; i++) o[i] = dy[i] * gelu_d(x[i]); break;
    case L2C_ACT_GELU_TANH * 2: for (int64_t i = 0; i < m; i++) o[i] = gelu_tanh_f(x[i]); break;
    case L2C_ACT_GELU_TANH * 2 + 1: for (int64_t i = 0; i < m; i++) o[i] = dy[i] * gelu_tanh_d(x[i]); break;
    case L2C_ACT_QUICK_GELU * 2: for (int64_t i = 0; i < m; i++) o[i] = quick_f(x[i]); break;
    default: for (int64_t i = 0; i < m; i++) o[i] = dy[i] * quick_d(x[i]); break;
  }
}

// ---- activations: AVX-512 ----

// act(x) (backward: act'(x)) for 16 lanes.
L2C_TARGET_AVX512 inline __m512 act512(int kind, bool backward, __m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
  if (kind == L2C_ACT_GELU) {
    __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(SQRT1_2));
    __m512 e = erfc_pos512(z);
    __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    __m512 f = _mm512_mask_blend_ps(pos, e, _mm512_sub_ps(_mm512_set1_ps(2.0f), e));  // 1 + erf(x/sqrt2)
    if (!backward) return _mm512_mul_ps(_mm512_mul_ps(half, x), f);
    __m512 phi = exp512(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-0.5f), x), x));
    return _mm512_fmadd_ps(half, f, _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(INV_SQRT_2PI)), phi));
  }
  __m512 arg, oms, du;
  if (kind == L2C_ACT_GELU_TANH) {
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 inner = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(GELU_C), x2), x, x);
    arg = _mm512_mul_ps(_mm512_set1_ps(2.0f * SQRT_2_OVER_PI), inner);
    du = _mm512_mul_ps(_mm512_set1_ps(2.0f * SQRT_2_OVER_PI), _mm512_fmadd_ps(_mm512_set1_ps(3.0f * GELU_C), x2, one));
  } else {
    arg = _mm512_mul_ps(_mm512_set1_ps(QUICK_K), x);
    du = _mm512_set1_ps(QUICK_K);
  }
  __m512 s = sigmoid512(arg, &oms);
  if (!backward) return _mm512_mul_ps(x, s);
  // s + x s (1 - s) arg'
  return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(x, s), oms), du, s);
}

L2C_TARGET_AVX512 void act_avx512(int kind, bool backward, const float *dy, const float *x, float *o, int64_t m) {
  for (int64_t i = 0; i < m; i += 16) {
    __mmask16 k = m - i >= 16 ? (__mmask16)0xFFFF : tail_mask(m - i);
    __m512 v = act512(kind, backward, _mm512_maskz_loadu_ps(k, x + i));
    if (backward) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(k, dy + i));
    _mm512_mask_storeu_ps(o + i, k, v);
  }
}

// ---- swiglu ----

void swiglu_generic(bool backward, const float *dy, const float *g, const float *u, float *o0, float *o1, int64_t m) {
  for (int64_t i = 0; i < m; i++) {
    float s, oms;
    sigmoid_pair(g[i], s, oms);
    float silu = g[i] * s;
    if (!backward) { o0[i] = silu * u[i]; continue; }
    o0[i] = dy[i] * u[i] * s * (1.0f + g[i] * oms);  // dgate
    o1[i] = dy[i] * silu;                              // dup
  }
}
L2C_TARGET_AVX512 void swiglu_avx512(bool backward, const float *dy, const float *g, const float *u, float *o0,
                                     float *o1, int64_t m) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < m; i += 16) {
    __mmask16 k = m - i >= 16 ? (__mmask16)0xFFFF : tail_mask(m - i);
    __m512 gv = _mm512_maskz_loadu_ps(k, g + i), uv = _mm512_maskz_loadu_ps(k, u + i), oms;
    __m512 s = sigmoid512(gv, backward ? &oms : nullptr);
    __m512 silu = _mm512_mul_ps(gv, s);
    if (!backward) { _mm512_mask_storeu_ps(o0 + i, k, _mm512_mul_ps(silu, uv)); continue; }
    __m512 d = _mm512_maskz_loadu_ps(k, dy + i);
    __m512 dg = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(d, uv), s), _mm512_fmadd_ps(gv, oms, one));
    _mm512_mask_storeu_ps(o0 + i, k, dg);
    _mm512_mask_storeu_ps(o1 + i, k, _mm512_mul_ps(d, silu));
  }
}

// ---- dropout ----

// spread8[b]: bit j of b moved to bit 4j.
struct Spread {
  uint32_t v[256];
  Spread() {
    for (int b = 0; b < 256; b++) {
      uint32_t s = 0;
      for (int j = 0; j < 8; j++)
        if (b >> j & 1) s |= 1u << (4 * j);
      v[b] = s;
    }
  }
};
const Spread &spread8() {
  static const Spread s;
  return s;
}

// Keep bits of the 32 elements 4c .. 4c+31 (bit e = element 4c+e kept): Philox4x32-10 on
// eight counters c .. c+7 at once, one per 64-bit lane (philox.h's rounds, lane by lane).
L2C_TARGET_AVX512 uint32_t keep32_avx512(uint64_t c, uint64_t seed, uint32_t thresh, const uint32_t *spread) {
  const __m512i lo32 = _mm512_set1_epi64(0xFFFFFFFFll);
  __m512i ctr = _mm512_add_epi64(_mm512_set1_epi64((long long)c), _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0));
  __m512i c0 = _mm512_and_si512(ctr, lo32), c1 = _mm512_srli_epi64(ctr, 32);
  __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  const __m512i m0 = _mm512_set1_epi64(0xD2511F53ll), m1 = _mm512_set1_epi64(0xCD9E8D57ll);
  for (int r = 0; r < 10; r++) {
    __m512i p0 = _mm512_mul_epu32(m0, c0), p1 = _mm512_mul_epu32(m1, c2);
    __m512i hi0 = _mm512_srli_epi64(p0, 32), lo0 = _mm512_and_si512(p0, lo32);
    __m512i hi1 = _mm512_srli_epi64(p1, 32), lo1 = _mm512_and_si512(p1, lo32);
    c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi64((long long)k0));
    c1 = lo1;
    c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi64((long long)k1));
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const __m512i t = _mm512_set1_epi64((long long)thresh);
  uint32_t keep = spread[_mm512_cmpge_epu64_mask(c0, t)];
  keep |= spread[_mm512_cmpge_epu64_mask(c1, t)] << 1;
  keep |= spread[_mm512_cmpge_epu64_mask(c2, t)] << 2;
  keep |= spread[_mm512_cmpge_epu64_mask(c3, t)] << 3;
  return keep;
}

// y[j] = keep(i0 + j) ? x[j] * scale : 0 for j < m; i0 a multiple of 32, m <= 1024.
L2C_TARGET_AVX512 void dropout_avx512(const float *x, float *y, int64_t m, uint64_t i0, uint64_t seed, uint32_t thresh,
                                      float scale) {
  const uint32_t *spread = spread8().v;
  const __m512 vs = _mm512_set1_ps(scale);
  int64_t j = 0;
  for (; j + 32 <= m; j += 32) {
    uint32_t keep = keep32_avx512((i0 + (uint64_t)j) >> 2, seed, thresh, spread);
    _mm512_storeu_ps(y + j, _mm512_maskz_mul_ps((__mmask16)keep, _mm512_loadu_ps(x + j), vs));
    _mm512_storeu_ps(y + j + 16, _mm512_maskz_mul_ps((__mmask16)(keep >> 16), _mm512_loadu_ps(x + j + 16), vs));
  }
  for (; j < m; j += 4) {
    unsigned k4 = dropout::keep4(seed, (i0 + (uint64_t)j) >> 2, thresh);
    for (int64_t l = 0; l < 4 && j + l < m; l++) y[j + l] = (k4 >> l & 1) ? x[j + l] * scale : 0.0f;
  }
}

void dropout_generic(const float *x, float *y, int64_t m, uint64_t i0, uint64_t seed, uint32_t thresh, float scale) {
  for (int64_t j = 0; j < m; j += 4) {
    unsigned k4 = dropout::keep4(seed, (i0 + (uint64_t)j) >> 2, thresh);
    for (int64_t l = 0; l < 4 && j + l < m; l++) y[j + l] = (k4 >> l & 1) ? x[j + l] * scale : 0.0f;
  }
}

// ---- rope ----

// out[i] = x[i] c - sign x[i+h] s, out[i+h] = x[i+h] c + sign x[i] s, i < h; one head.
void rope_head_generic(const float *x, const float *c, const float *s, float *o, int64_t h) {
  for (int64_t i = 0; i < h; i++) {
    float x1 = x[i], x2 = x[i + h];
    o[i] = x1 * c[i] - x2 * s[i];
    o[i + h] = x2 * c[i] + x1 * s[i];
  }
}
L2C_TARGET_AVX512 void rope_head_avx512(const float *x, const float *c, const float *s, float *o, int64_t h) {
  for (int64_t i = 0; i < h; i += 16) {
    __mmask16 k = h - i >= 16 ? (__mmask16)0xFFFF : tail_mask(h - i);
    __m512 x1 = _mm512_maskz_loadu_ps(k, x + i), x2 = _mm512_maskz_loadu_ps(k, x + h + i);
    __m512 cv = _mm512_maskz_loadu_ps(k, c + i), sv = _mm512_maskz_loadu_ps(k, s + i);
    _mm512_mask_storeu_ps(o + i, k, _mm512_fmsub_ps(x1, cv, _mm512_mul_ps(x2, sv)));
    _mm512_mask_storeu_ps(o + h + i, k, _mm512_fmadd_ps(x2, cv, _mm512_mul_ps(x1, sv)));
  }
}

// cos / sin of position p for each frequency (float64 angle), sin times sign.
void rope_angles(int64_t p, const double *inv_freq, int64_t h, int sign, float *c, float *s) {
  for (int64_t i = 0; i < h; i++) {
    double a = (double)p * inv_freq[i];
    c[i] = (float)std::cos(a);
    s[i] = (float)(sign * std::sin(a));
  }
}

}  // namespace

void activation_forward(int kind, const void *x, l2c_dtype dt, void *y, int64_t n) {
  const bool vec = avx512();
  const void *in[1] = {x};
  void *out[1] = {y};
  map_blocks(n, dt, in, out, [&](const float *const *i, float *const *o, int64_t m) {
    if (vec) act_avx512(kind, false, nullptr, i[0], o[0], m);
    else act_generic(kind, false, nullptr, i[0], o[0], m);
  });
}

void activation_backward(int kind, const void *dy, const void *x, l2c_dtype dt, void *dx, int64_t n) {
  const bool vec = avx512();
  const void *in[2] = {dy, x};
  void *out[1] = {dx};
  map_blocks(n, dt, in, out, [&](const float *const *i, float *const *o, int64_t m) {
    if (vec) act_avx512(kind, true, i[0], i[1], o[0], m);
    else act_generic(kind, true, i[0], i[1], o[0], m);
  });
}

void swiglu_forward(const void *gate, const void *up, l2c_dtype dt, void *out, int64_t n) {
  const bool vec = avx512();
  const void *in[2] = {gate, up};
  void *outs[1] = {out};
  map_blocks(n, dt, in, outs, [&](const float *const *i, float *const *o, int64_t m) {
    if (vec) swiglu_avx512(false, nullptr, i[0], i[1], o[0], nullptr, m);
    else swiglu_generic(false, nullptr, i[0], i[1], o[0], nullptr, m);
  });
}

void swiglu_backward(const void *dy, const void *gate, const void *up, l2c_dtype dt, void *dgate, void *dup,
                     int64_t n) {
  const bool vec = avx512();
  const void *in[3] = {dy, gate, up};
  void *outs[2] = {dgate, dup};
  map_blocks(n, dt, in, outs, [&](const float *const *i, float *const *o, int64_t m) {
    if (vec) swiglu_avx512(true, i[0], i[1], i[2], o[0], o[1], m);
    else swiglu_generic(true, i[0], i[1], i[2], o[0], o[1], m);
  });
}

void dropout(const void *x, l2c_dtype dt, void *y, int64_t n, float p, uint64_t seed) {
  if (n == 0) return;
  const uint32_t thresh = dropout::threshold(p);
  const float scale = dropout::scale(p);
  const bool vec = avx512();
  constexpr int64_t BLK = 1024;  // a multiple of 32: blocks start on counter boundaries
  const int64_t nblk = (n + BLK - 1) / BLK;
  parallel_for(nblk, 16, [&](int64_t bb, int64_t be) {
    std::vector<float> buf(dt == L2C_FLOAT32 ? 0 : (size_t)(2 * BLK));
    for (int64_t blk = bb; blk < be; blk++) {
      int64_t i = blk * BLK, m = std::min(BLK, n - i);
      const float *xi;
      float *yo;
      if (dt == L2C_FLOAT32) {
        xi = static_cast<const float *>(x) + i;
        yo = static_cast<float *>(y) + i;
      } else {
        load_row(elem_ptr(x, dt, i), dt, m, buf.data());
        xi = buf.data();
        yo = buf.data() + BLK;
      }
      if (vec) dropout_avx512(xi, yo, m, (uint64_t)i, seed, thresh, scale);
      else dropout_generic(xi, yo, m, (uint64_t)i, seed, thresh, scale);
      if (dt != L2C_FLOAT32) store_row(yo, elem_ptr(y, dt, i), dt, m);
    }
  });
}

void rope(const void *x, l2c_dtype dt, const int32_t *positions, bool per_batch, const double *inv_freq,
          void *out, int64_t B, int64_t S, int64_t H, int64_t D, int sign) {
  const int64_t ntok = B * S, h = D / 2, row = H * D;
  if (ntok == 0 || row == 0) return;
  const int64_t npos = per_batch ? ntok : S;
  int64_t pmin = positions[0], pmax = positions[0];
  for (int64_t i = 1; i < npos; i++) {
    pmin = std::min<int64_t>(pmin, positions[i]);
    pmax = std::max<int64_t>(pmax, positions[i]);
  }
  // A table of cos / sin per position when the positions span a range no wider than
  // the tokens (the usual 0..S-1, also shifted or left padded): every angle computed
  // once. Otherwise (sparse huge positions) per token.
  const int64_t range = pmax - pmin + 1;
  const bool table = range <= std::max<int64_t>(npos, 64) && range * h <= (int64_t)1 << 24;
  std::vector<float> tab;
  if (table) {
    tab.resize((size_t)(range * 2 * h));
    chunked(range, std::max<int64_t>(1, 2048 / std::max<int64_t>(h, 1)), [&](int64_t, int64_t b, int64_t e) {
      for (int64_t q = b; q < e; q++)
        rope_angles(pmin + q, inv_freq, h, sign, &tab[(size_t)(q * 2 * h)], &tab[(size_t)(q * 2 * h + h)]);
    });
  }
  const bool vec = avx512();
  chunked(ntok, row_grain(row), [&](int64_t, int64_t b, int64_t e) {
    std::vector<float> buf((size_t)(2 * row + (table ? 0 : 2 * h)));
    float *bx = buf.data(), *bo = bx + row, *cs = bo + row;
    for (int64_t t = b; t < e; t++) {
      int64_t p = positions[per_batch ? t : t % S];
      const float *c, *s;
      if (table) {
        c = &tab[(size_t)((p - pmin) * 2 * h)];
        s = c + h;
      } else {
        rope_angles(p, inv_freq, h, sign, cs, cs + h);
        c = cs;
        s = cs + h;
      }
      const float *xr = row_in(x, dt, t, row, bx);
      float *orow = row_out(out, dt, t, row, bo);
      for (int64_t hd = 0; hd < H; hd++) {
        if (vec) rope_head_avx512(xr + hd * D, c, s, orow + hd * D, h);
        else rope_head_generic(xr + hd * D, c, s, orow + hd * D, h);
      }
      row_out_commit(orow, out, dt, t, row);
    }
  });
}

void rope_inv_freq(int64_t D, double theta, int scaling, double factor, double low_freq_factor,
                   double high_freq_factor, double original_max_pos, double *inv_freq) {
  const int64_t h = D / 2;
  const double pi = 3.14159265358979323846;
  for (int64_t i = 0; i < h; i++) {
    double f = 1.0 / std::pow(theta, (double)(2 * i) / (double)D);
    if (scaling == L2C_ROPE_SCALING_LINEAR) {
      f /= factor;
    } else if (scaling == L2C_ROPE_SCALING_LLAMA3) {
      double low_wavelen = original_max_pos / low_freq_factor;
      double high_wavelen = original_max_pos / high_freq_factor;
      double wavelen = 2.0 * pi / f;
      if (wavelen > low_wavelen) {
        f /= factor;
      } else if (!(wavelen < high_wavelen)) {
        double s = (original_max_pos / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
        f = (1.0 - s) * f / factor + s * f;
      }
    }
    inv_freq[i] = f;
  }
}

}  // namespace layers
}  // namespace cpu
}  // namespace l2c
