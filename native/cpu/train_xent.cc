// train_xent.cc: cross-entropy fused with the output projection (l2c_train.h), chunked so
// that the [tokens, vocab] logits never exist.
//
// Only rows with a target take part (LLM2Vec's masked next-token prediction ignores most
// tokens): their indices are gathered first and processed in blocks of kTokBlock rows.
// The vocabulary is cut into chunks of at most chunk_size columns and the chunks into S
// contiguous slabs, one task each (S = min(threads, chunks); chunks are narrowed so that a
// small vocabulary still gives every thread one, and evened out so that every slab gets as
// many). Memory: the gathered hidden block, one [block x chunk] float32 tile per thread and,
// in the backward, S partial dhidden blocks [block x H] (O(threads x 512 x H)). Per block, each task walks its chunks:
//   forward:  tile = hidden_block . W_chunk^T (+ bias), a packed GEMM on the calling
//             thread; then an online (max, sum exp) per row and slab, vectorised exp, and
//             the target logit from the chunk that holds it. The slabs' partials are merged
//             in slab order afterwards (float64), so results do not depend on scheduling.
//   backward: the same tile, turned in place into dlogits = s (exp(tile - lse) - onehot);
//             dW[chunk] (+)= dlogits^T . hidden_block (the chunk's rows belong to this task;
//             blocks run one after the other, so nothing races), dbias likewise, and
//             dhidden_partial[slab] (+)= dlogits . W_chunk; the S partials of each block are
//             summed in slab order into dhidden.
// The GEMMs use the matmul level's packing and register tiles (matmul_kernels.h) directly,
// so that float32 dlogits can meet bfloat16 / float16 weights without converting them; the
// logits GEMM goes through matmul_serial when hidden and weight share a dtype (bf16 pair
// kernels where the CPU has them).
// GCC 12's AVX-512 headers seed "undefined" vectors with `__Y = __Y`, which
// -W(maybe-)uninitialized reports once inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "matmul_kernels.h"
#include "simd.h"
#include "threadpool.h"
#include "train.h"

namespace l2c {
namespace cpu {
namespace {

constexpr int64_t kTokBlock = 512;  // target rows per block
constexpr int64_t kMinChunk = 64;   // narrowest chunk made to feed more threads

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
int64_t balanced(int64_t n, int64_t most, int64_t unit) {
  if (n <= most) return n;
  return std::min(most, round_up(ceil_div(n, ceil_div(n, most)), unit));
}

// Per-thread float buffer that only grows (64-byte aligned).
class Scratch {
 public:
  ~Scratch() { std::free(p_); }
  float *get(int64_t floats) {
    if (floats > cap_) {
      std::free(p_);
      cap_ = 0;
      p_ = static_cast<float *>(std::aligned_alloc(64, (size_t)round_up(std::max<int64_t>(floats, 16) * 4, 64)));
      if (!p_) fail(L2C_OUT_OF_MEMORY, "cross_entropy: cannot allocate scratch memory");
      cap_ = floats;
    }
    return p_;
  }

