// layers_norm.cu: CUDA kernels of the row ops over the last dim: RMSNorm and LayerNorm
// (forward and backward), l2 normalisation, softmax, and the masked mean pool. Twins of
// cpu/layers_norm.cc, with the same formulas in the same float32 / float64 steps.
//
// Row kernels: a warp per row when D <= kWarpRowMax (8 rows per block of 256 threads,
// warp-shuffle reductions only), else a block per row (128..1024 threads, about four
// vector accesses per thread per pass; warp trees then a tree over the warps). Rows are
// a grid-stride loop. Each pass re-reads the row (L1 / L2 hold it); loads and stores are
// 16-byte vectors (4 float32 or 8 16-bit elements) when D is a multiple of the width and
// every row pointer is 16-byte aligned, else scalar. Every reduction is a fixed tree of
// a fixed launch, so results are reproducible bit for bit.
//
// Weight gradients (dweight, dbias): a second kernel over 32-column tiles and chunks of
// rows (8 row lanes per column, a fixed tree through shared memory) writes per-chunk
// partials; a third adds each column's partials (a warp's tree). No atomics.
//
// Masked mean pool: a warp per batch row turns the mask into float32 weights, their
// float64 sum and the coefficients (as the CPU does, in float64); the pool is a 32-column
// x 8-lane tile per (batch row, column tile) over the sequence, skipping zero weights.
#include <initializer_list>
#include <string>
#include <type_traits>

#include "layers_common.cuh"
#include "layers_cuda.h"

