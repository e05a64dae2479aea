// lora.cc: CPU kernels: linear layers with a LoRA adapter fused in, forward and backward;
// merge / unmerge. Semantics in include/l2c_lora.h.
//
// The forward is one BLIS-style GEMM over x (matmul.cc's blocking and the per-ISA
// packed micro-kernels of matmul_kernels.h), run by a driver of its own: each packed
// x block (mc rows x kc deep) feeds two products before it leaves the cache,
//   y_block += x_block · Wᵀ   (out columns)   and   t_block += drop(x_block) · Aᵀ   (r columns),
// and in the last K step, once t is complete for the block, the up-projection and the
// bias ride along as extra depth of the same tiles (K-concatenation):
//   y = [x | scale·t | 1] · [W | B | bias]ᵀ.
// So x is read once; the LoRA path costs r extra tile columns plus r+1 extra depth steps.
// With dropout the t product reads a masked copy of the packed x block (mask applied to
// the packed panels, never to a second pass over x).
//
// The backward runs the same driver over dy: dx = [dy | g] · [W | A]-style, i.e. the packed
// dy block feeds dy·W (in columns) and g = scale·dy·B (r columns), and g·A rides along as
// extra depth in the last K step (with dropout it is a separate small tile per C tile,
// masked elementwise, since the mask applies to g·A only). Then, per block of rows while
// it is warm, x is read once for t = drop(x)·Aᵀ and d_a += gᵀ·drop(x) (AVX-512: kernels
// that read x in place; other levels: matmul_serial), and d_b += tᵀ·dy (matmul_serial);
// d_a / d_b are per-task partials reduced at the end. Tasks own disjoint row ranges of
// x, y, dx.
//
// bfloat16 x and W on CPUs with AVX512_BF16: the base product runs on matmul's bf16 pair
// tiles (as ops.matmul does); the packed pairs are widened back to float32 panels for the
// t / g product, and the extra depth becomes a float32 tile of its own per C tile. The
// LoRA path is float32 throughout (adapters converted once per call).

// GCC 12's AVX-512 headers seed "undefined" vectors with `__Y = __Y`, which
// -W(maybe-)uninitialized reports once inlined (GCC bug 105593, fixed in GCC 13); as in
// matmul_avx512.cc.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "lora.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include "backend.h"
#include "dropout.h"
#include "half.h"
#include "matmul_kernels.h"
#include "philox.h"
#include "simd.h"
#include "threadpool.h"

namespace l2c {
namespace cpu {
namespace {

using mm::KernelSet;

// As in matmul.cc: below this many flops one thread does it all; 16-bit outputs
// accumulate in a float32 buffer of at most kHalfBufFloats (C cut into column chunks of
// at most kHalfCols).
constexpr double kParallelMinFlops = 1.6e7;
constexpr int64_t kHalfBufFloats = int64_t(2) << 20;
constexpr int64_t kHalfCols = 2048;
// Rows of x per step of the backward's x pass: drop(x) of 128 rows of 2048 floats is
// 1 MB, the size of an L2.
constexpr int64_t kXPassRows = 128;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
int64_t balanced(int64_t n, int64_t most, int64_t unit) {
  if (n <= most) return n;
  return std::min(most, round_up(ceil_div(n, ceil_div(n, most)), unit));
}

// A 64-byte aligned float buffer (the tiles load B panels with aligned loads).
class Buf {
 public:
  Buf() = default;
  Buf(const Buf &) = delete;
  Buf &operator=(const Buf &) = delete;
  ~Buf() { std::free(p_); }
  // Grows only; contents are not kept across growth.
  float *get(int64_t floats, bool zero = false) {
    floats = std::max<int64_t>(floats, 1);
    if (floats > cap_) {
      std::free(p_);
      cap_ = 0;
      p_ = static_cast<float *>(std::aligned_alloc(64, (size_t)round_up(floats * 4, 64)));
      if (!p_) fail(L2C_OUT_OF_MEMORY, "lora: cannot allocate a work buffer");
      cap_ = floats;
    }
    if (zero) std::memset(p_, 0, (size_t)floats * 4);
    return p_;
  }
  float *data() const { return p_; }
  // Frees the buffer if it grew past `floats` (per-call buffers that scale with N).
  void trim(int64_t floats) {
    if (cap_ > floats) {
      std::free(p_);
      p_ = nullptr;
      cap_ = 0;
    }
  }

