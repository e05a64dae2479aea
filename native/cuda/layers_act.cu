// layers_act.cu: CUDA kernels of the pointwise ops: GELU (erf and tanh forms), QuickGELU,
// SwiGLU, dropout (the Philox mask of core/dropout.h, bit for bit the CPU's), and the
// rotary embedding. Twins of cpu/layers_act.cc, with the same formulas.
//
// Pointwise ops are grid-stride loops over the flat tensors (float32 math, each output
// rounded once). Dropout: a thread per group of four elements, one Philox call each
// (element 4c + l takes word l of counter c, as dropout::keep4); the kept value is one
// correctly rounded float32 product x * scale on both devices, so CPU and CUDA outputs
// agree bit for bit, not only the masks. Rope: a block per token; the block first puts
// cos / sin of position * inv_freq[i] (both in float64, then rounded to float32, as the
// CPU) for the D/2 frequencies in shared memory, then rotates every head's pairs.
#include <string>
#include <vector>

#include "dropout.h"
#include "layers_common.cuh"
#include "layers_cuda.h"

namespace l2c {
namespace cuda {
namespace layers {
namespace {

constexpr float kSqrt1_2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kGeluC = 0.044715f;
constexpr float kQuickK = 1.702f;

// sigmoid(x) and 1 - sigmoid(x) without cancellation (cpu layers_util.h sigmoid_pair).
__device__ __forceinline__ float sigmoid_pair(float x, float &oms) {
  const float e = expf(-x);
  const float s = 1.0f / (1.0f + e);
  oms = x >= 0.0f ? e * s : 1.0f - s;
  return s;
}

// act(x), or act'(x) for the backward.
template <int KIND, bool kBack>
__device__ __forceinline__ float act(float x) {
  if constexpr (KIND == L2C_ACT_GELU) {
    const float f = erfcf(-x * kSqrt1_2);  // 1 + erf(x / sqrt 2), no cancellation
    if constexpr (!kBack) return 0.5f * x * f;
    else return 0.5f * f + x * kInvSqrt2Pi * expf(-0.5f * x * x);
  } else if constexpr (KIND == L2C_ACT_GELU_TANH) {
    // 0.5 x (1 + tanh u) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).
    float oms;
    const float s = sigmoid_pair(2.0f * kSqrt2OverPi * (x + kGeluC * x * x * x), oms);
    if constexpr (!kBack) return x * s;
    const float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluC * x * x);
    return s + 2.0f * x * s * oms * du;
  } else {
    float oms;
    const float s = sigmoid_pair(kQuickK * x, oms);
    if constexpr (!kBack) return x * s;
    return s + kQuickK * x * s * oms;
  }
}

template <typename Tag, int KIND>
__global__ void __launch_bounds__(kElementwiseThreads) act_fwd_kernel(const typename Tag::T *__restrict__ x,
                                                                      typename Tag::T *__restrict__ y, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = Tag::from_f32(act<KIND, false>(Tag::to_f32(x[i])));
}

template <typename Tag, int KIND>
__global__ void __launch_bounds__(kElementwiseThreads) act_bwd_kernel(const typename Tag::T *__restrict__ dy,
                                                                      const typename Tag::T *__restrict__ x,
                                                                      typename Tag::T *__restrict__ dx, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = Tag::from_f32(Tag::to_f32(dy[i]) * act<KIND, true>(Tag::to_f32(x[i])));
}

// out = silu(gate) * up.
template <typename Tag>
__global__ void __launch_bounds__(kElementwiseThreads) swiglu_fwd_kernel(const typename Tag::T *__restrict__ gate,
                                                                         const typename Tag::T *__restrict__ up,
                                                                         typename Tag::T *__restrict__ out, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = Tag::to_f32(gate[i]);
    float oms;
    const float s = sigmoid_pair(g, oms);
    out[i] = Tag::from_f32(g * s * Tag::to_f32(up[i]));
  }
}

// dgate = dy up sigmoid(g) (1 + g (1 - sigmoid(g))), dup = dy silu(g).
template <typename Tag>
__global__ void __launch_bounds__(kElementwiseThreads) swiglu_bwd_kernel(const typename Tag::T *__restrict__ dy,
                                                                         const typename Tag::T *__restrict__ gate,
                                                                         const typename Tag::T *__restrict__ up,
                                                                         typename Tag::T *__restrict__ dgate,
                                                                         typename Tag::T *__restrict__ dup, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = Tag::to_f32(gate[i]), u = Tag::to_f32(up[i]), d = Tag::to_f32(dy[i]);
    float oms;
    const float s = sigmoid_pair(g, oms);
    const float silu = g * s;
    dgate[i] = Tag::from_f32(d * u * s * (1.0f + g * oms));
    dup[i] = Tag::from_f32(d * silu);
  }
}

// y[4c + l] = keep ? x * scale : 0 for the group c of four elements (the last may be
// partial): bit l of dropout::keep4(seed, c, thresh).
template <typename Tag>
__global__ void __launch_bounds__(kElementwiseThreads) dropout_kernel(const typename Tag::T *__restrict__ x,
                                                                      typename Tag::T *__restrict__ y, int64_t n,
                                                                      uint64_t seed, uint32_t thresh, float scale) {
  const int64_t groups = (n + 3) / 4;
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < groups; c += stride) {
    const unsigned k4 = dropout::keep4(seed, (uint64_t)c, thresh);
#pragma unroll
    for (int l = 0; l < 4; l++) {
      const int64_t i = 4 * c + l;
      if (i < n) y[i] = Tag::from_f32((k4 >> l & 1u) ? __fmul_rn(Tag::to_f32(x[i]), scale) : 0.0f);
    }
  }
}

