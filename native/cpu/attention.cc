// attention.cc: CPU kernels: fused bidirectional / causal attention (flash-style), forward and backward.
//
// Nothing of size [S,S] exists: both directions walk tiles of Br query rows x Bc key
// columns. The products (S = Q·Kᵀ, P·V, dP = dO·Vᵀ, dV += Pᵀ·dO, dK += dSᵀ·Q,
// dQ += dS·K) run on register tiles over packed panels: the matmul level's own tile
// (matmul_kernels.h; packing also widens bfloat16 / float16) where an operand is an
// input packed once per unit, and on AVX-512 a twin tile here that reads the tile's
// P / dS in place, transposed or not (no packing pass per tile). The softmax passes
// between them have an AVX-512 body (an exp applying its exponent with vscalefps) and
// a portable one.
//
// Forward (FlashAttention-2): per query tile, running row max m and sum l in float32;
// each key tile's scores become p = exp(scale·s − m'), the float32 output accumulator
// is rescaled by exp(m − m') and gets P·V added; at the end out = acc / l and
// lse = m + log l. Work units are (batch, kv head[, slice of query tiles]): a unit
// packs its K and V once and serves every query head of the group.
//
// Backward: Δ_i = rowsum(dO_i ∘ O_i); P_ij = exp(scale·s_ij − lse_i) is recomputed per
// tile, dS = scale·P ∘ (dP − Δ). Units are (batch, kv head[, slice of key tiles]); a
// unit owns dK / dV of its keys for all query heads of the group. With one slice per
// (batch, kv head) it also owns those heads' dQ; with several (too few (batch, kv head)
// pairs for the threads), each unit adds into a private float32 dQ partial, summed
// afterwards: O(units · S · D) memory, never O(S²).
//
// Key tiles that the padding mask empties are skipped, and (causal) so are tiles
// wholly above the diagonal.

// GCC 12's AVX-512 headers seed "undefined" vectors with `__Y = __Y`, which
// -W(maybe-)uninitialized reports once inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "attention.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>

#include "backend.h"
#include "matmul_kernels.h"
#include "simd.h"
#include "threadpool.h"

namespace l2c {
namespace cpu {
namespace {

using mm::KernelSet;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Target tile sizes, rounded up to the level's register tile (Br to MR rows, Bc to NR
// columns) so that whole-sequence packed panels line up with tiles. The forward takes
// wider key tiles: its per-tile row passes (max, rescale) amortise over more columns.
constexpr int64_t kBr = 112, kBcForward = 256, kBcBackward = 128;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// A per-thread, 64-byte aligned float buffer that only grows (reused across calls).
class Scratch {
 public:
  ~Scratch() { std::free(p_); }
  float *get(int64_t floats) {
    if (floats > cap_) {
      std::free(p_);
      cap_ = 0;
      p_ = static_cast<float *>(std::aligned_alloc(64, (size_t)round_up(std::max<int64_t>(floats, 1) * 4, 64)));
      if (!p_) fail(L2C_OUT_OF_MEMORY, "attention: cannot allocate a scratch buffer");
      cap_ = floats;
    }
    return p_;
  }