 private:
  float *p_ = nullptr;
  int64_t cap_ = 0;
};

// Per-thread buffers, reused across calls (pool threads live as long as the process):
// packing and row buffers of the tasks, and the calling thread's per-call buffers
// (adapters as float32, their packed panels, t / g, the partial sums). Fresh buffers on
// every call cost page faults that were ~20% of a 512 x 256 x 256 backward.
thread_local Buf tl_apack, tl_af32, tl_adrop, tl_bpack, tl_cbuf, tl_gpack, tl_emult, tl_utile,
    tl_mrow, tl_xd, tl_dyd, tl_tt, tl_delta;
thread_local Buf tl_at, tl_gpad, tl_a32, tl_b32, tl_bias32, tl_spack, tl_epack, tl_s, tl_pa, tl_pb, tl_db;

// At the end of a call (also when it throws): the calling thread's per-call buffers are
// kept for the next call up to 4M floats (16 MB) each, and freed if larger.
struct TrimOnExit {
  ~TrimOnExit() {
    const int64_t keep = int64_t(4) << 20;
    for (Buf *b : {&tl_at, &tl_a32, &tl_b32, &tl_bias32, &tl_spack, &tl_epack, &tl_s, &tl_pa, &tl_pb, &tl_db})
      b->trim(keep);
  }
};

// ---- the dropout mask (dropout.h's rule) ----

struct Drop {
  bool on = false;
  uint64_t seed = 0;
  uint32_t thr = 0;
  float inv = 1.0f;
};

Drop make_drop(float p, uint64_t seed) {
  Drop d;
  if (p > 0.0f) {
    d.on = true;
    d.seed = seed;
    d.thr = dropout::threshold(p);
    d.inv = dropout::scale(p);
  }
  return d;
}

// out[i] = keep(seed, base + i) ? inv : 0 for i < n.
void drop_mult_scalar(const Drop &d, uint64_t base, int64_t n, float *out) {
  int64_t i = 0;
  while (i < n) {
    uint64_t idx = base + (uint64_t)i;
    philox::u32x4 w = philox::philox4x32_10(idx >> 2, d.seed);
    for (unsigned j = (unsigned)(idx & 3); j < 4 && i < n; j++, i++)
      out[i] = w.v[j] >= d.thr ? d.inv : 0.0f;
  }
}

// 32 x 32 -> 64-bit products of 16 lanes, split in high and low words.
L2C_TARGET_AVX512 inline void mulhilo16(__m512i a, __m512i m, __m512i &hi, __m512i &lo) {
  __m512i pe = _mm512_mul_epu32(a, m);
  __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}

// philox.h's Philox4x32-10 on 16 counters at once (lane l: counter c + l): w[k] lane l
// is word k of counter c + l.
L2C_TARGET_AVX512 inline void philox16(uint64_t c, uint64_t seed, __m512i w[4]) {
  const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  const __m512i lo = _mm512_set1_epi32((int)(uint32_t)c);
  __m512i c0 = _mm512_add_epi32(lo, iota);
  __m512i c1 = _mm512_set1_epi32((int)(uint32_t)(c >> 32));
  c1 = _mm512_mask_add_epi32(c1, _mm512_cmplt_epu32_mask(c0, lo), c1, _mm512_set1_epi32(1));
  __m512i c2 = _mm512_setzero_si512(), c3 = _mm512_setzero_si512();
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u), m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
  for (int r = 0; r < 10; r++) {
    __m512i hi0, lo0, hi1, lo1;
    mulhilo16(c0, m0, hi0, lo0);
    mulhilo16(c2, m1, hi1, lo1);
    __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32((int)k0));
    __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32((int)k1));
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  w[0] = c0, w[1] = c1, w[2] = c2, w[3] = c3;
}

// 64 elements starting at element 4c in element order (counter c word 0..3, counter
// c+1, ...): out[v] holds elements 16v .. 16v+15.
L2C_TARGET_AVX512 inline void philox64(uint64_t c, uint64_t seed, __m512i out[4]) {
  __m512i w[4];
  philox16(c, seed, w);
  // Within each 128-bit lane L (counters 4L..4L+3): a 4 x 4 transpose, so that r_i lane L
  // holds the 4 words of counter 4L+i ...
  __m512i t0 = _mm512_unpacklo_epi32(w[0], w[1]), t1 = _mm512_unpackhi_epi32(w[0], w[1]);
  __m512i t2 = _mm512_unpacklo_epi32(w[2], w[3]), t3 = _mm512_unpackhi_epi32(w[2], w[3]);
  __m512i r0 = _mm512_unpacklo_epi64(t0, t2), r1 = _mm512_unpackhi_epi64(t0, t2);
  __m512i r2 = _mm512_unpacklo_epi64(t1, t3), r3 = _mm512_unpackhi_epi64(t1, t3);
  // ... then a 4 x 4 transpose of 128-bit lanes: out[v] = lane v of r0, r1, r2, r3.
  __m512i u0 = _mm512_shuffle_i32x4(r0, r1, 0x44), u1 = _mm512_shuffle_i32x4(r2, r3, 0x44);
  __m512i u2 = _mm512_shuffle_i32x4(r0, r1, 0xEE), u3 = _mm512_shuffle_i32x4(r2, r3, 0xEE);
  out[0] = _mm512_shuffle_i32x4(u0, u1, 0x88);
  out[1] = _mm512_shuffle_i32x4(u0, u1, 0xDD);
  out[2] = _mm512_shuffle_i32x4(u2, u3, 0x88);
  out[3] = _mm512_shuffle_i32x4(u2, u3, 0xDD);
}

L2C_TARGET_AVX512 void drop_mult_avx512(const Drop &d, uint64_t base, int64_t n, float *out) {
  int64_t head = std::min<int64_t>(n, (int64_t)((4 - (base & 3)) & 3));
  drop_mult_scalar(d, base, head, out);
  const __m512i thr = _mm512_set1_epi32((int)d.thr);
  const __m512 inv = _mm512_set1_ps(d.inv), zero = _mm512_setzero_ps();
  for (int64_t i = head; i < n; i += 64) {
    __m512i w[4];
    philox64((base + (uint64_t)i) >> 2, d.seed, w);
    for (int v = 0; v < 4; v++) {
      int64_t rem = n - i - 16 * v;
      if (rem <= 0) break;
      __mmask16 m = rem >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << rem) - 1);
      __m512 val = _mm512_mask_blend_ps(_mm512_cmpge_epu32_mask(w[v], thr), zero, inv);
      _mm512_mask_storeu_ps(out + i + 16 * v, m, val);
    }
  }
}

