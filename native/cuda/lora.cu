// lora.cu: the CUDA lora kernels (core/lora_cuda.h), same semantics as the CPU ones
// (cpu/lora.cc; include/l2c_lora.h): a linear layer with a LoRA adapter, forward and
// backward, and merge / unmerge. Storage float32 / bfloat16 / float16, adapters of their
// own float dtype, float32 accumulation, every output rounded once.
//
// Forward, y = x·Wᵀ + bias + scale·(drop(x)·Aᵀ)·Bᵀ, in two kernels:
//  1. rowproj: s = scale·drop(x)·Aᵀ [N, r] float32 (CUDA cores; reads x once; the
//     dropout mask is dropout.h's, drawn for the flat index n*in + k of x, so it equals
//     the CPU's bit for bit). Memory bound: N·in elements for N·in·r multiply-adds.
//  2. the base GEMM x·Wᵀ (gemm.cuh: tensor cores for 16-bit x with 16-byte aligned rows,
//     else the SIMT kernel) with the LoRA epilogue: each output element gets
//     bias[o] + Σ_j s[n, j]·B[o, j], s and B staged in shared memory per CTA tile.
//  So the LoRA path costs one extra pass over x plus an r-deep dot per output element.
// Backward (g = scale·dy·B, t = drop(x)·Aᵀ):
//  1. rowproj: g [N, r] from dy.
//  2. dx = dy·W + drop'(g·A): the GEMM with the epilogue again, masked (the mask of
//     x's flat index, times 1/(1-p)).
//  3. rowproj: t [N, r] from x (the mask regenerated).
//  4. d_a = gᵀ·drop(x) and d_b = scale·dyᵀ·t: colreduce, a split-over-N reduction with
//     float32 partials per split, then a fixed-order sum of the partials (deterministic).
// Merge: one elementwise kernel, Δ = B·A in float32, w ± scale·Δ rounded once as on the
// CPU. Scratch from the caching allocator (stream-ordered); everything on the device's
// stream, no synchronisation.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "backend.h"
#include "cuda_common.cuh"
#include "dropout.h"
#include "gemm.cuh"
#include "lora_cuda.h"

