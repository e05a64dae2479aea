// ops.cc: the CPU backend's memory and elementwise ops: aligned allocation with
// statistics, dtype casts (bit-exact bf16/f16 rounding from half.h), fill, and the
// Philox random fills shared bit-for-bit with CUDA (philox.h). Threads over the pool.
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "backend.h"
#include "half.h"
#include "philox.h"
#include "threadpool.h"

namespace l2c {
namespace cpu {
namespace {

constexpr size_t kAlign = 64;           // a cache line, and the widest SIMD load
constexpr int64_t kElementwiseGrain = 1 << 15;  // below this a thread costs more than it saves

std::atomic<uint64_t> g_allocated{0}, g_peak{0}, g_count{0}, g_mallocs{0};

template <class T>
T *typed(const l2c_tensor &t) { return static_cast<T *>(t.data); }

// Reads element i of a tensor of any float dtype as float.
inline float load_f(const void *p, l2c_dtype dt, int64_t i) {
  switch (dt) {
    case L2C_FLOAT32: return static_cast<const float *>(p)[i];
    case L2C_BFLOAT16: return bf16_to_f32(static_cast<const uint16_t *>(p)[i]);
    case L2C_FLOAT16: return f16_to_f32(static_cast<const uint16_t *>(p)[i]);
    case L2C_INT32: return (float)static_cast<const int32_t *>(p)[i];
  }
  return 0;
}

inline int32_t float_to_i32(double v) {
  if (v != v) return 0;
  if (v >= 2147483647.0) return std::numeric_limits<int32_t>::max();
  if (v <= -2147483648.0) return std::numeric_limits<int32_t>::min();
  return (int32_t)v;  // truncates toward zero
}

inline void store_f(void *p, l2c_dtype dt, int64_t i, float v) {
  switch (dt) {
    case L2C_FLOAT32: static_cast<float *>(p)[i] = v; break;
    case L2C_BFLOAT16: static_cast<uint16_t *>(p)[i] = f32_to_bf16(v); break;
    case L2C_FLOAT16: static_cast<uint16_t *>(p)[i] = f32_to_f16(v); break;
    case L2C_INT32: static_cast<int32_t *>(p)[i] = float_to_i32(v); break;
  }
}

}  // namespace

void *alloc(size_t bytes) {
  // A header of one alignment unit keeps the size for the statistics.
  if (bytes > (size_t)1 << 48) fail(L2C_OUT_OF_MEMORY, "cpu alloc: " + std::to_string(bytes) + " bytes is more than any machine has");
  size_t total = (bytes + kAlign + kAlign - 1) / kAlign * kAlign;
  void *base = std::aligned_alloc(kAlign, total);
  if (!base)
    fail(L2C_OUT_OF_MEMORY, "cpu alloc: out of host memory allocating " + std::to_string(bytes) + " bytes");
  *static_cast<uint64_t *>(base) = bytes;
  uint64_t now = g_allocated.fetch_add(bytes) + bytes;
  uint64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {}
  g_count.fetch_add(1);
  g_mallocs.fetch_add(1);
  return static_cast<char *>(base) + kAlign;
}

void free(void *ptr) {
  if (!ptr) return;
  void *base = static_cast<char *>(ptr) - kAlign;
  uint64_t bytes = *static_cast<uint64_t *>(base);
  g_allocated.fetch_sub(bytes);
  g_count.fetch_sub(1);
  std::free(base);
}

l2c_memory_stats memory_stats() {
  l2c_memory_stats s{};
  s.allocated_bytes = g_allocated.load();
  s.peak_allocated_bytes = g_peak.load();
  s.reserved_bytes = s.allocated_bytes;
  s.num_allocs = g_count.load();
  s.num_device_mallocs = g_mallocs.load();
  return s;
}

void cast(const l2c_tensor &dst, const l2c_tensor &src) {
  int64_t n = numel(dst);
  if (dst.dtype == src.dtype) {
    std::memmove(dst.data, src.data, (size_t)n * l2c_dtype_size(dst.dtype));
    return;
  }
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
    if (src.dtype == L2C_INT32 && dst.dtype == L2C_FLOAT32) {
      // int32 -> float32 directly: no float detour beyond the one rounding.
      for (int64_t i = b; i < e; i++) typed<float>(dst)[i] = (float)typed<int32_t>(src)[i];
    } else if (dst.dtype == L2C_INT32) {
      for (int64_t i = b; i < e; i++) typed<int32_t>(dst)[i] = float_to_i32(load_f(src.data, src.dtype, i));
    } else if (src.dtype == L2C_INT32) {
      for (int64_t i = b; i < e; i++) {
        int32_t v = typed<int32_t>(src)[i];
        if (dst.dtype == L2C_BFLOAT16) typed<uint16_t>(dst)[i] = i32_to_bf16(v);
        else typed<uint16_t>(dst)[i] = f32_to_f16((float)v);  // |v| >= 2^24 is Inf in float16 anyway
      }
    } else {
      for (int64_t i = b; i < e; i++) store_f(dst.data, dst.dtype, i, load_f(src.data, src.dtype, i));
    }
  });
}

void fill(const l2c_tensor &dst, double value) {
  int64_t n = numel(dst);
  switch (dst.dtype) {
    case L2C_FLOAT32: {
      float v = (float)value;
      parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) typed<float>(dst)[i] = v;
      });
      break;
    }
    case L2C_INT32: {
      int32_t v = float_to_i32(value);
      parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) typed<int32_t>(dst)[i] = v;
      });
      break;
    }
    case L2C_BFLOAT16:
    case L2C_FLOAT16: {
      uint16_t v = dst.dtype == L2C_BFLOAT16 ? f32_to_bf16((float)value) : f32_to_f16((float)value);
      parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; i++) typed<uint16_t>(dst)[i] = v;
      });
      break;
    }
  }
}

void random(const l2c_tensor &dst, l2c_random_kind kind, uint64_t seed, double a, double b) {
  int64_t n = numel(dst);
  float fa = (float)a, fb = (float)b;
  parallel_for(n, 1 << 13, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; i++) {
      float v = kind == L2C_RANDOM_UNIFORM ? philox::uniform((uint64_t)i, seed, fa, fb)
                                           : philox::normal((uint64_t)i, seed, fa, fb);
      store_f(dst.data, dst.dtype, i, v);
    }
  });
}

}  // namespace cpu
}  // namespace l2c