void drop_mult(const Drop &d, uint64_t base, int64_t n, float *out) {
  if (level() == Level::avx512)
    drop_mult_avx512(d, base, n, out);
  else
    drop_mult_scalar(d, base, n, out);
}

// ---- the backward's x pass on AVX-512: products with r rows, without packing ----
// With M = r (16) each element of drop(x) meets only r multiply-adds, so packing it for
// the tiles (twice: once per product) cost as much as the products; these kernels read
// drop(x) in place (rows streamed once, then again from L2 for d_a).

// At: A transposed in 16-column groups, At[(jv*in + k)*16 + jj] = A[(16jv + jj)*in + k]
// (zero past r).
void pack_at(const float *a, int64_t r, int64_t in, float *at) {
  for (int64_t jv = 0; jv * 16 < r; jv++)
    for (int64_t k = 0; k < in; k++)
      for (int64_t jj = 0; jj < 16; jj++) {
        const int64_t j = jv * 16 + jj;
        at[(jv * in + k) * 16 + jj] = j < r ? a[j * in + k] : 0.0f;
      }
}

inline __mmask16 lanes16(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

// t [rows, r] = xd [rows, in] (row stride ldx) · Aᵀ: 8 rows at a time, each k one At
// vector times 8 broadcasts.
L2C_TARGET_AVX512 void xpass_t(const float *xd, int64_t ldx, int64_t rows, int64_t in,
                               const float *at, int64_t r, float *t) {
  for (int64_t n0 = 0; n0 < rows; n0 += 8) {
    const int64_t nb = std::min<int64_t>(8, rows - n0);
    const float *p[8];
    for (int i = 0; i < 8; i++) p[i] = xd + (n0 + std::min<int64_t>(i, nb - 1)) * ldx;
    for (int64_t jv = 0; jv * 16 < r; jv++) {
      const float *a = at + jv * in * 16;
      __m512 acc[8];
      for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();
      for (int64_t k = 0; k < in; k++) {
        const __m512 av = _mm512_load_ps(a + k * 16);
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(p[i][k]), av, acc[i]);
      }
      const __mmask16 m = lanes16(r - jv * 16);
      for (int64_t i = 0; i < nb; i++) _mm512_mask_storeu_ps(t + (n0 + i) * r + jv * 16, m, acc[i]);
    }
  }
}

// d_a [r, in] += gᵀ · xd over `rows` rows; gp is g padded to 16-column groups,
// gp[(n*groups + jv)*16 + jj] (zero past r).
L2C_TARGET_AVX512 void xpass_da(const float *gp, const float *xd, int64_t ldx, int64_t rows,
                                int64_t in, int64_t r, float *da) {
  const int64_t groups = (r + 15) / 16;
  for (int64_t jv = 0; jv < groups; jv++) {
    const int64_t jn = std::min<int64_t>(16, r - jv * 16);
    for (int64_t kv = 0; kv < in; kv += 16) {
      const __mmask16 mk = lanes16(in - kv);
      __m512 acc[16];
      for (int j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
      for (int64_t n = 0; n < rows; n++) {
        const __m512 xv = _mm512_maskz_loadu_ps(mk, xd + n * ldx + kv);
        const float *g = gp + (n * groups + jv) * 16;
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(g[j]), xv, acc[j]);
      }
      for (int64_t j = 0; j < jn; j++) {
        float *dst = da + (jv * 16 + j) * in + kv;
        _mm512_mask_storeu_ps(dst, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, dst), acc[j]));
      }
    }
  }
}

// ---- the fused driver ----

// C [M, N] = A [M, K] · Bᵀ (+ the extra depth), and the side product S [M, r] = A'·Bsᵀ
// from the same packed A blocks. See the file comment.
struct Fused {
  const KernelSet *ks = nullptr;
  int64_t M = 0, K = 0, N = 0, r = 0;
  // A: row-major [M, K] of dtype adt.
  const char *a = nullptr;
  l2c_dtype adt = L2C_FLOAT32;
  // Main B: column j (< N), depth k at b[j*bsx + k*bsk], dtype bdt. N may be 0.
  const char *b = nullptr;
  l2c_dtype bdt = L2C_FLOAT32;
  int64_t bsx = 0, bsk = 0;
  // Side B, float32, pre-packed as NR-column panels per K block: the block starting at
  // depth pc at spack + pc*rpad (rpad = r rounded up to NR).
  const float *spack = nullptr;
  int64_t rpad = 0;
  Drop sdrop;  // A' = drop(A), mask index row*K + k; else A' = A
  float *s = nullptr;  // S [M, r]; multiplied by `scale` once complete
  float scale = 1.0f;
  // Extra depth after the last K block: per NR-column panel q of C, E rows of NR floats
  // at epack + q*E*NR, paired with the scaled S (r rows) and, when has_bias, a 1.
  const float *epack = nullptr;
  int64_t E = 0;
  bool has_bias = false;
  // Instead: C += drop'(S·epack) as a separate tile product per C tile, masked
  // elementwise (mask index row*N + col).
  bool masked_epi = false;
  Drop edrop;
  char *c = nullptr;
  l2c_dtype cdt = L2C_FLOAT32;
  int64_t kcb = 0;  // the K block length (the one spack was packed with)
  // A and main B are bfloat16 and the level has bf16 pair tiles: the main product runs
  // on them (kcb even); S and the extra depth stay float32.
  bool pairs = false;
};

