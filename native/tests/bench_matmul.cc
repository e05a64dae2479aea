// bench_matmul.cc: times l2c::cpu::matmul (GFLOP/s = 2MNK / median time, fresh random
// inputs per run) next to OpenBLAS's cblas_sgemm (same inputs, same thread count) when
// libopenblas can be dlopen'ed. Not a test. Build (one line) and run with OpenBLAS's AVX-512
// kernel as shared/tools/openblas-sgemm.sh does:
//   g++ -O3 -std=c++17 -pthread -Inative/include -Inative/core native/core/common.cc
//   native/core/threadpool.cc native/cpu/matmul*.cc native/cpu/isa.cc
//   native/tests/bench_matmul.cc -ldl -o /tmp/bench_matmul
//   OPENBLAS_CORETYPE=SkylakeX /tmp/bench_matmul [--isa avx2] [--reps 7] [--spread]
//     [--only "f32 NN"] [--no-blas] [SIZE ...]
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"
#include "half.h"
#include "threadpool.h"

namespace {

// cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) with
// the usual 32-bit blasint; 101 = row major, 111 / 112 = no transpose / transpose.
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float *, int,
                         const float *, int, float, float *, int);
using SetThreadsFn = void (*)(int);
using CoreNameFn = char *(*)();

struct Blas {
  SgemmFn sgemm = nullptr;
  std::string name;
};

Blas load_openblas(int threads) {
  Blas b;
  const char *libs[] = {"libopenblas.so.0",
                        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3"};
  for (const char *lib : libs) {
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) continue;
    b.sgemm = reinterpret_cast<SgemmFn>(dlsym(h, "cblas_sgemm"));
    if (!b.sgemm) continue;
    auto set = reinterpret_cast<SetThreadsFn>(dlsym(h, "openblas_set_num_threads"));
    if (set) set(threads);
    b.name = lib;
    if (auto core = reinterpret_cast<CoreNameFn>(dlsym(h, "openblas_get_corename")))
      b.name += std::string(" (") + core() + ")";
    return b;
  }
  return b;
}

uint64_t g_rng = 0x9e3779b97f4a7c15ull;
float urand() {  // xorshift64*, uniform in [-1, 1)
  g_rng ^= g_rng >> 12, g_rng ^= g_rng << 25, g_rng ^= g_rng >> 27;
  return (float)((g_rng * 0x2545f4914f6cdd1dull) >> 40) / (float)(1 << 23) - 1.0f;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Mode {
  const char *name;
  l2c_dtype in, out;
  bool ta, tb;
};

}  // namespace

