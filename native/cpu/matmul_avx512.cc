// matmul_avx512.cc: the AVX-512 matmul level (F/VL/BW/DQ + FMA) behind function target
// attributes (the rest of the library stays baseline x86-64; isa.cc checks the CPU):
// a 14 x 32 register tile (28 zmm accumulators), packing with 16 x 16 transposes and
// bf16/f16 -> f32 conversion, a bf16 pair-dot tile where AVX512_BF16 exists, and a
// vectorised round-to-nearest-even 16-bit output store. See matmul_kernels.h.

// GCC 12's AVX-512 headers seed "undefined" vectors with `__Y = __Y`, which
// -W(maybe-)uninitialized reports once inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#include "half.h"
#include "matmul_kernels.h"

#define L2C_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define L2C_AVX512BF16 \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma,avx512bf16")))

namespace l2c {
namespace cpu {
namespace mm {
namespace {

// 14 x 32: 28 accumulators + 2 B vectors + 1 broadcast = 31 of the 32 zmm registers;
// per k, 16 loads feed 28 FMAs (14 cycles on two FMA pipes).
constexpr int kMR = 14, kNR = 32;

// C tile rows m (1..14) and 16-column vectors NV (1..2) are template parameters so
// that edge tiles do only the work they need (e.g. M = 1 rows cost 1/14 of a tile).
// tile_begin / tile_end are the parts every tile shares (inlined into each).

// Zeroes the accumulators and prefetches C: it is touched once per kc steps, and
// fetching it early hides the miss behind the k loop.
template <int M, int NV>
L2C_AVX512 __attribute__((always_inline)) inline void tile_begin(__m512 *acc0, __m512 *acc1,
                                                               const float *c, int64_t ldc) {
#pragma GCC unroll 14
  for (int r = 0; r < M; r++) {
    acc0[r] = _mm512_setzero_ps();
    if (NV == 2) acc1[r] = _mm512_setzero_ps();
  }
#pragma GCC unroll 14
  for (int r = 0; r < M; r++) {
    _mm_prefetch(reinterpret_cast<const char *>(c + r * ldc), _MM_HINT_T0);
    if (NV == 2) _mm_prefetch(reinterpret_cast<const char *>(c + r * ldc + 31), _MM_HINT_T0);
  }
}

// Writes (or adds, when accumulate) the tile's first n columns to C.
// All loads of C before any store: with ldc a multiple of 1024 floats, rows share
// their low 12 address bits, and a load issued after a store to another row waits as
// a possible alias ("4K aliasing"). Kernel alone, kc 64, ldc 1024: 120 -> 148 GFLOP/s.
template <int M, int NV>
L2C_AVX512 __attribute__((always_inline)) inline void tile_end(__m512 *acc0, __m512 *acc1, float *c,
                                                             int64_t ldc, bool accumulate, int n) {
  __mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
  __mmask16 m1 = n >= 32 ? 0xffff : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
  if (accumulate) {
#pragma GCC unroll 14
    for (int r = 0; r < M; r++) {
      acc0[r] = _mm512_add_ps(acc0[r], _mm512_maskz_loadu_ps(m0, c + r * ldc));
      if (NV == 2) acc1[r] = _mm512_add_ps(acc1[r], _mm512_maskz_loadu_ps(m1, c + r * ldc + 16));
    }
  }
#pragma GCC unroll 14
  for (int r = 0; r < M; r++) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, acc0[r]);
    if (NV == 2) _mm512_mask_storeu_ps(c + r * ldc + 16, m1, acc1[r]);
  }
}

template <int M, int NV>
L2C_AVX512 void tile_mn(int64_t kc, const float *a, const float *b, float *c,
                        int64_t ldc, bool accumulate, int n) {
  __m512 acc0[M], acc1[M];
  tile_begin<M, NV>(acc0, acc1, c, ldc);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_load_ps(b);
    __m512 b1 = NV == 2 ? _mm512_load_ps(b + 16) : b0;
#pragma GCC unroll 14
    for (int r = 0; r < M; r++) {
      __m512 ar = _mm512_set1_ps(a[r]);
      acc0[r] = _mm512_fmadd_ps(ar, b0, acc0[r]);
      if (NV == 2) acc1[r] = _mm512_fmadd_ps(ar, b1, acc1[r]);
    }
    a += kMR;
    b += kNR;
  }
  tile_end<M, NV>(acc0, acc1, c, ldc, accumulate, n);
}

using TileFn = void (*)(int64_t, const float *, const float *, float *, int64_t, bool, int);

// [m - 1][n > 16] -> the tile instantiation for m rows and one or two column vectors.
template <template <int, int> class Tile, int... I>
constexpr std::array<std::array<TileFn, 2>, sizeof...(I)> tile_table(std::integer_sequence<int, I...>) {
  return {{{Tile<I + 1, 1>::fn, Tile<I + 1, 2>::fn}...}};
}
template <int M, int NV>
struct F32Tile {
  static constexpr TileFn fn = tile_mn<M, NV>;
};
constexpr auto kTiles = tile_table<F32Tile>(std::make_integer_sequence<int, kMR>());

void tile_avx512(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                 bool accumulate, int m, int n) {
  kTiles[m - 1][n > 16](kc, a, b, c, ldc, accumulate, n);
}

// bfloat16 inputs on CPUs with AVX512_BF16: vdpbf16ps multiplies pairs of consecutive
// k and adds both products to float32 accumulators (each sum rounded, as an FMA chain
// is; subnormal inputs and outputs flush to zero), twice the MACs per instruction of
// vfmadd231ps. Same 14 x 32 tile; kp counts k pairs, each a 32-bit unit in the panels.
template <int M, int NV>
L2C_AVX512BF16 void tile_bf16_mn(int64_t kp, const float *a, const float *b, float *c,
                                 int64_t ldc, bool accumulate, int n) {
  __m512 acc0[M], acc1[M];
  tile_begin<M, NV>(acc0, acc1, c, ldc);
#pragma GCC unroll 4
  for (int64_t k = 0; k < kp; k++) {
    __m512bh b0 = (__m512bh)_mm512_load_ps(b);
    __m512bh b1 = NV == 2 ? (__m512bh)_mm512_load_ps(b + 16) : b0;
#pragma GCC unroll 14
    for (int r = 0; r < M; r++) {
      __m512bh ar = (__m512bh)_mm512_set1_ps(a[r]);  // the (k, k+1) pair of row r
      acc0[r] = _mm512_dpbf16_ps(acc0[r], ar, b0);
      if (NV == 2) acc1[r] = _mm512_dpbf16_ps(acc1[r], ar, b1);
    }
    a += kMR;
    b += kNR;
  }
  tile_end<M, NV>(acc0, acc1, c, ldc, accumulate, n);
}

template <int M, int NV>
struct Bf16Tile {
  static constexpr TileFn fn = tile_bf16_mn<M, NV>;
};
constexpr auto kTilesBf16 = tile_table<Bf16Tile>(std::make_integer_sequence<int, kMR>());

void tile_bf16(int64_t kp, const float *a, const float *b, float *c, int64_t ldc,
               bool accumulate, int m, int n) {
  kTilesBf16[m - 1][n > 16](kp, a, b, c, ldc, accumulate, n);
}

// ---- packing ----

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

// 16 consecutive elements of dtype dt at p (lanes beyond the mask read as 0) as floats.
// bf16 -> f32 is a 16-bit shift; f16 -> f32 (vcvtph2ps) is exact, subnormals included.
L2C_AVX512 inline __m512 load16(const void *p, l2c_dtype dt, __mmask16 m) {
  if (dt == L2C_FLOAT32) return _mm512_maskz_loadu_ps(m, p);
  __m256i h = _mm256_maskz_loadu_epi16(m, p);
  if (dt == L2C_BFLOAT16)
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_cvtph_ps(h);
}

// In-register transpose: r[i] lane j -> r[j] lane i.
L2C_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
  // r[4q + s] now holds, in each 128-bit lane L, rows 4q..4q+3 at column 4L + s.
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
  }
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
  }
}

