// infonce.cc: CPU kernels: the InfoNCE / CLIP contrastive loss without the N x M logits,
// forward and backward (semantics in l2c_infonce.h).
//
// The logits are made one strip at a time: MR rows of a (one packed A panel of the
// matmul micro-kernels, matmul_kernels.h) against a column block of nb rows of b (packed
// B panels, in L2), S = a_strip . b_blk^T with the register tiles; an epilogue then
// consumes the strip while it is in L1.
//
// Work is cut in "waves" of mb rows of a (packed once per wave, shared read-only by the
// threads). Within a wave each task takes a fixed set of column blocks, the same in every
// wave (static owner), so what belongs to a column (its log-sum-exp state, its rows of db)
// is touched by one task only: no atomics, no per-thread [M,d] partials. What belongs to a
// row (its log-sum-exp state, its row of da) is a per-task partial of the wave's rows,
// merged after the wave.
//
// Forward (2NMd flops): per strip, the rows' online (max, sum) over this block, and for
// the symmetric loss the columns' online (max, sum) over these MR rows.
// Backward (6NMd flops, the logits recomputed): per strip G = dloss/dL from the saved
// log-sum-exps, written (times scale) as an A panel for da += G . b_blk (depth nb) and into
// G^T panels of a row sub-block (kk rows) for db_blk += G^T . a_sub (depth kk), then
// dscale += sum G * S. Block sizes: plan().
//
// GCC 12's AVX-512 headers seed "undefined" vectors with `__Y = __Y`, which
// -W(maybe-)uninitialized reports once inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "infonce.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "backend.h"
#include "matmul_kernels.h"
#include "simd.h"
#include "threadpool.h"

