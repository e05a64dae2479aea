// layers_common.cuh: what the CUDA kernels of the layers family (layers.cu,
// layers_norm.cu, layers_act.cu) share: stream-ordered scratch memory, deterministic
// warp / block reductions (fixed shuffle trees: the same launch gives the same bits),
// vector loads and stores of V elements of any storage dtype through float32, a float32
// copy of a weight vector of any dtype, and launch helpers. Included only by nvcc.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "backend.h"
#include "cuda_common.cuh"

namespace l2c {
namespace cuda {
namespace layers {

// ---- launch sizes ----

constexpr int kWarp = 32;
// Grid-stride loops over rows / items never need more blocks than this (the loops cover
// the rest); far below gridDim.x's limit of 2^31 - 1.
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

inline unsigned blocks_for(int64_t items, int64_t per_block) {
  int64_t b = (items + per_block - 1) / per_block;
  return (unsigned)std::max<int64_t>(1, std::min(b, kMaxBlocks));
}

inline bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// ---- scratch memory ----

// A device buffer from the caching allocator, given back when it goes out of scope. The
// allocator is stream-ordered (every user works on stream(device)), so freeing right
// after queuing the kernels that use it is safe: the next owner's work queues after them.
class Scratch {
 public:
  Scratch(int device, size_t bytes) : device_(device), p_(bytes ? alloc(device, bytes) : nullptr) {}
  ~Scratch() {
    if (p_) {
      try {
        free(device_, p_);
      } catch (...) {
      }
    }
  }
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;
  float *f32() const { return static_cast<float *>(p_); }
  void *get() const { return p_; }

 private:
  int device_;
  void *p_;
};

// ---- reductions ----

// Butterfly (xor) reductions: at every step lane l adds v[l ^ m] to v[l] and lane l ^ m
// adds v[l] to v[l ^ m], the same two operands in the other order, which IEEE addition
// rounds identically; so every lane ends with the same, reproducible value.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}
// fmaxf drops NaN operands (as the CPU's max does); callers that must see NaN get it
// back through the arithmetic on the row (exp(NaN - max) is NaN).
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024; every thread calls it):
// warp sums, then every warp reduces the warps' partials itself (the same tree, so the
// same value everywhere). sh holds 32 floats; the leading barrier lets consecutive calls
// reuse it.
__device__ __forceinline__ float block_sum(float v, float *sh) {
  v = warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  return warp_sum(lane < nw ? sh[lane] : 0.0f);
}
__device__ __forceinline__ float block_max(float v, float *sh) {
  v = warp_max(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  return warp_max(lane < nw ? sh[lane] : -INFINITY);
}

// ---- per-row scalars without IEEE division / sqrt ----
//
// div.rn and sqrt.rn (float32 and float64) expand to a fast path plus a slow-path
// subroutine, and saving registers around that call made ptxas spill in some row
// kernels. The row kernels therefore get 1/D from the host (float64) and use the float64
// reciprocal square root (rsqrt.approx.f64: MUFU seed + Newton steps in ptxas, about an
// ulp of float64): results then round to float32, where they equal the CPU's correctly
// rounded quotients except when the exact value lies within ~1e-16 relative of a float32
// rounding boundary.

// 1 / x for x in [1, 2^60] or NaN (a softmax row's sum): rsqrt squared, then a Newton step.
__device__ __forceinline__ double recip_pos(double x) {
  double r = rsqrt(x);
  r *= r;
  return r * (2.0 - x * r);
}

// ---- vector loads / stores ----

// V elements of T in one access (V * sizeof(T) bytes, at most 16 per instruction; an
// access of 32 bytes, float x 8, is two of 16). Callers guarantee the alignment.
template <typename T, int V>
struct alignas(sizeof(T) * V < 16 ? sizeof(T) * V : 16) Pack {
  T v[V];
};

// out[k] = float(p[k]), k < V; p aligned to the pack.
template <typename Tag, int V>
__device__ __forceinline__ void load_v(const typename Tag::T *p, float (&out)[V]) {
  using T = typename Tag::T;
  const Pack<T, V> pk = *reinterpret_cast<const Pack<T, V> *>(p);
#pragma unroll
  for (int k = 0; k < V; k++) out[k] = Tag::to_f32(pk.v[k]);
}
// p[k] = in[k] rounded to the storage dtype (once), k < V.
template <typename Tag, int V>
__device__ __forceinline__ void store_v(typename Tag::T *p, const float (&in)[V]) {
  using T = typename Tag::T;
  Pack<T, V> pk;
#pragma unroll
  for (int k = 0; k < V; k++) pk.v[k] = Tag::from_f32(in[k]);
  *reinterpret_cast<Pack<T, V> *>(p) = pk;
}

// Elements per 16-byte access of a dtype.
template <typename Tag>
constexpr int vec_width() {
  return 16 / (int)sizeof(typename Tag::T);
}

// ---- a float32 view of a small vector of any float dtype (weights, biases) ----

template <typename Tag>
__global__ void widen_kernel(const typename Tag::T *__restrict__ src, float *__restrict__ dst, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) dst[i] = Tag::to_f32(src[i]);
}

// The vector itself when it is float32 (or null), else a float32 copy in scratch memory.
class WidenedDev {
 public:
  WidenedDev(int device, const void *src, l2c_dtype dt, int64_t n)
      : buf_(device, src && dt != L2C_FLOAT32 && n > 0 ? (size_t)n * sizeof(float) : 0) {
    if (!src) return;
    if (dt == L2C_FLOAT32 || n == 0) {
      p_ = static_cast<const float *>(src);
      return;
    }
    cudaStream_t s = stream(device);
    L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
      widen_kernel<Tag><<<grid_stride_blocks(n), kElementwiseThreads, 0, s>>>(
          static_cast<const typename Tag::T *>(src), buf_.f32(), n);
      L2C_CUDA_CHECK_LAUNCH("widen_kernel");
    });
    p_ = buf_.f32();
  }
  const float *get() const { return p_; }