namespace l2c {
namespace cuda {
namespace layers {
namespace {

constexpr int64_t kWarpRowMax = 512;  // last dims up to this: a warp per row
constexpr int kRowBlock = 256;        // threads per block in warp-per-row mode
constexpr int kMaxRowThreads = 1024;

// The threads of a row: one warp (kW) or the whole block.
template <bool kW>
struct RowMap {
  int t, nt;
  int64_t first, step;
  __device__ __forceinline__ RowMap() {
    if (kW) {
      const int64_t rpb = blockDim.x >> 5;
      t = threadIdx.x & 31;
      nt = 32;
      first = (int64_t)blockIdx.x * rpb + (threadIdx.x >> 5);
      step = (int64_t)gridDim.x * rpb;
    } else {
      t = threadIdx.x;
      nt = blockDim.x;
      first = blockIdx.x;
      step = gridDim.x;
    }
  }
};

template <bool kW>
__device__ __forceinline__ float row_sum(float v, float *sh) {
  if constexpr (kW) return warp_sum(v);
  else return block_sum(v, sh);
}
template <bool kW>
__device__ __forceinline__ float row_max(float v, float *sh) {
  if constexpr (kW) return warp_max(v);
  else return block_max(v, sh);
}

// The passes over a row: i runs over the first element of each V-wide chunk of this
// thread (D is a multiple of V). Unrolled twice: two vector accesses per array in flight
// per thread; a deeper unroll made ptxas spill in some instantiations.
#define L2C_ROW_LOOP(i) _Pragma("unroll 2") for (int64_t i = (int64_t)m.t * V; i < D; i += (int64_t)m.nt * V)

struct RowLaunch {
  unsigned grid, block;
};
RowLaunch row_launch(int64_t rows, int64_t D, int V, bool warp) {
  if (warp) return {blocks_for(rows, kRowBlock / 32), (unsigned)kRowBlock};
  int64_t chunks = (D / V + 3) / 4;  // about four chunks per thread
  int64_t t = (chunks + 31) / 32 * 32;
  t = std::max<int64_t>(128, std::min<int64_t>(kMaxRowThreads, t));
  return {blocks_for(rows, 1), (unsigned)t};
}

// Calls f(Tag{}, integral_constant<V>, bool_constant<warp>) for the row kernels' launch:
// the vector width when D is a multiple of it and every pointer is 16-byte aligned.
template <class F>
void row_dispatch(l2c_dtype dt, bool all_aligned, int64_t D, F &&f) {
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
    constexpr int VW = vec_width<Tag>();
    const bool vec = all_aligned && D % VW == 0;
    const bool warp = D <= kWarpRowMax;
    if (vec) {
      if (warp) f(Tag{}, std::integral_constant<int, VW>{}, std::true_type{});
      else f(Tag{}, std::integral_constant<int, VW>{}, std::false_type{});
    } else {
      if (warp) f(Tag{}, std::integral_constant<int, 1>{}, std::true_type{});
      else f(Tag{}, std::integral_constant<int, 1>{}, std::false_type{});
    }
  });
}

bool aligned_all(std::initializer_list<const void *> ps) {
  for (const void *p : ps)
    if (p && !aligned16(p)) return false;
  return true;
}

// ---------------------------------------------------------------- RMSNorm

// rstd = 1 / sqrt(mean(x^2) + eps) (the sum in float32, the rest in float64 as the CPU;
// inv_d = 1 / D, 0 for D == 0),
// y = x * rstd * w.
template <typename Tag, int V, bool kW>
__global__ void __launch_bounds__(kW ? kRowBlock : kMaxRowThreads) rms_fwd_kernel(const typename Tag::T *__restrict__ x,
                                                                 const float *__restrict__ w,
                                                                 typename Tag::T *__restrict__ y,
                                                                 float *__restrict__ rstd, int64_t rows, int64_t D,
                                                                 double inv_d, float eps) {
  __shared__ float sh[32];
  const RowMap<kW> m;
  for (int64_t r = m.first; r < rows; r += m.step) {
    const typename Tag::T *xr = x + r * D;
    typename Tag::T *yr = y + r * D;
    float ss = 0.0f;
    L2C_ROW_LOOP(i) {
      float v[V];
      load_v<Tag, V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; k++) ss += v[k] * v[k];
    }
    ss = row_sum<kW>(ss, sh);
    // D == 0: inv_d = 0, rstd = 1 / sqrt(eps) as on the CPU.
    const float rs = (float)rsqrt((double)ss * inv_d + (double)eps);
    if (m.t == 0) rstd[r] = rs;
    L2C_ROW_LOOP(i) {
      float v[V];
      load_v<Tag, V>(xr + i, v);
      if (w) {
        float wv[V];
        load_v<F32, V>(w + i, wv);
#pragma unroll
        for (int k = 0; k < V; k++) v[k] = v[k] * rs * wv[k];
      } else {
#pragma unroll
        for (int k = 0; k < V; k++) v[k] = v[k] * rs;
      }
      store_v<Tag, V>(yr + i, v);
    }
  }
}

// g = dy w, c = mean(g x): dx = rstd (g - x rstd^2 c).
template <typename Tag, int V, bool kW>
__global__ void __launch_bounds__(kW ? kRowBlock : kMaxRowThreads) rms_bwd_kernel(const typename Tag::T *__restrict__ dy,
                                                                 const typename Tag::T *__restrict__ x,
                                                                 const float *__restrict__ w,
                                                                 const float *__restrict__ rstd,
                                                                 typename Tag::T *__restrict__ dx, int64_t rows,
                                                                 int64_t D, double inv_d) {
  __shared__ float sh[32];
  const RowMap<kW> m;
  for (int64_t r = m.first; r < rows; r += m.step) {
    const typename Tag::T *dyr = dy + r * D, *xr = x + r * D;
    typename Tag::T *dxr = dx + r * D;
    float acc = 0.0f;
    L2C_ROW_LOOP(i) {
      float d[V], xv[V];
      load_v<Tag, V>(dyr + i, d);
      load_v<Tag, V>(xr + i, xv);
      if (w) {
        float wv[V];
        load_v<F32, V>(w + i, wv);
#pragma unroll
        for (int k = 0; k < V; k++) d[k] *= wv[k];
      }
#pragma unroll
      for (int k = 0; k < V; k++) acc += d[k] * xv[k];
    }
    acc = row_sum<kW>(acc, sh);
    const float rs = rstd[r];
    const float c = (float)((double)acc * inv_d);  // acc / D
    const float kk = rs * rs * c;
    L2C_ROW_LOOP(i) {
      float d[V], xv[V];
      load_v<Tag, V>(dyr + i, d);
      load_v<Tag, V>(xr + i, xv);
      if (w) {
        float wv[V];
        load_v<F32, V>(w + i, wv);
#pragma unroll
        for (int k = 0; k < V; k++) d[k] *= wv[k];
      }
#pragma unroll
      for (int k = 0; k < V; k++) d[k] = rs * (d[k] - xv[k] * kk);
      store_v<Tag, V>(dxr + i, d);
    }
  }
}

// ---------------------------------------------------------------- LayerNorm

// mean = sum(x) / D (float32), var = sum((x - mean)^2) / D (the sum in float32, the
// division in float64), rstd = 1 / sqrt(var + eps); y = (x - mean) rstd w + b.
template <typename Tag, int V, bool kW>
__global__ void __launch_bounds__(kW ? kRowBlock : kMaxRowThreads) ln_fwd_kernel(const typename Tag::T *__restrict__ x,
                                                                const float *__restrict__ w,
                                                                const float *__restrict__ b,
                                                                typename Tag::T *__restrict__ y,
                                                                float *__restrict__ mean, float *__restrict__ rstd,
                                                                int64_t rows, int64_t D, double inv_d, float eps) {
  __shared__ float sh[32];
  const RowMap<kW> m;
  for (int64_t r = m.first; r < rows; r += m.step) {
    const typename Tag::T *xr = x + r * D;
    typename Tag::T *yr = y + r * D;
    float s = 0.0f;
    L2C_ROW_LOOP(i) {
      float v[V];
      load_v<Tag, V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; k++) s += v[k];
    }
    s = row_sum<kW>(s, sh);
    const float mu = (float)((double)s * inv_d);  // s / D; 0 for D == 0
    float sq = 0.0f;
    L2C_ROW_LOOP(i) {
      float v[V];
      load_v<Tag, V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; k++) {
        const float d = v[k] - mu;
        sq += d * d;
      }
    }
    sq = row_sum<kW>(sq, sh);
    const double var = (double)sq * inv_d;
    const float rs = (float)rsqrt(var + (double)eps);
    if (m.t == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
    L2C_ROW_LOOP(i) {
      float v[V];
      load_v<Tag, V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; k++) v[k] = (v[k] - mu) * rs;
      if (w) {
        float wv[V];
        load_v<F32, V>(w + i, wv);
#pragma unroll
        for (int k = 0; k < V; k++) v[k] *= wv[k];
      }
      if (b) {
        float bv[V];
        load_v<F32, V>(b + i, bv);
#pragma unroll
        for (int k = 0; k < V; k++) v[k] += bv[k];
      }
      store_v<Tag, V>(yr + i, v);
    }
  }
}