// The K block: K cut into equal blocks of at most ks.kc, even for the pair tiles.
int64_t k_block(const KernelSet &ks, int64_t K, bool pairs) {
  int64_t kcb = ceil_div(K, ceil_div(K, ks.kc));
  return pairs ? round_up(kcb, 2) : kcb;
}
bool use_pairs(const KernelSet &ks, l2c_dtype dt) {
  return dt == L2C_BFLOAT16 && ks.tile_bf16 != nullptr && ks.nr <= 32 && ks.mr <= 16;
}

struct Blocking {
  int64_t mcb = 0, ncb = 0, nch = 0;
};

Blocking blocking(const Fused &f, int64_t rows) {
  const KernelSet &ks = *f.ks;
  const bool half = f.cdt != L2C_FLOAT32;
  Blocking bl;
  bl.nch = f.N == 0 ? 0 : half ? balanced(f.N, kHalfCols, ks.nr) : f.N;
  int64_t mmax = ks.mc;
  if (half && bl.nch > 0)
    mmax = std::min(mmax, std::max<int64_t>(ks.mr, kHalfBufFloats / bl.nch / ks.mr * ks.mr));
  bl.mcb = balanced(rows, mmax, ks.mr);
  bl.ncb = bl.nch == 0 ? 0 : balanced(bl.nch, ks.nc, ks.nr);
  return bl;
}

// A panel packed as bf16 pairs (pack_bf16's layout: (x, k) at uint16 [(k/2)*2w + 2x +
// (k&1)]) -> the float32 panel layout [k*w + x], exactly (bf16 -> f32 is a shift). w <= 16.
L2C_TARGET_AVX512 void unpair_panel(const float *src, int64_t kc, int w, float *dst) {
  const uint32_t *s = reinterpret_cast<const uint32_t *>(src);
  const __mmask16 m = (__mmask16)((1u << w) - 1);
  const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
  for (int64_t k2 = 0; 2 * k2 < kc; k2++) {
    __m512i u = _mm512_maskz_loadu_epi32(m, s + k2 * w);
    _mm512_mask_storeu_ps(dst + 2 * k2 * w, m, _mm512_castsi512_ps(_mm512_slli_epi32(u, 16)));
    if (2 * k2 + 1 < kc)
      _mm512_mask_storeu_ps(dst + (2 * k2 + 1) * w, m, _mm512_castsi512_ps(_mm512_and_si512(u, hi)));
  }
}