namespace l2c {
namespace cuda {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Device scratch from the caching allocator, returned (stream-ordered) when it goes out
// of scope, also when a later launch throws.
struct Scratch {
  int dev;
  void *p = nullptr;
  Scratch(int d, size_t bytes) : dev(d), p(bytes ? alloc(d, bytes) : nullptr) {}
  ~Scratch() {
    if (p) {
      try {
        free(dev, p);
      } catch (...) {
      }
    }
  }
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;
  float *f() const { return static_cast<float *>(p); }
};

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

// ---------------------------------------------------------------- adapter packing

// dst [K][rpad] float32 (zero past r): dst[k][j] = E(k, j) = src[k*s_k + j*s_j] of dtype dt.
// The layout rowproj stages from (16 consecutive j per k: coalesced).
__global__ void pack_adapter_kernel(const void *src, l2c_dtype dt, int64_t K, int64_t r, int64_t s_k, int64_t s_j,
                                    int64_t rpad, float *dst) {
  const int64_t n = K * rpad;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t k = i / rpad, j = i % rpad;
    dst[i] = j < r ? load_any(src, dt, k * s_k + j * s_j) : 0.0f;
  }
}

void pack_adapter(const void *src, l2c_dtype dt, int64_t K, int64_t r, int64_t s_k, int64_t s_j, int64_t rpad,
                  float *dst, cudaStream_t s) {
  pack_adapter_kernel<<<grid_stride_blocks(K * rpad), kElementwiseThreads, 0, s>>>(src, dt, K, r, s_k, s_j, rpad,
                                                                                    dst);
  L2C_CUDA_CHECK_LAUNCH("pack_adapter_kernel");
}

// ---------------------------------------------------------------- rowproj

// out[n][j] = scale · Σ_k X[n][k]·mult(n, k)·E[k][j] for j < r (out's row stride r);
// X [N][K] contiguous of dtype X; E packed [K][rpad] float32; mult the dropout
// multiplier of flat index n*K + k (kDrop) or 1.
// Block: 32 rows x 16 columns of out, 256 threads; K in chunks of 128: the chunk of X
// (dropped, float32) and of E go to shared memory, warp w sums k in [16w, 16w + 16) of
// the chunk with lane = row (X from shared memory, E broadcast as float4s), the next
// chunk's X loads are in flight meanwhile; at the end the 8 warps' partial sums are
// added in a fixed order.
constexpr int kRpRows = 32, kRpKc = 128, kRpRc = 16, kRpThreads = 256;
constexpr int kRpXsLd = kRpKc + 1;  // padded: lane = row reads a column without conflicts

struct RowProjArgs {
  const void *x;
  int64_t N, K;
  const float *e;  // [K][rpad]
  int64_t rpad, r;
  float *out;  // [N][r]
  float scale;
  uint64_t seed;
  uint32_t thr;
  float inv;
};

template <class X, bool kDrop>
__global__ void __launch_bounds__(kRpThreads) rowproj_kernel(const RowProjArgs a) {
  using T = typename X::T;
  __shared__ __align__(16) float sm[kRpRows * kRpXsLd + kRpKc * kRpRc];
  float *xs = sm;                     // xs[row][k]
  float *es = sm + kRpRows * kRpXsLd;  // es[k][j]  (offset 4128 floats: 16-byte aligned)
  static_assert((kRpRows * kRpXsLd) % 4 == 0, "es is float4-aligned");
  static_assert(8 * 32 * 17 <= kRpRows * kRpXsLd + kRpKc * kRpRc, "the reduction fits");

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int64_t n0 = (int64_t)blockIdx.x * kRpRows, j0 = (int64_t)blockIdx.y * kRpRc;
  const T *x = static_cast<const T *>(a.x);
  // This thread's share of a chunk: rows warp + 8i (i < 4), k offsets kq..kq+3.
  const int kq = lane * 4;

  float acc[kRpRc];
#pragma unroll
  for (int j = 0; j < kRpRc; j++) acc[j] = 0.0f;
  float xv[4][4];

  auto fetch = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int64_t n = n0 + warp + 8 * i;
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int64_t k = k0 + kq + u;
        xv[i][u] = n < a.N && k < a.K ? in_f32<X>(x[n * a.K + k]) : 0.0f;
      }
    }
  };
  auto stash = [&](int64_t k0) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const int row = warp + 8 * i;
      if constexpr (kDrop) {
        const unsigned bits = keep_run4(a.seed, (uint64_t)((n0 + row) * a.K + k0 + kq), a.thr);
#pragma unroll
        for (int u = 0; u < 4; u++) xv[i][u] *= ((bits >> u) & 1u) ? a.inv : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < 4; u++) xs[row * kRpXsLd + kq + u] = xv[i][u];
    }
#pragma unroll
    for (int t = 0; t < kRpKc * kRpRc / kRpThreads; t++) {
      const int idx = tid + kRpThreads * t;
      const int kk = idx / kRpRc, j = idx % kRpRc;
      const int64_t k = k0 + kk;
      es[idx] = k < a.K ? a.e[k * a.rpad + j0 + j] : 0.0f;  // j0 + j < rpad always
    }
  };

  if (a.K > 0) fetch(0);
  for (int64_t k0 = 0; k0 < a.K; k0 += kRpKc) {
    stash(k0);
    __syncthreads();
    if (k0 + kRpKc < a.K) fetch(k0 + kRpKc);  // in flight during the sums below
#pragma unroll 4
    for (int u = 0; u < kRpKc / 8; u++) {
      const int kk = warp * (kRpKc / 8) + u;
      const float v = xs[lane * kRpXsLd + kk];
      const float4 *e4 = reinterpret_cast<const float4 *>(es + kk * kRpRc);
#pragma unroll
      for (int q = 0; q < kRpRc / 4; q++) {
        const float4 e = e4[q];
        acc[4 * q] = fmaf(v, e.x, acc[4 * q]);
        acc[4 * q + 1] = fmaf(v, e.y, acc[4 * q + 1]);
        acc[4 * q + 2] = fmaf(v, e.z, acc[4 * q + 2]);
        acc[4 * q + 3] = fmaf(v, e.w, acc[4 * q + 3]);
      }
    }
    __syncthreads();  // before the next stash overwrites xs / es
  }

  // The 8 warps' partial sums of row `lane`, added in warp order.
  float *red = sm;  // red[(warp*32 + row)*17 + j]
