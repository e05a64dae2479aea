// train.cc: CPU kernels of the train family: embedding (forward, deterministic backward)
// and the fused AdamW step with global gradient-norm clipping. Cross-entropy lives in
// train_xent.cc, the layout ops in train_layout.cc.
// GCC 12's AVX-512 headers seed "undefined" vectors with `__Y = __Y`, which
// -W(maybe-)uninitialized reports once inlined (GCC bug 105593, fixed in GCC 13).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "train.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "backend.h"
#include "simd.h"
#include "threadpool.h"

namespace l2c {
namespace cpu {
namespace {

// "[1,3]": the multi-index of flat position i in t.
std::string position(const l2c_tensor &t, int64_t i) {
  std::string s;
  for (int d = t.ndim - 1; d >= 0; d--) {
    int64_t n = t.shape[d];
    s = std::to_string(i % n) + (s.empty() ? "" : ",") + s;
    i /= n;
  }
  return "[" + s + "]";
}

void check_ids(const char *op, const l2c_tensor &ids, int64_t V) {
  const int32_t *id = static_cast<const int32_t *>(ids.data);
  int64_t n = numel(ids);
  for (int64_t i = 0; i < n; i++)
    if (id[i] < 0 || id[i] >= V)
      fail(L2C_INVALID_ARGUMENT, std::string(op) + ": ids" + position(ids, i) + " = " +
                                     std::to_string(id[i]) + " is outside [0, " +
                                     std::to_string(V) + ")");
}

// dst[i] (+)= float(src[i]) for i < n, src of dtype dt.
void add_row_generic(float *dst, const void *src, l2c_dtype dt, int64_t n, bool add) {
  float buf[256];
  for (int64_t i = 0; i < n; i += 256) {
    int64_t k = std::min<int64_t>(256, n - i);
    const float *s;
    if (dt == L2C_FLOAT32) {
      s = static_cast<const float *>(src) + i;
    } else {
      load_f32(static_cast<const uint16_t *>(src) + i, dt, k, buf);
      s = buf;
    }
    if (add)
      for (int64_t j = 0; j < k; j++) dst[i + j] += s[j];
    else
      std::memcpy(dst + i, s, (size_t)k * 4);
  }
}

L2C_TARGET_AVX512 inline __m512 load16(const void *src, l2c_dtype dt, int64_t i, __mmask16 k) {
  if (dt == L2C_FLOAT32) return _mm512_maskz_loadu_ps(k, static_cast<const float *>(src) + i);
  __m256i h = _mm256_maskz_loadu_epi16(k, static_cast<const uint16_t *>(src) + i);
  if (dt == L2C_FLOAT16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
L2C_TARGET_AVX512 inline __mmask16 lanes(int64_t left) {
  return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

L2C_TARGET_AVX512 void add_row_avx512(float *dst, const void *src, l2c_dtype dt, int64_t n, bool add) {
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = lanes(n - i);
    __m512 v = load16(src, dt, i, k);
    if (add) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, dst + i));
    _mm512_mask_storeu_ps(dst + i, k, v);
  }
}

void add_row(float *dst, const void *src, l2c_dtype dt, int64_t n, bool add) {
  if (level() == Level::avx512)
    add_row_avx512(dst, src, dt, n, add);
  else
    add_row_generic(dst, src, dt, n, add);
}

}  // namespace

void embedding_forward(const l2c_tensor &weight, const l2c_tensor &ids, const l2c_tensor &out) {
  const int64_t V = weight.shape[0], H = weight.shape[1], n = numel(ids);
  check_ids("embedding", ids, V);
  const int64_t rb = H * (int64_t)l2c_dtype_size(weight.dtype);
  if (rb == 0) return;
  const int32_t *id = static_cast<const int32_t *>(ids.data);
  const char *w = static_cast<const char *>(weight.data);
  char *o = static_cast<char *>(out.data);
  parallel_for(n, std::max<int64_t>(1, (32 << 10) / rb), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++) std::memcpy(o + i * rb, w + id[i] * rb, (size_t)rb);
  });
}