// Rows [i0, i0 + mc) (mc <= bl.mcb) of C and S.
void fused_block(const Fused &f, const Blocking &bl, int64_t i0, int64_t mc) {
  const KernelSet &ks = *f.ks;
  const int MR = ks.mr, NR = ks.nr;
  const int64_t ea = fsize(f.adt), eb = fsize(f.bdt), ec = fsize(f.cdt), r = f.r;
  const bool half = f.cdt != L2C_FLOAT32;
  const bool pairs = f.pairs;
  auto main_tile = pairs ? ks.tile_bf16 : ks.tile;
  auto main_pack = pairs ? ks.pack_bf16 : ks.pack;
  auto depth = [&](int64_t k) { return pairs ? (k + 1) / 2 : k; };
  // The extra depth as its own float32 tile after the main one (masked, or beside bf16
  // pair tiles), else concatenated to the main tiles' depth.
  const bool sep = f.masked_epi || pairs;
  const bool sep_epi = sep && f.E > 0;
  const int64_t np = ceil_div(mc, MR);
  float *apack = tl_apack.get(np * MR * (depth(f.kcb) + (sep ? 0 : f.E)));
  float *af32 = pairs && r > 0 ? tl_af32.get(np * MR * f.kcb) : nullptr;
  float *adrop = f.sdrop.on ? tl_adrop.get(np * MR * f.kcb) : nullptr;
  float *mrow = f.sdrop.on ? tl_mrow.get(f.kcb) : nullptr;
  float *bpack = bl.ncb ? tl_bpack.get(round_up(bl.ncb, NR) * (depth(f.kcb) + (sep ? 0 : f.E))) : nullptr;
  float *cbuf = half && bl.nch ? tl_cbuf.get(mc * bl.nch) : nullptr;
  float *gpack = sep_epi ? tl_gpack.get(np * MR * f.E) : nullptr;
  const bool masked = f.masked_epi && f.E > 0;
  float *emult = masked && bl.ncb ? tl_emult.get(MR * bl.ncb) : nullptr;
  float *utile = masked ? tl_utile.get(MR * NR) : nullptr;

  const int64_t nchunks = f.N == 0 ? 1 : ceil_div(f.N, bl.nch);
  for (int64_t ch = 0; ch < nchunks; ch++) {
    const int64_t j0 = ch * bl.nch, nw = std::min(bl.nch, f.N - j0);
    const bool side = ch == 0 && r > 0;  // S is computed with the first column chunk
    if (nw <= 0 && !side) continue;
    float *ct = half || nw <= 0 ? cbuf : reinterpret_cast<float *>(f.c) + i0 * f.N + j0;
    const int64_t ldct = half ? nw : f.N;
    for (int64_t pc = 0; pc < f.K; pc += f.kcb) {
      const int64_t kc = std::min(f.kcb, f.K - pc);
      const bool last = pc + kc >= f.K;
      const int64_t E = last && !sep && nw > 0 ? f.E : 0;
      const int64_t kd = depth(kc) + E;  // depth units of this step's A and B panels
      for (int64_t p = 0; p < np; p++)
        main_pack(f.a + ((i0 + p * MR) * f.K + pc) * ea, f.adt, f.K, 1,
                  std::min<int64_t>(MR, mc - p * MR), kc, MR, apack + p * MR * kd);

      if (side) {
        // The block as float32 panels (stride ad per panel), masked when dropping.
        const float *ap = apack;
        int64_t ad = kd;
        if (pairs) {
          for (int64_t p = 0; p < np; p++) unpair_panel(apack + p * MR * kd, kc, MR, af32 + p * MR * kc);
          ap = af32;
          ad = kc;
        }
        if (f.sdrop.on) {
          for (int64_t p = 0; p < np; p++) {
            const int64_t m = std::min<int64_t>(MR, mc - p * MR);
            const float *src = ap + p * MR * ad;
            float *dst = adrop + p * MR * kc;
            for (int rr = 0; rr < MR; rr++) {
              if (rr < m) {
                drop_mult(f.sdrop, (uint64_t)(i0 + p * MR + rr) * (uint64_t)f.K + (uint64_t)pc, kc,
                          mrow);
                for (int64_t k = 0; k < kc; k++) dst[k * MR + rr] = src[k * MR + rr] * mrow[k];
              } else {
                for (int64_t k = 0; k < kc; k++) dst[k * MR + rr] = 0.0f;
              }
            }
          }
          ap = adrop;
          ad = kc;
        }
        for (int64_t p = 0; p < np; p++) {
          const int m = (int)std::min<int64_t>(MR, mc - p * MR);
          for (int64_t q = 0; q * NR < r; q++)
            ks.tile(kc, ap + p * MR * ad, f.spack + pc * f.rpad + q * NR * kc,
                    f.s + (i0 + p * MR) * r + q * NR, r, pc > 0, m,
                    (int)std::min<int64_t>(NR, r - q * NR));
        }
        if (last)
          for (int64_t i = i0 * r; i < (i0 + mc) * r; i++) f.s[i] *= f.scale;
      }

      // A's extra depth: the scaled S, then 1 for the bias; appended to the last step's
      // panels (E > 0), or as panels of their own (sep).
      if (last && nw > 0 && (E > 0 || sep_epi)) {
        const int64_t ed = f.E;
        for (int64_t p = 0; p < np; p++) {
          const int64_t m = std::min<int64_t>(MR, mc - p * MR);
          float *dst = E > 0 ? apack + p * MR * kd + depth(kc) * MR : gpack + p * MR * ed;
          const float *sp = f.s + (i0 + p * MR) * r;
          for (int64_t i = 0; i < r; i++)
            for (int rr = 0; rr < MR; rr++) dst[i * MR + rr] = rr < m ? sp[rr * r + i] : 0.0f;
          if (f.has_bias)
            for (int rr = 0; rr < MR; rr++) dst[r * MR + rr] = 1.0f;
        }
      }

      for (int64_t jc = 0; jc < nw; jc += bl.ncb) {
        const int64_t nc = std::min(bl.ncb, nw - jc);
        for (int64_t q = 0; q * NR < nc; q++) {
          const int64_t col = j0 + jc + q * NR;
          main_pack(f.b + (col * f.bsx + pc * f.bsk) * eb, f.bdt, f.bsx, f.bsk,
                    std::min<int64_t>(NR, nc - q * NR), kc, NR, bpack + q * NR * kd);
          if (E > 0)
            std::memcpy(bpack + q * NR * kd + depth(kc) * NR, f.epack + (col / NR) * f.E * NR,
                        sizeof(float) * E * NR);
        }
        const bool do_sep = last && sep_epi, do_mask = last && masked;
        for (int64_t p = 0; p < np; p++) {
          const int m = (int)std::min<int64_t>(MR, mc - p * MR);
          if (do_mask)
            for (int rr = 0; rr < m; rr++)
              drop_mult(f.edrop, (uint64_t)(i0 + p * MR + rr) * (uint64_t)f.N + (uint64_t)(j0 + jc),
                        nc, emult + rr * nc);
          for (int64_t q = 0; q * NR < nc; q++) {
            const int n = (int)std::min<int64_t>(NR, nc - q * NR);
            float *cp = ct + p * MR * ldct + jc + q * NR;
            main_tile(kd, apack + p * MR * kd, bpack + q * NR * kd, cp, ldct, pc > 0, m, n);
            if (do_sep) {
              const float *ep = f.epack + ((j0 + jc) / NR + q) * f.E * NR;
              if (!do_mask) {
                ks.tile(f.E, gpack + p * MR * f.E, ep, cp, ldct, true, m, n);
              } else {
                ks.tile(f.E, gpack + p * MR * f.E, ep, utile, NR, false, m, n);
                for (int rr = 0; rr < m; rr++) {
                  const float *mu = emult + rr * nc + q * NR;
                  for (int j = 0; j < n; j++) cp[rr * ldct + j] += mu[j] * utile[rr * NR + j];
                }
              }
            }
          }
        }
      }
    }
    if (half)
      for (int64_t i = 0; i < mc; i++)
        ks.store_half(cbuf + i * nw, f.c + ((i0 + i) * f.N + j0) * ec, f.cdt, nw);
  }
}