 private:
  float *p_ = nullptr;
  int64_t cap_ = 0;
};
thread_local Scratch tl_apack, tl_bpack, tl_tile;

// A GEMM operand: element (x, k) at p[x*sx + k*sk] (x = row of A or column of B).
struct Operand {
  const void *p;
  l2c_dtype dt;
  int64_t sx, sk;
};

// C[M,N] (row stride ldc, float32) = (acc ? C : 0) + A . B^T over K, on this thread, with
// the active level's packing (any float dtype to float32 panels) and tile kernel.
void gemm(int64_t M, int64_t N, int64_t K, const Operand &A, const Operand &B, float *C,
          int64_t ldc, bool acc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!acc)
      for (int64_t i = 0; i < M; i++) std::memset(C + i * ldc, 0, (size_t)N * 4);
    return;
  }
  const mm::KernelSet &ks = mm::active_kernels();
  int64_t kc = balanced(K, ks.kc, 1), mcb = balanced(M, ks.mc, ks.mr),
          ncb = balanced(N, ks.nc, ks.nr);
  float *ap = tl_apack.get(round_up(mcb, ks.mr) * kc);
  float *bp = tl_bpack.get(round_up(ncb, ks.nr) * kc);
  const char *a = static_cast<const char *>(A.p), *b = static_cast<const char *>(B.p);
  int64_t ea = fsize(A.dt), eb = fsize(B.dt);
  for (int64_t i0 = 0; i0 < M; i0 += mcb) {
    int64_t mc = std::min(mcb, M - i0);
    for (int64_t pc = 0; pc < K; pc += kc) {
      int64_t kk = std::min(kc, K - pc);
      ks.pack(a + (i0 * A.sx + pc * A.sk) * ea, A.dt, A.sx, A.sk, mc, kk, ks.mr, ap);
      for (int64_t jc = 0; jc < N; jc += ncb) {
        int64_t nc = std::min(ncb, N - jc);
        ks.pack(b + (jc * B.sx + pc * B.sk) * eb, B.dt, B.sx, B.sk, nc, kk, ks.nr, bp);
        for (int64_t ir = 0; ir < mc; ir += ks.mr) {
          int m = (int)std::min<int64_t>(ks.mr, mc - ir);
          for (int64_t jr = 0; jr < nc; jr += ks.nr)
            ks.tile(kk, ap + ir * kk, bp + jr * kk, C + (i0 + ir) * ldc + jc + jr, ldc,
                    pc > 0 || acc, m, (int)std::min<int64_t>(ks.nr, nc - jr));
        }
      }
    }
  }
}

// ---- per-row softmax pieces, one version per SIMD level ----

// Online logsumexp: (m, l) describes sum exp(x - m) = l over what was seen; fold in x[0..n).
void row_online_generic(const float *x, int64_t n, float *m, float *l) {
  float cm = -INFINITY;
  bool nan = false;
  for (int64_t i = 0; i < n; i++) {
    nan |= x[i] != x[i];
    cm = std::max(cm, x[i]);
  }
  if (nan) cm = NAN;  // a NaN logit makes the row's lse NaN
  float mn = cm != cm ? cm : std::max(*m, cm);
  if (mn == -INFINITY) return;
  float s = 0;
  for (int64_t i = 0; i < n; i++) s += std::exp(x[i] - mn);
  *l = *l * std::exp(*m - mn) + s;
  *m = mn;
}
// x[i] = scale * exp(x[i] - lse).
void row_grad_generic(float *x, int64_t n, float lse, float scale) {
  for (int64_t i = 0; i < n; i++) x[i] = scale * std::exp(x[i] - lse);
}

L2C_TARGET_AVX512 void row_online_avx512(const float *x, int64_t n, float *m, float *l) {
  const __m512 ninf = _mm512_set1_ps(-INFINITY);
  __m512 vmax = ninf;
  __mmask16 nan = 0;
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    __m512 v = _mm512_mask_loadu_ps(ninf, k, x + i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    vmax = _mm512_max_ps(vmax, v);
  }
  float cm = nan ? NAN : _mm512_reduce_max_ps(vmax);
  float mn = cm != cm ? cm : std::max(*m, cm);
  if (mn == -INFINITY) return;
  const __m512 vm = _mm512_set1_ps(mn);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_add_ps(acc0, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm)));
    acc1 = _mm512_add_ps(acc1, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i + 16), vm)));
  }
  for (; i < n; i += 16) {
    __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    __m512 v = _mm512_mask_loadu_ps(ninf, k, x + i);
    acc0 = _mm512_add_ps(acc0, exp512(_mm512_sub_ps(v, vm)));
  }
  *l = *l * std::exp(*m - mn) + _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  *m = mn;
}
L2C_TARGET_AVX512 void row_grad_avx512(float *x, int64_t n, float lse, float scale) {
  const __m512 vl = _mm512_set1_ps(lse), vs = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
    __m512 v = _mm512_maskz_loadu_ps(k, x + i);
    _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(vs, exp512(_mm512_sub_ps(v, vl))));
  }
}

L2C_TARGET_AVX2 void row_online_avx2(const float *x, int64_t n, float *m, float *l) {
  const __m256 ninf = _mm256_set1_ps(-INFINITY);
  __m256 vmax = ninf, nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    vmax = _mm256_max_ps(vmax, v);
  }
  float cm = -INFINITY;
  alignas(32) float t[8];
  _mm256_store_ps(t, vmax);
  for (int j = 0; j < 8; j++) cm = std::max(cm, t[j]);
  bool has_nan = _mm256_movemask_ps(nan) != 0;
  for (int64_t j = i; j < n; j++) {
    if (x[j] != x[j]) has_nan = true;
    cm = std::max(cm, x[j]);
  }
  if (has_nan) cm = NAN;
  float mn = cm != cm ? cm : std::max(*m, cm);
  if (mn == -INFINITY) return;
  const __m256 vm = _mm256_set1_ps(mn);
  __m256 acc = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8)
    acc = _mm256_add_ps(acc, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm)));
  _mm256_store_ps(t, acc);
  float s = 0;
  for (int j = 0; j < 8; j++) s += t[j];
  for (; i < n; i++) s += std::exp(x[i] - mn);
  *l = *l * std::exp(*m - mn) + s;
  *m = mn;
}
L2C_TARGET_AVX2 void row_grad_avx2(float *x, int64_t n, float lse, float scale) {
  const __m256 vl = _mm256_set1_ps(lse), vs = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_mul_ps(vs, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vl))));
  for (; i < n; i++) x[i] = scale * std::exp(x[i] - lse);
}