// xhat = (x - mean) rstd, g = dy w: dx = rstd (g - mean(g) - xhat mean(g xhat)).
template <typename Tag, int V, bool kW>
__global__ void __launch_bounds__(kW ? kRowBlock : kMaxRowThreads) ln_bwd_kernel(const typename Tag::T *__restrict__ dy,
                                                                const typename Tag::T *__restrict__ x,
                                                                const float *__restrict__ w,
                                                                const float *__restrict__ mean,
                                                                const float *__restrict__ rstd,
                                                                typename Tag::T *__restrict__ dx, int64_t rows,
                                                                int64_t D, double inv_d) {
  __shared__ float sh[32];
  const RowMap<kW> m;
  for (int64_t r = m.first; r < rows; r += m.step) {
    const typename Tag::T *dyr = dy + r * D, *xr = x + r * D;
    typename Tag::T *dxr = dx + r * D;
    const float mu = mean[r], rs = rstd[r];
    float sg = 0.0f, sgx = 0.0f;
    L2C_ROW_LOOP(i) {
      float d[V], xv[V];
      load_v<Tag, V>(dyr + i, d);
      load_v<Tag, V>(xr + i, xv);
      if (w) {
        float wv[V];
        load_v<F32, V>(w + i, wv);
#pragma unroll
        for (int k = 0; k < V; k++) d[k] *= wv[k];
      }
#pragma unroll
      for (int k = 0; k < V; k++) {
        sg += d[k];
        sgx += d[k] * ((xv[k] - mu) * rs);
      }
    }
    sg = row_sum<kW>(sg, sh);
    sgx = row_sum<kW>(sgx, sh);
    const float mg = (float)((double)sg * inv_d), mgx = (float)((double)sgx * inv_d);
    L2C_ROW_LOOP(i) {
      float d[V], xv[V];
      load_v<Tag, V>(dyr + i, d);
      load_v<Tag, V>(xr + i, xv);
      if (w) {
        float wv[V];
        load_v<F32, V>(w + i, wv);
#pragma unroll
        for (int k = 0; k < V; k++) d[k] *= wv[k];
      }
#pragma unroll
      for (int k = 0; k < V; k++) {
        const float xh = (xv[k] - mu) * rs;
        d[k] = rs * (d[k] - mg - xh * mgx);
      }
      store_v<Tag, V>(dxr + i, d);
    }
  }
}

// ---------------------------------------------------------------- weight gradients

constexpr int kColX = 32, kColY = 8;
constexpr int64_t kTargetBlocks = 2048;
constexpr int64_t kMinChunkRows = 64;

