// ops.cc: the CPU backend's memory and elementwise ops: aligned allocation with
// statistics and a cache of large blocks, dtype casts (bit-exact bf16/f16 rounding from half.h), fill, and the
// Philox random fills shared bit-for-bit with CUDA (philox.h). Threads over the pool.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "backend.h"
#include "half.h"
#include "philox.h"
#include "threadpool.h"

namespace l2c {
namespace cpu {
namespace {

constexpr size_t kAlign = 64;           // a cache line, and the widest SIMD load
constexpr int64_t kElementwiseGrain = 1 << 15;  // below this a thread costs more than it saves

// Large blocks are cached after free and handed out again: fresh pages cost a fault
// (and zeroing) on first touch, which made a 1024^3 matmul into a new output run at
// 110 instead of 294 GFLOP/s here (256^3: 32 instead of 209, the 256 KiB output was
// mmap-ed anew each call). Blocks are rounded to a
// size class, kept up to kCacheCap bytes in all, and reused when a request of the same
// class comes; huge pages are asked for them (fewer faults when first touched).
// cpu::empty_cache() (l2c_empty_cache on the CPU) returns them to the system.
// Small blocks are cached too: freed to malloc, a small block's memory was not reused
// while the JS handles of dead tensors waited for V8's next full GC (their native
// bookkeeping pinned the freed holes), and a synchronous loop of create / dispose of a
// 12 KB tensor grew RSS by ~12 KB per cycle without bound.
constexpr size_t kHugePage = (size_t)2 << 20;

size_t cache_cap() {
  static const size_t cap = [] {
    if (const char *env = std::getenv("LLM2CLIP_CPU_CACHE_BYTES")) return (size_t)std::strtoull(env, nullptr, 10);
    return (size_t)2 << 30;
  }();
  return cap;
}

// Size class of a block: the next multiple of 1/8 of the power of two at or below
// it (at most 12.5% waste), and a multiple of the huge page size from 2 MiB on.
size_t size_class(size_t bytes) {
  size_t p = 1;
  while (p <= bytes / 2) p <<= 1;
  size_t step = std::max<size_t>(p / 8, kAlign);
  size_t c = (bytes + step - 1) / step * step;
  if (c >= kHugePage) c = (c + kHugePage - 1) / kHugePage * kHugePage;
  return c;
}

struct BlockCache {
  std::mutex m;
  std::multimap<size_t, void *> free_blocks;  // capacity -> base pointer
  size_t cached_bytes = 0;
};
BlockCache &block_cache() {
  static BlockCache *c = new BlockCache();  // leaked on purpose: used until exit
  return *c;
}

std::atomic<uint64_t> g_allocated{0}, g_peak{0}, g_count{0}, g_mallocs{0}, g_reserved{0};

// The header before each block: the bytes asked for and the capacity held.
struct Header {
  uint64_t bytes;
  uint64_t capacity;
};

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
  if (bytes > (size_t)1 << 48)
    fail(L2C_OUT_OF_MEMORY, "cpu alloc: " + std::to_string(bytes) + " bytes is more than any machine has");
  size_t capacity = size_class(bytes);
  void *base = nullptr;
  {
    BlockCache &c = block_cache();
    std::lock_guard<std::mutex> g(c.m);
    auto it = c.free_blocks.find(capacity);
    if (it != c.free_blocks.end()) {
      base = it->second;
      c.free_blocks.erase(it);
      c.cached_bytes -= capacity;
    }
  }
  if (!base) {
    base = std::aligned_alloc(kAlign, capacity + kAlign);
    if (!base)
      fail(L2C_OUT_OF_MEMORY, "cpu alloc: out of host memory allocating " + std::to_string(bytes) + " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (capacity >= kHugePage) {  // advice on the whole pages inside the block
      uintptr_t lo = ((uintptr_t)base + 4095) & ~(uintptr_t)4095;
      uintptr_t hi = ((uintptr_t)base + capacity + kAlign) & ~(uintptr_t)4095;
      if (hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
    }
#endif
    g_mallocs.fetch_add(1);
    g_reserved.fetch_add(capacity);
  }
  *static_cast<Header *>(base) = Header{bytes, capacity};
  uint64_t now = g_allocated.fetch_add(bytes) + bytes;
  uint64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {}
  g_count.fetch_add(1);
  return static_cast<char *>(base) + kAlign;
}

void free(void *ptr) {
  if (!ptr) return;
  void *base = static_cast<char *>(ptr) - kAlign;
  Header h = *static_cast<Header *>(base);
  g_allocated.fetch_sub(h.bytes);
  g_count.fetch_sub(1);
  {
    BlockCache &c = block_cache();
    std::lock_guard<std::mutex> g(c.m);
    if (c.cached_bytes + h.capacity <= cache_cap()) {
      c.free_blocks.emplace(h.capacity, base);
      c.cached_bytes += h.capacity;
      return;
    }
  }
  g_reserved.fetch_sub(h.capacity);
  std::free(base);
}

void empty_cache() {
  BlockCache &c = block_cache();
  std::lock_guard<std::mutex> g(c.m);
  for (auto &kv : c.free_blocks) {
    g_reserved.fetch_sub(kv.first);
    std::free(kv.second);
  }
  c.free_blocks.clear();
  c.cached_bytes = 0;
}

l2c_memory_stats memory_stats() {
  l2c_memory_stats s{};
  s.allocated_bytes = g_allocated.load();
  s.peak_allocated_bytes = g_peak.load();
  s.reserved_bytes = g_reserved.load();
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
