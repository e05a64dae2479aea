// layers.cc: CPU kernels of the elementwise ops with numpy broadcasting (add, sub, mul,
// scale / broadcast), their backward (mul_backward) and the float32 reductions behind
// sum / mean / sum_to_shape. Norms, softmax and pooling are in layers_norm.cc;
// activations, rope and dropout in layers_act.cc.
//
// Broadcasting: the output's dims are walked with each operand's stride (0 where it
// broadcasts), size-1 dims dropped and neighbours merged where every operand is
// contiguous across them, so [N,H] + [H] becomes N rows of an inner loop of H with b's
// stride 1 reset per row, and [N,H] + [N,1] an inner loop with a scalar b.
// Reductions: the same collapse into kept / reduced groups; sums are pairwise (runs of
// at most 8 rows or 4096 contiguous elements summed directly, then halves added), so
// the float32 error grows with log n.
#include <memory>

#include "backend.h"
#include "layers.h"
#include "layers_util.h"

namespace l2c {
namespace cpu {
namespace layers {
namespace {

// ---- elementwise ----

// o[i] = a[i*sa] (op) b[i*sb] for i < n, sa / sb 0 (a scalar) or 1.
template <int OP, bool AS, bool BS>
inline void ew_generic_t(const float *a, const float *b, float *o, int64_t n, float alpha) {
  for (int64_t i = 0; i < n; i++) {
    float x = a[AS ? 0 : i];
    if (OP == EW_SCALE) { o[i] = alpha * x; continue; }
    float y = b[BS ? 0 : i];
    o[i] = OP == EW_ADD ? x + y : OP == EW_SUB ? x - y : x * y;
  }
}

template <int OP>
L2C_TARGET_AVX512 inline __m512 ew_op512(__m512 x, __m512 y, __m512 alpha) {
  return OP == EW_ADD ? _mm512_add_ps(x, y) : OP == EW_SUB ? _mm512_sub_ps(x, y)
       : OP == EW_MUL ? _mm512_mul_ps(x, y) : _mm512_mul_ps(alpha, x);
}

template <int OP, bool AS, bool BS>
L2C_TARGET_AVX512 void ew_avx512_t(const float *a, const float *b, float *o, int64_t n, float alpha) {
  __m512 va = _mm512_set1_ps(AS ? a[0] : 0.0f), vb = _mm512_set1_ps(OP != EW_SCALE && BS ? b[0] : 0.0f);
  const __m512 val = _mm512_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 x = AS ? va : _mm512_loadu_ps(a + i);
    __m512 y = OP == EW_SCALE ? x : BS ? vb : _mm512_loadu_ps(b + i);
    _mm512_storeu_ps(o + i, ew_op512<OP>(x, y, val));
  }
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
    __m512 x = AS ? va : _mm512_maskz_loadu_ps(m, a + i);
    __m512 y = OP == EW_SCALE ? x : BS ? vb : _mm512_maskz_loadu_ps(m, b + i);
    _mm512_mask_storeu_ps(o + i, m, ew_op512<OP>(x, y, val));
  }
}

using EwFn = void (*)(const float *, const float *, float *, int64_t, float);

template <int OP>
EwFn pick_ew(bool as, bool bs, bool vec) {
  if (vec) {
    if (as) return bs ? ew_avx512_t<OP, true, true> : ew_avx512_t<OP, true, false>;
    return bs ? ew_avx512_t<OP, false, true> : ew_avx512_t<OP, false, false>;
  }
  if (as) return bs ? ew_generic_t<OP, true, true> : ew_generic_t<OP, true, false>;
  return bs ? ew_generic_t<OP, false, true> : ew_generic_t<OP, false, false>;
}

EwFn ew_fn(int op, bool as, bool bs) {
  bool vec = avx512();
  switch (op) {
    case EW_ADD: return pick_ew<EW_ADD>(as, bs, vec);
    case EW_SUB: return pick_ew<EW_SUB>(as, bs, vec);
    case EW_MUL: return pick_ew<EW_MUL>(as, bs, vec);
    default: return pick_ew<EW_SCALE>(as, false, vec);
  }
}

using ::l2c::layers::Dims;
using ::l2c::layers::Plan;
using ::l2c::layers::make_plan;
using ::l2c::layers::reduce_dims;

// One inner segment of n outputs: converts 16-bit operands through buffers of 256.
void ew_segment(int op, const void *a, l2c_dtype adt, bool as, const void *b, l2c_dtype bdt,
                bool bs, void *o, l2c_dtype odt, int64_t n, float alpha) {
  EwFn fn = ew_fn(op, as, bs);
  bool has_b = op != EW_SCALE;
  if (adt == L2C_FLOAT32 && (!has_b || bdt == L2C_FLOAT32) && odt == L2C_FLOAT32) {
    fn(static_cast<const float *>(a), static_cast<const float *>(b), static_cast<float *>(o), n, alpha);
    return;
  }
  constexpr int64_t BLK = 256;
  float fa[BLK], fb[BLK], fo[BLK];
  float sa = 0, sb = 0;
  if (as) load_f32(a, adt, 1, &sa);
  if (has_b && bs) load_f32(b, bdt, 1, &sb);
  for (int64_t i = 0; i < n; i += BLK) {
    int64_t m = std::min(BLK, n - i);
    const float *pa = &sa, *pb = &sb;
    if (!as) {
      if (adt == L2C_FLOAT32) pa = static_cast<const float *>(a) + i;
      else { load_row(elem_ptr(a, adt, i), adt, m, fa); pa = fa; }
    }
    if (has_b && !bs) {
      if (bdt == L2C_FLOAT32) pb = static_cast<const float *>(b) + i;
      else { load_row(elem_ptr(b, bdt, i), bdt, m, fb); pb = fb; }
    }
    if (odt == L2C_FLOAT32) {
      fn(pa, pb, static_cast<float *>(o) + i, m, alpha);
    } else {
      fn(pa, pb, fo, m, alpha);
      store_row(fo, elem_ptr(o, odt, i), odt, m);
    }
  }
}

// ---- reductions ----

L2C_TARGET_AVX512 float sum_block_avx512(const void *p, l2c_dtype dt, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, load16_avx512(p, dt, i));
    a1 = _mm512_add_ps(a1, load16_avx512(p, dt, i + 16));
    a2 = _mm512_add_ps(a2, load16_avx512(p, dt, i + 32));
    a3 = _mm512_add_ps(a3, load16_avx512(p, dt, i + 48));
  }
  for (; i + 16 <= n; i += 16) a0 = _mm512_add_ps(a0, load16_avx512(p, dt, i));
  if (i < n) a1 = _mm512_add_ps(a1, load16_tail_avx512(p, dt, i, n - i));
  return hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

float sum_block_generic(const void *p, l2c_dtype dt, int64_t n) {
  float acc[16] = {0};
  float buf[256];
  for (int64_t i = 0; i < n; i += 256) {
    int64_t m = std::min<int64_t>(256, n - i);
    const float *q;
    if (dt == L2C_FLOAT32) q = static_cast<const float *>(p) + i;
    else { load_f32(elem_ptr(p, dt, i), dt, m, buf); q = buf; }
    int64_t j = 0;
    for (; j + 16 <= m; j += 16)
      for (int l = 0; l < 16; l++) acc[l] += q[j + l];
    for (; j < m; j++) acc[j & 15] += q[j];
  }
  // Pairwise over the 16 lanes.
  for (int w = 8; w >= 1; w /= 2)
    for (int l = 0; l < w; l++) acc[l] += acc[l + w];
  return acc[0];
}

// Sum of n contiguous elements, pairwise above blocks of 4096.
float sum_contig(const void *p, l2c_dtype dt, int64_t n) {
  constexpr int64_t BLOCK = 4096;
  if (n <= BLOCK) return avx512() ? sum_block_avx512(p, dt, n) : sum_block_generic(p, dt, n);
  int64_t half = ((n / BLOCK + 1) / 2) * BLOCK;
  return sum_contig(p, dt, half) + sum_contig(elem_ptr(p, dt, half), dt, n - half);
}

// Sum over runs r in [r0, r1) of R of L contiguous elements at base + R.offset(r), pairwise.
float sum_runs(const void *base, l2c_dtype dt, const Dims &R, int64_t r0, int64_t r1, int64_t L) {
  if (r1 - r0 <= 8) {
    float s = 0;
    for (int64_t r = r0; r < r1; r++) s += sum_contig(elem_ptr(base, dt, R.offset(r)), dt, L);
    return s;
  }
  int64_t mid = r0 + (r1 - r0) / 2;
  return sum_runs(base, dt, R, r0, mid, L) + sum_runs(base, dt, R, mid, r1, L);
}

L2C_TARGET_AVX512 void add_row_avx512(float *dst, const void *src, l2c_dtype dt, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(dst + i), load16_avx512(src, dt, i)));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(dst + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst + i), load16_tail_avx512(src, dt, i, n - i)));
  }
}

