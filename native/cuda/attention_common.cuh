// attention_common.cuh: what the CUDA attention kernels (attention_fwd.cu,
// attention_bwd.cu) share: the kernel argument block, the path choice, warp reductions,
// tile loads into shared memory, and the sm_80 tensor-core primitives (cp.async,
// ldmatrix, mma.sync m16n8k16 with float32 accumulation) as inline PTX.
// Included only by native/cuda/attention_*.cu (nvcc).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "attention_params.h"
#include "backend.h"
#include "cuda_common.cuh"

namespace l2c {
namespace cuda {
namespace attn {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Everything a kernel reads, by value. Element offsets are int64; q-shaped tensors have
// row stride ldq = Hq·D between sequence positions, k/v-shaped ones ldk = Hkv·D.
struct Args {
  const void *q, *k, *v;
  const int32_t *mask;  // [B,S] or null
  // forward outputs
  void *out;
  float *lse;
  // backward inputs / outputs
  const void *dout, *o;
  const float *lse_in;
  float *delta;   // [B,Hq,S] scratch: rowsum(dO ∘ O)
  float *dq_acc;  // [B,S,Hq,D] float32, zeroed, dq accumulated by atomicAdd (scaled)
  void *dk, *dv;
  int64_t B, S, Hq, Hkv, D, G;  // G = Hq / Hkv
  int64_t ldq, ldk;
  float scale;       // the softmax scale
  float scale_log2;  // scale · log2(e): scores go through exp2
  bool causal;
  // Every q/k/v-shaped pointer is 16-byte aligned and D % 8 == 0: rows are whole 16-byte
  // chunks (cp.async and vector stores); else element-wise loads and stores.
  bool vec;
};

// ---- paths ----

// The head dim a kernel is compiled for: D rounded up to 64, 128 or 256 (the tail
// columns are zero-filled in shared memory and never stored).
inline int padded_head_dim(int64_t D) { return D <= 64 ? 64 : D <= 128 ? 128 : 256; }

// Tensor cores for bfloat16 / float16 with D <= 128 (when the device has the shared
// memory); the SIMT kernels otherwise (float32, D > 128).
inline bool use_tensor_cores(l2c_dtype dt, int64_t D) { return dt != L2C_FLOAT32 && D <= 128; }

inline int max_smem_optin(int device) {
  int v = 0;
  L2C_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return v;
}

// Kernels with more than the default 48 KiB of dynamic shared memory must opt in.
template <class Kernel>
void allow_smem(Kernel kernel, int bytes) {
  if (bytes > 48 * 1024)
    L2C_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

// The grid is one flat x dimension (up to 2^31 - 1 blocks).
inline unsigned flat_grid(int64_t blocks, const char *op) {
  if (blocks > 2147483647)
    fail(L2C_INVALID_ARGUMENT, std::string(op) + ": too many tiles for one launch (" +
                                   std::to_string(blocks) + ")");
  return (unsigned)blocks;
}

inline bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Scratch from the caching allocator, freed (stream-ordered) when the scope ends.
struct Scratch {
  int device;
  void *p = nullptr;
  Scratch(int d, size_t bytes) : device(d) {
    if (bytes) p = ::l2c::cuda::alloc(d, bytes);
  }
  ~Scratch() {
    if (p) {
      try {
        ::l2c::cuda::free(device, p);
      } catch (...) {
      }
    }
  }
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;
  float *f() const { return static_cast<float *>(p); }
};

// ---- launchers (attention_fwd.cu / attention_bwd.cu) ----

void launch_forward(int device, const Args &a, l2c_dtype dt, cudaStream_t s);
void launch_backward(int device, const Args &a, l2c_dtype dt, cudaStream_t s);

// ---- device helpers ----

#if defined(__CUDACC__)

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Whether key j (< S) may be attended under the padding mask.
__device__ __forceinline__ bool key_ok(const int32_t *mrow, int64_t j, int64_t S) {
  return j < S && (mrow == nullptr || __ldg(mrow + j) != 0);
}

// The first key tile >= t that holds an attendable key (nkt if none), for the whole
// block: every thread must call it with the same arguments (it synchronises when there
// is a mask). Tiles are kBc keys; kBc <= blockDim.x.
template <int kBc>
__device__ __forceinline__ int first_live_tile(int t, int nkt, const int32_t *mrow, int64_t S) {
  if (mrow == nullptr) return t;
  for (; t < nkt; t++) {
    const int64_t j = (int64_t)t * kBc + threadIdx.x;
    const bool ok = threadIdx.x < kBc && key_ok(mrow, j, S);
    if (__syncthreads_or(ok)) break;
  }
  return t;
}

// ---- sm_80 primitives ----

__device__ __forceinline__ uint32_t smem_addr(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

// 16 bytes global -> shared, asynchronously; src_bytes 0 writes 16 zero bytes (src is
// then not read, but must still be a valid address).
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices; lane l gives the address of row l % 8 of matrix l / 8; r[i]
// gets matrix i, lane l holding (row l / 4, columns 2(l % 4), +1) — or, transposed,
// (rows 2(l % 4), +1 of column l / 4).
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p))
               : "memory");
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p))
               : "memory");
}

