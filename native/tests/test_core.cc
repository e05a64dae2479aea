// test_core.cc: native tests of the core through the C ABI: status codes and messages,
// allocation statistics, casts (exhaustive 16-bit round trips, rounding against a
// float64 reference), fill, Philox random values (moments, determinism), thread pool.
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "half.h"
#include "harness.h"
#include "llm2clip.h"
#include "threadpool.h"

namespace {

l2c_tensor cpu_tensor(void *data, l2c_dtype dt, std::vector<int64_t> shape) {
  l2c_tensor t{};
  t.data = data;
  t.dtype = dt;
  t.device = {L2C_CPU, 0};
  t.ndim = (int32_t)shape.size();
  for (size_t i = 0; i < shape.size(); i++) t.shape[i] = shape[i];
  return t;
}

// Reference rounding of a double to a float format with `mant` explicit mantissa bits,
// exponent range [emin, emax], round to nearest even; returns the rounded value.
double round_ref(double x, int mant, int emin, int emax) {
  if (std::isnan(x) || std::isinf(x) || x == 0) return x;
  double ax = std::fabs(x);
  int e = (int)std::floor(std::log2(ax));
  if (std::ldexp(1.0, e) > ax) e--;  // log2 rounding guard
  if (std::ldexp(1.0, e + 1) <= ax) e++;
  if (e < emin) e = emin;  // subnormal spacing
  double ulp = std::ldexp(1.0, e - mant);
  double q = ax / ulp;
  double r = std::nearbyint(q);  // default mode: ties to even
  double v = r * ulp;
  double maxv = std::ldexp(2.0 - std::ldexp(1.0, -mant), emax);
  if (v > maxv) v = INFINITY;
  return std::copysign(v, x);
}

}  // namespace

L2C_TEST(core_status_names_and_last_error) {
  L2C_EXPECT(std::strcmp(l2c_status_name(L2C_SHAPE_MISMATCH), "SHAPE_MISMATCH") == 0, "");
  L2C_EXPECT(std::strcmp(l2c_status_name(L2C_OUT_OF_MEMORY), "OUT_OF_MEMORY") == 0, "");
  float a[6], b[6], c[4];
  l2c_tensor ta = cpu_tensor(a, L2C_FLOAT32, {2, 3}), tb = cpu_tensor(b, L2C_FLOAT32, {2, 3}),
             tc = cpu_tensor(c, L2C_FLOAT32, {2, 2});
  l2c_matmul_args args{&ta, &tb, &tc, 0, 0};
  l2c_status s = l2c_matmul(&args);
  L2C_EXPECT(s == L2C_SHAPE_MISMATCH, "status " << s);
  L2C_EXPECT(std::strstr(l2c_last_error(), "[2,3]") != nullptr, l2c_last_error());
  L2C_EXPECT(l2c_matmul(nullptr) == L2C_INVALID_ARGUMENT, "");
  l2c_tensor bad = ta;
  bad.ndim = 99;
  args = {&bad, &tb, &tc, 0, 0};
  L2C_EXPECT(l2c_matmul(&args) == L2C_INVALID_ARGUMENT, l2c_last_error());
  bad = ta;
  bad.data = nullptr;
  args = {&bad, &tb, &tc, 0, 0};
  L2C_EXPECT(l2c_matmul(&args) == L2C_INVALID_ARGUMENT, l2c_last_error());
  l2c_tensor ti = cpu_tensor(a, L2C_INT32, {2, 3});
  args = {&ti, &ti, &tc, 0, 1};
  L2C_EXPECT(l2c_matmul(&args) == L2C_DTYPE_MISMATCH, l2c_last_error());
  l2c_tensor on_gpu = tb;  // a descriptor claiming cuda:0: the mismatch is reported first
  on_gpu.device = {L2C_CUDA, 0};
  args = {&ta, &on_gpu, &tc, 0, 1};
  L2C_EXPECT(l2c_matmul(&args) == L2C_DEVICE_MISMATCH, l2c_last_error());
  args = {&ta, &tb, &tc, 0, 1};
  L2C_EXPECT(l2c_matmul(&args) == L2C_OK, l2c_last_error());
}