struct RowFns {
  void (*online)(const float *, int64_t, float *, float *);
  void (*grad)(float *, int64_t, float, float);
};
RowFns row_fns() {
  switch (level()) {
    case Level::avx512: return {row_online_avx512, row_grad_avx512};
    case Level::avx2: return {row_online_avx2, row_grad_avx2};
    default: return {row_online_generic, row_grad_generic};
  }
}

// ---- shared plan ----

struct Plan {
  int64_t N, H, V;
  l2c_dtype hdt, wdt;
  const char *h, *w;
  std::vector<float> bias;      // float32 copy, empty when none
  const int32_t *targets;
  std::vector<int64_t> rows;    // rows with a target, ascending
  int64_t ce = 0, nch = 0, S = 0;  // chunk width, chunk count, slabs
  int64_t chunk_begin(int64_t c) const { return c * ce; }
  int64_t chunk_end(int64_t c) const { return std::min(V, (c + 1) * ce); }
  int64_t slab_first(int64_t s) const { return s * nch / S; }
  int64_t slab_last(int64_t s) const { return (s + 1) * nch / S; }  // exclusive
};

void make_plan(const CrossEntropyParams &p, const char *op, Plan &pl) {
  const l2c_tensor &h = *p.hidden, &w = *p.weight, &t = *p.targets;
  pl.N = h.shape[0];
  pl.H = h.shape[1];
  pl.V = w.shape[0];
  pl.hdt = h.dtype;
  pl.wdt = w.dtype;
  pl.h = static_cast<const char *>(h.data);
  pl.w = static_cast<const char *>(w.data);
  pl.targets = static_cast<const int32_t *>(t.data);
  for (int64_t n = 0; n < pl.N; n++) {
    int64_t tg = pl.targets[n];
    if (tg == p.ignore_index) continue;
    if (tg < 0 || tg >= pl.V)
      fail(L2C_INVALID_ARGUMENT, std::string(op) + ": targets[" + std::to_string(n) + "] = " +
                                     std::to_string(tg) + " is outside [0, " + std::to_string(pl.V) +
                                     ") and is not ignore_index (" + std::to_string(p.ignore_index) + ")");
    pl.rows.push_back(n);
  }
  if (pl.rows.empty()) return;
  if (p.bias) {
    pl.bias.resize((size_t)pl.V);
    load_f32(p.bias->data, p.bias->dtype, pl.V, pl.bias.data());
  }
  int64_t T = std::max(1, num_threads());
  int64_t ce = std::max<int64_t>(1, p.chunk_size);
  if (ceil_div(pl.V, ce) < T)  // narrower chunks so that every thread gets one
    ce = std::min(ce, std::max(kMinChunk, round_up(ceil_div(pl.V, T), 16)));
  int64_t nch = ceil_div(pl.V, ce);
  pl.S = std::min(T, nch);
  // Even slabs: as many chunks per slab, of about equal width (a multiple of 16, at most
  // chunk_size): V = 32000, chunk 4096, 2 threads gives 8 chunks of 4000, not 7 of 4096
  // and one of 3328.
  int64_t per_slab = ceil_div(nch, pl.S);
  ce = std::min(ce, round_up(ceil_div(pl.V, pl.S * per_slab), 16));
  pl.ce = ce;
  pl.nch = ceil_div(pl.V, ce);
}

// Copies the hidden rows of block [b0, b1) of pl.rows (raw dtype) to buf.
void gather_rows(const Plan &pl, int64_t b0, int64_t b1, char *buf) {
  int64_t rb = pl.H * fsize(pl.hdt);
  for (int64_t r = b0; r < b1; r++)
    std::memcpy(buf + (r - b0) * rb, pl.h + pl.rows[r] * rb, (size_t)rb);
}