// dst[0..n) += float(src[0..n)).
void add_row(float *dst, const void *src, l2c_dtype dt, int64_t n) {
  if (avx512()) { add_row_avx512(dst, src, dt, n); return; }
  if (dt == L2C_FLOAT32) {
    const float *s = static_cast<const float *>(src);
    for (int64_t i = 0; i < n; i++) dst[i] += s[i];
    return;
  }
  float buf[256];
  for (int64_t i = 0; i < n; i += 256) {
    int64_t m = std::min<int64_t>(256, n - i);
    load_f32(elem_ptr(src, dt, i), dt, m, buf);
    for (int64_t j = 0; j < m; j++) dst[i + j] += buf[j];
  }
}

// dst[0..W) = sum over rows r in [r0, r1) of R of the W elements at base + R.offset(r),
// pairwise; scratch holds W floats per level of recursion.
void sum_rows(const void *base, l2c_dtype dt, const Dims &R, int64_t r0, int64_t r1, int64_t W,
              float *dst, float *scratch) {
  if (r1 - r0 <= 8) {
    load_row(elem_ptr(base, dt, R.offset(r0)), dt, W, dst);
    for (int64_t r = r0 + 1; r < r1; r++) add_row(dst, elem_ptr(base, dt, R.offset(r)), dt, W);
    return;
  }
  int64_t mid = r0 + (r1 - r0) / 2;
  sum_rows(base, dt, R, r0, mid, W, dst, scratch);
  sum_rows(base, dt, R, mid, r1, W, scratch, scratch + W);
  for (int64_t i = 0; i < W; i++) dst[i] += scratch[i];
}