// Per (32-column tile, chunk c of C row chunks): pw[j * C + c] = sum over the chunk's
// rows of the weight-gradient term at column j; pb likewise (LayerNorm's dbias, when
// given). RMSNorm (!kLN): dy x rstd. LayerNorm: dy xhat and dy.
template <typename Tag, bool kLN>
__global__ void __launch_bounds__(kColX * kColY) norm_dw_kernel(const typename Tag::T *__restrict__ dy,
                                                                const typename Tag::T *__restrict__ x,
                                                                const float *__restrict__ mean,
                                                                const float *__restrict__ rstd,
                                                                float *__restrict__ pw, float *__restrict__ pb,
                                                                int64_t rows, int64_t D, int64_t C, int64_t tiles) {
  __shared__ float shw[kColY][kColX + 1];
  __shared__ float shb[kColY][kColX + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t items = tiles * C;
  for (int64_t it = blockIdx.x; it < items; it += gridDim.x) {  // uniform over the block
    const int64_t c = it % C, tile = it / C;
    const int64_t j = tile * kColX + tx;
    const int64_t r0 = rows * c / C, r1 = rows * (c + 1) / C;
    float sw = 0.0f, sb = 0.0f;
    if (j < D) {
      for (int64_t r = r0 + ty; r < r1; r += kColY) {
        const float d = Tag::to_f32(dy[r * D + j]), xv = Tag::to_f32(x[r * D + j]);
        if constexpr (kLN) {
          sw += d * ((xv - mean[r]) * rstd[r]);
          sb += d;
        } else {
          sw += d * xv * rstd[r];
        }
      }
    }
    __syncthreads();  // the shared tiles are free (the previous item read them)
    shw[ty][tx] = sw;
    shb[ty][tx] = sb;
    __syncthreads();
#pragma unroll
    for (int h = kColY / 2; h >= 1; h >>= 1) {
      if (ty < h) {
        shw[ty][tx] += shw[ty + h][tx];
        shb[ty][tx] += shb[ty + h][tx];
      }
      __syncthreads();
    }
    if (ty == 0 && j < D) {
      if (pw) pw[j * C + c] = shw[0][tx];
      if (pb) pb[j * C + c] = shb[0][tx];
    }
  }
}

// dw (and db) [D] float32 from rows x D of dy, x and the row statistics.
void norm_weight_grads(int device, bool ln, const void *dy, const void *x, l2c_dtype dt, const float *mean,
                       const float *rstd, float *dw, float *db, int64_t rows, int64_t D, cudaStream_t s) {
  if (D == 0 || (!dw && !db)) return;
  const int64_t tiles = (D + kColX - 1) / kColX;
  if (rows == 0) {  // a sum over no rows: zeros
    L2C_CUDA_CHECK(cudaMemsetAsync(dw ? dw : db, 0, (size_t)D * sizeof(float), s));
    if (dw && db) L2C_CUDA_CHECK(cudaMemsetAsync(db, 0, (size_t)D * sizeof(float), s));
    return;
  }
  const int64_t by_rows = std::max<int64_t>(1, rows / kMinChunkRows);
  const int64_t by_blocks = (kTargetBlocks + tiles - 1) / tiles;
  const int64_t C = std::max<int64_t>(1, std::min(by_rows, by_blocks));
  Scratch part(device, (size_t)(D * C * ((dw ? 1 : 0) + (db ? 1 : 0))) * sizeof(float));
  float *pw = dw ? part.f32() : nullptr;
  float *pb = db ? part.f32() + (dw ? D * C : 0) : nullptr;
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
    using T = typename Tag::T;
    const unsigned blocks = blocks_for(tiles * C, 1);
    if (ln)
      norm_dw_kernel<Tag, true><<<blocks, dim3(kColX, kColY), 0, s>>>(
          static_cast<const T *>(dy), static_cast<const T *>(x), mean, rstd, pw, pb, rows, D, C, tiles);
    else
      norm_dw_kernel<Tag, false><<<blocks, dim3(kColX, kColY), 0, s>>>(
          static_cast<const T *>(dy), static_cast<const T *>(x), mean, rstd, pw, pb, rows, D, C, tiles);
    L2C_CUDA_CHECK_LAUNCH("norm_dw_kernel");
  });
  if (dw) launch_partials_final<F32>(pw, D, C, 1.0f, dw, s);
  if (db) launch_partials_final<F32>(pb, D, C, 1.0f, db, s);
}

// ---------------------------------------------------------------- l2 normalize

// n = sqrt(ss) and rn = 1 / n in float64 from the float32 sum of squares, without the
// IEEE sqrt / division subroutines (see layers_common.cuh): ss = 0 gives n = 0, rn =
// inf; ss = inf gives n = inf, rn = 0; NaN stays NaN.
__device__ __forceinline__ void norm_of(float ss, double &n, double &rn) {
  const double d = (double)ss;
  rn = rsqrt(d);
  n = (d == 0.0 || isinf(d)) ? d : d * rn;
}

// n = sqrt(sum x^2) (sum in float32, sqrt in float64); y = x / max(n, eps); inv_eps =
// (float)(1 / eps) from the host.
template <typename Tag, int V, bool kW>
__global__ void __launch_bounds__(kW ? kRowBlock : kMaxRowThreads) l2n_fwd_kernel(const typename Tag::T *__restrict__ x,
                                                                 typename Tag::T *__restrict__ y, int64_t rows,
                                                                 int64_t D, float eps, float inv_eps) {
  __shared__ float sh[32];
  const RowMap<kW> m;
  for (int64_t r = m.first; r < rows; r += m.step) {
    const typename Tag::T *xr = x + r * D;
    typename Tag::T *yr = y + r * D;
    float ss = 0.0f;
    L2C_ROW_LOOP(i) {
      float v[V];
      load_v<Tag, V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; k++) ss += v[k] * v[k];
    }
    ss = row_sum<kW>(ss, sh);
    double n, rn;
    norm_of(ss, n, rn);
    const float inv = n < (double)eps ? inv_eps : (float)rn;  // 1 / max(n, eps), NaN stays NaN
    L2C_ROW_LOOP(i) {
      float v[V];
      load_v<Tag, V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; k++) v[k] *= inv;
      store_v<Tag, V>(yr + i, v);
    }
  }
}