#pragma unroll
  for (int j = 0; j < kRpRc; j++) red[(warp * 32 + lane) * 17 + j] = acc[j];
  __syncthreads();
#pragma unroll
  for (int t = 0; t < kRpRows * kRpRc / kRpThreads; t++) {
    const int o = tid + kRpThreads * t;
    const int row = o / kRpRc, j = o % kRpRc;
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < 8; w++) sum += red[(w * 32 + row) * 17 + j];
    const int64_t n = n0 + row, jj = j0 + j;
    if (n < a.N && jj < a.r) a.out[n * a.r + jj] = a.scale * sum;
  }
}

// out [N][r] = scale · drop?(X [N][K])·E, E(k, j) = e[k*s_k + j*s_j] (dtype edt).
template <class X>
void rowproj(int device, const void *x, int64_t N, int64_t K, const void *e, l2c_dtype edt, int64_t s_k, int64_t s_j,
             int64_t r, float scale, const Drop &drop, float *out, cudaStream_t s) {
  const int64_t rpad = ceil_div(r, kRpRc) * kRpRc;
  Scratch ep(device, (size_t)(K * rpad) * 4);
  if (K > 0) pack_adapter(e, edt, K, r, s_k, s_j, rpad, ep.f(), s);
  RowProjArgs a{x, N, K, ep.f(), rpad, r, out, scale, drop.seed, drop.thr, drop.inv};
  const dim3 grid((unsigned)ceil_div(N, kRpRows), (unsigned)(rpad / kRpRc));
  if (drop.on)
    rowproj_kernel<X, true><<<grid, kRpThreads, 0, s>>>(a);
  else
    rowproj_kernel<X, false><<<grid, kRpThreads, 0, s>>>(a);
  L2C_CUDA_CHECK_LAUNCH("rowproj_kernel");
}

// ---------------------------------------------------------------- colreduce

// partial[split][j][c] = Σ_{n in split} P[n][j]·X[n][c]·mult(n, c), j < r, c < C;
// P float32 [N][r]; X [N][C] contiguous; mult the dropout multiplier of flat index
// n*C + c (kDrop) or 1. Block: 1024 columns (4 consecutive per thread) x 16 j, over the
// rows of one split; P staged 64 rows at a time in shared memory (read as broadcast
// float4s).
constexpr int kCrThreads = 256, kCrCols = 4 * kCrThreads, kCrRows = 64, kCrRc = 16;

struct ColReduceArgs {
  const float *p;
  const void *x;
  int64_t N, C, r;
  int64_t rows_per_split;
  float *partial;  // [splits][r][C]
  uint64_t seed;
  uint32_t thr;
  float inv;
};