namespace l2c {
namespace cpu {
namespace {

using mm::KernelSet;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Per-thread scratch: a 64-byte aligned float buffer (B panels are read with aligned
// loads) that only grows and is reused across calls, so tiles cost no page faults after
// the first call. Zeroed when it grows: no uninitialised lane ever reaches a tile.
class Scratch {
 public:
  ~Scratch() { std::free(p_); }
  float *grow(int64_t floats) {
    if (floats > cap_) {
      std::free(p_);
      cap_ = 0;
      p_ = static_cast<float *>(std::aligned_alloc(64, (size_t)round_up(floats * 4, 64)));
      if (!p_) fail(L2C_OUT_OF_MEMORY, "infonce: cannot allocate a work buffer");
      std::memset(p_, 0, (size_t)floats * 4);
      cap_ = floats;
    }
    return p_;
  }

 private:
  float *p_ = nullptr;
  int64_t cap_ = 0;
};

// A per-call work buffer from the CPU allocator (64-byte aligned; large blocks come from
// its cache, so repeated calls do not fault fresh pages, and the workspace shows in
// memoryStats). Not initialised.
class Work {
 public:
  explicit Work(int64_t floats)
      : p_(floats > 0 ? static_cast<float *>(cpu::alloc((size_t)floats * 4)) : nullptr) {}
  ~Work() {
    if (p_) cpu::free(p_);
  }
  Work(const Work &) = delete;
  Work &operator=(const Work &) = delete;
  float *get() const { return p_; }

 private:
  float *p_;
};
// Per-thread tiles: packed b blocks, the logits strip, G panels.
thread_local Scratch tl_bpack, tl_btpack, tl_strip, tl_ga, tl_gt;

struct Blocking {
  int64_t kc;  // depth chunk of the logits (d cut into equal chunks of at most ks.kc)
  int64_t nb;  // columns per block (multiple of NR)
  int64_t kk;  // backward: rows per sub-block = depth of the db product (multiple of MR)
  int64_t mb;  // rows per wave (multiple of kk)
  int64_t ld;  // row stride of the logits strip
};

// nb: a packed b block (nb x d floats) of <= 256 KB, so that in the backward both of
//   its packings (for the logits and for da, 2 x 256 KB) and the G^T panels (nb x kk
//   floats) stay in the 1 MB L2 of the AVX-512 machine; at most 256 columns. Column
//   blocks come in a multiple of the task count where M allows, for equal shares.
// kk: 252 (AVX-512; 256 rounded to MR): the G^T panel (kk x MR floats, 14 KB) in L1.
// mb: a wave's packed rows of a (forward: mb x d floats, <= 8 MB, at most 4096 rows;
//   backward: two packings plus one da partial per task, (2 + T) x mb x d floats,
//   <= 16 MB, at most 2048 rows), then evened out over the waves. Each task repacks its
//   b blocks once per wave: at d = 512 that costs ~2% of the backward's wave at mb ~ 2000.
Blocking plan(const KernelSet &ks, int64_t N, int64_t M, int64_t d, bool backward, int64_t T) {
  Blocking bl;
  const int64_t d1 = std::max<int64_t>(d, 1);
  bl.kc = d > 0 ? ceil_div(d, ceil_div(d, ks.kc)) : 1;
  int64_t nbmax = std::max<int64_t>(ks.nr, std::min<int64_t>(256, 65536 / d1) / ks.nr * ks.nr);
  int64_t blocks = std::max<int64_t>(1, ceil_div(M, nbmax));
  if (blocks % T != 0 && M >= T * ks.nr) blocks = round_up(blocks, T);
  bl.nb = std::max<int64_t>(ks.nr, round_up(ceil_div(std::max<int64_t>(M, 1), blocks), ks.nr));
  bl.kk = std::max<int64_t>(ks.mr, std::min<int64_t>(256, ks.kc) / ks.mr * ks.mr);
  int64_t budget = backward ? (int64_t(4) << 20) / ((2 + T) * d1) : (int64_t(2) << 20) / d1;
  int64_t mbmax = std::min<int64_t>(backward ? 2048 : 4096, std::max(bl.kk, budget));
  // LLM2CLIP_INFONCE_WAVE_ROWS caps the rows per wave (tests use it to cross waves at
  // small sizes; also a tuning knob).
  if (const char *env = std::getenv("LLM2CLIP_INFONCE_WAVE_ROWS")) {
    long long v = std::atoll(env);
    if (v > 0) mbmax = std::min<int64_t>(mbmax, v);
  }
  mbmax = std::max(mbmax / bl.kk * bl.kk, bl.kk);
  int64_t waves = std::max<int64_t>(1, ceil_div(N, mbmax));
  bl.mb = round_up(std::max<int64_t>(1, ceil_div(N, waves)), bl.kk);
  bl.ld = round_up(bl.nb, 16);
  return bl;
}

// S[r, c] (r < m, c < n, row stride ld) = a_strip . b_blk^T: ap is one packed A panel
// (MR rows, depth d), bp the packed B panels of the block (NR columns each, depth d).
// A panel of full depth is its depth chunks side by side, so chunk k0 starts at
// ap + k0*MR (bp + k0*NR in each B panel).
void logits_strip(const KernelSet &ks, int64_t d, int64_t kc, const float *ap, const float *bp,
                  int64_t n, int m, float *S, int64_t ld) {
  if (d == 0) {
    for (int r = 0; r < m; r++) std::memset(S + r * ld, 0, (size_t)n * 4);
    return;
  }
  for (int64_t k0 = 0; k0 < d; k0 += kc) {
    int64_t kcc = std::min(kc, d - k0);
    for (int64_t q0 = 0; q0 < n; q0 += ks.nr)
      ks.tile(kcc, ap + k0 * ks.mr, bp + q0 * d + k0 * ks.nr, S + q0, ld, k0 > 0, m,
              (int)std::min<int64_t>(ks.nr, n - q0));
  }
}

// ---- forward epilogue: S (raw dot products) becomes L = s*S in place; rows' and (when
// colm) columns' online log-sum-exp states advance over this strip. A state is (max m,
// sum l of exp(x - m)); row sums are double (one scalar update per row and block), column
// sums float32 vectors for one wave (a few hundred additions), merged in double after it. ----

void fwd_epilogue_generic(float *S, int64_t ld, int m, int64_t n, float s, float *rowm,
                          double *rowl, float *colm, float *coll) {
  for (int r = 0; r < m; r++) {
    float *row = S + r * ld;
    float mx = kNegInf;
    for (int64_t j = 0; j < n; j++) {
      float L = row[j] * s;
      row[j] = L;
      mx = L > mx ? L : mx;
    }
    float mn = std::max(rowm[r], mx);
    float sum = 0;
    for (int64_t j = 0; j < n; j++) sum += std::exp(row[j] - mn);
    rowl[r] = rowl[r] * std::exp((double)rowm[r] - mn) + sum;
    rowm[r] = mn;
  }
  if (!colm) return;
  for (int64_t j = 0; j < n; j++) {
    float mx = kNegInf;
    for (int r = 0; r < m; r++) mx = std::max(mx, S[r * ld + j]);
    float mn = std::max(colm[j], mx);
    float sum = coll[j] * std::exp(colm[j] - mn);
    for (int r = 0; r < m; r++) sum += std::exp(S[r * ld + j] - mn);
    colm[j] = mn;
    coll[j] = sum;
  }
}

// exp(x) for the epilogues, whose arguments are x - (a running maximum) or L - lse, so at
// most ~0 (overflow needs no care beyond a clamp): simd.h's exp512 polynomial (Cephes,
// ~2 ulp) with 2^n applied by vscalefps, which is exact, flushes x < ~-103 to 0 and keeps
// NaN, in ~13 instructions instead of ~28 (the two-factor 2^n and the blends of exp512).
// The epilogue was ~30% of the forward's tile time at d = 256 with exp512.
L2C_TARGET_AVX512 inline __m512 exp_epi512(__m512 x) {
  // Clamps with x as the second operand keep a NaN x (vminps / vmaxps return their
  // second operand when either is NaN). Above 88.7 (only reachable with an lse that does
  // not belong to these logits) the result is e^88.7 instead of +inf.
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(_mm512_set1_ps(88.7f), x));
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

L2C_TARGET_AVX512 inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

L2C_TARGET_AVX512 void fwd_epilogue_avx512(float *S, int64_t ld, int m, int64_t n, float s,
                                           float *rowm, double *rowl, float *colm, float *coll) {
  const __m512 vs = _mm512_set1_ps(s), ninf = _mm512_set1_ps(kNegInf);
  for (int r = 0; r < m; r++) {
    float *row = S + r * ld;
    __m512 vmax = ninf;
    for (int64_t j = 0; j < n; j += 16) {
      __mmask16 k = tail_mask(n - j);
      __m512 L = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + j), vs);
      _mm512_mask_storeu_ps(row + j, k, L);
      vmax = _mm512_mask_max_ps(vmax, k, vmax, L);
    }
    float mn = std::max(rowm[r], _mm512_reduce_max_ps(vmax));
    const __m512 vm = _mm512_set1_ps(mn);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < n; j += 16) {
      __mmask16 k = tail_mask(n - j);
      __m512 e = exp_epi512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), vm));
      acc = _mm512_mask_add_ps(acc, k, acc, e);
    }
    rowl[r] = rowl[r] * std::exp((double)rowm[r] - mn) + _mm512_reduce_add_ps(acc);
    rowm[r] = mn;
  }
  if (!colm) return;
  for (int64_t j = 0; j < n; j += 16) {
    __mmask16 k = tail_mask(n - j);
    __m512 cm = ninf;
    for (int r = 0; r < m; r++) cm = _mm512_max_ps(cm, _mm512_maskz_loadu_ps(k, S + r * ld + j));
    __m512 old = _mm512_mask_loadu_ps(ninf, k, colm + j);
    __m512 mn = _mm512_max_ps(old, cm);
    // old = -inf (first block): exp_epi512(-inf) = 0, and the sum starts at 0.
    __m512 sum = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, coll + j), exp_epi512(_mm512_sub_ps(old, mn)));
    for (int r = 0; r < m; r++)
      sum = _mm512_add_ps(sum, exp_epi512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, S + r * ld + j), mn)));
    _mm512_mask_storeu_ps(colm + j, k, mn);
    _mm512_mask_storeu_ps(coll + j, k, sum);
  }
}