// n >= eps: dx = dy / n - x (x . dy) / n^3; n < eps: dx = dy / eps.
template <typename Tag, int V, bool kW>
__global__ void __launch_bounds__(kW ? kRowBlock : kMaxRowThreads) l2n_bwd_kernel(const typename Tag::T *__restrict__ dy,
                                                                 const typename Tag::T *__restrict__ x,
                                                                 typename Tag::T *__restrict__ dx, int64_t rows,
                                                                 int64_t D, float eps, float inv_eps) {
  __shared__ float sh[32];
  const RowMap<kW> m;
  for (int64_t r = m.first; r < rows; r += m.step) {
    const typename Tag::T *dyr = dy + r * D, *xr = x + r * D;
    typename Tag::T *dxr = dx + r * D;
    float ss = 0.0f, sxd = 0.0f;
    L2C_ROW_LOOP(i) {
      float d[V], xv[V];
      load_v<Tag, V>(dyr + i, d);
      load_v<Tag, V>(xr + i, xv);
#pragma unroll
      for (int k = 0; k < V; k++) {
        ss += xv[k] * xv[k];
        sxd += xv[k] * d[k];
      }
    }
    ss = row_sum<kW>(ss, sh);
    sxd = row_sum<kW>(sxd, sh);
    double n, rn;
    norm_of(ss, n, rn);
    const bool big = n >= (double)eps;
    const float inv = big ? (float)rn : inv_eps;
    const float kk = big ? (float)((double)sxd * (rn * rn * rn)) : 0.0f;  // (x . dy) / n^3
    L2C_ROW_LOOP(i) {
      float d[V], xv[V];
      load_v<Tag, V>(dyr + i, d);
      load_v<Tag, V>(xr + i, xv);
      if (big) {
#pragma unroll
        for (int k = 0; k < V; k++) d[k] = d[k] * inv - xv[k] * kk;
      } else {
#pragma unroll
        for (int k = 0; k < V; k++) d[k] = d[k] * inv;
      }
      store_v<Tag, V>(dxr + i, d);
    }
  }
}

// ---------------------------------------------------------------- softmax

// y = exp(x - max) / sum(exp(x - max)). NaN anywhere in the row makes every y NaN (the
// max skips it, the exp and the sum do not); a row of -inf gives NaN (-inf - -inf).
template <typename Tag, int V, bool kW>
__global__ void __launch_bounds__(kW ? kRowBlock : kMaxRowThreads) softmax_fwd_kernel(const typename Tag::T *__restrict__ x,
                                                                     typename Tag::T *__restrict__ y, int64_t rows,
                                                                     int64_t D) {
  __shared__ float sh[32];
  const RowMap<kW> m;
  for (int64_t r = m.first; r < rows; r += m.step) {
    const typename Tag::T *xr = x + r * D;
    typename Tag::T *yr = y + r * D;
    float mx = -INFINITY;
    L2C_ROW_LOOP(i) {
      float v[V];
      load_v<Tag, V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; k++) mx = fmaxf(mx, v[k]);
    }
    mx = row_max<kW>(mx, sh);
    float s = 0.0f;
    L2C_ROW_LOOP(i) {
      float v[V];
      load_v<Tag, V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; k++) s += expf(v[k] - mx);
    }
    s = row_sum<kW>(s, sh);
    const float inv = (float)recip_pos((double)s);  // s in [1, D] (the max's term is 1) or NaN
    L2C_ROW_LOOP(i) {
      float v[V];
      load_v<Tag, V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; k++) v[k] = expf(v[k] - mx) * inv;
      store_v<Tag, V>(yr + i, v);
    }
  }
}

// dx = y (dy - sum(dy y)).
template <typename Tag, int V, bool kW>
__global__ void __launch_bounds__(kW ? kRowBlock : kMaxRowThreads) softmax_bwd_kernel(const typename Tag::T *__restrict__ dy,
                                                                     const typename Tag::T *__restrict__ y,
                                                                     typename Tag::T *__restrict__ dx, int64_t rows,
                                                                     int64_t D) {
  __shared__ float sh[32];
  const RowMap<kW> m;
  for (int64_t r = m.first; r < rows; r += m.step) {
    const typename Tag::T *dyr = dy + r * D, *yr = y + r * D;
    typename Tag::T *dxr = dx + r * D;
    float s = 0.0f;
    L2C_ROW_LOOP(i) {
      float d[V], yv[V];
      load_v<Tag, V>(dyr + i, d);
      load_v<Tag, V>(yr + i, yv);
#pragma unroll
      for (int k = 0; k < V; k++) s += d[k] * yv[k];
    }
    s = row_sum<kW>(s, sh);
    L2C_ROW_LOOP(i) {
      float d[V], yv[V];
      load_v<Tag, V>(dyr + i, d);
      load_v<Tag, V>(yr + i, yv);
#pragma unroll
      for (int k = 0; k < V; k++) d[k] = yv[k] * (d[k] - s);
      store_v<Tag, V>(dxr + i, d);
    }
  }
}

#undef L2C_ROW_LOOP

// ---------------------------------------------------------------- masked mean pool

