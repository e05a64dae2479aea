// cuda_common.cuh: what every file of the CUDA backend shares: CUDA errors turned into
// l2c::Error (L2C_CUDA_CHECK, L2C_CUDA_CHECK_LAUNCH), the device guard, the one stream
// per device that all backend work is ordered on, launch-size helpers, and the dtype
// tags (F32, BF16, F16, I32) that kernels are templated on, with their dispatch switches.
// Included only by native/cuda/*.cu (nvcc).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "common.h"
#include "half.h"

namespace l2c {
namespace cuda {

// ---- errors ----

// Throws l2c::Error for a failed CUDA call: cudaErrorMemoryAllocation -> OUT_OF_MEMORY;
// no device, driver or kernel image for this GPU -> DEVICE_UNAVAILABLE; anything else
// INTERNAL. The message names the CUDA error, the call and the source line. Also clears
// the thread's last CUDA error, so that the next launch check does not report it again.
[[noreturn]] void throw_cuda_error(cudaError_t err, const char *call, const char *file, int line);

inline void check_cuda(cudaError_t err, const char *call, const char *file, int line) {
  if (err != cudaSuccess) throw_cuda_error(err, call, file, line);
}

#define L2C_CUDA_CHECK(call) ::l2c::cuda::check_cuda((call), #call, __FILE__, __LINE__)
// After every <<<...>>>: a bad launch configuration is only reported by cudaGetLastError.
#define L2C_CUDA_CHECK_LAUNCH(kernel_name) \
  ::l2c::cuda::check_cuda(cudaGetLastError(), "launch of " kernel_name, __FILE__, __LINE__)

// ---- devices and streams (device.cu) ----

// Throws DEVICE_UNAVAILABLE unless 0 <= device < device_count().
void require_device(int device);

// Makes `device` current for the guard's lifetime, then restores the previous one.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : device_(device) {
    require_device(device);
    L2C_CUDA_CHECK(cudaGetDevice(&prev_));
    if (prev_ != device_) L2C_CUDA_CHECK(cudaSetDevice(device_));
  }
  // Restoring a device that was current a moment ago cannot fail in a way we could act
  // on, and a destructor must not throw.
  ~DeviceGuard() {
    if (prev_ != device_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard &) = delete;
  DeviceGuard &operator=(const DeviceGuard &) = delete;

 private:
  int device_;
  int prev_ = 0;
};

// The backend's stream on `device`: one non-blocking stream per device, created on first
// use and kept for the life of the process. Every kernel, copy and allocator reuse of the
// backend is ordered on it, which is what makes the allocator's free stream-ordered.
cudaStream_t stream(int device);

// ---- launch sizes ----

constexpr int kElementwiseThreads = 256;
// Grid-stride loops need no more blocks than fill the GPU a few times over: 4096 blocks of
// 256 threads is ~4 waves on a 132-SM H100 (2048 threads/SM); more only adds launch cost.
constexpr int64_t kMaxGridStrideBlocks = 4096;

inline unsigned grid_stride_blocks(int64_t n, int threads = kElementwiseThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  return (unsigned)std::max<int64_t>(1, std::min(blocks, kMaxGridStrideBlocks));
}

// ---- dtypes ----

inline size_t elem_size(l2c_dtype d) {
  switch (d) {
    case L2C_FLOAT32: return 4;
    case L2C_BFLOAT16: return 2;
    case L2C_FLOAT16: return 2;
    case L2C_INT32: return 4;
  }
  fail(L2C_DTYPE_MISMATCH, "unknown dtype " + std::to_string((int)d));
}

// float -> int32 as the CPU casts it: toward zero, NaN -> 0, saturating at the ends.
L2C_HD int32_t f32_to_i32_sat(float f) {
  if (!(f == f)) return 0;
  if (f >= 2147483648.0f) return 2147483647;
  if (f <= -2147483648.0f) return (-2147483647 - 1);
  return (int32_t)f;
}

// Tags: storage type T, and loads/stores through float32, the type all kernels compute
// in. I32's from_f32 saturates; its to_f32 rounds to nearest even.
struct F32 {
  using T = float;
  static constexpr l2c_dtype kDtype = L2C_FLOAT32;
  static L2C_HD float to_f32(T v) { return v; }
  static L2C_HD T from_f32(float f) { return f; }
};
struct BF16 {
  using T = uint16_t;
  static constexpr l2c_dtype kDtype = L2C_BFLOAT16;
  static L2C_HD float to_f32(T v) { return bf16_to_f32(v); }
  static L2C_HD T from_f32(float f) { return f32_to_bf16(f); }
};
struct F16 {
  using T = uint16_t;
  static constexpr l2c_dtype kDtype = L2C_FLOAT16;
  static L2C_HD float to_f32(T v) { return f16_to_f32(v); }
  static L2C_HD T from_f32(float f) { return f32_to_f16(f); }
};
struct I32 {
  using T = int32_t;
  static constexpr l2c_dtype kDtype = L2C_INT32;
  static L2C_HD float to_f32(T v) { return (float)v; }
  static L2C_HD T from_f32(float f) { return f32_to_i32_sat(f); }
};

}  // namespace cuda
}  // namespace l2c

// FlashAttention-style dispatch: runtime values become compile-time names inside the
// lambda passed as the last argument, e.g.
//   L2C_FLOAT_DTYPE_SWITCH(p.in_dtype, In, [&] { launch<In>(...); });
#define L2C_FLOAT_DTYPE_SWITCH(DTYPE, TAG, ...)                                      \
  [&] {                                                                              \
    switch (DTYPE) {                                                                 \
      case L2C_FLOAT32: { using TAG = ::l2c::cuda::F32; return __VA_ARGS__(); }      \
      case L2C_BFLOAT16: { using TAG = ::l2c::cuda::BF16; return __VA_ARGS__(); }    \
      case L2C_FLOAT16: { using TAG = ::l2c::cuda::F16; return __VA_ARGS__(); }      \
      default: break;                                                                \
    }                                                                                \
    ::l2c::fail(L2C_DTYPE_MISMATCH, std::string("expected float32, bfloat16 or float16, got ") + \
                                        ::l2c::dtype_name(DTYPE));                   \
  }()

#define L2C_DTYPE_SWITCH(DTYPE, TAG, ...)                                            \
  [&] {                                                                              \
    switch (DTYPE) {                                                                 \
      case L2C_FLOAT32: { using TAG = ::l2c::cuda::F32; return __VA_ARGS__(); }      \
      case L2C_BFLOAT16: { using TAG = ::l2c::cuda::BF16; return __VA_ARGS__(); }    \
      case L2C_FLOAT16: { using TAG = ::l2c::cuda::F16; return __VA_ARGS__(); }      \
      case L2C_INT32: { using TAG = ::l2c::cuda::I32; return __VA_ARGS__(); }        \
    }                                                                                \
    ::l2c::fail(L2C_DTYPE_MISMATCH, "unknown dtype " + std::to_string((int)(DTYPE))); \
  }()

#define L2C_BOOL_SWITCH(COND, NAME, ...)       \
  [&] {                                        \
    if (COND) {                                \
      constexpr static bool NAME = true;       \
      return __VA_ARGS__();                    \
    } else {                                   \
      constexpr static bool NAME = false;      \
      return __VA_ARGS__();                    \
    }                                          \
  }()