// AVX2 (the AVX2 level's machines): simd.h's exp256; tails through maskload / maskstore
// (masked lanes load 0 and are cleared bitwise before they reach a sum).
L2C_TARGET_AVX2 inline __m256i tail_mask8(int64_t left) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)std::min<int64_t>(left, 8)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
L2C_TARGET_AVX2 inline float hmax256(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
L2C_TARGET_AVX2 inline float hsum256(__m256 v) {
  __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}

L2C_TARGET_AVX2 void fwd_epilogue_avx2(float *S, int64_t ld, int m, int64_t n, float s,
                                       float *rowm, double *rowl, float *colm, float *coll) {
  const __m256 vs = _mm256_set1_ps(s), ninf = _mm256_set1_ps(kNegInf);
  for (int r = 0; r < m; r++) {
    float *row = S + r * ld;
    __m256 vmax = ninf;
    for (int64_t j = 0; j < n; j += 8) {
      __m256i k = tail_mask8(n - j);
      __m256 L = _mm256_mul_ps(_mm256_maskload_ps(row + j, k), vs);
      _mm256_maskstore_ps(row + j, k, L);
      vmax = _mm256_blendv_ps(vmax, _mm256_max_ps(vmax, L), _mm256_castsi256_ps(k));
    }
    float mn = std::max(rowm[r], hmax256(vmax));
    const __m256 vm = _mm256_set1_ps(mn);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; j += 8) {
      __m256i k = tail_mask8(n - j);
      __m256 e = exp256(_mm256_sub_ps(_mm256_maskload_ps(row + j, k), vm));
      acc = _mm256_add_ps(acc, _mm256_and_ps(e, _mm256_castsi256_ps(k)));
    }
    rowl[r] = rowl[r] * std::exp((double)rowm[r] - mn) + hsum256(acc);
    rowm[r] = mn;
  }
  if (!colm) return;
  for (int64_t j = 0; j < n; j += 8) {
    __m256i k = tail_mask8(n - j);
    __m256 cm = ninf;
    for (int r = 0; r < m; r++) cm = _mm256_max_ps(cm, _mm256_maskload_ps(S + r * ld + j, k));
    __m256 old = _mm256_blendv_ps(ninf, _mm256_maskload_ps(colm + j, k), _mm256_castsi256_ps(k));
    __m256 mn = _mm256_max_ps(old, cm);
    __m256 sum = _mm256_mul_ps(_mm256_maskload_ps(coll + j, k), exp256(_mm256_sub_ps(old, mn)));
    for (int r = 0; r < m; r++)
      sum = _mm256_add_ps(sum, exp256(_mm256_sub_ps(_mm256_maskload_ps(S + r * ld + j, k), mn)));
    _mm256_maskstore_ps(colm + j, k, mn);
    _mm256_maskstore_ps(coll + j, k, sum);
  }
}