// sx == 1: for each k the w values of a panel are contiguous in the source. k is the
// outer loop so that each source row is read once, front to back: panel by panel, the
// kc rows (4 KB apart at ld 1024) fell out of L1/L2 before the next panel's 56 bytes
// of them were read (trans_a at 1024^3: 239 -> NN-level GFLOP/s).
L2C_AVX512 void pack_copy(const char *src, l2c_dtype dt, int64_t es, int64_t sk,
                          int64_t nx, int64_t kc, int w, float *dst) {
  for (int64_t k = 0; k < kc; k++) {
    const char *s = src + k * sk * es;
    float *d = dst + k * w;
    for (int64_t x0 = 0; x0 < nx; x0 += w, s += w * es, d += w * kc) {
      int64_t rows = std::min<int64_t>(w, nx - x0);
      for (int g = 0; g < w; g += 16)
        _mm512_mask_storeu_ps(d + g, lanes(w - g), load16(s + g * es, dt, lanes(rows - g)));
    }
  }
}

// sk == 1: each source row is contiguous along k; 16 rows x 16 k are loaded, transposed
// in registers and stored as 16 k-steps of the panel.
L2C_AVX512 void pack_transpose(const char *src, l2c_dtype dt, int64_t es, int64_t sx,
                               int64_t nx, int64_t kc, int w, float *dst) {
  for (int64_t x0 = 0; x0 < nx; x0 += w, dst += w * kc) {
    int64_t rows = std::min<int64_t>(w, nx - x0);
    for (int g = 0; g < w; g += 16) {
      int64_t grows = rows - g;  // valid rows of this 16-row group (may be <= 0)
      __mmask16 smask = lanes(w - g);
      for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        int64_t kn = std::min<int64_t>(16, kc - k0);
        __m512 r[16];
        for (int i = 0; i < 16; i++)
          r[i] = i < grows ? load16(src + ((x0 + g + i) * sx + k0) * es, dt, lanes(kn))
                           : _mm512_setzero_ps();
        transpose16(r);
        for (int j = 0; j < kn; j++) _mm512_mask_storeu_ps(dst + (k0 + j) * w + g, smask, r[j]);
      }
    }
  }
}