// Rope over tokens t < ntok (x [ntok, H, D], h = D / 2): out[i] = x[i] c - x[i+h] s,
// out[i+h] = x[i+h] c + x[i] s with c = cos(a), s = sign sin(a), a = p inv_freq[i] in
// float64. table: cos / sin of the token's h angles first computed into shared memory
// (2h floats); else (huge D) each pair computes its own.
template <typename Tag>
__global__ void __launch_bounds__(256) rope_kernel(const typename Tag::T *__restrict__ x,
                                                   const int32_t *__restrict__ positions, bool per_batch,
                                                   const double *__restrict__ inv_freq,
                                                   typename Tag::T *__restrict__ out, int64_t ntok, int64_t S,
                                                   int64_t H, int64_t h, double sign, bool table) {
  extern __shared__ float tab[];  // [2h]: cos, then sign * sin
  const int64_t D = 2 * h, pairs = H * h;
  const bool small = pairs <= (int64_t)0xffffffff;
  for (int64_t t = blockIdx.x; t < ntok; t += gridDim.x) {  // uniform over the block
    const double p = (double)positions[per_batch ? t : t % S];
    if (table) {
      __syncthreads();  // the previous token's readers are done with tab
      for (int64_t i = threadIdx.x; i < h; i += blockDim.x) {
        double sn, cs;
        sincos(p * inv_freq[i], &sn, &cs);
        tab[i] = (float)cs;
        tab[h + i] = (float)(sign * sn);
      }
      __syncthreads();
    }
    const typename Tag::T *xr = x + t * H * D;
    typename Tag::T *orow = out + t * H * D;
    for (int64_t k = threadIdx.x; k < pairs; k += blockDim.x) {
      int64_t hd, i;
      if (small) {  // 32-bit division
        const uint32_t q = (uint32_t)k / (uint32_t)h;
        hd = q;
        i = (int64_t)((uint32_t)k - q * (uint32_t)h);
      } else {
        hd = k / h;
        i = k - hd * h;
      }
      float c, s;
      if (table) {
        c = tab[i];
        s = tab[h + i];
      } else {
        double sn, cs;
        sincos(p * inv_freq[i], &sn, &cs);
        c = (float)cs;
        s = (float)(sign * sn);
      }
      const int64_t o = hd * D + i;
      const float x1 = Tag::to_f32(xr[o]), x2 = Tag::to_f32(xr[o + h]);
      orow[o] = Tag::from_f32(x1 * c - x2 * s);
      orow[o + h] = Tag::from_f32(x2 * c + x1 * s);
    }
  }
}

constexpr int64_t kRopeTableMax = 6144;  // 2 * 6144 floats = 48 KiB of shared memory

}  // namespace

// ---------------------------------------------------------------- entries

void activation_forward(int device, int kind, const void *x, l2c_dtype dt, void *y, int64_t n) {
  DeviceGuard guard(device);
  if (n == 0) return;
  cudaStream_t s = stream(device);
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
    using T = typename Tag::T;
    const T *xp = static_cast<const T *>(x);
    T *yp = static_cast<T *>(y);
    const unsigned blocks = grid_stride_blocks(n);
    switch (kind) {
      case L2C_ACT_GELU: act_fwd_kernel<Tag, L2C_ACT_GELU><<<blocks, kElementwiseThreads, 0, s>>>(xp, yp, n); break;
      case L2C_ACT_GELU_TANH:
        act_fwd_kernel<Tag, L2C_ACT_GELU_TANH><<<blocks, kElementwiseThreads, 0, s>>>(xp, yp, n);
        break;
      case L2C_ACT_QUICK_GELU:
        act_fwd_kernel<Tag, L2C_ACT_QUICK_GELU><<<blocks, kElementwiseThreads, 0, s>>>(xp, yp, n);
        break;
      default: fail(L2C_INVALID_ARGUMENT, "activation: unknown activation " + std::to_string(kind));
    }
    L2C_CUDA_CHECK_LAUNCH("act_fwd_kernel");
  });
}