int depth_for(int64_t rows) {
  int d = 1;
  while (rows > 8) { rows = (rows + 1) / 2; d++; }
  return d + 1;
}

void fill_value(const l2c_tensor &out, float v) {
  int64_t n = numel(out);
  float buf[256];
  for (int i = 0; i < 256; i++) buf[i] = v;
  for (int64_t i = 0; i < n; i += 256)
    store_row(buf, elem_ptr(out.data, out.dtype, i), out.dtype, std::min<int64_t>(256, n - i));
}

}  // namespace

void binary(int op, const l2c_tensor &a, const l2c_tensor *b, const l2c_tensor &out, float alpha) {
  int64_t total = numel(out);
  if (total == 0) return;
  const l2c_tensor *ops[2] = {&a, b};
  Plan p = make_plan(out, ops, b ? 2 : 1);
  const int64_t inner = p.size[p.nd - 1];
  const bool as = p.st[0][p.nd - 1] == 0, bs = p.st[1][p.nd - 1] == 0;
  const l2c_dtype adt = a.dtype, bdt = b ? b->dtype : L2C_FLOAT32, odt = out.dtype;
  parallel_for(total, 32768, [&](int64_t begin, int64_t end) {
    int64_t q = begin / inner, j = begin % inner;
    int64_t f = begin;
    while (f < end) {
      // Offsets of outer index q.
      int64_t oa = 0, ob = 0, idx = q;
      for (int d = p.nd - 2; d >= 0; d--) {
        int64_t i = idx % p.size[d];
        idx /= p.size[d];
        oa += i * p.st[0][d];
        ob += i * p.st[1][d];
      }
      int64_t n = std::min(inner - j, end - f);
      const void *pa = elem_ptr(a.data, adt, oa + (as ? 0 : j));
      const void *pb = b ? elem_ptr(b->data, bdt, ob + (bs ? 0 : j)) : nullptr;
      ew_segment(op, pa, adt, as, pb, bdt, bs, elem_ptr(out.data, odt, f), odt, n, alpha);
      f += n;
      j = 0;
      q++;
    }
  });
}

