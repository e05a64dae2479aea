// matmul_avx2.cc: the AVX2 + FMA (+ F16C) matmul level, for x86-64 CPUs without
// AVX-512; compiled through function target attributes and reached only via isa.cc
// after a CPU check. A 6 x 16 register tile (12 ymm accumulators), 8 x 8 transposes
// for packing, vectorised 16-bit output. See matmul_kernels.h.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "half.h"
#include "matmul_kernels.h"

#define L2C_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace l2c {
namespace cpu {
namespace mm {
namespace {

// 6 x 16: 12 accumulators + 2 B vectors + 1 broadcast = 15 of the 16 ymm registers.
constexpr int kMR = 6, kNR = 16;

// Lane mask for _mm256_maskload/maskstore: lanes [0, n) set.
L2C_AVX2 inline __m256i lane_mask(int64_t n) {
  n = std::max<int64_t>(0, std::min<int64_t>(8, n));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

template <int M, int NV>
L2C_AVX2 void tile_mn(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                      bool accumulate, int n) {
  __m256 acc0[M], acc1[M];
#pragma GCC unroll 6
  for (int r = 0; r < M; r++) {
    acc0[r] = _mm256_setzero_ps();
    if (NV == 2) acc1[r] = _mm256_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps(b);
    __m256 b1 = NV == 2 ? _mm256_load_ps(b + 8) : b0;
#pragma GCC unroll 6
    for (int r = 0; r < M; r++) {
      __m256 ar = _mm256_broadcast_ss(a + r);
      acc0[r] = _mm256_fmadd_ps(ar, b0, acc0[r]);
      if (NV == 2) acc1[r] = _mm256_fmadd_ps(ar, b1, acc1[r]);
    }
    a += kMR;
    b += kNR;
  }
  __m256i m0 = lane_mask(n), m1 = lane_mask(n - 8);
  if (accumulate) {  // all loads before the stores (4K aliasing, see matmul_avx512.cc)
#pragma GCC unroll 6
    for (int r = 0; r < M; r++) {
      acc0[r] = _mm256_add_ps(acc0[r], _mm256_maskload_ps(c + r * ldc, m0));
      if (NV == 2) acc1[r] = _mm256_add_ps(acc1[r], _mm256_maskload_ps(c + r * ldc + 8, m1));
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < M; r++) {
    _mm256_maskstore_ps(c + r * ldc, m0, acc0[r]);
    if (NV == 2) _mm256_maskstore_ps(c + r * ldc + 8, m1, acc1[r]);
  }
}

using TileFn = void (*)(int64_t, const float *, const float *, float *, int64_t, bool, int);
const TileFn kTiles[kMR][2] = {
    {tile_mn<1, 1>, tile_mn<1, 2>}, {tile_mn<2, 1>, tile_mn<2, 2>},
    {tile_mn<3, 1>, tile_mn<3, 2>}, {tile_mn<4, 1>, tile_mn<4, 2>},
    {tile_mn<5, 1>, tile_mn<5, 2>}, {tile_mn<6, 1>, tile_mn<6, 2>},
};

void tile_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
               bool accumulate, int m, int n) {
  kTiles[m - 1][n > 8](kc, a, b, c, ldc, accumulate, n);
}

// ---- packing ----

// 8 elements of dtype dt at p as floats; only the first n (0..8) are read, the rest 0.
L2C_AVX2 inline __m256 load8(const char *p, l2c_dtype dt, int64_t n) {
  alignas(32) char tmp[32];
  if (n < 8) {
    std::memset(tmp, 0, sizeof tmp);
    if (n > 0) std::memcpy(tmp, p, n * (dt == L2C_FLOAT32 ? 4 : 2));
    p = tmp;
  }
  if (dt == L2C_FLOAT32) return _mm256_loadu_ps(reinterpret_cast<const float *>(p));
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
  if (dt == L2C_BFLOAT16)
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  return _mm256_cvtph_ps(h);
}

L2C_AVX2 inline void transpose8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
  // r[4q + s] holds rows 4q..4q+3 at columns s (low half) and 4 + s (high half).
  for (int i = 0; i < 4; i++) {
    t[i] = _mm256_permute2f128_ps(r[i], r[4 + i], 0x20);
    t[4 + i] = _mm256_permute2f128_ps(r[i], r[4 + i], 0x31);
  }
  for (int i = 0; i < 8; i++) r[i] = t[i];
}

// k outer: each source row is read once, front to back (see matmul_avx512.cc).
L2C_AVX2 void pack_copy(const char *src, l2c_dtype dt, int64_t es, int64_t sk, int64_t nx,
                        int64_t kc, int w, float *dst) {
  for (int64_t k = 0; k < kc; k++) {
    const char *s = src + k * sk * es;
    float *d = dst + k * w;
    for (int64_t x0 = 0; x0 < nx; x0 += w, s += w * es, d += w * kc) {
      int64_t rows = std::min<int64_t>(w, nx - x0);
      for (int g = 0; g < w; g += 8)
        _mm256_maskstore_ps(d + g, lane_mask(w - g), load8(s + g * es, dt, rows - g));
    }
  }
}

L2C_AVX2 void pack_transpose(const char *src, l2c_dtype dt, int64_t es, int64_t sx,
                             int64_t nx, int64_t kc, int w, float *dst) {
  for (int64_t x0 = 0; x0 < nx; x0 += w, dst += w * kc) {
    int64_t rows = std::min<int64_t>(w, nx - x0);
    for (int g = 0; g < w; g += 8) {
      int64_t grows = rows - g;
      __m256i smask = lane_mask(w - g);
      for (int64_t k0 = 0; k0 < kc; k0 += 8) {
        int64_t kn = std::min<int64_t>(8, kc - k0);
        __m256 r[8];
        for (int i = 0; i < 8; i++)
          r[i] = i < grows ? load8(src + ((x0 + g + i) * sx + k0) * es, dt, kn)
                           : _mm256_setzero_ps();
        transpose8(r);
        for (int j = 0; j < kn; j++) _mm256_maskstore_ps(dst + (k0 + j) * w + g, smask, r[j]);
      }
    }
  }
}

void pack_avx2(const void *src, l2c_dtype dt, int64_t sx, int64_t sk, int64_t nx, int64_t kc,
               int w, float *dst) {
  const char *s = static_cast<const char *>(src);
  int64_t es = dt == L2C_FLOAT32 ? 4 : 2;
  if (w > 16) return pack_scalar(src, dt, sx, sk, nx, kc, w, dst);
  if (sx == 1) return pack_copy(s, dt, es, sk, nx, kc, w, dst);
  if (sk == 1) return pack_transpose(s, dt, es, sx, nx, kc, w, dst);
  pack_scalar(src, dt, sx, sk, nx, kc, w, dst);
}

// ---- 16-bit output (same rounding as half.h; see matmul_avx512.cc) ----

L2C_AVX2 void store_half_avx2(const float *src, void *dst, l2c_dtype dt, int64_t n) {
  uint16_t *d = static_cast<uint16_t *>(dst);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i round = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1),
                quiet = _mm256_set1_epi32(0x40);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(src + i);
    __m128i h;
    if (dt == L2C_BFLOAT16) {
      __m256i u = _mm256_castps_si256(v);
      // |u| as int32 is non-negative, so the signed compare is the unsigned one.
      __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
      __m256i hi = _mm256_srli_epi32(u, 16);
      __m256i r = _mm256_srli_epi32(
          _mm256_add_epi32(u, _mm256_add_epi32(round, _mm256_and_si256(hi, one))), 16);
      r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, quiet), nan);
      // Values are < 2^16, so unsigned-saturating packs are exact; packus interleaves
      // 128-bit halves, undone by the permute.
      __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
      h = _mm256_castsi256_si128(packed);
    } else {
      h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    _mm_storeu_si128(reinterpret_cast<__m128i *>(d + i), h);
  }
  if (i < n) store_half_scalar(src + i, d + i, dt, n - i);
}

}  // namespace

const KernelSet &kernels_avx2() {
  // kc 256: A panel 256 x 6 floats = 6 KB in L1; nc 192: B block 192 KB, within a
  // 256 KB L2 (Haswell); mc 1020: A block 1 MB in L3. Sized from the cache sizes, not
  // tuned on an AVX2-only CPU (none at hand).
  static const KernelSet ks = {"avx2", kMR, kNR, 1020, 256, 192,
                               tile_avx2, pack_avx2, store_half_avx2, nullptr, nullptr};
  return ks;
}

}  // namespace mm
}  // namespace cpu
}  // namespace l2c