void activation_backward(int device, int kind, const void *dy, const void *x, l2c_dtype dt, void *dx, int64_t n) {
  DeviceGuard guard(device);
  if (n == 0) return;
  cudaStream_t s = stream(device);
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
    using T = typename Tag::T;
    const T *dyp = static_cast<const T *>(dy), *xp = static_cast<const T *>(x);
    T *dxp = static_cast<T *>(dx);
    const unsigned blocks = grid_stride_blocks(n);
    switch (kind) {
      case L2C_ACT_GELU:
        act_bwd_kernel<Tag, L2C_ACT_GELU><<<blocks, kElementwiseThreads, 0, s>>>(dyp, xp, dxp, n);
        break;
      case L2C_ACT_GELU_TANH:
        act_bwd_kernel<Tag, L2C_ACT_GELU_TANH><<<blocks, kElementwiseThreads, 0, s>>>(dyp, xp, dxp, n);
        break;
      case L2C_ACT_QUICK_GELU:
        act_bwd_kernel<Tag, L2C_ACT_QUICK_GELU><<<blocks, kElementwiseThreads, 0, s>>>(dyp, xp, dxp, n);
        break;
      default: fail(L2C_INVALID_ARGUMENT, "activation_backward: unknown activation " + std::to_string(kind));
    }
    L2C_CUDA_CHECK_LAUNCH("act_bwd_kernel");
  });
}

void swiglu_forward(int device, const void *gate, const void *up, l2c_dtype dt, void *out, int64_t n) {
  DeviceGuard guard(device);
  if (n == 0) return;
  cudaStream_t s = stream(device);
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
    using T = typename Tag::T;
    swiglu_fwd_kernel<Tag><<<grid_stride_blocks(n), kElementwiseThreads, 0, s>>>(
        static_cast<const T *>(gate), static_cast<const T *>(up), static_cast<T *>(out), n);
    L2C_CUDA_CHECK_LAUNCH("swiglu_fwd_kernel");
  });
}

void swiglu_backward(int device, const void *dy, const void *gate, const void *up, l2c_dtype dt, void *dgate,
                     void *dup, int64_t n) {
  DeviceGuard guard(device);
  if (n == 0) return;
  cudaStream_t s = stream(device);
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
    using T = typename Tag::T;
    swiglu_bwd_kernel<Tag><<<grid_stride_blocks(n), kElementwiseThreads, 0, s>>>(
        static_cast<const T *>(dy), static_cast<const T *>(gate), static_cast<const T *>(up), static_cast<T *>(dgate),
        static_cast<T *>(dup), n);
    L2C_CUDA_CHECK_LAUNCH("swiglu_bwd_kernel");
  });
}

void dropout(int device, const void *x, l2c_dtype dt, void *y, int64_t n, float p, uint64_t seed) {
  DeviceGuard guard(device);
  if (n == 0) return;
  cudaStream_t s = stream(device);
  const uint32_t thresh = ::l2c::dropout::threshold(p);
  const float scale = ::l2c::dropout::scale(p);
  const int64_t groups = (n + 3) / 4;
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
    using T = typename Tag::T;
    dropout_kernel<Tag><<<grid_stride_blocks(groups), kElementwiseThreads, 0, s>>>(
        static_cast<const T *>(x), static_cast<T *>(y), n, seed, thresh, scale);
    L2C_CUDA_CHECK_LAUNCH("dropout_kernel");
  });
}

void rope(int device, const void *x, l2c_dtype dt, const int32_t *positions, bool per_batch, const double *inv_freq,
          void *out, int64_t B, int64_t S, int64_t H, int64_t D, int sign) {
  DeviceGuard guard(device);
  const int64_t ntok = B * S, h = D / 2;
  if (ntok == 0 || H * D == 0) return;
  cudaStream_t s = stream(device);
  // inv_freq to the device: copy_h2d returns once the pageable source is staged.
  Scratch freq(device, (size_t)h * sizeof(double));
  copy_h2d(device, freq.get(), inv_freq, (size_t)h * sizeof(double));
  const bool table = h <= kRopeTableMax;
  const size_t smem = table ? (size_t)(2 * h) * sizeof(float) : 0;
  const int64_t pairs = H * h;
  const unsigned threads = (unsigned)std::max<int64_t>(32, std::min<int64_t>(256, (pairs + 31) / 32 * 32));
  L2C_FLOAT_DTYPE_SWITCH(dt, Tag, [&] {
    using T = typename Tag::T;
    rope_kernel<Tag><<<blocks_for(ntok, 1), threads, smem, s>>>(
        static_cast<const T *>(x), positions, per_batch, static_cast<const double *>(freq.get()), static_cast<T *>(out),
        ntok, S, H, h, (double)sign, table);
    L2C_CUDA_CHECK_LAUNCH("rope_kernel");
  });
}

}  // namespace layers
}  // namespace cuda
}  // namespace l2c