 private:
  Scratch buf_;
  const float *p_ = nullptr;
};

// ---- the second stage of a split reduction ----

// out[o] = alpha * (sum of part[o * C .. o * C + C)), rounded once to Out. C == 1: a
// thread per output; else a warp per output, lanes over the chunks in order, then the
// warp's tree (deterministic).
template <typename Out>
__global__ void __launch_bounds__(256) partials_final_kernel(const float *__restrict__ part, int64_t nout, int64_t C,
                                                             float alpha, typename Out::T *__restrict__ out) {
  if (C == 1) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < nout; o += stride)
      out[o] = Out::from_f32(alpha * part[o]);
    return;
  }
  const int lane = threadIdx.x & 31;
  const int64_t wpb = blockDim.x / 32;
  for (int64_t o = (int64_t)blockIdx.x * wpb + threadIdx.x / 32; o < nout; o += (int64_t)gridDim.x * wpb) {
    float s = 0.0f;
    for (int64_t c = lane; c < C; c += 32) s += part[o * C + c];
    s = warp_sum(s);
    if (lane == 0) out[o] = Out::from_f32(alpha * s);
  }
}

template <typename Out>
void launch_partials_final(const float *part, int64_t nout, int64_t C, float alpha, typename Out::T *out,
                           cudaStream_t s) {
  if (nout == 0) return;
  const unsigned blocks = C == 1 ? blocks_for(nout, 256) : blocks_for(nout, 256 / 32);
  partials_final_kernel<Out><<<blocks, 256, 0, s>>>(part, nout, C, alpha, out);
  L2C_CUDA_CHECK_LAUNCH("partials_final_kernel");
}

}  // namespace layers
}  // namespace cuda
}  // namespace l2c