void pack_avx512(const void *src, l2c_dtype dt, int64_t sx, int64_t sk, int64_t nx,
                 int64_t kc, int w, float *dst) {
  const char *s = static_cast<const char *>(src);
  int64_t es = dt == L2C_FLOAT32 ? 4 : 2;
  if (w > 32) return pack_scalar(src, dt, sx, sk, nx, kc, w, dst);
  if (sx == 1) return pack_copy(s, dt, es, sk, nx, kc, w, dst);
  if (sk == 1) return pack_transpose(s, dt, es, sx, nx, kc, w, dst);
  pack_scalar(src, dt, sx, sk, nx, kc, w, dst);
}

// Pair packing for tile_bf16: (x, k) at uint16 [(k/2)*2w + 2x + (k&1)] of a panel of
// w x ceil(kc/2) 32-bit units; an odd kc's last pair ends in a zero.
inline __mmask32 lanes32(int64_t n) {
  return n >= 32 ? (__mmask32)0xffffffffu : n <= 0 ? (__mmask32)0 : (__mmask32)((1u << n) - 1);
}

// sx == 1: rows k and k+1 are interleaved 16-bit-wise.
L2C_AVX512BF16 void pack_pairs_copy(const uint16_t *src, int64_t sk, int64_t nx, int64_t kc,
                                    int w, uint16_t *dst) {
  int64_t kp = (kc + 1) / 2;
  alignas(64) uint16_t lo_idx[32], hi_idx[32];
  for (int i = 0; i < 16; i++) {
    lo_idx[2 * i] = (uint16_t)i, lo_idx[2 * i + 1] = (uint16_t)(32 + i);
    hi_idx[2 * i] = (uint16_t)(16 + i), hi_idx[2 * i + 1] = (uint16_t)(48 + i);
  }
  const __m512i lo = _mm512_load_si512(lo_idx), hi = _mm512_load_si512(hi_idx);
  for (int64_t k2 = 0; k2 < kp; k2++) {  // k outer, as in pack_copy
    for (int64_t x0 = 0; x0 < nx; x0 += w) {
      __mmask32 rmask = lanes32(std::min<int64_t>(w, nx - x0));
      const uint16_t *s = src + 2 * k2 * sk + x0;
      __m512i r0 = _mm512_maskz_loadu_epi16(rmask, s);
      __m512i r1 = 2 * k2 + 1 < kc ? _mm512_maskz_loadu_epi16(rmask, s + sk)
                                   : _mm512_setzero_si512();
      uint16_t *d = dst + (x0 / w) * 2 * w * kp + 2 * k2 * w;
      _mm512_mask_storeu_epi16(d, lanes32(2 * w), _mm512_permutex2var_epi16(r0, lo, r1));
      if (w > 16)
        _mm512_mask_storeu_epi16(d + 32, lanes32(2 * (w - 16)),
                                 _mm512_permutex2var_epi16(r0, hi, r1));
    }
  }
}

