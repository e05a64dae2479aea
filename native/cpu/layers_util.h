// layers_util.h: what the layers kernels share: float32 views of rows of any float
// storage dtype (vectorised bfloat16 / float16 widening), task partitioning over the
// pool, and float32 vector math for AVX-512 (sigmoid, erfc) beside scalar twins.
#pragma once
// GCC 12 warns that the _mm*_undefined_*() placeholders inside its own AVX-512
// intrinsics (cvtph_ps, slli_epi32, reduce_add_ps, ...) are used uninitialized when they
// are inlined into target("avx512f") functions (GCC bug 105593, fixed in GCC 13). The
// placeholder is a don't-care operand by design. Diagnostics follow the pragma state at
// the warning's location, which is inside the intrinsics headers: silence the false
// positive there only (the layers files include the headers first through this one).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "half.h"
#include "simd.h"
#include "threadpool.h"

namespace l2c {
namespace cpu {
namespace layers {

inline bool avx512() { return level() == Level::avx512; }

// ---- dtype conversion ----

L2C_TARGET_AVX512 inline __m512 load16_avx512(const void *src, l2c_dtype dt, int64_t i) {
  if (dt == L2C_FLOAT32) return _mm512_loadu_ps(static_cast<const float *>(src) + i);
  __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(static_cast<const uint16_t *>(src) + i));
  if (dt == L2C_BFLOAT16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_cvtph_ps(h);
}
// The first n (< 16) lanes; the rest are 0.
L2C_TARGET_AVX512 inline __m512 load16_tail_avx512(const void *src, l2c_dtype dt, int64_t i, int64_t n) {
  __mmask16 m = (__mmask16)((1u << n) - 1u);
  if (dt == L2C_FLOAT32) return _mm512_maskz_loadu_ps(m, static_cast<const float *>(src) + i);
  __m256i h = _mm256_maskz_loadu_epi16(m, static_cast<const uint16_t *>(src) + i);
  if (dt == L2C_BFLOAT16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_cvtph_ps(h);
}

L2C_TARGET_AVX512 inline void load_row_avx512(const void *src, l2c_dtype dt, int64_t n, float *dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16_avx512(src, dt, i));
  if (i < n)
    _mm512_mask_storeu_ps(dst + i, (__mmask16)((1u << (n - i)) - 1u), load16_tail_avx512(src, dt, i, n - i));
}

// dst[0..n) = float(src[0..n)) (elements of dtype dt).
inline void load_row(const void *src, l2c_dtype dt, int64_t n, float *dst) {
  if (dt != L2C_FLOAT32 && avx512()) load_row_avx512(src, dt, n, dst);
  else load_f32(src, dt, n, dst);
}
// dst[0..n) = src rounded to dt.
inline void store_row(const float *src, void *dst, l2c_dtype dt, int64_t n) { store_f32(src, dst, dt, n); }

inline const void *elem_ptr(const void *base, l2c_dtype dt, int64_t i) {
  return static_cast<const char *>(base) + i * fsize(dt);
}
inline void *elem_ptr(void *base, l2c_dtype dt, int64_t i) {
  return static_cast<char *>(base) + i * fsize(dt);
}

// A float32 view of row r (n elements) of a tensor: the memory itself for float32,
// else a widened copy in buf.
inline const float *row_in(const void *base, l2c_dtype dt, int64_t r, int64_t n, float *buf) {
  if (dt == L2C_FLOAT32) return static_cast<const float *>(base) + r * n;
  load_row(elem_ptr(base, dt, r * n), dt, n, buf);
  return buf;
}
// Where a kernel writes row r in float32: the output itself for float32, else buf
// (then row_out_commit rounds it into the output).
inline float *row_out(void *base, l2c_dtype dt, int64_t r, int64_t n, float *buf) {
  return dt == L2C_FLOAT32 ? static_cast<float *>(base) + r * n : buf;
}
inline void row_out_commit(const float *buf, void *base, l2c_dtype dt, int64_t r, int64_t n) {
  if (dt != L2C_FLOAT32) store_row(buf, elem_ptr(base, dt, r * n), dt, n);
}

// A float vector [D] of any float dtype, widened once (null stays null).
struct Widened {
  std::vector<float> v;
  const float *p = nullptr;
  Widened(const void *src, l2c_dtype dt, int64_t n) {
    if (!src) return;
    if (dt == L2C_FLOAT32) { p = static_cast<const float *>(src); return; }
    v.resize((size_t)n);
    load_row(src, dt, n, v.data());
    p = v.data();
  }
};

// ---- partitioning ----

// Splits [0, n) into at most num_threads() contiguous chunks of at least `grain` items
// and runs fn(chunk, begin, end); returns the number of chunks (for per-chunk partials).
template <class F>
int64_t chunked(int64_t n, int64_t grain, F &&fn) {
  if (n <= 0) return 0;
  grain = std::max<int64_t>(grain, 1);
  int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads(), (n + grain - 1) / grain));
  int64_t per = (n + chunks - 1) / chunks;
  chunks = (n + per - 1) / per;
  if (chunks == 1) {
    fn(0, 0, n);
    return 1;
  }
  parallel_tasks(chunks, [&](int64_t c) {
    int64_t b = c * per, e = std::min(n, b + per);
    fn(c, b, e);
  });
  return chunks;
}
inline int64_t num_chunks(int64_t n, int64_t grain) {
  if (n <= 0) return 0;
  grain = std::max<int64_t>(grain, 1);
  int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(num_threads(), (n + grain - 1) / grain));
  int64_t per = (n + chunks - 1) / chunks;
  return (n + per - 1) / per;
}

// Rows per task so that a task holds about 16K elements of work.
inline int64_t row_grain(int64_t D) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)); }

// ---- math ----

// sigmoid(x) = 1 / (1 + exp(-x)) and 1 - sigmoid(x) without cancellation: for x >= 0,
// 1 - s = e s with e = exp(-x) <= 1; for x < 0, s < 1/2 and 1 - s is exact enough.
inline void sigmoid_pair(float x, float &s, float &oms) {
  float e = std::exp(-x);
  s = 1.0f / (1.0f + e);
  oms = x >= 0 ? e * s : 1.0f - s;
}

L2C_TARGET_AVX512 inline __m512 sigmoid512(__m512 x, __m512 *one_minus) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
  __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, e));
  if (one_minus) {
    __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    *one_minus = _mm512_mask_blend_ps(pos, _mm512_sub_ps(one, s), _mm512_mul_ps(e, s));
  }
  return s;
}

// erfc(z) for z >= 0 (Numerical Recipes' erfcc, a Chebyshev fit of fractional error
// below 1.2e-7 everywhere), with t = 1 / (1 + z/2):
//   erfc(z) = t exp(-z^2 - 1.26551223 + t P(t)).
// The gelu kernels use it on |x|/sqrt2: 1 + erf(x/sqrt2) = erfc(-x/sqrt2), which is 2 -
// erfc(|x|/sqrt2) for x >= 0 and erfc(|x|/sqrt2) for x < 0, so small results keep
// their relative accuracy (no 1 + erf cancellation).
L2C_TARGET_AVX512 inline __m512 erfc_pos512(__m512 z) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), one));
  __m512 p = _mm512_set1_ps(0.17087277f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
  __m512 arg = _mm512_fnmadd_ps(z, z, p);
  return _mm512_mul_ps(t, exp512(arg));
}

}  // namespace layers
}  // namespace cpu
}  // namespace l2c