// Tasks for M rows: one below kParallelMinFlops, else the pool's threads (at most one
// per MR tile of rows).
int64_t tasks_for(const Fused &f, double flops) {
  int64_t T = flops < kParallelMinFlops ? 1 : num_threads();
  return std::max<int64_t>(1, std::min(T, ceil_div(f.M, f.ks->mr)));
}

// Runs the driver over all M rows in T tasks that own contiguous row ranges (whole MR
// tiles); after(task, i0, i1) runs on each finished block of rows, on the task's thread.
void run_fused(const Fused &f, int64_t T,
               const std::function<void(int64_t, int64_t, int64_t)> &after) {
  const KernelSet &ks = *f.ks;
  const int64_t tiles = ceil_div(f.M, ks.mr);
  auto work = [&](int64_t t) {
    const int64_t lo = std::min(f.M, tiles * t / T * ks.mr);
    const int64_t hi = std::min(f.M, tiles * (t + 1) / T * ks.mr);
    if (lo >= hi) return;
    const Blocking bl = blocking(f, hi - lo);
    for (int64_t i0 = lo; i0 < hi; i0 += bl.mcb) {
      const int64_t mc = std::min(bl.mcb, hi - i0);
      fused_block(f, bl, i0, mc);
      if (after) after(t, i0, i0 + mc);
    }
  };
  if (T == 1)
    work(0);
  else
    parallel_tasks(T, work);
}

// A float32 copy of an adapter / bias (converted from its dtype).
void to_f32(const void *src, l2c_dtype dt, int64_t n, float *dst) {
  if (n > 0) load_f32(src, dt, n, dst);
}

// Side panels: column j, depth k at src[j*sx + k*sk] (float32), packed per K block of
// kcb as the driver reads them.
void pack_side(const KernelSet &ks, const float *src, int64_t sx, int64_t sk, int64_t r,
               int64_t K, int64_t kcb, float *dst) {
  const int64_t rpad = round_up(r, ks.nr);
  for (int64_t pc = 0; pc < K; pc += kcb)
    ks.pack(src + pc * sk, L2C_FLOAT32, sx, sk, r, std::min(kcb, K - pc), ks.nr, dst + pc * rpad);
}

// Extra-depth panels for N columns: row i (< rows) of column j is val(i, j); zero-padded
// to whole NR panels.
template <class F>
void pack_extra(const KernelSet &ks, int64_t N, int64_t E, float *dst, F val) {
  const int64_t NR = ks.nr;
  for (int64_t q = 0; q * NR < N; q++)
    for (int64_t i = 0; i < E; i++)
      for (int64_t c = 0; c < NR; c++) {
        const int64_t j = q * NR + c;
        dst[(q * E + i) * NR + c] = j < N ? val(i, j) : 0.0f;
      }
}

MatmulParams f32_params(const float *a, const float *b, float *c, int64_t M, int64_t N,
                        int64_t K, int64_t lda, int64_t ldb, int64_t ldc, bool ta, bool tb) {
  MatmulParams p;
  p.a = a;
  p.b = b;
  p.c = c;
  p.M = M;
  p.N = N;
  p.K = K;
  p.lda = lda;
  p.ldb = ldb;
  p.ldc = ldc;
  p.trans_a = ta;
  p.trans_b = tb;
  return p;
}

// Once rounded: float32 with round-to-odd, so that a later round-to-nearest to 16 bits
// equals rounding v to 16 bits directly (24 >= 8 + 2 bits).
float round_odd_f32(double v) {
  float f = (float)v;
  if ((double)f != v && std::isfinite(f) && !(f32_bits(f) & 1u))
    f = std::nextafterf(f, v > (double)f ? INFINITY : -INFINITY);
  return f;
}

}  // namespace