// ---- backward epilogue: S (raw dot products) becomes s*G in place, G = dloss/dL without
// the diagonal terms; returns sum G*S over the strip. ----

double bwd_pass_generic(float *S, int64_t ld, int m, int64_t n, float s, const float *lr,
                        const float *lc, float coef) {
  double total = 0;
  for (int r = 0; r < m; r++) {
    float *row = S + r * ld;
    const float ri = lr[r];
    float acc = 0;
    for (int64_t j = 0; j < n; j++) {
      float x = row[j], L = x * s;
      float p = std::exp(L - ri);
      if (lc) p += std::exp(L - lc[j]);
      float G = coef * p;
      acc += G * x;
      row[j] = G * s;
    }
    total += acc;
  }
  return total;
}

L2C_TARGET_AVX512 double bwd_pass_avx512(float *S, int64_t ld, int m, int64_t n, float s,
                                         const float *lr, const float *lc, float coef) {
  const __m512 vs = _mm512_set1_ps(s), vc = _mm512_set1_ps(coef);
  __m512 acc = _mm512_setzero_ps();
  for (int r = 0; r < m; r++) {
    float *row = S + r * ld;
    const __m512 vr = _mm512_set1_ps(lr[r]);
    for (int64_t j = 0; j < n; j += 16) {
      __mmask16 k = tail_mask(n - j);
      __m512 x = _mm512_maskz_loadu_ps(k, row + j), L = _mm512_mul_ps(x, vs);
      __m512 p = exp_epi512(_mm512_sub_ps(L, vr));
      if (lc) p = _mm512_add_ps(p, exp_epi512(_mm512_sub_ps(L, _mm512_maskz_loadu_ps(k, lc + j))));
      __m512 G = _mm512_mul_ps(p, vc);
      acc = _mm512_mask3_fmadd_ps(G, x, acc, k);  // lanes past n keep acc (G may be inf there)
      _mm512_mask_storeu_ps(row + j, k, _mm512_mul_ps(G, vs));
    }
  }
  return _mm512_reduce_add_ps(acc);
}

