// elementwise.cu: the CUDA twins of cpu/ops.cc's cast, fill and random. Each is a
// grid-stride loop over the flat tensor (64-bit indices), templated on dtype tags from
// cuda_common.cuh; conversions come from half.h and random values from philox.h, so the
// results are bit-identical to the CPU's. Built by nvcc.
#include <string>

#include "backend.h"
#include "cuda_common.cuh"
#include "philox.h"

namespace l2c {
namespace cuda {
namespace {

// ---- kernels: x (n), flat ----

// dst[i] = src[i] converted through float32, which holds every bfloat16, float16 and
// (after one rounding) int32 value; int32 -> bfloat16 is the exception, rounded once
// from the exact integer as the CPU does. Not __restrict__: an in-place cast between
// dtypes of one size (float32 <-> int32, bfloat16 <-> float16) is well defined.
template <typename Src, typename Dst>
__global__ void cast_kernel(const typename Src::T *src, typename Dst::T *dst, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    if constexpr (Src::kDtype == L2C_INT32 && Dst::kDtype == L2C_BFLOAT16)
      dst[i] = i32_to_bf16(src[i]);
    else
      dst[i] = Dst::from_f32(Src::to_f32(src[i]));
  }
}

// dst[i] = bits, the value already converted to the dtype on the host.
template <typename Bits>
__global__ void fill_kernel(Bits *__restrict__ dst, Bits bits, int64_t n) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = bits;
}

// dst[i] = uniform in [a, b) or normal (mean a, std b) for element i of the seed's draw.
// Each element runs its own Philox block (4x the minimum work) so that the value is the
// exact function philox.h defines; random fills are not on any hot path yet.
template <typename Dst, bool kNormal>
__global__ void random_kernel(typename Dst::T *__restrict__ dst, int64_t n, uint64_t seed,
                              float a, float b) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    float v;
    if constexpr (kNormal)
      v = philox::normal((uint64_t)i, seed, a, b);
    else
      v = philox::uniform((uint64_t)i, seed, a, b);
    dst[i] = Dst::from_f32(v);
  }
}

// ---- host side ----

int cuda_device_of(const l2c_tensor &t, const char *what) {
  if (t.device.type != L2C_CUDA)
    fail(L2C_DEVICE_MISMATCH, std::string(what) + ": tensor is not on a CUDA device");
  return t.device.index;
}

// double -> int32 as the CPU's fill does: toward zero, NaN -> 0, saturating.
int32_t f64_to_i32_sat(double v) {
  if (!(v == v)) return 0;
  if (v >= 2147483647.0) return 2147483647;
  if (v <= -2147483648.0) return -2147483647 - 1;
  return (int32_t)v;
}

template <typename Bits>
void launch_fill(void *dst, Bits bits, int64_t n, cudaStream_t s) {
  fill_kernel<Bits><<<grid_stride_blocks(n), kElementwiseThreads, 0, s>>>(static_cast<Bits *>(dst), bits, n);
  L2C_CUDA_CHECK_LAUNCH("fill_kernel");
}

}  // namespace

// dst (n) = src (n) converted; see cpu::cast for the rounding rules.
void cast(const l2c_tensor &dst, const l2c_tensor &src) {
  int device = cuda_device_of(dst, "cast: dst");
  if (cuda_device_of(src, "cast: src") != device)
    fail(L2C_DEVICE_MISMATCH, "cast: dst on cuda:" + std::to_string(device) + ", src on cuda:" +
                                  std::to_string(src.device.index));
  const int64_t n = numel(dst);
  if (numel(src) != n)
    fail(L2C_SHAPE_MISMATCH, "cast: dst " + shape_str(dst) + " and src " + shape_str(src) +
                                 " differ in size");
  DeviceGuard guard(device);
  if (n == 0) return;
  cudaStream_t s = stream(device);
  if (dst.dtype == src.dtype) {  // a byte copy, as on the CPU (NaN payloads kept)
    if (dst.data != src.data)
      L2C_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, (size_t)n * elem_size(dst.dtype),
                                     cudaMemcpyDeviceToDevice, s));
    return;
  }
  L2C_DTYPE_SWITCH(src.dtype, Src, [&] {
    L2C_DTYPE_SWITCH(dst.dtype, Dst, [&] {
      cast_kernel<Src, Dst><<<grid_stride_blocks(n), kElementwiseThreads, 0, s>>>(
          static_cast<const typename Src::T *>(src.data), static_cast<typename Dst::T *>(dst.data), n);
      L2C_CUDA_CHECK_LAUNCH("cast_kernel");
    });
  });
}

// dst (n) = value, converted once here exactly as cpu::fill converts it.
void fill(const l2c_tensor &dst, double value) {
  int device = cuda_device_of(dst, "fill");
  DeviceGuard guard(device);
  const int64_t n = numel(dst);
  if (n == 0) return;
  cudaStream_t s = stream(device);
  switch (dst.dtype) {
    case L2C_FLOAT32: return launch_fill<uint32_t>(dst.data, f32_bits((float)value), n, s);
    case L2C_INT32: return launch_fill<uint32_t>(dst.data, (uint32_t)f64_to_i32_sat(value), n, s);
    case L2C_BFLOAT16: return launch_fill<uint16_t>(dst.data, f32_to_bf16((float)value), n, s);
    case L2C_FLOAT16: return launch_fill<uint16_t>(dst.data, f32_to_f16((float)value), n, s);
  }
  fail(L2C_DTYPE_MISMATCH, "fill: unknown dtype " + std::to_string((int)dst.dtype));
}

// dst (n): element i = philox::uniform(i, seed, a, b) or philox::normal(i, seed, a, b)
// with a, b rounded to float32 (as the CPU does), then converted to dst's dtype.
void random(const l2c_tensor &dst, l2c_random_kind kind, uint64_t seed, double a, double b) {
  int device = cuda_device_of(dst, "random");
  if (dst.dtype == L2C_INT32)
    fail(L2C_DTYPE_MISMATCH, "random: int32 " + shape_str(dst) + " must be a float dtype");
  if (kind != L2C_RANDOM_UNIFORM && kind != L2C_RANDOM_NORMAL)
    fail(L2C_INVALID_ARGUMENT, "random: unknown kind " + std::to_string((int)kind));
  DeviceGuard guard(device);
  const int64_t n = numel(dst);
  if (n == 0) return;
  cudaStream_t s = stream(device);
  const float fa = (float)a, fb = (float)b;
  L2C_FLOAT_DTYPE_SWITCH(dst.dtype, Dst, [&] {
    L2C_BOOL_SWITCH(kind == L2C_RANDOM_NORMAL, kNormal, [&] {
      random_kernel<Dst, kNormal><<<grid_stride_blocks(n), kElementwiseThreads, 0, s>>>(
          static_cast<typename Dst::T *>(dst.data), n, seed, fa, fb);
      L2C_CUDA_CHECK_LAUNCH("random_kernel");
    });
  });
}

}  // namespace cuda
}  // namespace l2c