int main(int argc, char **argv) {
  std::vector<int64_t> sizes;
  int reps = 7;
  bool spread = false;  // --spread: also print the fastest and slowest run
  const char *only = nullptr;  // --only TEXT: the cases whose name contains TEXT
  bool use_blas = true;        // --no-blas: time ours alone
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--isa") && i + 1 < argc) l2c::cpu::set_isa(argv[++i]);
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--spread")) spread = true;
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else if (!std::strcmp(argv[i], "--no-blas")) use_blas = false;
    else sizes.push_back(std::atoll(argv[i]));
  }
  if (sizes.empty()) sizes = {512, 1024, 2048};
  // OpenBLAS is loaded (and starts its threads) before llm2clip's pool exists, as in a
  // process that imports numpy first; the pool's size rule is repeated here for that.
  const char *env = std::getenv("LLM2CLIP_NUM_THREADS");
  int threads = env && std::atoi(env) > 0 ? std::atoi(env)
                                          : (int)std::thread::hardware_concurrency();
  Blas blas = use_blas ? load_openblas(threads) : Blas{};
  threads = l2c::num_threads();
  // OpenBLAS's freshly started threads spin before they first sleep (see below).
  if (blas.sgemm) std::this_thread::sleep_for(std::chrono::milliseconds(400));
  std::printf("llm2clip matmul, isa %s, %d threads; OpenBLAS: %s\n", l2c::cpu::isa_name(), threads,
              blas.sgemm ? blas.name.c_str() : "not found");
  const Mode modes[] = {
      {"f32 NN", L2C_FLOAT32, L2C_FLOAT32, false, false},
      {"f32 NT", L2C_FLOAT32, L2C_FLOAT32, false, true},
      {"f32 TN", L2C_FLOAT32, L2C_FLOAT32, true, false},
      {"bf16 NN ->bf16", L2C_BFLOAT16, L2C_BFLOAT16, false, false},
      {"f16 NN ->f32", L2C_FLOAT16, L2C_FLOAT32, false, false},
  };
  std::printf("%-16s %6s %12s %12s %7s\n", "case", "size", "ours GF/s", "openblas", "ratio");
  for (int64_t n : sizes) {
    // Input sets are drawn up front and each library runs its calls back to back: a
    // pause between calls (drawing inputs) lets worker threads fall asleep, and on this
    // VM a woken worker can land on the caller's CPU and stay there, which then times
    // the scheduler rather than the kernel (OpenBLAS fell from ~340 to ~195 GFLOP/s at
    // 1024^3 when interleaved). Up to ~256 MB of distinct sets, reused round robin.
    int nsets = (int)std::max<int64_t>(1, std::min<int64_t>(reps + 1, (256 << 20) / (n * n * 12)));
    std::vector<std::vector<float>> a(nsets, std::vector<float>(n * n)), b = a;
    std::vector<std::vector<uint16_t>> ah(nsets), bh(nsets);
    for (int s = 0; s < nsets; s++)
      for (int64_t i = 0; i < n * n; i++) a[s][i] = urand(), b[s][i] = urand();
    std::vector<float> c(n * n), cref(n * n);
    std::vector<uint16_t> ch(n * n);
    for (const Mode &md : modes) {
      if (only && !std::strstr(md.name, only)) continue;
      bool half_in = md.in != L2C_FLOAT32;
      for (int s = 0; s < nsets && half_in; s++) {
        ah[s].resize(n * n), bh[s].resize(n * n);
        for (int64_t i = 0; i < n * n; i++) {
          ah[s][i] = md.in == L2C_BFLOAT16 ? l2c::f32_to_bf16(a[s][i]) : l2c::f32_to_f16(a[s][i]);
          bh[s][i] = md.in == L2C_BFLOAT16 ? l2c::f32_to_bf16(b[s][i]) : l2c::f32_to_f16(b[s][i]);
        }
      }
      l2c::MatmulParams p;
      p.in_dtype = md.in, p.out_dtype = md.out;
      p.M = p.N = p.K = n, p.lda = p.ldb = p.ldc = n;
      p.trans_a = md.ta, p.trans_b = md.tb;
      p.c = md.out == L2C_FLOAT32 ? (void *)c.data() : ch.data();
      std::vector<double> ours, theirs;
      for (int r = -1; r < reps; r++) {  // r = -1 warms caches, buffers and threads
        int s = (r + 1) % nsets;
        p.a = half_in ? (const void *)ah[s].data() : a[s].data();
        p.b = half_in ? (const void *)bh[s].data() : b[s].data();
        double t = now();
        l2c::cpu::matmul(p);
        if (r >= 0) ours.push_back(now() - t);
      }
      // OpenBLAS runs float32 on the same values (for 16-bit inputs: an f32 reference
      // point, OpenBLAS's packing reads 4-byte elements).
      for (int r = -1; r < reps && blas.sgemm; r++) {
        int s = (r + 1) % nsets;
        double t = now();
        blas.sgemm(101, md.ta ? 112 : 111, md.tb ? 112 : 111, (int)n, (int)n, (int)n, 1.0f,
                   a[s].data(), (int)n, b[s].data(), (int)n, 0.0f, cref.data(), (int)n);
        if (r >= 0) theirs.push_back(now() - t);
      }
      // OpenBLAS's idle threads spin for ~0.1 s (THREAD_TIMEOUT) before sleeping; let
      // them stop, or they steal a core from the next case's llm2clip runs.
      if (blas.sgemm) std::this_thread::sleep_for(std::chrono::milliseconds(400));
      double flop = 2.0 * n * n * n;
      double g_ours = flop / median(ours) / 1e9;
      if (!theirs.empty()) {
        double g_blas = flop / median(theirs) / 1e9;
        std::printf("%-16s %6lld %12.1f %12.1f %7.2f\n", md.name, (long long)n, g_ours, g_blas,
                    g_ours / g_blas);
      } else {
        std::printf("%-16s %6lld %12.1f %12s %7s\n", md.name, (long long)n, g_ours, "-", "-");
      }
      if (spread) {
        auto mm = [&](const std::vector<double> &v) {
          return std::make_pair(flop / *std::max_element(v.begin(), v.end()) / 1e9,
                                flop / *std::min_element(v.begin(), v.end()) / 1e9);
        };
        auto o = mm(ours);
        auto t = theirs.empty() ? std::make_pair(0.0, 0.0) : mm(theirs);
        std::printf("%23s ours %.0f..%.0f, openblas %.0f..%.0f\n", "", o.first, o.second,
                    t.first, t.second);
      }
      std::fflush(stdout);
    }
  }
  return 0;
}