L2C_TARGET_AVX2 double bwd_pass_avx2(float *S, int64_t ld, int m, int64_t n, float s,
                                       const float *lr, const float *lc, float coef) {
  const __m256 vs = _mm256_set1_ps(s), vc = _mm256_set1_ps(coef);
  __m256 acc = _mm256_setzero_ps();
  for (int r = 0; r < m; r++) {
    float *row = S + r * ld;
    const __m256 vr = _mm256_set1_ps(lr[r]);
    for (int64_t j = 0; j < n; j += 8) {
      __m256i k = tail_mask8(n - j);
      __m256 x = _mm256_maskload_ps(row + j, k), L = _mm256_mul_ps(x, vs);
      __m256 p = exp256(_mm256_sub_ps(L, vr));
      if (lc) p = _mm256_add_ps(p, exp256(_mm256_sub_ps(L, _mm256_maskload_ps(lc + j, k))));
      __m256 G = _mm256_mul_ps(p, vc);
      // lanes past n: G may be inf and x is 0; cleared before the sum
      acc = _mm256_add_ps(acc, _mm256_and_ps(_mm256_mul_ps(G, x), _mm256_castsi256_ps(k)));
      _mm256_maskstore_ps(row + j, k, _mm256_mul_ps(G, vs));
    }
  }
  return hsum256(acc);
}

// The strip's s*G (m x n, stride ld) as the A panel of da += G . b_blk: ga[j*MR + r]
// (rows r >= m zero), and into the G^T panels of the sub-block for db += G^T . a_sub:
// panel of columns [j0, j0 + MR) at gt + j0*kk, element (j, row i) at [i*MR + j - j0],
// this strip's rows starting at sub-block row ioff.
void scatter_g(const float *S, int64_t ld, int m, int64_t n, int mr, float *ga, float *gt,
               int64_t kk, int64_t ioff) {
  for (int64_t j = 0; j < n; j++) {
    float *dst = ga + j * mr;
    int r = 0;
    for (; r < m; r++) dst[r] = S[r * ld + j];
    for (; r < mr; r++) dst[r] = 0;
  }
  for (int r = 0; r < m; r++) {
    const float *row = S + r * ld;
    for (int64_t j0 = 0; j0 < n; j0 += mr) {
      int64_t cnt = std::min<int64_t>(mr, n - j0);
      float *dst = gt + j0 * kk + (ioff + r) * mr;
      for (int64_t c = 0; c < cnt; c++) dst[c] = row[j0 + c];
    }
  }
}

// A log-sum-exp state (max m, sum l) rescaled to the maximum mx >= m: l * exp(m - mx).
// An empty state (m = -inf, l = 0) adds 0, also when mx = -inf; a NaN stays NaN (a row of
// NaN logits keeps m = -inf, since max ignores NaN, with l = NaN).
double merge_sum(float m, double l, float mx) {
  return m == kNegInf && l == 0.0 ? 0.0 : l * std::exp((double)m - mx);
}

// Packs rows [0, n) of a row-major [n, d] source (dtype dt) as panels of w rows, depth d
// (A panels: w = MR), or, transposed, its d columns as panels of w columns with depth n
// (B panels of a^T: w = NR); panels are independent, so the threads take ranges of them.
void pack_parallel(const KernelSet &ks, const char *src, l2c_dtype dt, int64_t n, int64_t d,
                   bool transposed, int w, float *dst) {
  const int64_t es = fsize(dt), x = transposed ? d : n, panels = ceil_div(x, w);
  parallel_for(panels, std::max<int64_t>(1, 65536 / (w * std::max<int64_t>(transposed ? n : d, 1))),
               [&](int64_t p0, int64_t p1) {
                 const int64_t x0 = p0 * w, nx = std::min(p1 * w, x) - x0;
                 if (transposed)
                   ks.pack(src + x0 * es, dt, 1, d, nx, n, w, dst + x0 * n);
                 else
                   ks.pack(src + x0 * d * es, dt, d, 1, nx, d, w, dst + x0 * d);
               });
}