void embedding_backward(const l2c_tensor &dy, const l2c_tensor &ids, const l2c_tensor &dweight,
                        int64_t padding_idx) {
  const int64_t V = dweight.shape[0], H = dweight.shape[1], n = numel(ids);
  check_ids("embedding_backward", ids, V);
  if (V == 0 || H == 0) return;
  const int32_t *id = static_cast<const int32_t *>(ids.data);
  // Positions grouped by id, in position order (counting sort): start[v]..start[v+1].
  std::vector<int64_t> start((size_t)V + 1, 0), order((size_t)n);
  for (int64_t i = 0; i < n; i++) start[id[i] + 1]++;
  for (int64_t v = 0; v < V; v++) start[v + 1] += start[v];
  {
    std::vector<int64_t> cur(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; i++) order[cur[id[i]]++] = i;
  }
  // Tasks own vocabulary ranges of about equal cost (rows written + rows added):
  // cost before row v = start[v] + v, strictly increasing.
  const int64_t total = n + V;
  const int64_t ntasks = std::min<int64_t>(V, std::max<int64_t>(1, 4 * num_threads()));
  const l2c_dtype dt = dy.dtype;
  const int64_t es = fsize(dt);
  const char *g = static_cast<const char *>(dy.data);
  float *dw = static_cast<float *>(dweight.data);
  auto bound = [&](int64_t t) -> int64_t {  // first row whose cost start is >= t*total/ntasks
    int64_t target = total * t / ntasks, lo = 0, hi = V;
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (start[mid] + mid < target) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  parallel_tasks(ntasks, [&](int64_t t) {
    int64_t v0 = bound(t), v1 = t + 1 == ntasks ? V : bound(t + 1);
    for (int64_t v = v0; v < v1; v++) {
      float *row = dw + v * H;
      if (v == padding_idx || start[v] == start[v + 1]) {
        std::memset(row, 0, (size_t)H * 4);
        continue;
      }
      for (int64_t j = start[v]; j < start[v + 1]; j++)
        add_row(row, g + order[j] * H * es, dt, H, j > start[v]);
    }
  });
}

// ---- AdamW ----

namespace {

constexpr int64_t kBlock = 1 << 16;  // elements per unit of work (fixed: deterministic sums)

struct Unit {
  int64_t param, begin, end;
};
std::vector<Unit> make_units(const std::vector<int64_t> &sizes) {
  std::vector<Unit> u;
  for (size_t i = 0; i < sizes.size(); i++)
    for (int64_t b = 0; b < sizes[i]; b += kBlock) u.push_back({(int64_t)i, b, std::min(sizes[i], b + kBlock)});
  return u;
}

double sumsq_generic(const void *src, l2c_dtype dt, int64_t n) {
  float buf[256];
  double s = 0;
  for (int64_t i = 0; i < n; i += 256) {
    int64_t k = std::min<int64_t>(256, n - i);
    load_f32(static_cast<const char *>(src) + i * fsize(dt), dt, k, buf);
    for (int64_t j = 0; j < k; j++) s += (double)buf[j] * (double)buf[j];
  }
  return s;
}
L2C_TARGET_AVX512 double sumsq_avx512(const void *src, l2c_dtype dt, int64_t n) {
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (int64_t i = 0; i < n; i += 16) {
    __m512 v = load16(src, dt, i, lanes(n - i));
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    a0 = _mm512_fmadd_pd(lo, lo, a0);
    a1 = _mm512_fmadd_pd(hi, hi, a1);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
}
double sumsq(const void *src, l2c_dtype dt, int64_t n) {
  return level() == Level::avx512 ? sumsq_avx512(src, dt, n) : sumsq_generic(src, dt, n);
}

double norm_of(const std::vector<const l2c_tensor *> &grads) {
  std::vector<int64_t> sizes;
  for (const l2c_tensor *g : grads) sizes.push_back(numel(*g));
  std::vector<Unit> units = make_units(sizes);
  std::vector<double> part(units.size());
  parallel_for((int64_t)units.size(), 1, [&](int64_t b, int64_t e) {
    for (int64_t u = b; u < e; u++) {
      const Unit &x = units[u];
      const l2c_tensor &g = *grads[x.param];
      part[u] = sumsq(static_cast<const char *>(g.data) + x.begin * fsize(g.dtype), g.dtype,
                      x.end - x.begin);
    }
  });
  double s = 0;
  for (double v : part) s += v;
  return std::sqrt(s);
}

// The float32 constants of one step (PyTorch casts its double scalars the same way).
struct StepConsts {
  float wd_factor, one_minus_b1, b2, one_minus_b2, bc2_sqrt, eps, step_size, clip;
};

// p, m, v float32; g float32 (already loaded); n elements.
void update_generic(float *p, float *m, float *v, const float *g, int64_t n, const StepConsts &c,
                    bool decay) {
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] * c.clip;
    float pi = decay ? p[i] * c.wd_factor : p[i];
    float mi = m[i] + c.one_minus_b1 * (gi - m[i]);
    float vi = v[i] * c.b2 + c.one_minus_b2 * gi * gi;
    float den = std::sqrt(vi) / c.bc2_sqrt + c.eps;
    p[i] = pi - c.step_size * mi / den;
    m[i] = mi;
    v[i] = vi;
  }
}
L2C_TARGET_AVX512 void update_avx512(float *p, float *m, float *v, const float *g, int64_t n,
                                     const StepConsts &c, bool decay) {
  const __m512 clip = _mm512_set1_ps(c.clip), wdf = _mm512_set1_ps(decay ? c.wd_factor : 1.0f),
               omb1 = _mm512_set1_ps(c.one_minus_b1), b2 = _mm512_set1_ps(c.b2),
               omb2 = _mm512_set1_ps(c.one_minus_b2), bc2 = _mm512_set1_ps(c.bc2_sqrt),
               eps = _mm512_set1_ps(c.eps), ss = _mm512_set1_ps(c.step_size);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 k = lanes(n - i);
    __m512 gi = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, g + i), clip);
    __m512 pi = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + i), wdf);
    __m512 mo = _mm512_maskz_loadu_ps(k, m + i), vo = _mm512_maskz_loadu_ps(k, v + i);
    __m512 mi = _mm512_add_ps(mo, _mm512_mul_ps(omb1, _mm512_sub_ps(gi, mo)));
    __m512 vi = _mm512_add_ps(_mm512_mul_ps(vo, b2), _mm512_mul_ps(_mm512_mul_ps(omb2, gi), gi));
    __m512 den = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2), eps);
    pi = _mm512_sub_ps(pi, _mm512_div_ps(_mm512_mul_ps(ss, mi), den));
    _mm512_mask_storeu_ps(p + i, k, pi);
    _mm512_mask_storeu_ps(m + i, k, mi);
    _mm512_mask_storeu_ps(v + i, k, vi);
  }
}

}  // namespace