// c (16x8, float32) += a (16x16) · b (16x8). Fragments (g = lane / 4, t = lane % 4):
// a[0] (g, 2t..2t+1), a[1] (g+8, 2t..), a[2] (g, 2t+8..), a[3] (g+8, 2t+8..);
// b[0] (k 2t..2t+1, n g), b[1] (k 2t+8.., n g); c[0..1] (g, 2t..2t+1), c[2..3] (g+8, ..).
template <class Tag>
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<BF16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<F16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as a 16-bit pair operand (lo in the low half: the lower column / k index).
template <class Tag>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<BF16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<F16>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t *>(&v);
}

// A tile of kRows rows x kD columns of a 16-bit tensor into shared memory (row stride
// kLd elements): rows row0 + r of g (row stride ld), r < kRows; rows at or past `rows`
// (= S - row0) and columns at or past D are zero-filled. With a.vec: one cp.async per
// 16-byte chunk (the caller commits and waits); else element-wise loads and plain
// 16-byte stores (visible after the caller's __syncthreads).
template <int kRows, int kD, int kLd, int kThreads>
__device__ __forceinline__ void load_tile16(uint16_t *s, const uint16_t *g, int64_t ld, int64_t row0,
                                            int64_t rows, int D, bool vec) {
  constexpr int kChunksPerRow = kD / 8;
  constexpr int kChunks = kRows * kChunksPerRow;
  static_assert(kChunks % kThreads == 0, "tile loads must divide evenly over the threads");
#pragma unroll
  for (int it = 0; it < kChunks / kThreads; it++) {
    const int c = it * kThreads + (int)threadIdx.x;
    const int r = c / kChunksPerRow, col = (c % kChunksPerRow) * 8;
    uint16_t *dst = s + r * kLd + col;
    const bool row_ok = r < rows;
    const uint16_t *src = g + (row0 + (row_ok ? r : 0)) * ld + col;
    if (vec) {
      const bool ok = row_ok && col < D;  // D % 8 == 0: the chunk is all in or all out
      cp_async16(dst, ok ? src : g, ok ? 16 : 0);
    } else {
      uint32_t w[4];
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const uint32_t lo = row_ok && col + 2 * e < D ? src[2 * e] : 0;
        const uint32_t hi = row_ok && col + 2 * e + 1 < D ? src[2 * e + 1] : 0;
        w[e] = lo | (hi << 16);
      }
      *reinterpret_cast<uint4 *>(dst) = make_uint4(w[0], w[1], w[2], w[3]);
    }
  }
}

// A tile of kRows x kD as float32 into shared memory (row stride ld_s), zero-filled
// past `rows` and D; plain loads, visible after the caller's __syncthreads.
template <class Tag, int kRows, int kD, int kThreads>
__device__ __forceinline__ void load_tile_f32(float *s, int ld_s, const typename Tag::T *g, int64_t ld,
                                              int64_t row0, int64_t rows, int D) {
  for (int e = threadIdx.x; e < kRows * kD; e += kThreads) {
    const int r = e / kD, d = e % kD;
    float x = 0.0f;
    if (r < rows && d < D) x = Tag::to_f32(g[(row0 + r) * ld + d]);
    s[r * ld_s + d] = x;
  }
}

#endif  // __CUDACC__

}  // namespace attn
}  // namespace cuda
}  // namespace l2c