template <class X, bool kDrop>
__global__ void __launch_bounds__(kCrThreads) colreduce_kernel(const ColReduceArgs a) {
  using T = typename X::T;
  __shared__ __align__(16) float ps[kCrRows * kCrRc];
  const int tid = threadIdx.x;
  const int64_t c0 = (int64_t)blockIdx.x * kCrCols + 4 * tid;
  const int64_t nb = (int64_t)blockIdx.y * a.rows_per_split;
  const int64_t ne = std::min(a.N, nb + a.rows_per_split);
  const int64_t j0 = (int64_t)blockIdx.z * kCrRc;
  const T *x = static_cast<const T *>(a.x);

  float acc[4][kCrRc];
#pragma unroll
  for (int q = 0; q < 4; q++)
#pragma unroll
    for (int j = 0; j < kCrRc; j++) acc[q][j] = 0.0f;

  for (int64_t rb = nb; rb < ne; rb += kCrRows) {
    __syncthreads();  // the previous rows' P is no longer read
#pragma unroll
    for (int t = 0; t < kCrRows * kCrRc / kCrThreads; t++) {
      const int idx = tid + kCrThreads * t;
      const int row = idx / kCrRc, j = idx % kCrRc;
      const int64_t n = rb + row, jj = j0 + j;
      ps[idx] = n < ne && jj < a.r ? a.p[n * a.r + jj] : 0.0f;
    }
    __syncthreads();
    const int rows = (int)std::min<int64_t>(kCrRows, ne - rb);
#pragma unroll 2
    for (int u = 0; u < rows; u++) {
      const int64_t n = rb + u;
      float xv[4];
#pragma unroll
      for (int q = 0; q < 4; q++) xv[q] = c0 + q < a.C ? in_f32<X>(x[n * a.C + c0 + q]) : 0.0f;
      if constexpr (kDrop) {
        const unsigned bits = keep_run4(a.seed, (uint64_t)(n * a.C + c0), a.thr);
#pragma unroll
        for (int q = 0; q < 4; q++) xv[q] *= ((bits >> q) & 1u) ? a.inv : 0.0f;
      }
      const float4 *p4 = reinterpret_cast<const float4 *>(ps + u * kCrRc);
#pragma unroll
      for (int jq = 0; jq < kCrRc / 4; jq++) {
        const float4 pv = p4[jq];
#pragma unroll
        for (int q = 0; q < 4; q++) {
          acc[q][4 * jq] = fmaf(pv.x, xv[q], acc[q][4 * jq]);
          acc[q][4 * jq + 1] = fmaf(pv.y, xv[q], acc[q][4 * jq + 1]);
          acc[q][4 * jq + 2] = fmaf(pv.z, xv[q], acc[q][4 * jq + 2]);
          acc[q][4 * jq + 3] = fmaf(pv.w, xv[q], acc[q][4 * jq + 3]);
        }
      }
    }
  }
  float *part = a.partial + (int64_t)blockIdx.y * a.r * a.C;
#pragma unroll
  for (int j = 0; j < kCrRc; j++) {
    const int64_t jj = j0 + j;
    if (jj >= a.r) break;
#pragma unroll
    for (int q = 0; q < 4; q++)
      if (c0 + q < a.C) part[jj * a.C + c0 + q] = acc[q][j];
  }
}

// out[j*o_sj + c*o_sc] = scale · Σ_split partial[split][j][c], rounded to the adapter dtype.
template <class Ad>
__global__ void reduce_partials_kernel(const float *partial, int64_t splits, int64_t r, int64_t C, float scale,
                                       typename Ad::T *out, int64_t o_sj, int64_t o_sc) {
  const int64_t n = r * C;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float sum = 0.0f;
    for (int64_t s = 0; s < splits; s++) sum += partial[s * n + i];
    const int64_t j = i / C, c = i % C;
    out[j * o_sj + c * o_sc] = Ad::from_f32(scale * sum);
  }
}

// out (adapter dtype adt) [j*o_sj + c*o_sc] = scale · Σ_n P[n][j]·drop?(X[n][c]).
template <class X>
void colreduce(int device, const float *p, const void *x, int64_t N, int64_t C, int64_t r, const Drop &drop,
               float scale, l2c_dtype adt, void *out, int64_t o_sj, int64_t o_sc, cudaStream_t s) {
  int sms = 0;
  L2C_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t col_blocks = ceil_div(C, kCrCols), jb = ceil_div(r, kCrRc);
  // Enough blocks for ~4 per SM; splits of at least kCrRows rows; partials under 256 MiB.
  int64_t splits = std::max<int64_t>(1, ceil_div(4 * (int64_t)std::max(sms, 1), col_blocks * jb));
  splits = std::min({splits, ceil_div(N, kCrRows), kMaxGridYZ});
  while (splits > 1 && splits * r * C * 4 > (int64_t(256) << 20)) splits = (splits + 1) / 2;
  const int64_t rows_per_split = ceil_div(N, splits);
  splits = ceil_div(N, rows_per_split);
  Scratch partial(device, (size_t)(splits * r * C) * 4);
  ColReduceArgs a{p, x, N, C, r, rows_per_split, partial.f(), drop.seed, drop.thr, drop.inv};
  const dim3 grid((unsigned)col_blocks, (unsigned)splits, (unsigned)jb);
  if (drop.on)
    colreduce_kernel<X, true><<<grid, kCrThreads, 0, s>>>(a);
  else
    colreduce_kernel<X, false><<<grid, kCrThreads, 0, s>>>(a);
  L2C_CUDA_CHECK_LAUNCH("colreduce_kernel");
  L2C_FLOAT_DTYPE_SWITCH(adt, Ad, [&] {
    reduce_partials_kernel<Ad><<<grid_stride_blocks(r * C), kElementwiseThreads, 0, s>>>(
        partial.f(), splits, r, C, scale, static_cast<typename Ad::T *>(out), o_sj, o_sc);
    L2C_CUDA_CHECK_LAUNCH("reduce_partials_kernel");
  });
}

