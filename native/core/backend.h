// backend.h: what each backend (cpu/, cuda/) implements. The C ABI in core/api.cc
// validates arguments, then dispatches on the tensors' device to one of these.
// Functions throw l2c::Error on failure. Launch parameters live in one plain struct
// per op (MatmulParams).
#pragma once
#include <cstddef>
#include <cstdint>

#include "common.h"

namespace l2c {

// C[b] = op(A[b]) . op(B[b]) for b in [0, batch); every matrix row-major.
// A is stored [M,K] (lda >= K), or [K,M] (lda >= M) when trans_a; B is stored [K,N]
// (ldb >= N), or [N,K] (ldb >= K) when trans_b; C is [M,N] (ldc >= N).
// Batch strides are in elements; 0 broadcasts one matrix over the batch.
// in_dtype: FLOAT32 | BFLOAT16 | FLOAT16 (A and B alike); out_dtype: in_dtype or FLOAT32.
// Accumulation is float32; C is overwritten (never read), so it may hold garbage.
struct MatmulParams {
  const void *a = nullptr;
  const void *b = nullptr;
  void *c = nullptr;
  l2c_dtype in_dtype = L2C_FLOAT32;
  l2c_dtype out_dtype = L2C_FLOAT32;
  int64_t batch = 1, M = 0, N = 0, K = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  bool trans_a = false, trans_b = false;
};

// What both backends check before a matmul touches memory: sizes, dtypes (DTYPE_MISMATCH),
// leading dimensions, non-overlapping output batches, offsets that fit in 64 bits, and
// pointers; INVALID_ARGUMENT otherwise. `who` prefixes the message ("cuda matmul").
void check_matmul_params(const MatmulParams &p, const char *who);

namespace cpu {
void *alloc(size_t bytes);  // 64-byte aligned; throws OUT_OF_MEMORY
void free(void *ptr);       // large blocks go to a cache for reuse
void empty_cache();         // returns the cached blocks to the system
l2c_memory_stats memory_stats();
void cast(const l2c_tensor &dst, const l2c_tensor &src);
void fill(const l2c_tensor &dst, double value);
void random(const l2c_tensor &dst, l2c_random_kind kind, uint64_t seed, double a, double b);
void matmul(const MatmulParams &p);
// The same on the calling thread only, for kernels that run their own threads over
// tiles; accumulate (float32 output only) adds into C instead of overwriting it.
void matmul_serial(const MatmulParams &p, bool accumulate = false);
const char *isa_name();          // the level in use
void set_isa(const char *name);  // throws INVALID_ARGUMENT if unsupported
}  // namespace cpu

// Implemented by cuda/*.cu when CUDA is compiled, else by core/cuda_stub.cc (every
// call but compiled()/device_count() throws DEVICE_UNAVAILABLE).
namespace cuda {
bool compiled();
int device_count();  // 0 without a GPU or driver; never throws
void device_name(int index, char *buf, size_t len);
void *alloc(int device, size_t bytes);  // caching allocator; OUT_OF_MEMORY on failure
void free(int device, void *ptr);
l2c_memory_stats memory_stats(int device);
void empty_cache(int device);
void synchronize(int device);
// Byte copies; kind by the pointers' devices. Device-to-host waits for completion.
void copy_h2d(int device, void *dst, const void *src, size_t bytes);
void copy_d2h(int device, void *dst, const void *src, size_t bytes);
void copy_d2d(int dst_device, void *dst, int src_device, const void *src, size_t bytes);
void cast(const l2c_tensor &dst, const l2c_tensor &src);
void fill(const l2c_tensor &dst, double value);
void random(const l2c_tensor &dst, l2c_random_kind kind, uint64_t seed, double a, double b);
void matmul(int device, const MatmulParams &p);
}  // namespace cuda

}  // namespace l2c