double grad_norm(const std::vector<const l2c_tensor *> &grads) { return norm_of(grads); }

double adamw(const std::vector<AdamWParam> &ps, const AdamWHyper &h, bool *skipped) {
  std::vector<const l2c_tensor *> grads;
  for (const AdamWParam &p : ps) grads.push_back(p.grad);
  double norm = norm_of(grads);
  *skipped = !std::isfinite(norm);
  if (*skipped) return norm;
  double clip = 1.0;
  if (h.max_grad_norm > 0) clip = std::min(1.0, h.max_grad_norm / (norm + 1e-6));
  StepConsts c;
  c.wd_factor = (float)(1.0 - h.lr * h.weight_decay);
  c.one_minus_b1 = (float)(1.0 - h.beta1);
  c.b2 = (float)h.beta2;
  c.one_minus_b2 = (float)(1.0 - h.beta2);
  double bc1 = 1.0 - std::pow(h.beta1, (double)h.step), bc2 = 1.0 - std::pow(h.beta2, (double)h.step);
  c.bc2_sqrt = (float)std::sqrt(bc2);
  c.eps = (float)h.eps;
  c.step_size = (float)(h.lr / bc1);
  c.clip = (float)clip;
  const bool avx512 = level() == Level::avx512;

  std::vector<int64_t> sizes;
  for (const AdamWParam &p : ps) sizes.push_back(numel(*p.param));
  std::vector<Unit> units = make_units(sizes);
  parallel_for((int64_t)units.size(), 1, [&](int64_t b, int64_t e) {
    float gbuf[1024];
    for (int64_t u = b; u < e; u++) {
      const Unit &x = units[u];
      const AdamWParam &p = ps[x.param];
      float *pw = static_cast<float *>(p.master ? p.master->data : p.param->data);
      float *m = static_cast<float *>(p.exp_avg->data), *v = static_cast<float *>(p.exp_avg_sq->data);
      const l2c_dtype gdt = p.grad->dtype;
      for (int64_t i = x.begin; i < x.end; i += 1024) {
        int64_t k = std::min<int64_t>(1024, x.end - i);
        const float *g;
        if (gdt == L2C_FLOAT32) {
          g = static_cast<const float *>(p.grad->data) + i;
        } else {
          load_f32(static_cast<const uint16_t *>(p.grad->data) + i, gdt, k, gbuf);
          g = gbuf;
        }
        if (avx512)
          update_avx512(pw + i, m + i, v + i, g, k, c, p.decay);
        else
          update_generic(pw + i, m + i, v + i, g, k, c, p.decay);
        if (p.master)
          store_f32(pw + i, static_cast<char *>(p.param->data) + i * fsize(p.param->dtype),
                    p.param->dtype, k);
      }
    }
  });
  return norm;
}

}  // namespace cpu
}  // namespace l2c
