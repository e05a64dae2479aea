// test_cuda.cc: the CUDA backend's memory side checked against the CPU: the caching
// allocator and copies. Every case skips without a CUDA device, except
// cuda_unavailable_fails_cleanly, which checks that a build or machine without CUDA
// fails with DEVICE_UNAVAILABLE. Plain C++ (g++); links against native/cuda/*.cu or
// core/cuda_stub.cc alike. The ops are in test_cuda_ops.cc.
#include "test_cuda_util.h"

using namespace l2c_cuda_test;

namespace {

// ------------------------------------------------------------------ no device

// Without a GPU (or in a build without CUDA) every call but compiled()/device_count()
// throws DEVICE_UNAVAILABLE; with GPUs, so does an index past the last one. Nothing is
// dereferenced: the pointers below are host memory that the backend must not touch.
L2C_TEST(cuda_unavailable_fails_cleanly) {
  int n = cuda::device_count();
  L2C_EXPECT(n >= 0, "device_count " << n);
  if (!cuda::compiled()) L2C_EXPECT(n == 0, "a build without CUDA reports " << n << " devices");
  const int dev = n;  // cuda:0 without a GPU, one past the last with GPUs
  float host[16] = {0};
  auto unavailable = [&](const char *what, auto &&f) {
    std::string msg;
    int st = status_of(f, &msg);
    L2C_EXPECT(st == L2C_DEVICE_UNAVAILABLE, what << " on cuda:" << dev << " gave status " << st
                                                   << " (" << msg << ")");
  };
  unavailable("alloc", [&] { cuda::alloc(dev, 1024); });
  unavailable("free", [&] { cuda::free(dev, host); });
  unavailable("memory_stats", [&] { cuda::memory_stats(dev); });
  unavailable("empty_cache", [&] { cuda::empty_cache(dev); });
  unavailable("synchronize", [&] { cuda::synchronize(dev); });
  char name[64];
  unavailable("device_name", [&] { cuda::device_name(dev, name, sizeof name); });
  unavailable("copy_h2d", [&] { cuda::copy_h2d(dev, host, host + 8, 16); });
  unavailable("copy_d2h", [&] { cuda::copy_d2h(dev, host, host + 8, 16); });
  unavailable("copy_d2d", [&] { cuda::copy_d2d(dev, host, dev, host + 8, 16); });
  l2c_tensor t = tensor1d(host, L2C_FLOAT32, L2C_CUDA, dev, 4);
  l2c_tensor t2 = tensor1d(host + 8, L2C_FLOAT32, L2C_CUDA, dev, 4);
  unavailable("cast", [&] { cuda::cast(t, t2); });
  unavailable("fill", [&] { cuda::fill(t, 1.0); });
  unavailable("random", [&] { cuda::random(t, L2C_RANDOM_UNIFORM, 1, 0.0, 1.0); });
  MatmulParams p;
  p.a = host;
  p.b = host + 4;
  p.c = host + 8;
  p.M = p.N = p.K = 2;
  p.lda = p.ldb = p.ldc = 2;
  unavailable("matmul", [&] { cuda::matmul(dev, p); });
  L2C_EXPECT(cuda::device_count() == n, "device_count changed");
}

// ------------------------------------------------------------------ allocator

L2C_TEST(cuda_allocator_reuses_and_counts) {
  REQUIRE_CUDA();
  const l2c_memory_stats s0 = cuda::memory_stats(kDev);
  const size_t big = (size_t(3) << 20) + 1;  // a large-pool request
  void *p = cuda::alloc(kDev, big);
  const l2c_memory_stats s1 = cuda::memory_stats(kDev);
  L2C_EXPECT(p != nullptr, "alloc returned null");
  L2C_EXPECT(s1.num_allocs == s0.num_allocs + 1, s1.num_allocs << " vs " << s0.num_allocs);
  L2C_EXPECT(s1.allocated_bytes >= s0.allocated_bytes + big,
             s1.allocated_bytes << " after allocating " << big << " from " << s0.allocated_bytes);
  L2C_EXPECT(s1.peak_allocated_bytes >= s1.allocated_bytes, "peak below allocated");
  L2C_EXPECT(s1.reserved_bytes >= s1.allocated_bytes, "reserved below allocated");
  cuda::free(kDev, p);
  const l2c_memory_stats s2 = cuda::memory_stats(kDev);
  L2C_EXPECT(s2.allocated_bytes == s0.allocated_bytes, s2.allocated_bytes << " vs " << s0.allocated_bytes);
  L2C_EXPECT(s2.num_allocs == s0.num_allocs, s2.num_allocs << " vs " << s0.num_allocs);
  L2C_EXPECT(s2.reserved_bytes == s1.reserved_bytes, "free returned memory to the driver");
  L2C_EXPECT(s2.peak_allocated_bytes >= s1.allocated_bytes, "peak forgot the allocation");

  // The same request again comes from the cache.
  void *q = cuda::alloc(kDev, big);
  const l2c_memory_stats s3 = cuda::memory_stats(kDev);
  L2C_EXPECT(s3.num_device_mallocs == s1.num_device_mallocs,
             "a cached block was not reused: " << s3.num_device_mallocs << " device mallocs vs "
                                               << s1.num_device_mallocs);
  cuda::free(kDev, q);

  // Small and odd sizes: distinct, aligned, really that large (written and read back in
  // full), and a second round is served from the cache.
  const size_t sizes[] = {0, 1, 7, 511, 512, 513, 4097, 100003, (size_t(1) << 20) + 3, (size_t(11) << 20) + 5};
  for (int round = 0; round < 2; round++) {
    const l2c_memory_stats before = cuda::memory_stats(kDev);
    std::vector<void *> ptrs;
    for (size_t n : sizes) {
      void *d = cuda::alloc(kDev, n);
      L2C_EXPECT(d != nullptr, "alloc(" << n << ") returned null");
      L2C_EXPECT(reinterpret_cast<uintptr_t>(d) % 256 == 0, "alloc(" << n << ") is not 256-byte aligned");
      for (void *other : ptrs) L2C_EXPECT(other != d, "alloc(" << n << ") returned a live pointer");
      ptrs.push_back(d);
      if (n > 0) {
        std::vector<uint8_t> src(n), back(n);
        for (size_t i = 0; i < n; i++) src[i] = (uint8_t)(i * 131 + n);
        cuda::copy_h2d(kDev, d, src.data(), n);
        cuda::copy_d2h(kDev, back.data(), d, n);
        L2C_EXPECT(src == back, "round trip through a " << n << "-byte block");
      }
    }
    const l2c_memory_stats during = cuda::memory_stats(kDev);
    L2C_EXPECT(during.num_allocs == before.num_allocs + ptrs.size(), "live count");
    for (void *d : ptrs) cuda::free(kDev, d);
    const l2c_memory_stats after = cuda::memory_stats(kDev);
    L2C_EXPECT(after.allocated_bytes == before.allocated_bytes, after.allocated_bytes << " vs " << before.allocated_bytes);
    L2C_EXPECT(after.num_allocs == before.num_allocs, after.num_allocs << " vs " << before.num_allocs);
    if (round == 1)
      L2C_EXPECT(during.num_device_mallocs == before.num_device_mallocs,
                 "the second round called the driver " << during.num_device_mallocs - before.num_device_mallocs << " times");
  }

  // empty_cache gives cached segments back; the live ones stay.
  const l2c_memory_stats e0 = cuda::memory_stats(kDev);
  cuda::empty_cache(kDev);
  const l2c_memory_stats e1 = cuda::memory_stats(kDev);
  L2C_EXPECT(e1.reserved_bytes <= e0.reserved_bytes, "empty_cache grew the reserve");
  L2C_EXPECT(e1.allocated_bytes == e0.allocated_bytes, "empty_cache changed live memory");
  L2C_EXPECT(e1.reserved_bytes >= e1.allocated_bytes, "reserved below allocated");
  L2C_EXPECT(e1.allocated_bytes == s0.allocated_bytes, "this case leaked");
  if (e1.num_allocs == 0) {  // nothing live anywhere: the cache is empty, so the driver is asked
    L2C_EXPECT(e1.reserved_bytes == 0, e1.reserved_bytes << " bytes kept with nothing live");
    void *r = cuda::alloc(kDev, size_t(64) << 20);
    const l2c_memory_stats e2 = cuda::memory_stats(kDev);
    L2C_EXPECT(e2.num_device_mallocs == e1.num_device_mallocs + 1,
               e2.num_device_mallocs - e1.num_device_mallocs << " driver calls for an uncached block");
    cuda::free(kDev, r);
  }
}

L2C_TEST(cuda_allocator_out_of_memory) {
  REQUIRE_CUDA();
  const l2c_memory_stats s0 = cuda::memory_stats(kDev);
  const size_t petabyte = size_t(1) << 50;
  for (size_t n : {petabyte, std::numeric_limits<size_t>::max()}) {
    std::string msg;
    int st = status_of([&] { cuda::alloc(kDev, n); }, &msg);
    L2C_EXPECT(st == L2C_OUT_OF_MEMORY, "alloc(" << n << ") gave status " << st << " (" << msg << ")");
    L2C_EXPECT(msg.find(std::to_string(n)) != std::string::npos, "the message does not name the size: " << msg);
  }
  const l2c_memory_stats s1 = cuda::memory_stats(kDev);
  L2C_EXPECT(s1.allocated_bytes == s0.allocated_bytes && s1.num_allocs == s0.num_allocs,
             "a failed alloc changed the statistics");
  // Afterwards allocation and kernels work (no CUDA error left behind).
  DevBuf b(kDev, 1 << 20);
  l2c_tensor t = device_tensor(b, L2C_FLOAT32, 5);
  cuda::fill(t, 2.5);
  float back[5];
  cuda::copy_d2h(kDev, back, b.p, sizeof back);
  for (float v : back) L2C_EXPECT(v == 2.5f, "fill after an OOM gave " << v);
}

L2C_TEST(cuda_allocator_rejects_unknown_pointers) {
  REQUIRE_CUDA();
  int x = 0;
  L2C_EXPECT(status_of([&] { cuda::free(kDev, &x); }) == L2C_INVALID_ARGUMENT, "a host pointer");
  void *p = cuda::alloc(kDev, 4096);
  L2C_EXPECT(status_of([&] { cuda::free(kDev, static_cast<char *>(p) + 512); }) == L2C_INVALID_ARGUMENT,
             "a pointer into a block");
  cuda::free(kDev, p);
  L2C_EXPECT(status_of([&] { cuda::free(kDev, p); }) == L2C_INVALID_ARGUMENT, "a double free");
  L2C_EXPECT(status_of([&] { cuda::free(kDev, nullptr); }) == L2C_OK, "free(nullptr) is a no-op");
  if (cuda::device_count() > 1) {  // a block of cuda:0 is unknown to cuda:1
    void *q = cuda::alloc(0, 4096);
    L2C_EXPECT(status_of([&] { cuda::free(1, q); }) == L2C_INVALID_ARGUMENT, "freed on the wrong device");
    cuda::free(0, q);
  }
}

// The addon runs in Node worker_threads: allocations from several threads at once.
L2C_TEST(cuda_allocator_threads) {
  REQUIRE_CUDA();
  const l2c_memory_stats s0 = cuda::memory_stats(kDev);
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([t, &errors] {
      try {
        Rng rng(100 + t);
        std::vector<void *> live;
        for (int i = 0; i < 2000; i++) {
          if (live.size() < 8 && (live.empty() || rng.u32() % 3)) {
            size_t n = rng.u32() % 3 == 0 ? rng.u32() % (size_t(6) << 20) : rng.u32() % 70000;
            live.push_back(cuda::alloc(kDev, n));
            if (n > 0 && rng.u32() % 8 == 0) {  // the stream and device guard from this thread too
              uint8_t tag[64], back[64];
              size_t m = std::min(n, sizeof tag);
              for (size_t j = 0; j < m; j++) tag[j] = (uint8_t)(t * 64 + j + i);
              cuda::copy_h2d(kDev, live.back(), tag, m);
              cuda::copy_d2h(kDev, back, live.back(), m);
              if (std::memcmp(tag, back, m) != 0) errors++;
            }
          } else {
            size_t k = rng.u32() % live.size();
            cuda::free(kDev, live[k]);
            live.erase(live.begin() + k);
          }
        }
        for (void *p : live) cuda::free(kDev, p);
      } catch (const std::exception &e) {
        std::printf("    thread: %s\n", e.what());
        errors++;
      }
    });
  }
  for (auto &th : threads) th.join();
  L2C_EXPECT(errors == 0, errors << " threads failed");
  const l2c_memory_stats s1 = cuda::memory_stats(kDev);
  L2C_EXPECT(s1.allocated_bytes == s0.allocated_bytes && s1.num_allocs == s0.num_allocs,
             "after all frees: " << s1.allocated_bytes << " bytes in " << s1.num_allocs << " blocks, was "
                                 << s0.allocated_bytes << " in " << s0.num_allocs);
}