// Reads a [rows, d] float32 buffer and writes it to dst in dtype (rows split over threads).
void store_rows(const float *src, void *dst, l2c_dtype dt, int64_t rows, int64_t d) {
  int64_t es = fsize(dt);
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)), [&](int64_t r0, int64_t r1) {
    store_f32(src + r0 * d, static_cast<char *>(dst) + r0 * d * es, dt, (r1 - r0) * d);
  });
}

}  // namespace

void infonce_forward(const InfonceParams &p) {
  const int64_t N = p.N, M = p.M, d = p.d;
  const bool sym = p.symmetric;
  if (N == 0) {  // M = 0 too when symmetric; an empty mean is taken as 0
    *p.loss = 0.0f;
    return;
  }
  const KernelSet &ks = mm::active_kernels();
  const Level lv = level();
  const int64_t T = std::max(1, num_threads());
  const Blocking bl = plan(ks, N, M, d, false, T);
  const int64_t ncb = ceil_div(M, bl.nb), tasks = std::min(T, ncb);
  const int64_t es = fsize(p.dtype), mr = ks.mr;
  const char *A = static_cast<const char *>(p.a), *B = static_cast<const char *>(p.b);
  const float s = p.scale;

  // Column states: this wave's (float32, vectorised) and the waves' so far (double sum).
  std::vector<float> colm(sym ? M : 0), coll(sym ? M : 0), colM(sym ? M : 0, kNegInf);
  std::vector<double> colL(sym ? M : 0, 0.0);
  std::vector<float> diag(N);  // L[i,i]
  std::vector<float> rowm(tasks * bl.mb);
  std::vector<double> rowl(tasks * bl.mb);
  Work apack(round_up(bl.mb, mr) * d);
  double loss_rows = 0, loss_cols = 0;

  for (int64_t R0 = 0; R0 < N; R0 += bl.mb) {
    const int64_t mbr = std::min(bl.mb, N - R0);
    if (d > 0) pack_parallel(ks, A + R0 * d * es, p.dtype, mbr, d, false, (int)mr, apack.get());
    parallel_tasks(tasks, [&](int64_t t) {
      float *bpack = tl_bpack.grow(round_up(bl.nb, ks.nr) * std::max<int64_t>(d, 1));
      float *S = tl_strip.grow(mr * bl.ld);
      float *rm = rowm.data() + t * bl.mb;
      double *rl = rowl.data() + t * bl.mb;
      std::fill(rm, rm + mbr, kNegInf);
      std::fill(rl, rl + mbr, 0.0);
      for (int64_t cb = ncb * t / tasks; cb < ncb * (t + 1) / tasks; cb++) {
        const int64_t j0 = cb * bl.nb, nbc = std::min(bl.nb, M - j0);
        if (d > 0) ks.pack(B + j0 * d * es, p.dtype, d, 1, nbc, d, ks.nr, bpack);
        float *cm = sym ? colm.data() + j0 : nullptr, *cl = sym ? coll.data() + j0 : nullptr;
        if (sym) {
          std::fill(cm, cm + nbc, kNegInf);
          std::fill(cl, cl + nbc, 0.0f);
        }
        for (int64_t i = 0; i < mbr; i += mr) {
          const int m = (int)std::min(mr, mbr - i);
          logits_strip(ks, d, bl.kc, apack.get() + i * d, bpack, nbc, m, S, bl.ld);
          for (int r = 0; r < m; r++) {  // the positives in this strip
            int64_t jd = R0 + i + r - j0;
            if (jd >= 0 && jd < nbc) diag[R0 + i + r] = S[r * bl.ld + jd] * s;
          }
          if (lv == Level::avx512)
            fwd_epilogue_avx512(S, bl.ld, m, nbc, s, rm + i, rl + i, cm, cl);
          else if (lv == Level::avx2)
            fwd_epilogue_avx2(S, bl.ld, m, nbc, s, rm + i, rl + i, cm, cl);
          else
            fwd_epilogue_generic(S, bl.ld, m, nbc, s, rm + i, rl + i, cm, cl);
        }
        if (sym)  // this wave's column states into the running double ones (owned columns)
          for (int64_t j = j0; j < j0 + nbc; j++) {
            const float mx = std::max(colM[j], colm[j]);
            colL[j] = merge_sum(colM[j], colL[j], mx) + merge_sum(colm[j], coll[j], mx);
            colM[j] = mx;
          }
      }
    });
    // Merge the tasks' row states: lse = max + log(sum_t l_t * exp(m_t - max)).
    for (int64_t r = 0; r < mbr; r++) {
      float mx = kNegInf;
      for (int64_t t = 0; t < tasks; t++) mx = std::max(mx, rowm[t * bl.mb + r]);
      double l = 0;
      for (int64_t t = 0; t < tasks; t++) l += merge_sum(rowm[t * bl.mb + r], rowl[t * bl.mb + r], mx);
      double lse = (double)mx + std::log(l);
      p.lse_rows[R0 + r] = (float)lse;
      loss_rows += lse - diag[R0 + r];
    }
  }
  if (sym) {
    for (int64_t j = 0; j < M; j++) {
      double lse = (double)colM[j] + std::log(colL[j]);
      p.lse_cols[j] = (float)lse;
      loss_cols += lse - diag[j];
    }
    *p.loss = (float)((loss_rows + loss_cols) / (2.0 * (double)N));
  } else {
    *p.loss = (float)(loss_rows / (double)N);
  }
}

