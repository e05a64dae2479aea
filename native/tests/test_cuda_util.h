// test_cuda_util.h: shared pieces of the CUDA test files (test_cuda.cc,
// test_cuda_ops.cc): status capture, reproducible data, host/device buffers, poison
// and bitwise comparison helpers.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"
#include "half.h"
#include "harness.h"


namespace l2c_cuda_test {

using l2c::MatmulParams;
namespace cpu = l2c::cpu;
namespace cuda = l2c::cuda;

#define REQUIRE_CUDA()                                              \
  do {                                                              \
    if (cuda::device_count() == 0) L2C_SKIP("no CUDA device");      \
  } while (0)

constexpr int kDev = 0;

// The status f() throws as l2c::Error, L2C_OK if it returns; -1 for any other exception.
template <class F>
int status_of(F &&f, std::string *what = nullptr) {
  try {
    f();
    return L2C_OK;
  } catch (const l2c::Error &e) {
    if (what) *what = e.what();
    return e.status;
  } catch (const std::exception &e) {
    if (what) *what = e.what();
    return -1;
  }
}

// splitmix64: reproducible test data without <random>'s per-library differences.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint32_t u32() { return (uint32_t)(next() >> 32); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * (float)((next() >> 40) * 0x1p-24); }
};

inline size_t dsize(l2c_dtype d) { return d == L2C_FLOAT32 || d == L2C_INT32 ? 4 : 2; }

// Host memory from the CPU backend (64-byte aligned, as its kernels expect).
struct HostBuf {
  void *p;
  size_t bytes;
  explicit HostBuf(size_t n) : p(cpu::alloc(n)), bytes(n) {}
  ~HostBuf() { cpu::free(p); }
  HostBuf(const HostBuf &) = delete;
  HostBuf &operator=(const HostBuf &) = delete;
  template <class T>
  T *as() const { return static_cast<T *>(p); }
};

// Device memory from the caching allocator.
struct DevBuf {
  int dev;
  void *p;
  size_t bytes;
  DevBuf(int d, size_t n) : dev(d), p(cuda::alloc(d, n)), bytes(n) {}
  ~DevBuf() {
    try {
      cuda::free(dev, p);
    } catch (...) {
    }
  }
  DevBuf(const DevBuf &) = delete;
  DevBuf &operator=(const DevBuf &) = delete;
};

inline l2c_tensor tensor1d(void *data, l2c_dtype dt, l2c_device_type type, int index, int64_t n) {
  l2c_tensor t{};
  t.data = data;
  t.dtype = dt;
  t.device = l2c_device{type, index};
  t.ndim = 1;
  t.shape[0] = n;
  return t;
}
inline l2c_tensor host_tensor(const HostBuf &b, l2c_dtype dt, int64_t n) { return tensor1d(b.p, dt, L2C_CPU, 0, n); }
inline l2c_tensor device_tensor(const DevBuf &b, l2c_dtype dt, int64_t n) {
  return tensor1d(b.p, dt, L2C_CUDA, b.dev, n);
}

// Poison: every byte 0xA5 (a NaN in all three float dtypes, an odd int32), so that
// anything a kernel fails to write shows.
inline void poison(const DevBuf &b) {
  std::vector<uint8_t> junk(b.bytes, 0xA5);
  cuda::copy_h2d(b.dev, b.p, junk.data(), b.bytes);
}

// Element i of a buffer of dtype dt as raw bits (for messages).
inline uint32_t bits_at(const void *p, l2c_dtype dt, int64_t i) {
  if (dsize(dt) == 4) {
    uint32_t v;
    std::memcpy(&v, static_cast<const char *>(p) + 4 * i, 4);
    return v;
  }
  uint16_t v;
  std::memcpy(&v, static_cast<const char *>(p) + 2 * i, 2);
  return v;
}

// Index of the first element whose bytes differ, or -1.
inline int64_t first_diff(const void *a, const void *b, l2c_dtype dt, int64_t n) {
  size_t es = dsize(dt);
  if (std::memcmp(a, b, (size_t)n * es) == 0) return -1;
  for (int64_t i = 0; i < n; i++)
    if (std::memcmp(static_cast<const char *>(a) + i * es, static_cast<const char *>(b) + i * es, es))
      return i;
  return -1;
}

inline std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace l2c_cuda_test