// tile[nb, cols] (row stride ld) = hb . W[c0:c0+cols]^T + bias.
void logits_tile(const Plan &pl, const char *hb, int64_t nb, int64_t c0, int64_t cols, float *tile,
                 int64_t ld) {
  const char *wc = pl.w + c0 * pl.H * fsize(pl.wdt);
  if (pl.hdt == pl.wdt && pl.H > 0) {
    MatmulParams mp;
    mp.a = hb;
    mp.b = wc;
    mp.c = tile;
    mp.in_dtype = pl.hdt;
    mp.out_dtype = L2C_FLOAT32;
    mp.M = nb;
    mp.N = cols;
    mp.K = pl.H;
    mp.lda = pl.H;
    mp.ldb = pl.H;
    mp.ldc = ld;
    mp.trans_b = true;
    matmul_serial(mp);
  } else {
    gemm(nb, cols, pl.H, Operand{hb, pl.hdt, pl.H, 1}, Operand{wc, pl.wdt, pl.H, 1}, tile, ld, false);
  }
  if (!pl.bias.empty()) {
    const float *b = pl.bias.data() + c0;
    for (int64_t r = 0; r < nb; r++) {
      float *t = tile + r * ld;
      for (int64_t j = 0; j < cols; j++) t[j] += b[j];
    }
  }
}

// Raw bytes for nb rows of H elements of dtype dt, reused across blocks.
std::unique_ptr<char[]> alloc_bytes(int64_t bytes) {
  return std::unique_ptr<char[]>(new char[(size_t)std::max<int64_t>(bytes, 1)]);
}

}  // namespace

void cross_entropy_forward(const CrossEntropyParams &p) {
  Plan pl;
  make_plan(p, "cross_entropy", pl);
  float *lse = static_cast<float *>(p.lse->data);
  std::fill(lse, lse + pl.N, 0.0f);
  const int64_t R = (int64_t)pl.rows.size();
  double total = 0;
  if (R > 0) {
    const RowFns fns = row_fns();
    int64_t nbmax = std::min(R, kTokBlock);
    auto hb = alloc_bytes(nbmax * pl.H * fsize(pl.hdt));
    std::vector<float> pm((size_t)(pl.S * nbmax)), pls((size_t)(pl.S * nbmax)), ptl((size_t)nbmax);
    for (int64_t b0 = 0; b0 < R; b0 += kTokBlock) {
      int64_t b1 = std::min(R, b0 + kTokBlock), nb = b1 - b0;
      gather_rows(pl, b0, b1, hb.get());
      parallel_tasks(pl.S, [&](int64_t s) {
        float *m = pm.data() + s * nbmax, *l = pls.data() + s * nbmax;
        std::fill(m, m + nb, -INFINITY);
        std::fill(l, l + nb, 0.0f);
        float *tile = tl_tile.get(nb * pl.ce);
        for (int64_t c = pl.slab_first(s); c < pl.slab_last(s); c++) {
          int64_t c0 = pl.chunk_begin(c), cols = pl.chunk_end(c) - c0;
          logits_tile(pl, hb.get(), nb, c0, cols, tile, pl.ce);
          for (int64_t r = 0; r < nb; r++) {
            const float *x = tile + r * pl.ce;
            fns.online(x, cols, m + r, l + r);
            int64_t tg = pl.targets[pl.rows[b0 + r]];
            if (tg >= c0 && tg < c0 + cols) ptl[r] = x[tg - c0];
          }
        }
      });
      for (int64_t r = 0; r < nb; r++) {
        float mx = -INFINITY;
        bool nan = false;
        for (int64_t s = 0; s < pl.S; s++) {
          float v = pm[s * nbmax + r];
          if (v != v) nan = true;
          mx = std::max(mx, v);
        }
        double v;
        if (nan) {
          v = NAN;
        } else if (mx == -INFINITY) {
          v = -INFINITY;
        } else {
          double sum = 0;
          for (int64_t s = 0; s < pl.S; s++)
            sum += (double)pls[s * nbmax + r] * std::exp((double)pm[s * nbmax + r] - (double)mx);
          v = (double)mx + std::log(sum);
        }
        lse[pl.rows[b0 + r]] = (float)v;
        total += v - (double)ptl[r];
      }
    }
  }
  double loss = p.mean ? (R > 0 ? total / (double)R : 0.0) : total;
  *static_cast<float *>(p.loss->data) = (float)loss;
}