void infonce_backward(const InfonceParams &p) {
  const int64_t N = p.N, M = p.M, d = p.d;
  const bool sym = p.symmetric;
  const int64_t es = fsize(p.dtype);
  if (N == 0 || d == 0) {  // no logits (or all zero): db = 0, dscale = sum G*0 = 0
    if (M * d > 0) std::memset(p.db, 0, (size_t)(M * d * es));
    *p.dscale = 0.0f;
    return;
  }
  const KernelSet &ks = mm::active_kernels();
  const Level lv = level();
  const int64_t T = std::max(1, num_threads());
  const Blocking bl = plan(ks, N, M, d, true, T);
  const int64_t ncb = ceil_div(M, bl.nb), tasks = std::min(T, ncb);
  const int64_t mr = ks.mr, nr = ks.nr;
  const char *A = static_cast<const char *>(p.a), *B = static_cast<const char *>(p.b);
  const float s = p.scale;
  // G = coef * (P_row [+ P_col]) - dcoef * [i = j]
  const float coef = (float)((double)p.grad_loss / ((sym ? 2.0 : 1.0) * (double)N));
  const float dcoef = (float)((double)p.grad_loss / (double)N);
  const bool f32 = p.dtype == L2C_FLOAT32;

  // db accumulates in float32 over the waves: in place for float32 output, else in a
  // float32 copy rounded once at the end.
  Work dbbuf(f32 ? 0 : M * d);
  float *dbacc = f32 ? static_cast<float *>(p.db) : dbbuf.get();
  parallel_for(M, 1024, [&](int64_t r0, int64_t r1) {
      std::memset(dbacc + r0 * d, 0, (size_t)((r1 - r0) * d * 4));
    });
  Work apack(round_up(bl.mb, mr) * d);   // A panels of the wave's rows, depth d
  Work atpack(round_up(d, nr) * bl.mb);  // B panels of the wave's rows^T: depth = rows, width d
  Work dapart(tasks * bl.mb * d);        // per-task da of the wave's rows
  std::vector<double> dsc(tasks, 0.0);

  for (int64_t R0 = 0; R0 < N; R0 += bl.mb) {
    const int64_t mbr = std::min(bl.mb, N - R0);
    const char *Aw = A + R0 * d * es;
    pack_parallel(ks, Aw, p.dtype, mbr, d, false, (int)mr, apack.get());
    pack_parallel(ks, Aw, p.dtype, mbr, d, true, (int)nr, atpack.get());
    parallel_tasks(tasks, [&](int64_t t) {
      float *bpack = tl_bpack.grow(round_up(bl.nb, nr) * d);
      float *btpack = tl_btpack.grow(round_up(d, nr) * bl.nb);
      float *S = tl_strip.grow(mr * bl.ld);
      float *ga = tl_ga.grow(mr * bl.nb);
      float *gt = tl_gt.grow(round_up(bl.nb, mr) * bl.kk);
      float *da = dapart.get() + t * bl.mb * d;
      std::memset(da, 0, (size_t)(mbr * d * 4));
      double acc = 0;
      for (int64_t cb = ncb * t / tasks; cb < ncb * (t + 1) / tasks; cb++) {
        const int64_t j0 = cb * bl.nb, nbc = std::min(bl.nb, M - j0);
        ks.pack(B + j0 * d * es, p.dtype, d, 1, nbc, d, (int)nr, bpack);
        ks.pack(B + j0 * d * es, p.dtype, 1, d, d, nbc, (int)nr, btpack);
        const float *lc = sym ? p.lse_cols_in + j0 : nullptr;
        for (int64_t q0 = 0; q0 < mbr; q0 += bl.kk) {
          const int64_t kkq = std::min(bl.kk, mbr - q0);
          for (int64_t i = q0; i < q0 + kkq; i += mr) {
            const int m = (int)std::min(mr, q0 + kkq - i);
            logits_strip(ks, d, bl.kc, apack.get() + i * d, bpack, nbc, m, S, bl.ld);
            float sdiag[64];
            int64_t jd[64];
            for (int r = 0; r < m; r++) {
              jd[r] = R0 + i + r - j0;
              sdiag[r] = jd[r] >= 0 && jd[r] < nbc ? S[r * bl.ld + jd[r]] : 0.0f;
            }
            const float *lr = p.lse_rows_in + R0 + i;
            acc += lv == Level::avx512 ? bwd_pass_avx512(S, bl.ld, m, nbc, s, lr, lc, coef)
                   : lv == Level::avx2     ? bwd_pass_avx2(S, bl.ld, m, nbc, s, lr, lc, coef)
                                           : bwd_pass_generic(S, bl.ld, m, nbc, s, lr, lc, coef);
            for (int r = 0; r < m; r++)  // the positive: G[i,i] -= dcoef
              if (jd[r] >= 0 && jd[r] < nbc) {
                S[r * bl.ld + jd[r]] -= dcoef * s;
                acc -= (double)dcoef * sdiag[r];
              }
            scatter_g(S, bl.ld, m, nbc, (int)mr, ga, gt, bl.kk, i - q0);
            for (int64_t p0 = 0; p0 < d; p0 += nr)  // da[rows] += sG . b_blk
              ks.tile(nbc, ga, btpack + p0 * nbc, da + i * d + p0, d, true, m,
                      (int)std::min(nr, d - p0));
          }
          // db[blk] += (sG)^T . a[sub-block]: each B panel (kkq x NR of a^T) stays in L1/L2
          // while the G^T panels pass.
          for (int64_t p0 = 0; p0 < d; p0 += nr) {
            const float *bp = atpack.get() + p0 * mbr + q0 * nr;
            for (int64_t c0 = 0; c0 < nbc; c0 += mr)
              ks.tile(kkq, gt + c0 * bl.kk, bp, dbacc + (j0 + c0) * d + p0, d, true,
                      (int)std::min(mr, nbc - c0), (int)std::min(nr, d - p0));
          }
        }
      }
      dsc[t] += acc;
    });
    // da of the wave's rows = sum of the task partials.
    char *daw = static_cast<char *>(p.da) + R0 * d * es;
    parallel_for(mbr, std::max<int64_t>(1, 8192 / d), [&](int64_t r0, int64_t r1) {
      float *tmp = f32 ? nullptr : tl_strip.grow(mr * bl.ld + d) + mr * bl.ld;
      for (int64_t r = r0; r < r1; r++) {
        float *out = f32 ? reinterpret_cast<float *>(daw) + r * d : tmp;
        const float *src = dapart.get() + r * d;
        std::memcpy(out, src, (size_t)d * 4);
        for (int64_t t = 1; t < tasks; t++) {
          const float *st = dapart.get() + t * bl.mb * d + r * d;
          for (int64_t c = 0; c < d; c++) out[c] += st[c];
        }
        if (!f32) store_f32(tmp, daw + r * d * es, p.dtype, d);
      }
    });
  }
  if (!f32) store_rows(dbacc, p.db, p.dtype, M, d);
  double total = 0;
  for (double v : dsc) total += v;
  *p.dscale = (float)total;
}

}  // namespace cpu
}  // namespace l2c