// sk == 1: a (k, k+1) pair is already one 32-bit unit of the source row, so this is the
// float32 16 x 16 transpose on 32 bf16 (16 pairs) per row.
L2C_AVX512BF16 void pack_pairs_transpose(const uint16_t *src, int64_t sx, int64_t nx,
                                         int64_t kc, int w, float *dst) {
  int64_t kp = (kc + 1) / 2;
  for (int64_t x0 = 0; x0 < nx; x0 += w, dst += w * kp) {
    int64_t rows = std::min<int64_t>(w, nx - x0);
    for (int g = 0; g < w; g += 16) {
      int64_t grows = rows - g;
      __mmask16 smask = lanes(w - g);
      for (int64_t k0 = 0; k0 < kc; k0 += 32) {
        int64_t kn = std::min<int64_t>(32, kc - k0);
        __m512 r[16];
        for (int i = 0; i < 16; i++)
          r[i] = i < grows ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(
                                 lanes32(kn), src + (x0 + g + i) * sx + k0))
                           : _mm512_setzero_ps();
        transpose16(r);
        for (int j = 0; j < (kn + 1) / 2; j++)
          _mm512_mask_storeu_ps(dst + (k0 / 2 + j) * w + g, smask, r[j]);
      }
    }
  }
}

void pack_pairs_scalar(const uint16_t *src, int64_t sx, int64_t sk, int64_t nx, int64_t kc,
                       int w, uint16_t *dst) {
  int64_t kp = (kc + 1) / 2;
  for (int64_t x0 = 0; x0 < nx; x0 += w, dst += 2 * w * kp) {
    std::fill(dst, dst + 2 * w * kp, (uint16_t)0);
    for (int64_t x = 0; x < std::min<int64_t>(w, nx - x0); x++)
      for (int64_t k = 0; k < kc; k++)
        dst[(k / 2) * 2 * w + 2 * x + (k & 1)] = src[(x0 + x) * sx + k * sk];
  }
}

// dt is always bfloat16 here (the driver only takes this path for bfloat16 inputs).
void pack_bf16(const void *src, l2c_dtype, int64_t sx, int64_t sk, int64_t nx, int64_t kc,
               int w, float *dst) {
  const uint16_t *s = static_cast<const uint16_t *>(src);
  uint16_t *d = reinterpret_cast<uint16_t *>(dst);
  if (w > 32) return pack_pairs_scalar(s, sx, sk, nx, kc, w, d);
  if (sx == 1) return pack_pairs_copy(s, sk, nx, kc, w, d);
  if (sk == 1) return pack_pairs_transpose(s, sx, nx, kc, w, dst);
  pack_pairs_scalar(s, sx, sk, nx, kc, w, d);
}

// ---- 16-bit output ----

// bfloat16: the same integer round-to-nearest-even as half.h (vcvtneps2bf16 is not
// used: it flushes subnormals). float16: vcvtps2ph with RNE matches half.h bit for bit
// (subnormals, overflow to Inf, NaN quieted keeping the top payload bits); the native
// test checks both against half.h.
L2C_AVX512 void store_half_avx512(const float *src, void *dst, l2c_dtype dt, int64_t n) {
  uint16_t *d = static_cast<uint16_t *>(dst);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i round = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1),
                quiet = _mm512_set1_epi32(0x40);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = lanes(n - i);
    __m512 v = _mm512_maskz_loadu_ps(m, src + i);
    __m256i h;
    if (dt == L2C_BFLOAT16) {
      __m512i u = _mm512_castps_si512(v);
      __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
      __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
      __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(round, lsb)), 16);
      r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), quiet);
      h = _mm512_cvtepi32_epi16(r);
    } else {
      h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    }
    _mm256_mask_storeu_epi16(d + i, m, h);
  }
}

}  // namespace

const KernelSet &kernels_avx512() {
  // kc 512: the A panel (512 x 14 floats = 28 KB) stays in the 48 KB L1, and C is
  //   read-modified-written once per 512 steps (kc 256 measured ~4% slower).
  // nc 256: B block 512 x 256 floats = 512 KB, in the 1 MB L2 next to C lines passing.
  // mc 2044 (146 panels): the A block (4 MB) in L3; B blocks are repacked once per
  //   2044 rows of C only (mc 4088 packed B half as often at 2048^3 but A's packing
  //   slowed as much: no gain).
  // The bf16 pair path when the CPU has AVX512_BF16 (Zen 4+, Cooper Lake, Sapphire
  // Rapids+): 1.8x the float32 FMA rate in a register-only test on Zen 5.
  static const bool bf16 = __builtin_cpu_supports("avx512bf16");
  static const KernelSet ks = {"avx512", kMR, kNR, 2044, 512, 256,
                               tile_avx512, pack_avx512, store_half_avx512,
                               bf16 ? tile_bf16 : nullptr, bf16 ? pack_bf16 : nullptr};
  return ks;
}

}  // namespace mm
}  // namespace cpu
}  // namespace l2c