// A warp per batch row b: w[b,s] as float32 (int32 mask: 1 where nonzero), their sum in
// float64 (a warp tree; the CPU's order differs only in the last bits of float weights,
// int32 masks sum exactly). Forward: w, inv[b] = (float)(1 / sum) and ok[b] = (sum != 0).
// Backward: coef[b,s] = (float)(w * (1 / sum)) in float64, 0 for a row of sum 0.
template <typename MTag>
__global__ void __launch_bounds__(256) pool_weights_kernel(const typename MTag::T *__restrict__ mask, int64_t B,
                                                           int64_t S, float *__restrict__ w, float *__restrict__ inv,
                                                           float *__restrict__ ok, float *__restrict__ coef) {
  const int lane = threadIdx.x & 31;
  const int64_t wpb = blockDim.x / 32;
  for (int64_t b = (int64_t)blockIdx.x * wpb + threadIdx.x / 32; b < B; b += (int64_t)gridDim.x * wpb) {
    const typename MTag::T *mr = mask + b * S;
    auto weight = [&](int64_t s) -> float {
      if constexpr (MTag::kDtype == L2C_INT32) return mr[s] != 0 ? 1.0f : 0.0f;
      else return MTag::to_f32(mr[s]);
    };
    double n = 0.0;
    for (int64_t s = lane; s < S; s += 32) {
      const float v = weight(s);
      if (w) w[b * S + s] = v;
      n += (double)v;
    }
    n = warp_sum(n);
    if (inv && lane == 0) {
      inv[b] = n != 0 ? (float)(1.0 / n) : 0.0f;
      ok[b] = n != 0 ? 1.0f : 0.0f;
    }
    if (coef) {
      const double in = n != 0 ? 1.0 / n : 0.0;
      for (int64_t s = lane; s < S; s += 32) coef[b * S + s] = n != 0 ? (float)((double)weight(s) * in) : 0.0f;
    }
  }
}

void pool_weights(const void *mask, l2c_dtype mdt, int64_t B, int64_t S, float *w, float *inv, float *ok, float *coef,
                  cudaStream_t s) {
  L2C_DTYPE_SWITCH(mdt, MTag, [&] {
    pool_weights_kernel<MTag><<<blocks_for(B, 256 / 32), 256, 0, s>>>(static_cast<const typename MTag::T *>(mask), B,
                                                                       S, w, inv, ok, coef);
    L2C_CUDA_CHECK_LAUNCH("pool_weights_kernel");
  });
}

// out[b, j] = sum over s with w[b,s] != 0 of w[b,s] hidden[b,s,j], times inv[b] (zeros
// when the weights sum to 0). Block (32, 8): 32 columns, 8 lanes over s, fixed tree.
template <typename Tag>
__global__ void __launch_bounds__(kColX * kColY) pool_fwd_kernel(const typename Tag::T *__restrict__ hidden,
                                                                 const float *__restrict__ w,
                                                                 const float *__restrict__ inv,
                                                                 const float *__restrict__ ok,
                                                                 typename Tag::T *__restrict__ out, int64_t B,
                                                                 int64_t S, int64_t H, int64_t tiles) {
  __shared__ float sh[kColY][kColX + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t items = B * tiles;
  for (int64_t it = blockIdx.x; it < items; it += gridDim.x) {  // uniform over the block
    const int64_t b = it / tiles, j = (it % tiles) * kColX + tx;
    const bool any = ok[b] != 0.0f;
    float acc = 0.0f;
    if (any && j < H) {
      for (int64_t s = ty; s < S; s += kColY) {
        const float ws = w[b * S + s];
        if (ws != 0.0f) acc += ws * Tag::to_f32(hidden[(b * S + s) * H + j]);
      }
    }
    __syncthreads();
    sh[ty][tx] = acc;
    __syncthreads();
#pragma unroll
    for (int h = kColY / 2; h >= 1; h >>= 1) {
      if (ty < h) sh[ty][tx] += sh[ty + h][tx];
      __syncthreads();
    }
    if (ty == 0 && j < H) out[b * H + j] = Tag::from_f32(any ? sh[0][tx] * inv[b] : 0.0f);
  }
}

// dhidden[b,s,:] = coef[b,s] * dy[b,:]: a warp or a block per (b, s) row.
template <typename Tag, bool kW>
__global__ void __launch_bounds__(kW ? kRowBlock : kMaxRowThreads) pool_bwd_kernel(const typename Tag::T *__restrict__ dy,
                                                                  const float *__restrict__ coef,
                                                                  typename Tag::T *__restrict__ dh, int64_t rows,
                                                                  int64_t S, int64_t H) {
  const RowMap<kW> m;
  for (int64_t r = m.first; r < rows; r += m.step) {
    const float c = coef[r];
    const typename Tag::T *dyr = dy + (r / S) * H;
    typename Tag::T *o = dh + r * H;
    for (int64_t i = m.t; i < H; i += m.nt) o[i] = Tag::from_f32(c * Tag::to_f32(dyr[i]));
  }
}

}  // namespace

// ---------------------------------------------------------------- entries

void rms_norm_forward(int device, const void *x, l2c_dtype dt, const void *w, l2c_dtype wdt, void *y, float *rstd,
                      int64_t rows, int64_t D, float eps) {
  DeviceGuard guard(device);
  if (rows == 0) return;
  cudaStream_t s = stream(device);
  const double inv_d = D > 0 ? 1.0 / (double)D : 0.0;
  WidenedDev W(device, w, wdt, D);
  row_dispatch(dt, aligned_all({x, y, W.get()}), D, [&](auto tag, auto v, auto warp) {
    using Tag = decltype(tag);
    using T = typename Tag::T;
    constexpr int V = decltype(v)::value;
    constexpr bool kW = decltype(warp)::value;
    const RowLaunch L = row_launch(rows, D, V, kW);
    rms_fwd_kernel<Tag, V, kW><<<L.grid, L.block, 0, s>>>(static_cast<const T *>(x), W.get(), static_cast<T *>(y),
                                                         rstd, rows, D, inv_d, eps);
    L2C_CUDA_CHECK_LAUNCH("rms_fwd_kernel");
  });
}