L2C_TEST(core_alloc_stats_and_oom) {
  l2c_memory_stats s0, s1, s2;
  l2c_device cpu{L2C_CPU, 0};
  L2C_EXPECT(l2c_memory_stats_get(cpu, &s0) == L2C_OK, "");
  void *p = nullptr;
  L2C_EXPECT(l2c_alloc(cpu, 1000, &p) == L2C_OK, l2c_last_error());
  L2C_EXPECT(((uintptr_t)p % 64) == 0, "alignment");
  std::memset(p, 1, 1000);
  L2C_EXPECT(l2c_memory_stats_get(cpu, &s1) == L2C_OK, "");
  L2C_EXPECT(s1.allocated_bytes == s0.allocated_bytes + 1000, s1.allocated_bytes);
  L2C_EXPECT(l2c_free(cpu, p) == L2C_OK, "");
  L2C_EXPECT(l2c_memory_stats_get(cpu, &s2) == L2C_OK, "");
  L2C_EXPECT(s2.allocated_bytes == s0.allocated_bytes, s2.allocated_bytes);
  void *q = nullptr;
  L2C_EXPECT(l2c_alloc(cpu, (size_t)1 << 60, &q) == L2C_OUT_OF_MEMORY, l2c_last_error());
  L2C_EXPECT(q == nullptr, "");
  l2c_device gpu{L2C_CUDA, 64};
  L2C_EXPECT(l2c_alloc(gpu, 16, &q) == L2C_DEVICE_UNAVAILABLE, l2c_last_error());
}