void sum(const l2c_tensor &x, uint32_t mask, double alpha, const l2c_tensor &out) {
  const int64_t nout = numel(out);
  if (nout == 0) return;
  const int64_t nx = numel(x);
  if (nx == 0) {  // a sum over nothing
    fill_value(out, (float)(alpha * 0.0));
    return;
  }
  // Collapse: drop size-1 dims, merge neighbours of the same kind.
  Dims K, R;
  bool inner_red = false;
  if (!reduce_dims(x, mask, K, R, inner_red)) {  // nothing summed: out = alpha * x
    l2c_tensor o = out;
    o.ndim = x.ndim;
    for (int d = 0; d < x.ndim; d++) o.shape[d] = x.shape[d];
    binary(EW_SCALE, x, nullptr, o, (float)alpha);
    return;
  }
  const l2c_dtype dt = x.dtype, odt = out.dtype;
  const int64_t T = num_threads();
  const float falpha = (float)alpha;

  if (inner_red) {
    // Innermost dim reduced: each output sums nr runs of L contiguous elements.
    const int64_t L = R.size[R.n - 1];
    R.n--;  // R now indexes the runs
    const int64_t nr = R.count(), nk = K.count();
    const int64_t per_out = nr * L;
    int64_t want = 4 * T;
    int64_t C = 1;
    if (nk < want && per_out >= 2 * 65536) C = std::min<int64_t>((want + nk - 1) / nk, per_out / 65536);
    if (C <= 1) {
      chunked(nk, std::max<int64_t>(1, 65536 / per_out), [&](int64_t, int64_t b, int64_t e) {
        float buf[256];
        for (int64_t o0 = b; o0 < e; o0 += 256) {
          int64_t m = std::min<int64_t>(256, e - o0);
          for (int64_t i = 0; i < m; i++)
            buf[i] = falpha * sum_runs(elem_ptr(x.data, dt, K.offset(o0 + i)), dt, R, 0, nr, L);
          store_row(buf, elem_ptr(out.data, odt, o0), odt, m);
        }
      });
      return;
    }
    // Few outputs with much work each: C partial sums per output.
    // Over runs when there are enough, else over pieces of each run.
    const bool by_runs = nr >= C;
    const int64_t pieces = by_runs ? C : (C + nr - 1) / nr;  // per run, when !by_runs
    const int64_t per_o = by_runs ? C : nr * pieces;
    std::vector<float> part((size_t)(nk * per_o));
    parallel_tasks(nk * per_o, [&](int64_t t) {
      int64_t o = t / per_o, c = t % per_o;
      const void *base = elem_ptr(x.data, dt, K.offset(o));
      if (by_runs) {
        int64_t r0 = nr * c / C, r1 = nr * (c + 1) / C;
        part[(size_t)t] = sum_runs(base, dt, R, r0, r1, L);
      } else {
        int64_t r = c / pieces, pc = c % pieces;
        int64_t l0 = L * pc / pieces, l1 = L * (pc + 1) / pieces;
        part[(size_t)t] = sum_contig(elem_ptr(base, dt, R.offset(r) + l0), dt, l1 - l0);
      }
    });
    std::vector<float> res((size_t)nk);
    for (int64_t o = 0; o < nk; o++) {
      float s = 0;
      for (int64_t c = 0; c < per_o; c++) s += part[(size_t)(o * per_o + c)];
      res[(size_t)o] = falpha * s;
    }
    store_row(res.data(), out.data, odt, nk);
    return;
  }

  // Innermost dim kept: output row o' (W wide) sums nr rows of W contiguous elements.
  const int64_t W = K.size[K.n - 1];
  K.n--;
  const int64_t nk = K.count(), nr = R.count();
  // Columns split when there are few output rows, rows split (partials) when there is
  // still too little parallel work.
  int64_t ncol = 1;
  if (nk < 2 * T && W >= 512) ncol = std::min<int64_t>((2 * T + nk - 1) / nk, W / 256);
  const int64_t wc = ((W + ncol - 1) / ncol + 15) / 16 * 16;
  ncol = (W + wc - 1) / wc;
  int64_t C = 1;
  if (nk * ncol < 2 * T && nr >= 64) C = std::min<int64_t>((2 * T + nk * ncol - 1) / (nk * ncol), nr / 32);
  const int depth = depth_for((nr + C - 1) / C);
  std::vector<float> part;
  if (C > 1) part.resize((size_t)(C * nk * W));
  parallel_tasks(nk * ncol * C, [&](int64_t t) {
    int64_t c = t % C, col = (t / C) % ncol, o = t / (C * ncol);
    int64_t w0 = col * wc, w1 = std::min(W, w0 + wc), wn = w1 - w0;
    int64_t r0 = nr * c / C, r1 = nr * (c + 1) / C;
    std::vector<float> buf((size_t)(wn * (depth + 1)));
    const void *base = elem_ptr(x.data, dt, K.offset(o) + w0);
    sum_rows(base, dt, R, r0, r1, wn, buf.data(), buf.data() + wn);
    if (C > 1) {
      std::memcpy(&part[(size_t)((c * nk + o) * W + w0)], buf.data(), (size_t)wn * 4);
    } else {
      for (int64_t i = 0; i < wn; i++) buf[(size_t)i] *= falpha;
      store_row(buf.data(), elem_ptr(out.data, odt, o * W + w0), odt, wn);
    }
  });
  if (C > 1) {
    int64_t total = nk * W;
    std::vector<float> res((size_t)total);
    for (int64_t i = 0; i < total; i++) {
      float s = 0;
      for (int64_t c = 0; c < C; c++) s += part[(size_t)(c * total + i)];
      res[(size_t)i] = falpha * s;
    }
    store_row(res.data(), out.data, odt, total);
  }
}