void rms_norm_backward(int device, const void *dy, const void *x, l2c_dtype dt, const void *w, l2c_dtype wdt,
                       const float *rstd, void *dx, float *dw, int64_t rows, int64_t D) {
  DeviceGuard guard(device);
  cudaStream_t s = stream(device);
  const double inv_d = D > 0 ? 1.0 / (double)D : 0.0;
  if (rows > 0 && D > 0) {
    WidenedDev W(device, w, wdt, D);
    row_dispatch(dt, aligned_all({dy, x, dx, W.get()}), D, [&](auto tag, auto v, auto warp) {
      using Tag = decltype(tag);
      using T = typename Tag::T;
      constexpr int V = decltype(v)::value;
      constexpr bool kW = decltype(warp)::value;
      const RowLaunch L = row_launch(rows, D, V, kW);
      rms_bwd_kernel<Tag, V, kW><<<L.grid, L.block, 0, s>>>(static_cast<const T *>(dy), static_cast<const T *>(x),
                                                           W.get(), rstd, static_cast<T *>(dx), rows, D, inv_d);
      L2C_CUDA_CHECK_LAUNCH("rms_bwd_kernel");
    });
  }
  if (dw) norm_weight_grads(device, false, dy, x, dt, nullptr, rstd, dw, nullptr, rows, D, s);
}

void layer_norm_forward(int device, const void *x, l2c_dtype dt, const void *w, l2c_dtype wdt, const void *b,
                        l2c_dtype bdt, void *y, float *mean, float *rstd, int64_t rows, int64_t D, float eps) {
  DeviceGuard guard(device);
  if (rows == 0) return;
  cudaStream_t s = stream(device);
  const double inv_d = D > 0 ? 1.0 / (double)D : 0.0;
  WidenedDev W(device, w, wdt, D), Bv(device, b, bdt, D);
  row_dispatch(dt, aligned_all({x, y, W.get(), Bv.get()}), D, [&](auto tag, auto v, auto warp) {
    using Tag = decltype(tag);
    using T = typename Tag::T;
    constexpr int V = decltype(v)::value;
    constexpr bool kW = decltype(warp)::value;
    const RowLaunch L = row_launch(rows, D, V, kW);
    ln_fwd_kernel<Tag, V, kW><<<L.grid, L.block, 0, s>>>(static_cast<const T *>(x), W.get(), Bv.get(),
                                                        static_cast<T *>(y), mean, rstd, rows, D, inv_d, eps);
    L2C_CUDA_CHECK_LAUNCH("ln_fwd_kernel");
  });
}

void layer_norm_backward(int device, const void *dy, const void *x, l2c_dtype dt, const void *w, l2c_dtype wdt,
                         const float *mean, const float *rstd, void *dx, float *dw, float *db, int64_t rows,
                         int64_t D) {
  DeviceGuard guard(device);
  cudaStream_t s = stream(device);
  const double inv_d = D > 0 ? 1.0 / (double)D : 0.0;
  if (rows > 0 && D > 0) {
    WidenedDev W(device, w, wdt, D);
    row_dispatch(dt, aligned_all({dy, x, dx, W.get()}), D, [&](auto tag, auto v, auto warp) {
      using Tag = decltype(tag);
      using T = typename Tag::T;
      constexpr int V = decltype(v)::value;
      constexpr bool kW = decltype(warp)::value;
      const RowLaunch L = row_launch(rows, D, V, kW);
      ln_bwd_kernel<Tag, V, kW><<<L.grid, L.block, 0, s>>>(static_cast<const T *>(dy), static_cast<const T *>(x),
                                                          W.get(), mean, rstd, static_cast<T *>(dx), rows, D, inv_d);
      L2C_CUDA_CHECK_LAUNCH("ln_bwd_kernel");
    });
  }
  norm_weight_grads(device, true, dy, x, dt, mean, rstd, dw, db, rows, D, s);
}

void l2_normalize_forward(int device, const void *x, l2c_dtype dt, void *y, int64_t rows, int64_t D, float eps) {
  DeviceGuard guard(device);
  if (rows == 0 || D == 0) return;
  cudaStream_t s = stream(device);
  const float inv_eps = (float)(1.0 / (double)eps);
  row_dispatch(dt, aligned_all({x, y}), D, [&](auto tag, auto v, auto warp) {
    using Tag = decltype(tag);
    using T = typename Tag::T;
    constexpr int V = decltype(v)::value;
    constexpr bool kW = decltype(warp)::value;
    const RowLaunch L = row_launch(rows, D, V, kW);
    l2n_fwd_kernel<Tag, V, kW><<<L.grid, L.block, 0, s>>>(static_cast<const T *>(x), static_cast<T *>(y), rows, D, eps, inv_eps);
    L2C_CUDA_CHECK_LAUNCH("l2n_fwd_kernel");
  });
}