void lora_forward(const LoraDims &d, const void *x, const void *weight, const void *a,
                  const void *b, const void *bias, void *y) {
  const int64_t N = d.n, in = d.in, out = d.out, r = d.r;
  if (N == 0 || out == 0) return;
  const int64_t es = fsize(d.dt);
  if (in == 0) {  // x·Wᵀ and t are empty sums: y = bias (or 0)
    std::vector<float> row((size_t)out, 0.0f);
    if (bias) load_f32(bias, d.dt, out, row.data());
    for (int64_t n = 0; n < N; n++) store_f32(row.data(), static_cast<char *>(y) + n * out * es, d.dt, out);
    return;
  }
  const KernelSet &ks = mm::active_kernels();
  TrimOnExit trim;
  Fused f;
  f.ks = &ks;
  f.M = N;
  f.K = in;
  f.N = out;
  f.r = r;
  f.a = static_cast<const char *>(x);
  f.adt = d.dt;
  f.b = static_cast<const char *>(weight);  // column o, depth k: W[o*in + k]
  f.bdt = d.dt;
  f.bsx = in;
  f.bsk = 1;
  f.pairs = use_pairs(ks, d.dt);
  f.kcb = k_block(ks, in, f.pairs);
  f.rpad = round_up(r, ks.nr);
  f.scale = d.scale;
  f.sdrop = make_drop(d.p, d.seed);
  f.has_bias = bias != nullptr;
  f.E = r + (f.has_bias ? 1 : 0);
  f.c = static_cast<char *>(y);
  f.cdt = d.dt;

  float *a32 = tl_a32.get(r * in), *b32 = tl_b32.get(out * r), *bias32 = tl_bias32.get(out);
  float *spack = tl_spack.get(f.rpad * in), *epack = tl_epack.get(round_up(out, ks.nr) * f.E);
  to_f32(a, d.adt, r * in, a32);
  to_f32(b, d.adt, out * r, b32);
  if (bias) load_f32(bias, d.dt, out, bias32);
  if (r > 0) pack_side(ks, a32, in, 1, r, in, f.kcb, spack);  // column j: A[j*in + k]
  pack_extra(ks, out, f.E, epack,
             [&](int64_t i, int64_t j) { return i < r ? b32[j * r + i] : bias32[j]; });
  f.spack = spack;
  f.epack = epack;
  f.s = tl_s.get(N * r);  // t
  const double flops = 2.0 * N * in * (out + r) + 2.0 * N * out * (r + 1);
  run_fused(f, tasks_for(f, flops), nullptr);
}

void lora_backward(const LoraDims &d, const void *dy, const void *x, const void *weight,
                   const void *a, const void *b, void *dx, void *d_a, void *d_b) {
  const int64_t N = d.n, in = d.in, out = d.out, r = d.r;
  const int64_t es = fsize(d.dt), eas = fsize(d.adt);
  auto zero = [](void *p, int64_t bytes) {
    if (bytes > 0) std::memset(p, 0, (size_t)bytes);
  };
  if (N == 0 || out == 0 || in == 0) {
    // out == 0: dy·W and g are empty sums (0); in == 0: x and t are empty (0).
    if (dx) zero(dx, N * in * es);
    zero(d_a, r * in * eas);
    zero(d_b, out * r * eas);
    return;
  }
  if (!dx && r == 0) return;
  const KernelSet &ks = mm::active_kernels();
  TrimOnExit trim;
  const Drop drop = make_drop(d.p, d.seed);
  Fused f;
  f.ks = &ks;
  f.M = N;
  f.K = out;
  f.N = dx ? in : 0;
  f.r = r;
  f.a = static_cast<const char *>(dy);
  f.adt = d.dt;
  f.b = static_cast<const char *>(weight);  // column k (of in), depth o: W[o*in + k]
  f.bdt = d.dt;
  f.bsx = 1;
  f.bsk = in;
  f.pairs = use_pairs(ks, d.dt);
  f.kcb = k_block(ks, out, f.pairs);
  f.rpad = round_up(r, ks.nr);
  f.scale = d.scale;
  f.E = r;
  f.masked_epi = drop.on;
  f.edrop = drop;
  f.c = static_cast<char *>(dx);
  f.cdt = d.dt;

  float *a32 = tl_a32.get(r * in), *b32 = tl_b32.get(out * r);
  float *spack = tl_spack.get(f.rpad * out), *epack = tl_epack.get(round_up(in, ks.nr) * r);
  to_f32(a, d.adt, r * in, a32);
  to_f32(b, d.adt, out * r, b32);
  if (r > 0) {
    pack_side(ks, b32, 1, r, r, out, f.kcb, spack);  // column j: B[o*r + j]
    if (dx) pack_extra(ks, in, r, epack, [&](int64_t i, int64_t j) { return a32[i * in + j]; });
  }
  f.spack = spack;
  f.epack = epack;
  f.s = tl_s.get(N * r);  // g

  const double flops = 2.0 * N * out * ((dx ? in : 0) + r) + 2.0 * N * in * r * (dx ? 1 : 0) +
                       6.0 * N * r * in;
  const int64_t T = tasks_for(f, flops);
  // Per-task partials: d_a [r, in] and d_bᵀ [r, out].
  float *pa = tl_pa.get(T * r * in, true), *pb = tl_pb.get(T * r * out, true);
  const float *a32p = a32;
  float *gp = f.s;
  const bool avx512 = level() == Level::avx512;
  float *at = nullptr;
  if (avx512 && r > 0) {
    at = tl_at.get(round_up(r, 16) * in);
    pack_at(a32, r, in, at);
  }
  auto xpass = [&](int64_t t, int64_t b0, int64_t b1) {
    if (r == 0) return;
    for (int64_t n0 = b0; n0 < b1; n0 += kXPassRows) {
      const int64_t rows = std::min(kXPassRows, b1 - n0);
      const float *xd;
      if (d.dt == L2C_FLOAT32 && !drop.on) {
        xd = static_cast<const float *>(x) + n0 * in;
      } else {
        float *buf = tl_xd.get(rows * in);
        float *mult = drop.on ? tl_mrow.get(in) : nullptr;
        for (int64_t i = 0; i < rows; i++) {
          float *row = buf + i * in;
          load_f32(static_cast<const char *>(x) + (n0 + i) * in * es, d.dt, in, row);
          if (drop.on) {
            drop_mult(drop, (uint64_t)(n0 + i) * (uint64_t)in, in, mult);
            for (int64_t k = 0; k < in; k++) row[k] *= mult[k];
          }
        }
        xd = buf;
      }
      const float *dyd;
      if (d.dt == L2C_FLOAT32) {
        dyd = static_cast<const float *>(dy) + n0 * out;
      } else {
        float *buf = tl_dyd.get(rows * out);
        load_f32(static_cast<const char *>(dy) + n0 * out * es, d.dt, rows * out, buf);
        dyd = buf;
      }
      if (avx512) {
        // t [rows, r] = drop(x) · Aᵀ;  d_a += gᵀ · drop(x);  d_bᵀ += tᵀ · dy
        float *tb = tl_tt.get(rows * r);
        xpass_t(xd, in, rows, in, at, r, tb);
        const int64_t groups = (r + 15) / 16;
        float *gpad = tl_gpad.get(rows * groups * 16);
        for (int64_t n = 0; n < rows; n++)
          for (int64_t j = 0; j < groups * 16; j++)
            gpad[n * groups * 16 + j] = j < r ? gp[(n0 + n) * r + j] : 0.0f;
        xpass_da(gpad, xd, in, rows, in, r, pa + t * r * in);
        matmul_serial(f32_params(tb, dyd, pb + t * r * out, r, out, rows, r, out, out, true, false), true);
      } else {
        // tᵀ [r, rows] = A · drop(x)ᵀ;  d_a += gᵀ · drop(x);  d_bᵀ += tᵀ · dy
        float *tt = tl_tt.get(r * rows);
        matmul_serial(f32_params(a32p, xd, tt, r, rows, in, in, in, rows, false, true));
        matmul_serial(f32_params(gp + n0 * r, xd, pa + t * r * in, r, in, rows, r, in, in, true, false), true);
        matmul_serial(f32_params(tt, dyd, pb + t * r * out, r, out, rows, rows, out, out, false, false), true);
      }
    }
  };
  run_fused(f, T, xpass);
  if (r == 0) return;

  // Reduce the partials; d_b = scale · (Σ d_bᵀ)ᵀ.
  for (int64_t t = 1; t < T; t++) {
    const float *pt = pa + t * r * in;
    for (int64_t i = 0; i < r * in; i++) pa[i] += pt[i];
    const float *qt = pb + t * r * out;
    for (int64_t i = 0; i < r * out; i++) pb[i] += qt[i];
  }
  store_f32(pa, d_a, d.adt, r * in);
  float *db = tl_db.get(out * r);
  for (int64_t o = 0; o < out; o++)
    for (int64_t j = 0; j < r; j++) db[o * r + j] = d.scale * pb[j * out + o];
  store_f32(db, d_b, d.adt, out * r);
}