// ------------------------------------------------------------------ copies

L2C_TEST(cuda_copy_round_trip) {
  REQUIRE_CUDA();
  Rng rng(7);
  for (size_t n : {size_t(1), size_t(3), size_t(7), size_t(255), size_t(513), size_t(4097), size_t(65537),
                   (size_t(1) << 20) + 3, (size_t(5) << 20) + 7}) {
    std::vector<uint8_t> src(n), back(n, 0);
    for (auto &v : src) v = (uint8_t)rng.u32();
    DevBuf a(kDev, n + 8), b(kDev, n + 8);
    cuda::copy_h2d(kDev, a.p, src.data(), n);
    cuda::copy_d2d(kDev, b.p, kDev, a.p, n);
    cuda::copy_d2h(kDev, back.data(), b.p, n);
    L2C_EXPECT(src == back, "h2d -> d2d -> d2h of " << n << " bytes");
    // Unaligned addresses on both sides.
    std::vector<uint8_t> back2(n + 2, 0x5A);
    cuda::copy_h2d(kDev, static_cast<char *>(a.p) + 1, src.data(), n);
    cuda::copy_d2d(kDev, static_cast<char *>(b.p) + 3, kDev, static_cast<char *>(a.p) + 1, n);
    cuda::copy_d2h(kDev, back2.data() + 1, static_cast<char *>(b.p) + 3, n);
    L2C_EXPECT(std::memcmp(back2.data() + 1, src.data(), n) == 0, "unaligned copies of " << n << " bytes");
    L2C_EXPECT(back2[0] == 0x5A && back2[n + 1] == 0x5A, "d2h wrote outside its " << n << " bytes");
    // Across devices, both ways.
    if (cuda::device_count() > 1) {
      DevBuf c(1, n);
      std::vector<uint8_t> back3(n, 0);
      cuda::copy_d2d(1, c.p, kDev, static_cast<char *>(a.p) + 1, n);
      cuda::copy_d2d(kDev, b.p, 1, c.p, n);
      cuda::copy_d2h(kDev, back3.data(), b.p, n);
      L2C_EXPECT(back3 == src, "cuda:0 -> cuda:1 -> cuda:0 of " << n << " bytes");
    }
  }
  cuda::synchronize(kDev);
  char name[256] = {0};
  cuda::device_name(kDev, name, sizeof name);
  L2C_EXPECT(std::strlen(name) > 0, "empty device name");
}

}  // namespace