void l2_normalize_backward(int device, const void *dy, const void *x, l2c_dtype dt, void *dx, int64_t rows, int64_t D,
                           float eps) {
  DeviceGuard guard(device);
  if (rows == 0 || D == 0) return;
  cudaStream_t s = stream(device);
  const float inv_eps = (float)(1.0 / (double)eps);
  row_dispatch(dt, aligned_all({dy, x, dx}), D, [&](auto tag, auto v, auto warp) {
    using Tag = decltype(tag);
    using T = typename Tag::T;
    constexpr int V = decltype(v)::value;
    constexpr bool kW = decltype(warp)::value;
    const RowLaunch L = row_launch(rows, D, V, kW);
    l2n_bwd_kernel<Tag, V, kW><<<L.grid, L.block, 0, s>>>(static_cast<const T *>(dy), static_cast<const T *>(x),
                                                         static_cast<T *>(dx), rows, D, eps, inv_eps);
    L2C_CUDA_CHECK_LAUNCH("l2n_bwd_kernel");
  });
}

void softmax_forward(int device, const void *x, l2c_dtype dt, void *y, int64_t rows, int64_t D) {
  DeviceGuard guard(device);
  if (rows == 0 || D == 0) return;
  cudaStream_t s = stream(device);
  row_dispatch(dt, aligned_all({x, y}), D, [&](auto tag, auto v, auto warp) {
    using Tag = decltype(tag);
    using T = typename Tag::T;
    constexpr int V = decltype(v)::value;
    constexpr bool kW = decltype(warp)::value;
    const RowLaunch L = row_launch(rows, D, V, kW);
    softmax_fwd_kernel<Tag, V, kW><<<L.grid, L.block, 0, s>>>(static_cast<const T *>(x), static_cast<T *>(y), rows, D);
    L2C_CUDA_CHECK_LAUNCH("softmax_fwd_kernel");
  });
}

void softmax_backward(int device, const void *dy, const void *y, l2c_dtype dt, void *dx, int64_t rows, int64_t D) {
  DeviceGuard guard(device);
  if (rows == 0 || D == 0) return;
  cudaStream_t s = stream(device);
  row_dispatch(dt, aligned_all({dy, y, dx}), D, [&](auto tag, auto v, auto warp) {
    using Tag = decltype(tag);
    using T = typename Tag::T;
    constexpr int V = decltype(v)::value;
    constexpr bool kW = decltype(warp)::value;
    const RowLaunch L = row_launch(rows, D, V, kW);
    softmax_bwd_kernel<Tag, V, kW><<<L.grid, L.block, 0, s>>>(static_cast<const T *>(dy), static_cast<const T *>(y),
                                                             static_cast<T *>(dx), rows, D);
    L2C_CUDA_CHECK_LAUNCH("softmax_bwd_kernel");
  });
}

void masked_mean_pool_forward(int device, const void *hidden, l2c_dtype dt, const void *mask, l2c_dtype mdt, void *out,
                              int64_t B, int64_t S, int64_t H) {
  DeviceGuard guard(device);
  if (B == 0 || H == 0) return;
  cudaStream_t s = stream(device);
  Scratch wbuf(device, (size_t)(B * S + 2 * B) * sizeof(float));
  float *w = wbuf.f32(), *inv = w + B * S, *ok = inv + B;
  pool_weights(mask, mdt, B, S, w, inv, ok, nullptr, s);
  const int64_t tiles = (H + kColX - 1) / kColX;
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
    using T = typename Tag::T;
    pool_fwd_kernel<Tag><<<blocks_for(B * tiles, 1), dim3(kColX, kColY), 0, s>>>(
        static_cast<const T *>(hidden), w, inv, ok, static_cast<T *>(out), B, S, H, tiles);
    L2C_CUDA_CHECK_LAUNCH("pool_fwd_kernel");
  });
}

void masked_mean_pool_backward(int device, const void *dy, l2c_dtype dt, const void *mask, l2c_dtype mdt, void *dhidden,
                               int64_t B, int64_t S, int64_t H) {
  DeviceGuard guard(device);
  if (B == 0 || S == 0 || H == 0) return;
  cudaStream_t s = stream(device);
  Scratch cbuf(device, (size_t)(B * S) * sizeof(float));
  pool_weights(mask, mdt, B, S, nullptr, nullptr, nullptr, cbuf.f32(), s);
  const int64_t rows = B * S;
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
    using T = typename Tag::T;
    if (H <= kWarpRowMax) {
      pool_bwd_kernel<Tag, true><<<blocks_for(rows, kRowBlock / 32), kRowBlock, 0, s>>>(
          static_cast<const T *>(dy), cbuf.f32(), static_cast<T *>(dhidden), rows, S, H);
    } else {
      pool_bwd_kernel<Tag, false><<<blocks_for(rows, 1), kRowBlock, 0, s>>>(static_cast<const T *>(dy), cbuf.f32(),
                                                                           static_cast<T *>(dhidden), rows, S, H);
    }
    L2C_CUDA_CHECK_LAUNCH("pool_bwd_kernel");
  });
}

}  // namespace layers
}  // namespace cuda
}  // namespace l2c