 private:
  float *p_ = nullptr;
  int64_t cap_ = 0;
};

enum Buf { kKT, kKB, kVT, kQA, kQB, kOA, kOB, kS, kP, kPack, kAcc, kAcc2, kDQ, kRow, kNumBufs };
thread_local Scratch tl_buf[kNumBufs];
float *scratch(Buf b, int64_t floats) { return tl_buf[b].get(floats); }

struct AlignedFree {
  void operator()(float *p) const { std::free(p); }
};

using TileFn = decltype(KernelSet::tile);
using PackFn = decltype(KernelSet::pack);

// Tile geometry and kernels for the SIMD level in use. The score products (Q·Kᵀ and
// dO·Vᵀ, depth D) of bfloat16 inputs use the level's bf16 pair kernels where it has
// them (AVX512_BF16: exact bf16 products, float32 sums, twice the FMA rate); their
// packed panels then hold Dk = ceil(D/2) 32-bit units of depth instead of D floats.
struct Geo {
  const KernelSet &ks;
  int mr, nr;
  int64_t Br, Bc, ldS;
  Level level;
  bool avx512;
  int64_t Dk;       // depth units of the score products' panels
  TileFn sc_tile;   // their tile kernel
  PackFn sc_pack;   // and packing
  Geo(const AttentionParams &p, bool forward) : ks(mm::active_kernels()) {
    mr = ks.mr;
    nr = ks.nr;
    Br = round_up(kBr, mr);
    Bc = round_up(forward ? kBcForward : kBcBackward, nr);
    ldS = round_up(Bc, 16);
    level = cpu::level();
    avx512 = level == Level::avx512;
    const bool pairs = p.dt == L2C_BFLOAT16 && ks.tile_bf16 && ks.pack_bf16;
    Dk = pairs ? (p.D + 1) / 2 : p.D;
    sc_tile = pairs ? ks.tile_bf16 : ks.tile;
    sc_pack = pairs ? ks.pack_bf16 : ks.pack;
  }
};

// C[rows x cols] (row stride ldc) = (acc ? C : 0) + A · B through `tile`, with A in
// packed A-form panels (MR rows, depth kd, panel p at A + p·MR·kd) and B in packed
// B-form panels (NR columns, depth kd, panel q at B + q·bstride).
void gemm_tiles(const Geo &g, TileFn tile, int64_t kd, const float *A, int64_t rows,
                const float *B, int64_t bstride, int64_t cols, float *C, int64_t ldc, bool acc) {
  for (int64_t i = 0; i < rows; i += g.mr) {
    int m = (int)std::min<int64_t>(g.mr, rows - i);
    const float *a = A + i * kd;
    for (int64_t j = 0, q = 0; j < cols; j += g.nr, q++)
      tile(kd, a, B + q * bstride, C + i * ldc + j, ldc, acc, m,
           (int)std::min<int64_t>(g.nr, cols - j));
  }
}

// ---- products with an unpacked float32 A operand (P, Pᵀ, dS, dSᵀ of a tile) ----

// AVX-512: a 14 x 32 register tile like the matmul level's (matmul_avx512.cc), reading
// A in place instead of from packed panels: element (r, k) at a[r·AR + k·ak]. AR = 1
// reads a transposed row-major tile (Pᵀ: ak = the tile's row stride); AR = the row
// stride reads it as it is (P: ak = 1), with the row offsets as immediate
// displacements. The 14 broadcasts per k come from L1 either way, so packing (a
// transposing pass over the tile per product) is skipped. B is an NR = 32 packed panel.
constexpr int kSMR = 14, kSNR = 32;

template <int M, int NV, int AR>
L2C_TARGET_AVX512 void stile(int64_t kc, const float *a, int64_t ak, const float *b, float *c,
                             int64_t ldc, bool accumulate, int n) {
  __m512 acc0[M], acc1[M];
#pragma GCC unroll 14
  for (int r = 0; r < M; r++) {
    acc0[r] = _mm512_setzero_ps();
    if (NV == 2) acc1[r] = _mm512_setzero_ps();
  }
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_load_ps(b);
    __m512 b1 = NV == 2 ? _mm512_load_ps(b + 16) : b0;
#pragma GCC unroll 14
    for (int r = 0; r < M; r++) {
      __m512 av = _mm512_set1_ps(a[r * AR]);
      acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
      if (NV == 2) acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
    }
    a += ak;
    b += kSNR;
  }
  __mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
  __mmask16 m1 = n >= 32 ? 0xffff : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
  if (accumulate) {  // every load of C before any store (4K aliasing, see matmul_avx512.cc)
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

using STileFn = void (*)(int64_t, const float *, int64_t, const float *, float *, int64_t, bool, int);
template <int AR, int... I>
constexpr std::array<std::array<STileFn, 2>, sizeof...(I)> stile_table(std::integer_sequence<int, I...>) {
  return {{{stile<I + 1, 1, AR>, stile<I + 1, 2, AR>}...}};
}
template <int AR>
struct STiles {
  static constexpr auto table = stile_table<AR>(std::make_integer_sequence<int, kSMR>());
};

template <int AR>
void gemm_strided(const float *A, int64_t ak, int64_t rows, int64_t kd, const float *B,
                  int64_t bstride, int64_t cols, float *C, int64_t ldc, bool acc) {
  for (int64_t i = 0; i < rows; i += kSMR) {
    const int m = (int)std::min<int64_t>(kSMR, rows - i);
    const float *a = A + i * AR;
    for (int64_t j = 0, q = 0; j < cols; j += kSNR, q++) {
      const int n = (int)std::min<int64_t>(kSNR, cols - j);
      STiles<AR>::table[m - 1][n > 16](kd, a, ak, B + q * bstride, C + i * ldc + j, ldc, acc, n);
    }
  }
}

// C[rows x cols] (+)= A · B for A (rows x kd, float32) at A[r·ar + k·ak] (ar or ak is
// 1) and B in packed B-form panels: in place on AVX-512 for the strides the tiles use,
// else packed into `pack` (room for round_up(rows, MR)·kd floats) for the level's tile.
void gemm_unpacked(const Geo &g, const float *A, int64_t ar, int64_t ak, int64_t rows, int64_t kd,
                   const float *B, int64_t bstride, int64_t cols, float *C, int64_t ldc,
                   bool acc, float *pack) {
  if (g.avx512 && g.nr == kSNR) {
    if (ar == 1) return gemm_strided<1>(A, ak, rows, kd, B, bstride, cols, C, ldc, acc);
    if (ak == 1 && ar == 128) return gemm_strided<128>(A, 1, rows, kd, B, bstride, cols, C, ldc, acc);
    if (ak == 1 && ar == 256) return gemm_strided<256>(A, 1, rows, kd, B, bstride, cols, C, ldc, acc);
  }
  g.ks.pack(A, L2C_FLOAT32, ar, ak, rows, kd, g.mr, pack);
  gemm_tiles(g, g.ks.tile, kd, pack, rows, B, bstride, cols, C, ldc, acc);
}

// Key tile status under the padding mask.
enum TileKind : uint8_t { kFull, kPartial, kEmpty };

TileKind tile_kind(const int32_t *mrow, int64_t j0, int64_t cols) {
  if (!mrow) return kFull;
  int64_t n = 0;
  for (int64_t c = 0; c < cols; c++) n += mrow[j0 + c] != 0;
  return n == cols ? kFull : n == 0 ? kEmpty : kPartial;
}

// ---- row passes: AVX-512 bodies ----

L2C_TARGET_AVX512 inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

// Attendable lanes of columns c..c+15 of a row: c + lane < lim and mask nonzero.
L2C_TARGET_AVX512 inline __mmask16 ok_lanes(int64_t c, int64_t lim, const int32_t *mk) {
  __mmask16 ok = lanes(lim - c);
  if (mk && ok) {
    __m512i mv = _mm512_maskz_loadu_epi32(ok, mk + c);
    ok = _mm512_mask_test_epi32_mask(ok, mv, mv);
  }
  return ok;
}

// exp(x) for the softmax's arguments: simd.h's exp512 polynomial (Cephes, ~2 ulp) with
// the exponent applied by vscalefps and no special-case blends: x is clamped to
// [-87.34, 88.72] (a NaN passes through), so a hugely negative x gives about FLT_MIN
// (1.2e-38) rather than 0 or a denormal: callers zero the lanes that must be exactly 0
// (keys that may not be attended).
L2C_TARGET_AVX512 inline __m512 softmax_exp(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(88.7228391f), _mm512_max_ps(_mm512_set1_ps(-87.3365479f), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// One row of a forward score tile (n columns, attendable: c < lim and mk[c] != 0):
// x = scale·s (−inf where not attendable), m' = max(m, max x), p = exp(x − m') written
// over s (0 where not attendable), l = l·exp(m − m') + Σ p, m = m'. Returns the factor
// exp(m − m') for the output accumulator (a row still empty keeps p = 0, l = 0 and
// gets factor 1).
L2C_TARGET_AVX512 float online_row_avx512(float *s, int64_t n, int64_t lim, const int32_t *mk,
                                          float scale, float &m, float &l) {
  const __m512 vscale = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(kNegInf);
  lim = std::min(lim, n);
  __m512 vmax = ninf;
  for (int64_t c = 0; c < n; c += 16) {
    __mmask16 ok = ok_lanes(c, lim, mk);
    vmax = _mm512_max_ps(vmax, _mm512_mask_mul_ps(ninf, ok, _mm512_maskz_loadu_ps(ok, s + c), vscale));
  }
  float mnew = std::max(m, _mm512_reduce_max_ps(vmax));
  if (mnew == kNegInf) {
    for (int64_t c = 0; c < n; c += 16) _mm512_mask_storeu_ps(s + c, lanes(n - c), _mm512_setzero_ps());
    return 1.0f;
  }
  const __m512 vm = _mm512_set1_ps(mnew);
  __m512 vsum = _mm512_setzero_ps();
  for (int64_t c = 0; c < n; c += 16) {
    __mmask16 ok = ok_lanes(c, lim, mk);
    __m512 x = _mm512_fmsub_ps(_mm512_maskz_loadu_ps(ok, s + c), vscale, vm);
    __m512 p = _mm512_maskz_mov_ps(ok, softmax_exp(x));
    _mm512_mask_storeu_ps(s + c, lanes(n - c), p);
    vsum = _mm512_add_ps(vsum, p);
  }
  float alpha = std::exp(m - mnew);  // m = -inf: 0
  l = l * alpha + _mm512_reduce_add_ps(vsum);
  m = mnew;
  return alpha;
}

// One row of a backward tile: p = exp(scale·s − lse) on attendable columns (else 0)
// written over s; ds = scale·p·(dp − delta) written over dp.
L2C_TARGET_AVX512 void grad_row_avx512(float *s, float *dp, int64_t n, int64_t lim,
                                       const int32_t *mk, float scale, float lse, float delta) {
  const __m512 vscale = _mm512_set1_ps(scale), vlse = _mm512_set1_ps(lse),
               vdelta = _mm512_set1_ps(delta);
  const int64_t lm = lse == kNegInf ? 0 : std::min(lim, n);
  for (int64_t c = 0; c < n; c += 16) {
    __mmask16 ld = lanes(n - c), ok = ok_lanes(c, lm, mk);
    __m512 x = _mm512_fmsub_ps(_mm512_maskz_loadu_ps(ok, s + c), vscale, vlse);
    __m512 p = _mm512_maskz_mov_ps(ok, softmax_exp(x));
    __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(ok, dp + c), vdelta);
    _mm512_mask_storeu_ps(s + c, ld, p);
    _mm512_mask_storeu_ps(dp + c, ld, _mm512_mul_ps(_mm512_mul_ps(p, vscale), d));
  }
}

L2C_TARGET_AVX512 void scale_row_avx512(float *x, int64_t n, float a) {
  const __m512 va = _mm512_set1_ps(a);
  for (int64_t c = 0; c < n; c += 16) {
    __mmask16 ld = lanes(n - c);
    _mm512_mask_storeu_ps(x + c, ld, _mm512_mul_ps(_mm512_maskz_loadu_ps(ld, x + c), va));
  }
}

L2C_TARGET_AVX512 float dot_avx512(const float *a, const float *b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t c = 0; c < n; c += 16) {
    __mmask16 ld = lanes(n - c);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(ld, a + c), _mm512_maskz_loadu_ps(ld, b + c), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// ---- row passes: AVX2 bodies (same contracts, 8 lanes) ----

// All-ones lanes for i < n (n clamped to [0, 8]), as an integer mask.
L2C_TARGET_AVX2 inline __m256i lanes8(int64_t n) {
  const int k = (int)std::max<int64_t>(0, std::min<int64_t>(8, n));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

L2C_TARGET_AVX2 inline __m256i ok_lanes8(int64_t c, int64_t lim, const int32_t *mk) {
  __m256i ok = lanes8(lim - c);
  if (mk && lim > c) {
    __m256i mv = _mm256_maskload_epi32(mk + c, ok);
    ok = _mm256_andnot_si256(_mm256_cmpeq_epi32(mv, _mm256_setzero_si256()), ok);
  }
  return ok;
}

L2C_TARGET_AVX2 inline float hmax256(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

L2C_TARGET_AVX2 inline float hsum256(__m256 v) {
  __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  m = _mm_add_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

L2C_TARGET_AVX2 float online_row_avx2(float *s, int64_t n, int64_t lim, const int32_t *mk,
                                      float scale, float &m, float &l) {
  const __m256 vscale = _mm256_set1_ps(scale), ninf = _mm256_set1_ps(kNegInf);
  lim = std::min(lim, n);
  __m256 vmax = ninf;
  for (int64_t c = 0; c < n; c += 8) {
    __m256i ok = ok_lanes8(c, lim, mk);
    __m256 x = _mm256_mul_ps(_mm256_maskload_ps(s + c, ok), vscale);
    vmax = _mm256_max_ps(vmax, _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(ok)));
  }
  float mnew = std::max(m, hmax256(vmax));
  if (mnew == kNegInf) {
    std::fill(s, s + n, 0.0f);
    return 1.0f;
  }
  const __m256 vm = _mm256_set1_ps(mnew);
  __m256 vsum = _mm256_setzero_ps();
  for (int64_t c = 0; c < n; c += 8) {
    __m256i ok = ok_lanes8(c, lim, mk);
    __m256 x = _mm256_fmsub_ps(_mm256_maskload_ps(s + c, ok), vscale, vm);
    __m256 p = _mm256_and_ps(exp256(x), _mm256_castsi256_ps(ok));
    _mm256_maskstore_ps(s + c, lanes8(n - c), p);
    vsum = _mm256_add_ps(vsum, p);
  }
  float alpha = std::exp(m - mnew);
  l = l * alpha + hsum256(vsum);
  m = mnew;
  return alpha;
}

L2C_TARGET_AVX2 void grad_row_avx2(float *s, float *dp, int64_t n, int64_t lim,
                                   const int32_t *mk, float scale, float lse, float delta) {
  const __m256 vscale = _mm256_set1_ps(scale), vlse = _mm256_set1_ps(lse),
               vdelta = _mm256_set1_ps(delta);
  const int64_t lm = lse == kNegInf ? 0 : std::min(lim, n);
  for (int64_t c = 0; c < n; c += 8) {
    __m256i ld = lanes8(n - c), ok = ok_lanes8(c, lm, mk);
    __m256 okf = _mm256_castsi256_ps(ok);
    __m256 x = _mm256_fmsub_ps(_mm256_maskload_ps(s + c, ok), vscale, vlse);
    __m256 p = _mm256_and_ps(exp256(x), okf);
    __m256 d = _mm256_sub_ps(_mm256_maskload_ps(dp + c, ok), vdelta);
    _mm256_maskstore_ps(s + c, ld, p);
    _mm256_maskstore_ps(dp + c, ld, _mm256_mul_ps(_mm256_mul_ps(p, vscale), d));
  }
}

L2C_TARGET_AVX2 void scale_row_avx2(float *x, int64_t n, float a) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) _mm256_storeu_ps(x + c, _mm256_mul_ps(_mm256_loadu_ps(x + c), va));
  for (; c < n; c++) x[c] *= a;
}

L2C_TARGET_AVX2 float dot_avx2(const float *a, const float *b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= n; c += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), acc);
  float sum = hsum256(acc);
  for (; c < n; c++) sum += a[c] * b[c];
  return sum;
}

// ---- row passes: portable bodies (same contracts) ----

inline bool attendable(int64_t c, int64_t lim, const int32_t *mk) {
  return c < lim && (!mk || mk[c] != 0);
}

float online_row_scalar(float *s, int64_t n, int64_t lim, const int32_t *mk, float scale,
                        float &m, float &l) {
  float mx = kNegInf;
  for (int64_t c = 0; c < n; c++) {
    float x = attendable(c, lim, mk) ? s[c] * scale : kNegInf;
    s[c] = x;
    mx = std::max(mx, x);
  }
  float mnew = std::max(m, mx);
  if (mnew == kNegInf) {
    std::fill(s, s + n, 0.0f);
    return 1.0f;
  }
  float sum = 0;
  for (int64_t c = 0; c < n; c++) {
    float p = std::exp(s[c] - mnew);
    s[c] = p;
    sum += p;
  }
  float alpha = std::exp(m - mnew);
  l = l * alpha + sum;
  m = mnew;
  return alpha;
}

void grad_row_scalar(float *s, float *dp, int64_t n, int64_t lim, const int32_t *mk,
                     float scale, float lse, float delta) {
  for (int64_t c = 0; c < n; c++) {
    float p = lse != kNegInf && attendable(c, lim, mk) ? std::exp(s[c] * scale - lse) : 0.0f;
    s[c] = p;
    dp[c] = p == 0.0f ? 0.0f : scale * p * (dp[c] - delta);
  }
}

float online_row(const Geo &g, float *s, int64_t n, int64_t lim, const int32_t *mk, float scale,
                 float &m, float &l) {
  switch (g.level) {
    case Level::avx512: return online_row_avx512(s, n, lim, mk, scale, m, l);
    case Level::avx2: return online_row_avx2(s, n, lim, mk, scale, m, l);
    default: return online_row_scalar(s, n, lim, mk, scale, m, l);
  }
}

void grad_row(const Geo &g, float *s, float *dp, int64_t n, int64_t lim, const int32_t *mk,
              float scale, float lse, float delta) {
  switch (g.level) {
    case Level::avx512: return grad_row_avx512(s, dp, n, lim, mk, scale, lse, delta);
    case Level::avx2: return grad_row_avx2(s, dp, n, lim, mk, scale, lse, delta);
    default: return grad_row_scalar(s, dp, n, lim, mk, scale, lse, delta);
  }
}

void scale_row(const Geo &g, float *x, int64_t n, float a) {
  switch (g.level) {
    case Level::avx512: return scale_row_avx512(x, n, a);
    case Level::avx2: return scale_row_avx2(x, n, a);
    default:
      for (int64_t c = 0; c < n; c++) x[c] *= a;
  }
}

float dot(const Geo &g, const float *a, const float *b, int64_t n) {
  switch (g.level) {
    case Level::avx512: return dot_avx512(a, b, n);
    case Level::avx2: return dot_avx2(a, b, n);
    default: {
      float s = 0;
      for (int64_t c = 0; c < n; c++) s += a[c] * b[c];
      return s;
    }
  }
}

// Columns of row i (query index) attendable under causality in a key tile from j0.
inline int64_t causal_lim(bool causal, int64_t i, int64_t j0, int64_t cols) {
  return causal ? std::min(cols, i - j0 + 1) : cols;
}

// Work units over n items (query tiles forward, key tiles backward) for `base`
// (batch, kv head) pairs: one slice each when that keeps every thread busy, else a few
// interleaved slices per pair (interleaved so that causal slices get equal work).
int64_t slices_for(int64_t base, int64_t n, int64_t threads) {
  if (threads <= 1 || base >= 4 * threads || base % threads == 0) return 1;
  return std::max<int64_t>(1, std::min(n, ceil_div(4 * threads, base)));
}

// ---- forward ----

struct FwdCtx {
  const AttentionParams &p;
  const Geo &g;
  void *out;
  float *lse;
  int64_t G, nqt, nkt, slices;
};

void forward_unit(const FwdCtx &x, int64_t b, int64_t kvh, int64_t slice) {
  const AttentionParams &p = x.p;
  const Geo &g = x.g;
  const int64_t S = p.S, D = p.D, Br = g.Br, Bc = g.Bc, ldS = g.ldS;
  const int64_t es = fsize(p.dt), ldq = p.Hq * D, ldk = p.Hkv * D;
  // The last query tile of this slice bounds the keys needed under causality.
  int64_t last_qt = slice + (x.nqt - 1 - slice) / x.slices * x.slices;
  int64_t nkeys = p.causal ? std::min(S, (last_qt + 1) * Br) : S;
  if (nkeys == 0) return;
  int64_t nkt = ceil_div(nkeys, Bc);
  const int32_t *mrow = p.mask ? p.mask + b * S : nullptr;

  // Kᵀ as B panels (NR keys, depth D) and V as B panels (NR of D, depth keys).
  const char *kb = static_cast<const char *>(p.k) + (b * S * ldk + kvh * D) * es;
  const char *vb = static_cast<const char *>(p.v) + (b * S * ldk + kvh * D) * es;
  const int64_t Dk = g.Dk;
  float *KT = scratch(kKT, round_up(nkeys, g.nr) * Dk);
  float *VB = scratch(kVT, round_up(D, g.nr) * nkeys);
  g.sc_pack(kb, p.dt, ldk, 1, nkeys, D, g.nr, KT);
  g.ks.pack(vb, p.dt, 1, ldk, D, nkeys, g.nr, VB);
  // Running max and sum per query row, then one status byte per key tile.
  float *mrun = scratch(kRow, 2 * Br + nkt);
  float *lrun = mrun + Br;
  uint8_t *kinds = reinterpret_cast<uint8_t *>(lrun + Br);
  for (int64_t t = 0; t < nkt; t++)
    kinds[t] = tile_kind(mrow, t * Bc, std::min(Bc, nkeys - t * Bc));

  float *QA = scratch(kQA, Br * Dk);
  float *Sb = scratch(kS, Br * ldS);
  float *PA = scratch(kPack, Br * Bc);
  float *O = scratch(kAcc, Br * D);

  for (int64_t gh = 0; gh < x.G; gh++) {
    const int64_t h = kvh * x.G + gh;
    const char *qb = static_cast<const char *>(p.q) + (b * S * ldq + h * D) * es;
    char *ob = static_cast<char *>(x.out) + (b * S * ldq + h * D) * es;
    float *lrow = x.lse + (b * p.Hq + h) * S;
    for (int64_t qt = slice; qt < x.nqt; qt += x.slices) {
      const int64_t i0 = qt * Br, rows = std::min(Br, S - i0);
      g.sc_pack(qb + i0 * ldq * es, p.dt, ldq, 1, rows, D, g.mr, QA);
      std::fill(mrun, mrun + rows, kNegInf);
      std::fill(lrun, lrun + rows, 0.0f);
      std::memset(O, 0, sizeof(float) * rows * D);
      int64_t kt_end = p.causal ? std::min(nkt, ceil_div(i0 + rows, Bc)) : nkt;
      for (int64_t kt = 0; kt < kt_end; kt++) {
        if (kinds[kt] == kEmpty) continue;
        const int64_t j0 = kt * Bc, cols = std::min(Bc, nkeys - j0);
        const int32_t *mk = kinds[kt] == kPartial ? mrow + j0 : nullptr;
        gemm_tiles(g, g.sc_tile, Dk, QA, rows, KT + j0 * Dk, g.nr * Dk, cols, Sb, ldS, false);
        bool any = false;
        for (int64_t r = 0; r < rows; r++) {
          float alpha = online_row(g, Sb + r * ldS, cols, causal_lim(p.causal, i0 + r, j0, cols),
                                   mk, p.scale, mrun[r], lrun[r]);
          if (alpha != 1.0f) scale_row(g, O + r * D, D, alpha);
          any = any || lrun[r] > 0;
        }
        if (!any) continue;  // every row still empty: P = 0
        gemm_unpacked(g, Sb, ldS, 1, rows, cols, VB + j0 * g.nr, g.nr * nkeys, D, O, D, true, PA);
      }
      for (int64_t r = 0; r < rows; r++) {
        float *o = O + r * D;
        if (lrun[r] > 0) {
          scale_row(g, o, D, 1.0f / lrun[r]);
          lrow[i0 + r] = mrun[r] + std::log(lrun[r]);
        } else {
          std::memset(o, 0, sizeof(float) * D);
          lrow[i0 + r] = kNegInf;
        }
        store_f32(o, ob + (i0 + r) * ldq * es, p.dt, D);
      }
    }
  }
}

// ---- backward ----

struct BwdCtx {
  const AttentionParams &p;
  const Geo &g;
  const void *dout, *out;
  const float *lse;
  void *dq, *dk, *dv;
  int64_t G, nqt, nkt, slices;
  float *dq_part;  // [units][G][S][D] when slices > 1
};

void backward_unit(const BwdCtx &x, int64_t b, int64_t kvh, int64_t slice) {
  const AttentionParams &p = x.p;
  const Geo &g = x.g;
  const int64_t S = p.S, D = p.D, Br = g.Br, Bc = g.Bc, ldS = g.ldS;
  const int64_t es = fsize(p.dt), ldq = p.Hq * D, ldk = p.Hkv * D;
  const int32_t *mrow = p.mask ? p.mask + b * S : nullptr;
  const int64_t nloc = ceil_div(x.nkt - slice, x.slices);  // key tiles of this unit
  if (nloc <= 0) return;
  const int64_t Dk = g.Dk;
  const int64_t ktstride = round_up(Bc, g.nr) * Dk, kbstride = round_up(D, g.nr) * Bc,
                accstride = Bc * D;

  // K and V of the unit's key tiles: Kᵀ, Vᵀ as B panels of NR keys (depth D) for the
  // score products, K as B panels of NR of D (depth keys) for dQ.
  const int64_t kvoff = (b * S * ldk + kvh * D) * es;
  const char *kb = static_cast<const char *>(p.k) + kvoff;
  const char *vb = static_cast<const char *>(p.v) + kvoff;
  float *KT = scratch(kKT, nloc * ktstride);
  float *VT = scratch(kVT, nloc * ktstride);
  float *KB = scratch(kKB, nloc * kbstride);
  float *dK = scratch(kAcc, nloc * accstride);
  float *dV = scratch(kAcc2, nloc * accstride);
  std::memset(dK, 0, sizeof(float) * nloc * accstride);
  std::memset(dV, 0, sizeof(float) * nloc * accstride);
  float *rowbuf = scratch(kRow, 2 * S + 2 * D + nloc + 16);
  float *delta = rowbuf, *ra = rowbuf + S, *rb = ra + D;
  uint8_t *kinds = reinterpret_cast<uint8_t *>(rb + D);
  for (int64_t t = 0; t < nloc; t++) {
    const int64_t j0 = (slice + t * x.slices) * Bc, cols = std::min(Bc, S - j0);
    kinds[t] = tile_kind(mrow, j0, cols);
    if (kinds[t] == kEmpty) continue;
    g.sc_pack(kb + j0 * ldk * es, p.dt, ldk, 1, cols, D, g.nr, KT + t * ktstride);
    g.sc_pack(vb + j0 * ldk * es, p.dt, ldk, 1, cols, D, g.nr, VT + t * ktstride);
    g.ks.pack(kb + j0 * ldk * es, p.dt, 1, ldk, D, cols, g.nr, KB + t * kbstride);
  }

  // Per query head: Q and dO as A panels (MR rows, depth D) and as B panels (NR of D,
  // depth S), Δ, and the dQ accumulator.
  const int64_t Spad = round_up(S, g.mr);
  float *QA = scratch(kQA, Spad * Dk), *OA = scratch(kOA, Spad * Dk);
  float *QB = scratch(kQB, round_up(D, g.nr) * S), *OB = scratch(kOB, round_up(D, g.nr) * S);
  float *Sb = scratch(kS, Br * ldS), *dP = scratch(kP, Br * ldS);
  float *PK = scratch(kPack, std::max(round_up(Bc, g.mr) * Br, round_up(Br, g.mr) * Bc));
  const int64_t unit = (b * p.Hkv + kvh) * x.slices + slice;

  for (int64_t gh = 0; gh < x.G; gh++) {
    const int64_t h = kvh * x.G + gh;
    const int64_t qoff = (b * S * ldq + h * D) * es;
    const char *qb = static_cast<const char *>(p.q) + qoff;
    const char *dob = static_cast<const char *>(x.dout) + qoff;
    const char *ob = static_cast<const char *>(x.out) + qoff;
    const float *lrow = x.lse + (b * p.Hq + h) * S;
    g.sc_pack(qb, p.dt, ldq, 1, S, D, g.mr, QA);
    g.sc_pack(dob, p.dt, ldq, 1, S, D, g.mr, OA);
    g.ks.pack(qb, p.dt, 1, ldq, D, S, g.nr, QB);
    g.ks.pack(dob, p.dt, 1, ldq, D, S, g.nr, OB);
    for (int64_t i = 0; i < S; i++) {
      load_f32(dob + i * ldq * es, p.dt, D, ra);
      load_f32(ob + i * ldq * es, p.dt, D, rb);
      delta[i] = dot(g, ra, rb, D);
    }
    float *dQ = x.slices == 1 ? scratch(kDQ, S * D) : x.dq_part + (unit * x.G + gh) * S * D;
    std::memset(dQ, 0, sizeof(float) * S * D);

    for (int64_t t = 0; t < nloc; t++) {
      if (kinds[t] == kEmpty) continue;
      const int64_t j0 = (slice + t * x.slices) * Bc, cols = std::min(Bc, S - j0);
      const int32_t *mk = kinds[t] == kPartial ? mrow + j0 : nullptr;
      const float *kt = KT + t * ktstride, *vt = VT + t * ktstride, *kbp = KB + t * kbstride;
      float *dKt = dK + t * accstride, *dVt = dV + t * accstride;
      for (int64_t qt = p.causal ? j0 / Br : 0; qt < x.nqt; qt++) {
        const int64_t i0 = qt * Br, rows = std::min(Br, S - i0);
        gemm_tiles(g, g.sc_tile, Dk, QA + i0 * Dk, rows, kt, g.nr * Dk, cols, Sb, ldS, false);
        gemm_tiles(g, g.sc_tile, Dk, OA + i0 * Dk, rows, vt, g.nr * Dk, cols, dP, ldS, false);
        for (int64_t r = 0; r < rows; r++)
          grad_row(g, Sb + r * ldS, dP + r * ldS, cols, causal_lim(p.causal, i0 + r, j0, cols),
                   mk, p.scale, lrow[i0 + r], delta[i0 + r]);
        // dV += Pᵀ·dO and dK += dSᵀ·Q (A: the tile read transposed, keys by query rows),
        // dQ += dS·K (A: dS as it is, query rows by keys).
        gemm_unpacked(g, Sb, 1, ldS, cols, rows, OB + i0 * g.nr, g.nr * S, D, dVt, D, true, PK);
        gemm_unpacked(g, dP, 1, ldS, cols, rows, QB + i0 * g.nr, g.nr * S, D, dKt, D, true, PK);
        gemm_unpacked(g, dP, ldS, 1, rows, cols, kbp, g.nr * cols, D, dQ + i0 * D, D, true, PK);
      }
    }
    if (x.slices == 1) {
      char *dqb = static_cast<char *>(x.dq) + qoff;
      for (int64_t i = 0; i < S; i++) store_f32(dQ + i * D, dqb + i * ldq * es, p.dt, D);
    }
  }

  char *dkb = static_cast<char *>(x.dk) + kvoff;
  char *dvb = static_cast<char *>(x.dv) + kvoff;
  for (int64_t t = 0; t < nloc; t++) {
    const int64_t j0 = (slice + t * x.slices) * Bc, cols = std::min(Bc, S - j0);
    for (int64_t c = 0; c < cols; c++) {
      store_f32(dK + t * accstride + c * D, dkb + (j0 + c) * ldk * es, p.dt, D);
      store_f32(dV + t * accstride + c * D, dvb + (j0 + c) * ldk * es, p.dt, D);
    }
  }
}

}  // namespace

void attention_forward(const AttentionParams &p, void *out, float *lse) {
  if (p.B == 0 || p.S == 0 || p.Hq == 0) return;
  Geo g(p, true);
  FwdCtx x{p, g, out, lse, p.Hq / p.Hkv, ceil_div(p.S, g.Br), ceil_div(p.S, g.Bc), 1};
  const int64_t base = p.B * p.Hkv;
  x.slices = slices_for(base, x.nqt, num_threads());
  parallel_tasks(base * x.slices, [&](int64_t u) {
    forward_unit(x, u / x.slices / p.Hkv, u / x.slices % p.Hkv, u % x.slices);
  });
}

void attention_backward(const AttentionParams &p, const void *dout, const void *out,
                        const float *lse, void *dq, void *dk, void *dv) {
  if (p.B == 0 || p.S == 0 || p.Hq == 0) return;
  Geo g(p, false);
  BwdCtx x{p, g, dout, out, lse, dq, dk, dv, p.Hq / p.Hkv, ceil_div(p.S, g.Br),
           ceil_div(p.S, g.Bc), 1, nullptr};
  const int64_t base = p.B * p.Hkv;
  x.slices = slices_for(base, x.nkt, num_threads());
  std::unique_ptr<float, AlignedFree> part;
  if (x.slices > 1) {
    size_t bytes = (size_t)round_up(base * x.slices * x.G * p.S * p.D * 4, 64);
    part.reset(static_cast<float *>(std::aligned_alloc(64, bytes)));
    if (!part) fail(L2C_OUT_OF_MEMORY, "attention backward: cannot allocate the dq partials");
    x.dq_part = part.get();
  }
  parallel_tasks(base * x.slices, [&](int64_t u) {
    backward_unit(x, u / x.slices / p.Hkv, u / x.slices % p.Hkv, u % x.slices);
  });
  if (x.slices == 1) return;
  // dq = Σ over the slices of each (batch, kv head) of their partials.
  const int64_t S = p.S, D = p.D, es = fsize(p.dt), ldq = p.Hq * D;
  const int64_t rows_per = std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1));
  const int64_t chunks = ceil_div(S, rows_per);
  parallel_tasks(p.B * p.Hq * chunks, [&](int64_t t) {
    const int64_t bh = t / chunks, ch = t % chunks, b = bh / p.Hq, h = bh % p.Hq;
    const int64_t kvh = h / x.G, gh = h % x.G;
    const int64_t i0 = ch * rows_per, i1 = std::min(S, i0 + rows_per);
    float *acc = scratch(kRow, D);
    char *dqb = static_cast<char *>(dq) + (b * S * ldq + h * D) * es;
    for (int64_t i = i0; i < i1; i++) {
      std::memset(acc, 0, sizeof(float) * D);
      for (int64_t s = 0; s < x.slices; s++) {
        const float *src = x.dq_part + ((((b * p.Hkv + kvh) * x.slices + s) * x.G + gh) * S + i) * D;
        for (int64_t d = 0; d < D; d++) acc[d] += src[d];
      }
      store_f32(acc, dqb + i * ldq * es, p.dt, D);
    }
  });
}

}  // namespace cpu
}  // namespace l2c