void mul_backward(const l2c_tensor &dy, const l2c_tensor &a, const l2c_tensor &b,
                  const l2c_tensor *da, const l2c_tensor *db) {
  const int64_t n = numel(dy);
  const l2c_tensor *targets[2] = {da, db};
  const l2c_tensor *shapes[2] = {&a, &b};
  const l2c_tensor *others[2] = {&b, &a};
  for (int k = 0; k < 2; k++) {
    const l2c_tensor *g = targets[k];
    if (!g || numel(*g) == 0) continue;
    const l2c_tensor &t = *shapes[k];
    if (numel(t) == n) {
      // No broadcast on this operand: g = dy * other (written with dy's shape).
      l2c_tensor o = *g;
      o.ndim = dy.ndim;
      for (int d = 0; d < dy.ndim; d++) o.shape[d] = dy.shape[d];
      binary(EW_MUL, dy, others[k], o, 1.0f);
      continue;
    }
    // Broadcast: the float32 product, then summed over the broadcast dims.
    std::unique_ptr<float[]> tmp(new float[(size_t)n]);
    l2c_tensor prod = dy;
    prod.data = tmp.get();
    prod.dtype = L2C_FLOAT32;
    binary(EW_MUL, dy, others[k], prod, 1.0f);
    uint32_t mask = 0;
    int off = dy.ndim - t.ndim;
    for (int d = 0; d < dy.ndim; d++) {
      int64_t s = d - off >= 0 ? t.shape[d - off] : 1;
      if (s == 1 && dy.shape[d] != 1) mask |= 1u << d;
    }
    sum(prod, mask, 1.0, *g);
  }
}

}  // namespace layers
}  // namespace cpu
}  // namespace l2c