L2C_TEST(core_bf16_f16_exhaustive_round_trip) {
  // Every 16-bit pattern widens to float and narrows back to itself (NaNs stay NaN).
  for (uint32_t h = 0; h < 65536; h++) {
    float fb = l2c::bf16_to_f32((uint16_t)h), fh = l2c::f16_to_f32((uint16_t)h);
    uint16_t b2 = l2c::f32_to_bf16(fb), h2 = l2c::f32_to_f16(fh);
    if (std::isnan(fb)) L2C_EXPECT(std::isnan(l2c::bf16_to_f32(b2)), h);
    else L2C_EXPECT(b2 == h, "bf16 " << h);
    if (std::isnan(fh)) L2C_EXPECT(std::isnan(l2c::f16_to_f32(h2)), h);
    else L2C_EXPECT(h2 == h, "f16 " << h);
    // float16 widening against the definition.
    uint32_t e = (h >> 10) & 31, m = h & 1023;
    double ref = e == 0 ? std::ldexp((double)m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp(1024.0 + m, (int)e - 25);
    if (h & 0x8000) ref = -ref;
    if (!std::isnan(ref)) L2C_EXPECT((double)fh == ref, "f16 widen " << h);
  }
}

L2C_TEST(core_bf16_f16_rounding_vs_reference) {
  // Random float bit patterns plus the halfway points between 16-bit neighbours.
  uint64_t x = 88172645463325252ull;
  int checked = 0;
  for (int i = 0; i < 400000; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    uint32_t bits = (uint32_t)x;
    if (i % 4 == 1) bits = (bits & 0xffff0000u) | 0x8000u;  // bf16 ties
    if (i % 4 == 2) bits = (bits & 0xffffe000u) | 0x1000u;  // f16 ties (normal range)
    float f = l2c::bits_f32(bits);
    if (std::isnan(f)) {
      L2C_EXPECT(std::isnan(l2c::bf16_to_f32(l2c::f32_to_bf16(f))), bits);
      L2C_EXPECT(std::isnan(l2c::f16_to_f32(l2c::f32_to_f16(f))), bits);
      continue;
    }
    double rb = round_ref(f, 7, -126, 127), rh = round_ref(f, 10, -14, 15);
    double gb = l2c::bf16_to_f32(l2c::f32_to_bf16(f)), gh = l2c::f16_to_f32(l2c::f32_to_f16(f));
    L2C_EXPECT(gb == rb && std::signbit(gb) == std::signbit(rb), "bf16 of " << f << " got " << gb << " want " << rb);
    L2C_EXPECT(gh == rh && std::signbit(gh) == std::signbit(rh), "f16 of " << f << " got " << gh << " want " << rh);
    checked++;
  }
  L2C_EXPECT(checked > 300000, checked);
}

L2C_TEST(core_cast_int32_and_saturation) {
  int32_t src[6] = {0, -7, 16777217, 2147483647, -2147483647 - 1, 16842753 /* 2^24+2^16+1: a double-rounding trap */};
  uint16_t dst[6];
  l2c_tensor ts = cpu_tensor(src, L2C_INT32, {6}), td = cpu_tensor(dst, L2C_BFLOAT16, {6});
  L2C_EXPECT(l2c_cast(&td, &ts) == L2C_OK, l2c_last_error());
  for (int i = 0; i < 6; i++) {
    double want = round_ref((double)src[i], 7, -126, 127);
    L2C_EXPECT((double)l2c::bf16_to_f32(dst[i]) == want, src[i] << " -> " << l2c::bf16_to_f32(dst[i]) << " want " << want);
  }
  float f[5] = {NAN, 3e9f, -3e9f, -2.7f, 2.7f};
  int32_t out[5];
  l2c_tensor tf = cpu_tensor(f, L2C_FLOAT32, {5}), ti = cpu_tensor(out, L2C_INT32, {5});
  L2C_EXPECT(l2c_cast(&ti, &tf) == L2C_OK, l2c_last_error());
  int32_t want[5] = {0, 2147483647, -2147483647 - 1, -2, 2};
  for (int i = 0; i < 5; i++) L2C_EXPECT(out[i] == want[i], i << ": " << out[i]);
}

L2C_TEST(core_random_moments_and_determinism) {
  const int n = 200003;  // odd, beyond one thread's grain
  std::vector<float> u(n), g(n), g2(n);
  l2c_tensor tu = cpu_tensor(u.data(), L2C_FLOAT32, {n}), tg = cpu_tensor(g.data(), L2C_FLOAT32, {n}),
             tg2 = cpu_tensor(g2.data(), L2C_FLOAT32, {n});
  L2C_EXPECT(l2c_random(&tu, L2C_RANDOM_UNIFORM, 7, -1, 3) == L2C_OK, l2c_last_error());
  L2C_EXPECT(l2c_random(&tg, L2C_RANDOM_NORMAL, 7, 0.5, 2) == L2C_OK, l2c_last_error());
  L2C_EXPECT(l2c_random(&tg2, L2C_RANDOM_NORMAL, 7, 0.5, 2) == L2C_OK, l2c_last_error());
  double su = 0, sg = 0, sg2 = 0;
  bool in_range = true;
  for (int i = 0; i < n; i++) {
    in_range &= u[i] >= -1 && u[i] < 3;
    su += u[i];
    sg += g[i];
    sg2 += (g[i] - 0.5) * (g[i] - 0.5);
  }
  L2C_EXPECT(in_range, "uniform outside [-1, 3)");
  // Standard errors: uniform mean 1, sd 4/sqrt(12); normal mean 0.5, sd 2. 5 sigma bounds.
  L2C_EXPECT(std::fabs(su / n - 1.0) < 5 * 1.155 / std::sqrt((double)n), su / n);
  L2C_EXPECT(std::fabs(sg / n - 0.5) < 5 * 2.0 / std::sqrt((double)n), sg / n);
  L2C_EXPECT(std::fabs(std::sqrt(sg2 / n) - 2.0) < 0.02, std::sqrt(sg2 / n));
  L2C_EXPECT(std::memcmp(g.data(), g2.data(), n * 4) == 0, "same seed, different values");
  // Element i depends only on (seed, i): a prefix draw equals the prefix of a long one.
  l2c_tensor head = cpu_tensor(g2.data(), L2C_FLOAT32, {1000});
  L2C_EXPECT(l2c_random(&head, L2C_RANDOM_NORMAL, 8, 0.5, 2) == L2C_OK, "");
  L2C_EXPECT(std::memcmp(g.data(), g2.data(), 1000 * 4) != 0, "another seed, same values");
}

L2C_TEST(core_threadpool_runs_every_task_once) {
  std::vector<std::atomic<int>> hits(1001);
  l2c::parallel_tasks(1001, [&](int64_t t) { hits[t]++; });
  bool ok = true;
  for (auto &h : hits) ok &= h.load() == 1;
  L2C_EXPECT(ok, "a task ran zero or several times");
  bool threw = false;
  try {
    l2c::parallel_tasks(64, [&](int64_t t) { if (t == 13) throw std::runtime_error("boom"); });
  } catch (const std::runtime_error &) { threw = true; }
  L2C_EXPECT(threw, "exception not propagated");
  std::atomic<int64_t> sum{0};
  l2c::parallel_for(100000, 1000, [&](int64_t b, int64_t e) { for (int64_t i = b; i < e; i++) sum += i; });
  L2C_EXPECT(sum.load() == 4999950000ll, sum.load());
}
