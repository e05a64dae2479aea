/* llm2clip.h: the C ABI of the llm2clip native core.
 * Plain structs, status codes and a thread-local last-error message, so that any host
 * (the Node addon, the C++ test program, a Python ctypes script on a GPU machine) can
 * call the kernels. Tensors are contiguous, row-major, described by l2c_tensor.
 * Every entry returns l2c_status; on failure l2c_last_error() says why. */
#ifndef LLM2CLIP_H
#define LLM2CLIP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define L2C_API __declspec(dllexport)
#else
#define L2C_API __attribute__((visibility("default")))
#endif

#define L2C_ABI_VERSION 1
#define L2C_MAX_DIMS 8

typedef enum l2c_status {
  L2C_OK = 0,
  L2C_SHAPE_MISMATCH = 1,
  L2C_DTYPE_MISMATCH = 2,
  L2C_DEVICE_UNAVAILABLE = 3,
  L2C_DEVICE_MISMATCH = 4,
  L2C_OUT_OF_MEMORY = 5,
  L2C_DISPOSED = 6,
  L2C_INVALID_ARGUMENT = 7,
  L2C_INTERNAL = 8 /* a bug or an unexpected driver failure: never a user error */
} l2c_status;

typedef enum l2c_dtype {
  L2C_FLOAT32 = 0,
  L2C_BFLOAT16 = 1,
  L2C_FLOAT16 = 2,
  L2C_INT32 = 3
} l2c_dtype;

typedef enum l2c_device_type { L2C_CPU = 0, L2C_CUDA = 1 } l2c_device_type;

typedef struct l2c_device {
  l2c_device_type type;
  int32_t index; /* CUDA ordinal; 0 for the CPU */
} l2c_device;

/* A contiguous row-major tensor: data points at the first element. */
typedef struct l2c_tensor {
  void *data;
  l2c_dtype dtype;
  l2c_device device;
  int32_t ndim;
  int64_t shape[L2C_MAX_DIMS];
} l2c_tensor;

typedef struct l2c_memory_stats {
  uint64_t allocated_bytes;      /* live allocations handed out */
  uint64_t peak_allocated_bytes; /* high-water mark of allocated_bytes */
  uint64_t reserved_bytes;       /* held from the system (allocated + cached) */
  uint64_t num_allocs;           /* live allocation count */
  uint64_t num_device_mallocs;   /* calls into the system allocator (cache misses), ever */
} l2c_memory_stats;

/* ---- errors, version, threads ---- */
L2C_API const char *l2c_last_error(void); /* message of this thread's last failure */
L2C_API const char *l2c_status_name(l2c_status s); /* "SHAPE_MISMATCH", ... */
L2C_API int32_t l2c_abi_version(void);
L2C_API size_t l2c_dtype_size(l2c_dtype dtype); /* 0 for an unknown dtype */
/* Threads of the CPU pool: LLM2CLIP_NUM_THREADS, default = hardware cores. */
L2C_API int32_t l2c_num_threads(void);
L2C_API l2c_status l2c_set_num_threads(int32_t n);
/* The CPU's SIMD level used by the kernels: "avx512", "avx2" or "generic". */
L2C_API const char *l2c_cpu_isa(void);
/* Force a lower SIMD level (for tests and benchmarks): "avx512" | "avx2" | "generic";
 * asking for a level the CPU lacks is INVALID_ARGUMENT. */
L2C_API l2c_status l2c_set_cpu_isa(const char *isa);

/* ---- memory ---- */
/* CPU memory is 64-byte aligned; CUDA memory comes from the caching allocator. */
L2C_API l2c_status l2c_alloc(l2c_device device, size_t bytes, void **out);
L2C_API l2c_status l2c_free(l2c_device device, void *ptr);
L2C_API l2c_status l2c_memory_stats_get(l2c_device device, l2c_memory_stats *out);
/* Return cached blocks to the system: the CUDA caching allocator's, or the CPU's cache
 * of large blocks (kept up to LLM2CLIP_CPU_CACHE_BYTES, default 2 GiB). */
L2C_API l2c_status l2c_empty_cache(l2c_device device);

/* ---- CUDA ---- */
L2C_API int32_t l2c_cuda_compiled(void);   /* 1 if this build has the CUDA backend */
L2C_API int32_t l2c_cuda_device_count(void); /* 0 without a GPU or driver */
L2C_API l2c_status l2c_cuda_device_name(int32_t index, char *buf, size_t len);
L2C_API l2c_status l2c_synchronize(l2c_device device);

/* ---- tensor ops ---- */
/* Copy src into dst: same dtype and element count, any devices. */
L2C_API l2c_status l2c_copy(const l2c_tensor *dst, const l2c_tensor *src);
/* Convert src to dst's dtype (same device and element count). Float -> bfloat16 /
 * float16 rounds to nearest even and keeps NaN and Inf; float -> int32 truncates toward
 * zero (NaN -> 0, saturating). */
L2C_API l2c_status l2c_cast(const l2c_tensor *dst, const l2c_tensor *src);
L2C_API l2c_status l2c_fill(const l2c_tensor *dst, double value);

typedef enum l2c_random_kind { L2C_RANDOM_UNIFORM = 0, L2C_RANDOM_NORMAL = 1 } l2c_random_kind;
/* Counter-based (Philox4x32-10): element i of a tensor drawn with seed s is the same on
 * every device. Uniform in [a, b); normal with mean a and standard deviation b. */
L2C_API l2c_status l2c_random(const l2c_tensor *dst, l2c_random_kind kind, uint64_t seed,
                              double a, double b);

/* out = op(a) . op(b), op = transpose when trans_* is set.
 * 2-D: a [M,K] (or [K,M] transposed), b [K,N] (or [N,K]), out [M,N].
 * 3-D: batched, the same with a leading batch dim on a, b and out (a batch of 1 on a or b
 * broadcasts). Inputs float32 / bfloat16 / float16 (both the same), accumulation in
 * float32, out of the inputs' dtype or float32. */
typedef struct l2c_matmul_args {
  const l2c_tensor *a;
  const l2c_tensor *b;
  const l2c_tensor *out;
  int32_t trans_a;
  int32_t trans_b;
} l2c_matmul_args;
L2C_API l2c_status l2c_matmul(const l2c_matmul_args *args);

#ifdef __cplusplus
}
#endif
/* The kernel families. */
#include "l2c_attention.h"
#include "l2c_lora.h"
#include "l2c_infonce.h"
#include "l2c_layers.h"
#include "l2c_train.h"

#endif /* LLM2CLIP_H */
