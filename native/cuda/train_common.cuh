// train_common.cuh: what the train family's .cu files share: stream-ordered scratch
// memory, deterministic block reductions (fixed shapes and order: the same inputs give the
// same bits on every run), float loads of a runtime dtype, and the "first bad index" check
// (one atomicMin kernel, one device-to-host read) used for ids and targets.
// Included only by native/cuda/train*.cu (nvcc).
#pragma once
#include <cstdint>
#include <string>

#include "backend.h"
#include "cuda_common.cuh"

namespace l2c {
namespace cuda {
namespace train {

// Device memory from the caching allocator for the life of a scope. Freeing is stream
// ordered (see device.cu), so the kernels queued before the destructor runs may still use
// it. Zero bytes: no allocation (ptr() is null).
class Scratch {
 public:
  Scratch() = default;
  Scratch(int device, size_t bytes) { reset(device, bytes); }
  ~Scratch() { release(); }
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;
  void reset(int device, size_t bytes) {
    release();
    device_ = device;
    if (bytes > 0) p_ = alloc(device, bytes);
  }
  template <class T = void>
  T *as() const {
    return static_cast<T *>(p_);
  }

 private:
  void release() {
    if (!p_) return;
    try {
      free(device_, p_);
    } catch (...) {  // a destructor must not throw; the block stays with the allocator
    }
    p_ = nullptr;
  }
  int device_ = 0;
  void *p_ = nullptr;
};

inline size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Float value i of a buffer of runtime dtype dt (float32 / bfloat16 / float16). The branch
// is uniform over a launch, so it costs next to nothing.
__device__ __forceinline__ float load_f32(const void *p, l2c_dtype dt, int64_t i) {
  if (dt == L2C_FLOAT32) return static_cast<const float *>(p)[i];
  const uint16_t h = static_cast<const uint16_t *>(p)[i];
  return dt == L2C_BFLOAT16 ? bf16_to_f32(h) : f16_to_f32(h);
}
__device__ __forceinline__ void store_f32(void *p, l2c_dtype dt, int64_t i, float v) {
  if (dt == L2C_FLOAT32)
    static_cast<float *>(p)[i] = v;
  else
    static_cast<uint16_t *>(p)[i] = dt == L2C_BFLOAT16 ? f32_to_bf16(v) : f32_to_f16(v);
}

struct SumOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {  // for values without NaN (NaN is tracked separately where it matters)
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a < b ? b : a; }
};

// Reduces v over the kThreads threads of the block (a multiple of 32, at most 1024) and
// returns the result to every thread. The shape of the tree is fixed: deterministic.
// smem: at least 32 elements; every thread of the block must call it (it synchronises).
template <int kThreads, class T, class Op>
__device__ __forceinline__ T block_reduce(T v, T *smem, Op op, T identity) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "block of whole warps");
  constexpr int kWarps = kThreads / 32;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kWarps ? smem[lane] : identity;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, o));
    if (lane == 0) smem[0] = v;
  }
  __syncthreads();
  const T r = smem[0];
  __syncthreads();  // smem may be reused right after
  return r;
}

// first[0] = the smallest i < n with bad(i) (atomicMin), else left as it was (all ones).
template <class Pred>
__global__ void __launch_bounds__(kElementwiseThreads)
    first_bad_kernel(int64_t n, Pred bad, unsigned long long *first) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    if (bad(i)) atomicMin(first, (unsigned long long)i);
}

// "[1,3]": the multi-index of flat position i in t (as cpu/train.cc writes it).
inline std::string position(const l2c_tensor &t, int64_t i) {
  std::string s;
  for (int d = t.ndim - 1; d >= 0; d--) {
    int64_t n = t.shape[d];
    s = std::to_string(i % n) + (s.empty() ? "" : ",") + s;
    i /= n;
  }
  return "[" + s + "]";
}

// One int32 of device memory, read back (waits for the stream).
inline int32_t read_i32(int device, const void *p, int64_t i) {
  int32_t v = 0;
  copy_d2h(device, &v, static_cast<const int32_t *>(p) + i, 4);
  return v;
}

}  // namespace train
}  // namespace cuda
}  // namespace l2c
