// gpu_bench.cc: l2c_gpu_bench, the timing half of bench/gpu/run.sh. Times the hot kernels
// through the C ABI (no Node needed): our GEMM, attention forward / backward, loraLinear
// beside the base GEMM of the same shape, and the InfoNCE loss. One JSON object per line
// on stdout ({"suite", "case", "ms", "tflop", ...}); bench/gpu/summarize.py turns the
// lines (with PyTorch's from torch_ref.py) into the report table.
// Usage: l2c_gpu_bench [--device cuda|cpu] [--quick] [--suite gemm|attention|lora|infonce]
// --device cpu with --quick is a smoke test for machines without a GPU.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "llm2clip.h"

namespace {

l2c_device g_dev{L2C_CUDA, 0};
bool g_quick = false;
std::string g_suite;
int g_failures = 0;

struct T {
  l2c_tensor t{};
  size_t bytes = 0;
  T() = default;
  T(const T &) = delete;
  T &operator=(const T &) = delete;
  ~T() {
    if (t.data) l2c_free(t.device, t.data);
  }
};

bool ok(l2c_status s, const std::string &what) {
  if (s == L2C_OK) return true;
  std::printf("{\"error\": \"%s: %s: %s\"}\n", what.c_str(), l2c_status_name(s), l2c_last_error());
  std::fflush(stdout);
  g_failures++;
  return false;
}

// A tensor on the bench device, filled with normal(0, std) (or uniform [lo, hi) when
// std < 0 is given as -1: then lo / hi), or left as is when fill is false.
bool make(T &x, l2c_dtype dt, std::vector<int64_t> shape, double std_ = 1.0, bool fill = true,
          uint64_t seed = 1) {
  x.t.dtype = dt;
  x.t.device = g_dev;
  x.t.ndim = (int32_t)shape.size();
  size_t n = 1;
  for (size_t i = 0; i < shape.size(); i++) {
    x.t.shape[i] = shape[i];
    n *= (size_t)shape[i];
  }
  x.bytes = n * l2c_dtype_size(dt);
  if (!ok(l2c_alloc(g_dev, x.bytes, &x.t.data), "alloc")) return false;
  if (fill && dt != L2C_INT32)
    return ok(l2c_random(&x.t, L2C_RANDOM_NORMAL, seed, 0.0, std_), "random");
  if (fill) return ok(l2c_fill(&x.t, 1.0), "fill");
  return true;
}

// Median milliseconds of fn over reps runs (each followed by a device sync), after warmup.
double time_ms(const std::function<bool()> &fn, int reps, int warmup = 1) {
  for (int i = 0; i < warmup; i++)
    if (!fn()) return -1;
  if (!ok(l2c_synchronize(g_dev), "synchronize")) return -1;
  std::vector<double> ts;
  for (int i = 0; i < reps; i++) {
    auto t0 = std::chrono::steady_clock::now();
    if (!fn()) return -1;
    if (!ok(l2c_synchronize(g_dev), "synchronize")) return -1;
    ts.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

void emit(const char *suite, const std::string &name, double ms, double flop, const std::string &extra = "") {
  if (ms < 0) return;
  std::printf("{\"suite\": \"%s\", \"case\": \"%s\", \"ms\": %.4f, \"tflop\": %.6f, \"tflops\": %.2f%s%s}\n",
              suite, name.c_str(), ms, flop / 1e12, flop / (ms * 1e-3) / 1e12, extra.empty() ? "" : ", ",
              extra.c_str());
  std::fflush(stdout);
}

const char *dname(l2c_dtype d) { return d == L2C_FLOAT32 ? "float32" : d == L2C_BFLOAT16 ? "bfloat16" : "float16"; }

double gemm_case(int64_t M, int64_t N, int64_t K, l2c_dtype dt, bool trans_b, int reps, const char *label = nullptr) {
  T a, b, c;
  if (!make(a, dt, {M, K}) || !make(b, dt, trans_b ? std::vector<int64_t>{N, K} : std::vector<int64_t>{K, N}) ||
      !make(c, dt, {M, N}, 1.0, false))
    return -1;
  l2c_matmul_args args{&a.t, &b.t, &c.t, 0, trans_b ? 1 : 0};
  double ms = time_ms([&] { return ok(l2c_matmul(&args), "matmul"); }, reps);
  std::string name = label ? label : std::string(dname(dt)) + " " + std::to_string(M) + "x" + std::to_string(N) + "x" +
                                         std::to_string(K) + (trans_b ? " bT" : "");
  emit("gemm", name, ms, 2.0 * M * N * K);
  return ms;
}

void bench_gemm() {
  int reps = g_quick ? 3 : 10;
  for (int64_t n : g_quick ? std::vector<int64_t>{256} : std::vector<int64_t>{2048, 4096, 8192})
    gemm_case(n, n, n, L2C_BFLOAT16, false, reps);
  int64_t n = g_quick ? 256 : 4096;
  gemm_case(n, n, n, L2C_BFLOAT16, true, reps);
  gemm_case(n, n, n, L2C_FLOAT16, false, reps);
  gemm_case(g_quick ? 128 : 2048, g_quick ? 128 : 2048, g_quick ? 128 : 2048, L2C_FLOAT32, false, reps);
}

void attention_case(int64_t B, int64_t S, int64_t Hq, int64_t Hkv, int64_t D, bool causal, l2c_dtype dt, int reps) {
  T q, k, v, out, lse, dout, dq, dk, dv;
  if (!make(q, dt, {B, S, Hq, D}) || !make(k, dt, {B, S, Hkv, D}, 1.0, true, 2) ||
      !make(v, dt, {B, S, Hkv, D}, 1.0, true, 3) || !make(out, dt, {B, S, Hq, D}, 1.0, false) ||
      !make(lse, L2C_FLOAT32, {B, Hq, S}, 1.0, false) || !make(dout, dt, {B, S, Hq, D}, 1.0, true, 4) ||
      !make(dq, dt, {B, S, Hq, D}, 1.0, false) || !make(dk, dt, {B, S, Hkv, D}, 1.0, false) ||
      !make(dv, dt, {B, S, Hkv, D}, 1.0, false))
    return;
  double scale = 1.0 / std::sqrt((double)D);
  l2c_attention_forward_args fa{&q.t, &k.t, &v.t, nullptr, &out.t, &lse.t, causal ? 1 : 0, scale};
  l2c_attention_backward_args ba{&dout.t, &q.t, &k.t, &v.t, &out.t, &lse.t, nullptr, &dq.t, &dk.t, &dv.t, causal ? 1 : 0, scale};
  double f = 4.0 * B * Hq * S * S * D * (causal ? 0.5 : 1.0);
  std::string name = std::string(dname(dt)) + " B" + std::to_string(B) + " S" + std::to_string(S) + " H" +
                     std::to_string(Hq) + "/" + std::to_string(Hkv) + " D" + std::to_string(D) + (causal ? " causal" : "");
  emit("attention", name + " fwd", time_ms([&] { return ok(l2c_attention_forward(&fa), "attention_forward"); }, reps), f);
  emit("attention", name + " bwd", time_ms([&] { return ok(l2c_attention_backward(&ba), "attention_backward"); }, reps), 2.5 * f);
}

void bench_attention() {
  int reps = g_quick ? 2 : 5;
  if (g_quick) {
    attention_case(1, 128, 4, 2, 64, false, L2C_BFLOAT16, reps);
    attention_case(1, 97, 2, 2, 40, true, L2C_FLOAT32, reps);
    return;
  }
  // FlashAttention's convention: batch x seqlen = 16k tokens, hidden 2048 (H = 2048 / D).
  for (int64_t D : {64, 128})
    for (int64_t S : {1024, 2048, 4096, 8192}) attention_case(16384 / S, S, 2048 / D, 2048 / D, D, false, L2C_BFLOAT16, reps);
  attention_case(4, 4096, 16, 16, 128, true, L2C_BFLOAT16, reps);
  attention_case(4, 4096, 32, 8, 128, false, L2C_BFLOAT16, reps);  // GQA 4:1 (Llama-3-8B)
}

void lora_case(int64_t N, int64_t in, int64_t out, int64_t r, l2c_dtype dt, int reps) {
  T x, w, a, b, y, dy, dx, da, db;
  double s = 1.0 / std::sqrt((double)in);
  if (!make(x, dt, {N, in}) || !make(w, dt, {out, in}, s, true, 2) || !make(a, L2C_FLOAT32, {r, in}, s, true, 3) ||
      !make(b, L2C_FLOAT32, {out, r}, 0.01, true, 4) || !make(y, dt, {N, out}, 1.0, false) ||
      !make(dy, dt, {N, out}, 1.0, true, 5) || !make(dx, dt, {N, in}, 1.0, false) ||
      !make(da, L2C_FLOAT32, {r, in}, 1.0, false) || !make(db, L2C_FLOAT32, {out, r}, 1.0, false))
    return;
  l2c_lora_forward_args fa{&x.t, &w.t, &a.t, &b.t, nullptr, &y.t, 2.0f, 0.0f, 0};
  l2c_lora_backward_args ba{&dy.t, &x.t, &w.t, &a.t, &b.t, &dx.t, &da.t, &db.t, 2.0f, 0.0f, 0};
  std::string name = std::string(dname(dt)) + " N" + std::to_string(N) + " in" + std::to_string(in) + " out" +
                     std::to_string(out) + " r" + std::to_string(r);
  // The base GEMMs of the same shapes, timed in the same run: y = x·Wᵀ and dx = dy·W.
  l2c_matmul_args fbase{&x.t, &w.t, &y.t, 0, 1}, bbase{&dy.t, &w.t, &dx.t, 0, 0};
  double base_f = time_ms([&] { return ok(l2c_matmul(&fbase), "matmul"); }, reps);
  double base_b = time_ms([&] { return ok(l2c_matmul(&bbase), "matmul"); }, reps);
  double gemm = 2.0 * N * in * out;
  emit("lora", name + " base fwd (x·Wᵀ)", base_f, gemm);
  emit("lora", name + " base bwd (dy·W)", base_b, gemm);
  double lf = time_ms([&] { return ok(l2c_lora_forward(&fa), "lora_forward"); }, reps);
  double lb = time_ms([&] { return ok(l2c_lora_backward(&ba), "lora_backward"); }, reps);
  char extra[96];
  std::snprintf(extra, sizeof extra, "\"vs_base\": %.3f", base_f > 0 ? lf / base_f : -1.0);
  emit("lora", name + " lora fwd", lf, gemm + 2.0 * N * r * (in + out), extra);
  std::snprintf(extra, sizeof extra, "\"vs_base\": %.3f", base_b > 0 ? lb / base_b : -1.0);
  emit("lora", name + " lora bwd", lb, gemm + 6.0 * N * r * (in + out), extra);
}

void bench_lora() {
  int reps = g_quick ? 2 : 5;
  if (g_quick) {
    lora_case(256, 256, 384, 16, L2C_BFLOAT16, reps);
    return;
  }
  lora_case(8192, 4096, 4096, 16, L2C_BFLOAT16, reps);
  lora_case(8192, 4096, 14336, 16, L2C_BFLOAT16, reps);
}

void infonce_case(int64_t N, int64_t d, l2c_dtype dt, int reps) {
  T a, b, loss, lr, lc, da, db, ds;
  double s = 1.0 / std::sqrt((double)d);
  if (!make(a, dt, {N, d}, s) || !make(b, dt, {N, d}, s, true, 2) || !make(loss, L2C_FLOAT32, {}, 1.0, false) ||
      !make(lr, L2C_FLOAT32, {N}, 1.0, false) || !make(lc, L2C_FLOAT32, {N}, 1.0, false) ||
      !make(da, dt, {N, d}, 1.0, false) || !make(db, dt, {N, d}, 1.0, false) || !make(ds, L2C_FLOAT32, {}, 1.0, false))
    return;
  l2c_infonce_args fa{&a.t, &b.t, 50.0, nullptr, 1, &loss.t, &lr.t, &lc.t};
  l2c_infonce_backward_args ba{&a.t, &b.t, 50.0, nullptr, 1, &lr.t, &lc.t, 1.0, nullptr, &da.t, &db.t, &ds.t};
  std::string name = std::string(dname(dt)) + " N=M=" + std::to_string(N) + " d" + std::to_string(d) + " symmetric";
  double f = 2.0 * N * N * d;
  emit("infonce", name + " fwd", time_ms([&] { return ok(l2c_infonce_forward(&fa), "infonce_forward"); }, reps), f);
  emit("infonce", name + " bwd", time_ms([&] { return ok(l2c_infonce_backward(&ba), "infonce_backward"); }, reps), 3 * f);
}

void bench_infonce() {
  if (g_quick) {
    infonce_case(512, 64, L2C_BFLOAT16, 2);
    return;
  }
  for (int64_t N : {16384, 65536}) infonce_case(N, 1024, L2C_BFLOAT16, N > 16384 ? 2 : 5);
  infonce_case(262144, 1024, L2C_BFLOAT16, 1);
}

}  // namespace

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--quick") g_quick = true;
    else if (a == "--device" && i + 1 < argc) g_dev = std::string(argv[++i]) == "cpu" ? l2c_device{L2C_CPU, 0} : l2c_device{L2C_CUDA, 0};
    else if (a == "--suite" && i + 1 < argc) g_suite = argv[++i];
    else {
      std::fprintf(stderr, "usage: l2c_gpu_bench [--device cuda|cpu] [--quick] [--suite gemm|attention|lora|infonce]\n");
      return 2;
    }
  }
  if (g_dev.type == L2C_CUDA && l2c_cuda_device_count() == 0) {
    std::printf("{\"error\": \"no CUDA device (compiled: %d)\"}\n", l2c_cuda_compiled());
    return 3;
  }
  if (g_dev.type == L2C_CUDA) {
    char name[256];
    if (l2c_cuda_device_name(0, name, sizeof name) == L2C_OK) std::printf("{\"device\": \"%s\"}\n", name);
  }
  struct { const char *name; void (*fn)(); } suites[] = {
      {"gemm", bench_gemm}, {"attention", bench_attention}, {"lora", bench_lora}, {"infonce", bench_infonce}};
  for (auto &s : suites)
    if (g_suite.empty() || g_suite == s.name) s.fn();
  return g_failures ? 1 : 0;
}