// ---------------------------------------------------------------- merge

// round(v) to float32 with round-to-odd, so that a later round-to-nearest to 16 bits
// equals rounding v to 16 bits directly (as cpu/lora.cc's round_odd_f32).
__device__ __forceinline__ float round_odd_f32(double v) {
  float f = __double2float_rn(v);
  if ((double)f != v && (__float_as_uint(f) & 0x7f800000u) != 0x7f800000u && !(__float_as_uint(f) & 1u))
    f = nextafterf(f, v > (double)f ? INFINITY : -INFINITY);
  return f;
}

// w[o][k] += s · Σ_j B[o][j]·A[j][k] (float32 Δ), one rounding per element.
template <class W>
__global__ void merge_kernel(typename W::T *w, const void *a, const void *b, l2c_dtype adt, int64_t out, int64_t in,
                             int64_t r, float s) {
  const int64_t n = out * in;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t o = i / in, k = i % in;
    float delta = 0.0f;
    for (int64_t j = 0; j < r; j++) delta = fmaf(load_any(b, adt, o * r + j), load_any(a, adt, j * in + k), delta);
    if constexpr (std::is_same<W, F32>::value) {
      w[i] = fmaf(s, delta, w[i]);
    } else {
      const double v = (double)in_f32<W>(w[i]) + (double)s * (double)delta;
      w[i] = W::from_f32(round_odd_f32(v));
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- entries

void lora_forward(int device, const LoraDims &d, const void *x, const void *weight, const void *a, const void *b,
                  const void *bias, void *y) {
  DeviceGuard guard(device);
  const int64_t N = d.n, in = d.in, out = d.out, r = d.r;
  if (N == 0 || out == 0) return;
  if (ceil_div(N, kRpRows) > 2147483647 || ceil_div(r, kRpRc) > kMaxGridYZ ||
      ceil_div(out, simt::kBN) > 2147483647)
    fail(L2C_INVALID_ARGUMENT, "lora_forward: sizes too large for the CUDA grid");
  cudaStream_t s = stream(device);
  const Drop drop = make_drop(d.p, d.seed);
  // s = scale·drop(x)·Aᵀ (empty, i.e. zero, when in == 0: the LoRA term is then 0).
  const bool lora = r > 0 && in > 0;
  Scratch t(device, lora ? (size_t)(N * r) * 4 : 0);
  L2C_FLOAT_DTYPE_SWITCH(d.dt, In, [&] {
    if (lora) rowproj<In>(device, x, N, in, a, d.adt, 1, in, r, d.scale, drop, t.f(), s);
    LoraEpi ep;
    ep.bias = bias;
    ep.s = t.f();
    ep.lds = r;
    ep.e = b;  // E(o, j) = B[o*r + j]
    ep.edt = d.adt;
    ep.e_sn = r;
    ep.e_sj = 1;
    ep.r = lora ? r : 0;
    // y [N, out] = x [N, in] · W [out, in]ᵀ (+ the epilogue).
    GemmArgs g{x, weight, y, 1, N, out, in, in, in, out, 0, 0, 0, false};
    launch_gemm<In, In, false, true, LoraEpi>(device, g, ep, s);
  });
}

void lora_backward(int device, const LoraDims &d, const void *dy, const void *x, const void *weight, const void *a,
                   const void *b, void *dx, void *d_a, void *d_b) {
  DeviceGuard guard(device);
  const int64_t N = d.n, in = d.in, out = d.out, r = d.r;
  cudaStream_t s = stream(device);
  const size_t es = elem_size(d.dt), eas = elem_size(d.adt);
  if (N == 0 || out == 0 || in == 0) {
    // out == 0: dy·W and g are empty sums (0); in == 0: x and t are empty (0).
    if (dx && N * in > 0) L2C_CUDA_CHECK(cudaMemsetAsync(dx, 0, (size_t)(N * in) * es, s));
    if (r * in > 0) L2C_CUDA_CHECK(cudaMemsetAsync(d_a, 0, (size_t)(r * in) * eas, s));
    if (out * r > 0) L2C_CUDA_CHECK(cudaMemsetAsync(d_b, 0, (size_t)(out * r) * eas, s));
    return;
  }
  if (!dx && r == 0) return;
  if (ceil_div(N, kRpRows) > 2147483647 || ceil_div(r, kRpRc) > kMaxGridYZ ||
      ceil_div(in, simt::kBN) > 2147483647 || ceil_div(std::max(in, out), kCrCols) > 2147483647)
    fail(L2C_INVALID_ARGUMENT, "lora_backward: sizes too large for the CUDA grid");
  const Drop drop = make_drop(d.p, d.seed);
  Scratch g(device, r > 0 ? (size_t)(N * r) * 4 : 0), t(device, r > 0 ? (size_t)(N * r) * 4 : 0);
  L2C_FLOAT_DTYPE_SWITCH(d.dt, In, [&] {
    // g = scale·dy·B  [N, r]: E(o, j) = B[o*r + j].
    if (r > 0) rowproj<In>(device, dy, N, out, b, d.adt, r, 1, r, d.scale, Drop{}, g.f(), s);
    if (dx) {
      // dx [N, in] = dy [N, out] · W [out, in] + drop'(g·A): E(k, j) = A[j*in + k].
      LoraEpi ep;
      ep.s = g.f();
      ep.lds = r;
      ep.e = a;
      ep.edt = d.adt;
      ep.e_sn = 1;
      ep.e_sj = in;
      ep.r = r;
      ep.mask = drop.on;
      ep.seed = drop.seed;
      ep.thr = drop.thr;
      ep.inv = drop.inv;
      ep.ldm = in;
      GemmArgs gg{dy, weight, dx, 1, N, in, out, out, in, in, 0, 0, 0, false};
      launch_gemm<In, In, false, false, LoraEpi>(device, gg, ep, s);
    }
    if (r > 0) {
      // t = drop(x)·Aᵀ [N, r]; d_a [r, in] = gᵀ·drop(x); d_b [out, r] = scale·(tᵀ·dy)ᵀ.
      rowproj<In>(device, x, N, in, a, d.adt, 1, in, r, 1.0f, drop, t.f(), s);
      colreduce<In>(device, g.f(), x, N, in, r, drop, 1.0f, d.adt, d_a, in, 1, s);
      colreduce<In>(device, t.f(), dy, N, out, r, Drop{}, d.scale, d.adt, d_b, 1, r, s);
    }
  });
}

void lora_merge(int device, const LoraDims &d, void *weight, const void *a, const void *b, int sign) {
  DeviceGuard guard(device);
  const int64_t in = d.in, out = d.out, r = d.r;
  if (in == 0 || out == 0 || r == 0) return;  // Δ = 0: round(w) = w
  cudaStream_t s = stream(device);
  const float sc = sign > 0 ? d.scale : -d.scale;
  L2C_FLOAT_DTYPE_SWITCH(d.dt, W, [&] {
    merge_kernel<W><<<grid_stride_blocks(out * in), kElementwiseThreads, 0, s>>>(static_cast<typename W::T *>(weight),
                                                                                 a, b, d.adt, out, in, r, sc);
    L2C_CUDA_CHECK_LAUNCH("merge_kernel");
  });
}

}  // namespace cuda
}  // namespace l2c