void lora_merge(const LoraDims &d, void *weight, const void *a, const void *b, int sign) {
  const int64_t in = d.in, out = d.out, r = d.r;
  if (in == 0 || out == 0 || r == 0) return;  // Δ = 0: round(w) = w
  TrimOnExit trim;
  float *a32 = tl_a32.get(r * in), *b32 = tl_b32.get(out * r);
  to_f32(a, d.adt, r * in, a32);
  to_f32(b, d.adt, out * r, b32);
  const float s = sign > 0 ? d.scale : -d.scale;
  const int64_t es = fsize(d.dt);
  const int64_t rb = std::max<int64_t>(1, std::min<int64_t>(64, (int64_t(1) << 16) / in));
  auto rows = [&](int64_t lo, int64_t hi) {
    for (int64_t o0 = lo; o0 < hi; o0 += rb) {
      const int64_t m = std::min(rb, hi - o0);
      float *delta = tl_delta.get(m * in);
      matmul_serial(f32_params(b32 + o0 * r, a32, delta, m, in, r, r, in, in, false, false));
      char *w = static_cast<char *>(weight) + o0 * in * es;
      const int64_t n = m * in;
      if (d.dt == L2C_FLOAT32) {
        float *wf = reinterpret_cast<float *>(w);
        for (int64_t i = 0; i < n; i++) wf[i] = std::fmaf(s, delta[i], wf[i]);
      } else {
        uint16_t *wh = reinterpret_cast<uint16_t *>(w);
        const bool bf = d.dt == L2C_BFLOAT16;
        for (int64_t i = 0; i < n; i++) {
          const double v = (double)(bf ? bf16_to_f32(wh[i]) : f16_to_f32(wh[i])) + (double)s * (double)delta[i];
          const float f = round_odd_f32(v);
          wh[i] = bf ? f32_to_bf16(f) : f32_to_f16(f);
        }
      }
    }
  };
  const double flops = 2.0 * out * in * r;
  if (flops < kParallelMinFlops)
    rows(0, out);
  else
    parallel_for(out, rb, rows);
}

}  // namespace cpu
}  // namespace l2c