void cross_entropy_backward(const CrossEntropyParams &p) {
  Plan pl;
  make_plan(p, "cross_entropy_backward", pl);
  const int64_t R = (int64_t)pl.rows.size(), H = pl.H, V = pl.V;
  char *dh = static_cast<char *>(p.dhidden->data);
  const l2c_dtype dhdt = p.dhidden->dtype;
  const int64_t dhrow = H * fsize(dhdt);
  float *dw = p.dweight ? static_cast<float *>(p.dweight->data) : nullptr;
  float *db = p.dbias ? static_cast<float *>(p.dbias->data) : nullptr;
  const float *lse = static_cast<const float *>(p.lse->data);

  // Ignored rows of dhidden are zero (all of it when no row counts).
  {
    std::vector<char> keep((size_t)pl.N, 0);
    for (int64_t r : pl.rows) keep[r] = 1;
    parallel_for(pl.N, std::max<int64_t>(1, (64 << 10) / std::max<int64_t>(1, dhrow)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t n = b; n < e; n++)
                     if (!keep[n]) std::memset(dh + n * dhrow, 0, (size_t)dhrow);
                 });
  }
  if (R == 0) {
    if (dw) parallel_for(V, 64, [&](int64_t b, int64_t e) {
        std::memset(dw + b * H, 0, (size_t)((e - b) * H * 4));
      });
    if (db) std::fill(db, db + V, 0.0f);
    return;
  }
  const float scale = (float)(p.mean ? p.grad_loss / (double)R : p.grad_loss);
  const RowFns fns = row_fns();
  const int64_t nbmax = std::min(R, kTokBlock);
  auto hb = alloc_bytes(nbmax * H * fsize(pl.hdt));
  // Per-slab partial dhidden of a block: S x nbmax x H float32.
  std::unique_ptr<float[]> part(new float[(size_t)std::max<int64_t>(1, pl.S * nbmax * H)]);

  for (int64_t b0 = 0; b0 < R; b0 += kTokBlock) {
    int64_t b1 = std::min(R, b0 + kTokBlock), nb = b1 - b0;
    const bool first_block = b0 == 0;
    gather_rows(pl, b0, b1, hb.get());
    parallel_tasks(pl.S, [&](int64_t s) {
      float *dpart = part.get() + s * nbmax * H;
      float *tile = tl_tile.get(nb * pl.ce);
      const int64_t ld = pl.ce;
      for (int64_t c = pl.slab_first(s); c < pl.slab_last(s); c++) {
        int64_t c0 = pl.chunk_begin(c), cols = pl.chunk_end(c) - c0;
        logits_tile(pl, hb.get(), nb, c0, cols, tile, ld);
        for (int64_t r = 0; r < nb; r++) {
          int64_t n = pl.rows[b0 + r];
          float *x = tile + r * ld;
          fns.grad(x, cols, lse[n], scale);
          int64_t tg = pl.targets[n];
          if (tg >= c0 && tg < c0 + cols) x[tg - c0] -= scale;
        }
        if (db) {
          float *d = db + c0;
          if (first_block) std::memset(d, 0, (size_t)cols * 4);
          for (int64_t r = 0; r < nb; r++) {
            const float *x = tile + r * ld;
            for (int64_t j = 0; j < cols; j++) d[j] += x[j];
          }
        }
        if (dw)  // dW[c0:c0+cols] (+)= dlogits^T . hb
          gemm(cols, H, nb, Operand{tile, L2C_FLOAT32, 1, ld}, Operand{hb.get(), pl.hdt, 1, H},
               dw + c0 * H, H, !first_block);
        // dpart (+)= dlogits . W[c0:c0+cols]
        gemm(nb, H, cols, Operand{tile, L2C_FLOAT32, ld, 1},
             Operand{pl.w + c0 * H * fsize(pl.wdt), pl.wdt, 1, H}, dpart, H,
             c != pl.slab_first(s));
      }
    });
    // dhidden rows of the block = sum of the slabs' partials, in slab order.
    parallel_for(nb, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, H)), [&](int64_t b, int64_t e) {
      std::vector<float> acc((size_t)H);
      for (int64_t r = b; r < e; r++) {
        const float *p0 = part.get() + r * H;
        std::memcpy(acc.data(), p0, (size_t)H * 4);
        for (int64_t s = 1; s < pl.S; s++) {
          const float *ps = part.get() + (s * nbmax + r) * H;
          for (int64_t j = 0; j < H; j++) acc[j] += ps[j];
        }
        store_f32(acc.data(), dh + pl.rows[b0 + r] * dhrow, dhdt, H);
      }
    });
  }
}

}  // namespace cpu
}  // namespace l2c
