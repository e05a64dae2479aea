// test_cuda_lora.cc: the CUDA lora kernels (cuda/lora.cu) against the CPU ones through
// the C ABI (l2c_lora.h): forward, backward (with and without dx), merge / unmerge, at
// odd sizes (tensor-core and SIMT paths of the GEMM, tiles with tails, r = 1, 8, 16 and
// r > 16, in / out / N / r = 0), with and without bias and dropout, every storage dtype
// and mixed adapter dtypes; the dropout mask exactly (W = 0 and identity adapters make
// y = drop(x) and dx = drop'(dy), so CPU and CUDA must agree to the bit); argument
// errors. Outputs are poisoned (NaN) before each call.
// Criterion (FlashAttention's): the truth is the CPU in float32 on the same values; a
// CUDA result passes when its largest error against the truth is at most twice the CPU's
// in the same storage dtypes, plus a floor of 1e-5 of the largest |truth| (+1e-6) for
// float32 rounding-order differences (for all-float32 calls the CPU's error is 0, so
// this is a 1e-5 max-norm relative bound). Every case skips without a CUDA device.
#include "dropout.h"
#include "llm2clip.h"
#include "test_cuda_util.h"

using namespace l2c_cuda_test;

namespace {

const l2c_device kCpu{L2C_CPU, 0};
const l2c_device kGpu{L2C_CUDA, kDev};
const float kNaN = std::numeric_limits<float>::quiet_NaN();

float to_float(const void *p, l2c_dtype dt, int64_t i) {
  switch (dt) {
    case L2C_BFLOAT16: return l2c::bf16_to_f32(static_cast<const uint16_t *>(p)[i]);
    case L2C_FLOAT16: return l2c::f16_to_f32(static_cast<const uint16_t *>(p)[i]);
    default: return static_cast<const float *>(p)[i];
  }
}
void from_float(void *p, l2c_dtype dt, int64_t i, float v) {
  switch (dt) {
    case L2C_BFLOAT16: static_cast<uint16_t *>(p)[i] = l2c::f32_to_bf16(v); break;
    case L2C_FLOAT16: static_cast<uint16_t *>(p)[i] = l2c::f32_to_f16(v); break;
    default: static_cast<float *>(p)[i] = v; break;
  }
}
// v rounded to dtype dt (and back).
float round_to(float v, l2c_dtype dt) {
  uint32_t b = 0;
  from_float(&b, dt, 0, v);
  return to_float(&b, dt, 0);
}

// One tensor of a call, on the CPU or the GPU, filled from floats (NaN when none given).
struct TBuf {
  l2c_device dev;
  l2c_dtype dt;
  std::vector<int64_t> shape;
  int64_t n = 1;
  size_t bytes;
  void *p;
  TBuf(l2c_device d, l2c_dtype t, std::vector<int64_t> s, const std::vector<float> *vals = nullptr)
      : dev(d), dt(t), shape(std::move(s)) {
    for (int64_t v : shape) n *= v;
    bytes = std::max<size_t>(16, (size_t)n * dsize(dt));
    std::vector<uint8_t> host(bytes, 0);
    for (int64_t i = 0; i < n; i++) from_float(host.data(), dt, i, vals ? (*vals)[i] : kNaN);
    if (dev.type == L2C_CPU) {
      p = cpu::alloc(bytes);
      std::memcpy(p, host.data(), bytes);
    } else {
      p = cuda::alloc(dev.index, bytes);
      cuda::copy_h2d(dev.index, p, host.data(), bytes);
    }
  }
  ~TBuf() {
    try {
      if (dev.type == L2C_CPU)
        cpu::free(p);
      else
        cuda::free(dev.index, p);
    } catch (...) {
    }
  }
  TBuf(const TBuf &) = delete;
  TBuf &operator=(const TBuf &) = delete;
  l2c_tensor t() const {
    l2c_tensor r{};
    r.data = n == 0 ? nullptr : p;
    r.dtype = dt;
    r.device = dev;
    r.ndim = (int32_t)shape.size();
    for (size_t i = 0; i < shape.size(); i++) r.shape[i] = shape[i];
    return r;
  }
  std::vector<float> read() const {
    std::vector<uint8_t> host(bytes);
    if (dev.type == L2C_CPU)
      std::memcpy(host.data(), p, bytes);
    else
      cuda::copy_d2h(dev.index, host.data(), p, bytes);
    std::vector<float> v((size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = to_float(host.data(), dt, i);
    return v;
  }
};

struct Dims {
  int64_t N, in, out, r;
};

// Inputs as floats already representable in their storage dtypes.
struct Inputs {
  Dims d;
  std::vector<float> x, W, A, B, bias, dy;
};

Inputs random_inputs(const Dims &d, l2c_dtype dt, l2c_dtype adt, uint64_t seed) {
  Inputs v;
  v.d = d;
  Rng rng(seed);
  auto gen = [&](int64_t n, l2c_dtype t, float lo, float hi) {
    std::vector<float> a((size_t)n);
    for (auto &e : a) e = round_to(rng.uniform(lo, hi), t);
    return a;
  };
  v.x = gen(d.N * d.in, dt, -1, 1);
  v.W = gen(d.out * d.in, dt, -1, 1);
  v.A = gen(d.r * d.in, adt, -1, 1);
  v.B = gen(d.out * d.r, adt, -1, 1);
  v.bias = gen(d.out, dt, -1, 1);
  v.dy = gen(d.N * d.out, dt, -1, 1);
  return v;
}

struct Opts {
  float scale = 1.0f, p = 0.0f;
  uint64_t seed = 0;
  bool bias = false;
  bool need_dx = true;
};

std::string status_msg(l2c_status s) { return std::string(l2c_status_name(s)) + ": " + l2c_last_error(); }

// y on `dev`; x and y get two leading dims ([2, N/2, ·]) when N is even, else one.
std::vector<float> forward_on(l2c_device dev, const Inputs &v, l2c_dtype dt, l2c_dtype adt, const Opts &o,
                              l2c_status *st = nullptr) {
  const Dims &d = v.d;
  std::vector<int64_t> xs = {d.N, d.in}, ys = {d.N, d.out};
  if (d.N % 2 == 0 && d.N > 0) xs = {2, d.N / 2, d.in}, ys = {2, d.N / 2, d.out};  // leading dims
  TBuf x(dev, dt, xs, &v.x), W(dev, dt, {d.out, d.in}, &v.W), A(dev, adt, {d.r, d.in}, &v.A),
      B(dev, adt, {d.out, d.r}, &v.B), bias(dev, dt, {d.out}, &v.bias), y(dev, dt, ys);
  l2c_tensor tx = x.t(), tw = W.t(), ta = A.t(), tb = B.t(), tbias = bias.t(), ty = y.t();
  l2c_lora_forward_args a{&tx, &tw, &ta, &tb, o.bias ? &tbias : nullptr, &ty, o.scale, o.p, o.seed};
  l2c_status s = l2c_lora_forward(&a);
  if (st) *st = s;
  L2C_EXPECT(s == L2C_OK, "lora_forward on " << (dev.type == L2C_CPU ? "cpu" : "cuda") << ": " << status_msg(s));
  return y.read();
}

struct Grads {
  std::vector<float> dx, dA, dB;
};

Grads backward_on(l2c_device dev, const Inputs &v, l2c_dtype dt, l2c_dtype adt, const Opts &o) {
  const Dims &d = v.d;
  TBuf dy(dev, dt, {d.N, d.out}, &v.dy), x(dev, dt, {d.N, d.in}, &v.x), W(dev, dt, {d.out, d.in}, &v.W),
      A(dev, adt, {d.r, d.in}, &v.A), B(dev, adt, {d.out, d.r}, &v.B), dx(dev, dt, {d.N, d.in}),
      dA(dev, adt, {d.r, d.in}), dB(dev, adt, {d.out, d.r});
  l2c_tensor tdy = dy.t(), tx = x.t(), tw = W.t(), ta = A.t(), tb = B.t(), tdx = dx.t(), tda = dA.t(), tdb = dB.t();
  l2c_lora_backward_args a{&tdy, &tx, &tw, &ta, &tb, o.need_dx ? &tdx : nullptr, &tda, &tdb, o.scale, o.p, o.seed};
  l2c_status s = l2c_lora_backward(&a);
  L2C_EXPECT(s == L2C_OK, "lora_backward on " << (dev.type == L2C_CPU ? "cpu" : "cuda") << ": " << status_msg(s));
  Grads g;
  if (o.need_dx) g.dx = dx.read();
  g.dA = dA.read();
  g.dB = dB.read();
  return g;
}

std::vector<float> merge_on(l2c_device dev, const Inputs &v, l2c_dtype dt, l2c_dtype adt, float scale, bool unmerge) {
  const Dims &d = v.d;
  TBuf W(dev, dt, {d.out, d.in}, &v.W), A(dev, adt, {d.r, d.in}, &v.A), B(dev, adt, {d.out, d.r}, &v.B);
  l2c_tensor tw = W.t(), ta = A.t(), tb = B.t();
  l2c_lora_merge_args a{&tw, &ta, &tb, scale};
  l2c_status s = unmerge ? l2c_lora_unmerge(&a) : l2c_lora_merge(&a);
  L2C_EXPECT(s == L2C_OK, "lora_(un)merge on " << (dev.type == L2C_CPU ? "cpu" : "cuda") << ": " << status_msg(s));
  return W.read();
}

double max_err(const std::vector<float> &a, const std::vector<float> &truth) {
  double e = 0;
  for (size_t i = 0; i < a.size(); i++) {
    const double d = std::fabs((double)a[i] - (double)truth[i]);
    if (!(d <= e)) e = std::isnan(d) ? INFINITY : d;
  }
  return e;
}

// The criterion of the file comment.
void expect_close(const std::string &what, const std::vector<float> &gpu, const std::vector<float> &cpu,
                  const std::vector<float> &truth) {
  L2C_EXPECT(gpu.size() == truth.size() && cpu.size() == truth.size(), what << ": sizes");
  if (gpu.size() != truth.size()) return;
  double scale = 0;
  for (float t : truth) scale = std::max(scale, (double)std::fabs(t));
  const double eg = max_err(gpu, truth), ec = max_err(cpu, truth);
  const double bound = 2 * ec + 1e-5 * scale + 1e-6;
  L2C_EXPECT(eg <= bound, what << ": cuda error " << eg << " > bound " << bound << " (cpu error " << ec
                               << ", max |truth| " << scale << ")");
}

std::string desc(const Dims &d, l2c_dtype dt, l2c_dtype adt, const Opts &o) {
  return "N " + std::to_string(d.N) + " in " + std::to_string(d.in) + " out " + std::to_string(d.out) + " r " +
         std::to_string(d.r) + " " + l2c::dtype_name(dt) + "/" + l2c::dtype_name(adt) + (o.bias ? " bias" : "") +
         " p " + std::to_string(o.p) + " scale " + std::to_string(o.scale);
}

// Sizes: tensor-core GEMM for 16-bit x when in (forward) / out and in (backward) are
// multiples of 8; tails of its 128 x 256 tiles; r across the epilogue's 16-wide chunks.
const Dims kSizes[] = {
    {1, 1, 1, 1},     {7, 13, 11, 1},    {37, 70, 45, 8},    {130, 264, 300, 16}, {129, 200, 257, 16},
    {64, 96, 80, 24}, {200, 1030, 70, 8}, {300, 64, 520, 16}, {33, 0, 5, 4},       {0, 5, 7, 3},
    {5, 8, 0, 2},     {9, 16, 24, 0},    {3, 40, 8, 33},
};
const l2c_dtype kTypes[][2] = {{L2C_FLOAT32, L2C_FLOAT32},   {L2C_BFLOAT16, L2C_BFLOAT16}, {L2C_FLOAT16, L2C_FLOAT16},
                               {L2C_BFLOAT16, L2C_FLOAT32},  {L2C_FLOAT16, L2C_FLOAT32},   {L2C_FLOAT32, L2C_BFLOAT16}};

L2C_TEST(cuda_lora_forward_matches_cpu) {
  REQUIRE_CUDA();
  uint64_t seed = 100;
  int k = 0;
  for (const Dims &d : kSizes)
    for (const auto &ty : kTypes)
      for (float p : {0.0f, 0.25f}) {
        Opts o;
        o.scale = (k % 3 == 0) ? 2.0f : 0.5f;
        o.p = p;
        o.seed = 0x1234567890abcdefull + (uint64_t)k;
        o.bias = (k++ % 2) == 0;
        const Inputs v = random_inputs(d, ty[0], ty[1], seed++);
        const std::vector<float> gpu = forward_on(kGpu, v, ty[0], ty[1], o);
        const std::vector<float> cpu = forward_on(kCpu, v, ty[0], ty[1], o);
        const std::vector<float> truth = forward_on(kCpu, v, L2C_FLOAT32, L2C_FLOAT32, o);
        expect_close("forward " + desc(d, ty[0], ty[1], o), gpu, cpu, truth);
      }
}

L2C_TEST(cuda_lora_backward_matches_cpu) {
  REQUIRE_CUDA();
  uint64_t seed = 200;
  int k = 0;
  for (const Dims &d : kSizes)
    for (const auto &ty : kTypes)
      for (float p : {0.0f, 0.25f}) {
        Opts o;
        o.scale = (k % 3 == 0) ? 2.0f : 0.5f;
        o.p = p;
        o.seed = 0xfeedfacecafef00dull + (uint64_t)k;
        o.need_dx = (k++ % 4) != 3;
        const Inputs v = random_inputs(d, ty[0], ty[1], seed++);
        const Grads gpu = backward_on(kGpu, v, ty[0], ty[1], o);
        const Grads cpu = backward_on(kCpu, v, ty[0], ty[1], o);
        const Grads truth = backward_on(kCpu, v, L2C_FLOAT32, L2C_FLOAT32, o);
        const std::string what = desc(d, ty[0], ty[1], o) + (o.need_dx ? "" : " (no dx)");
        if (o.need_dx) expect_close("dx " + what, gpu.dx, cpu.dx, truth.dx);
        expect_close("d_a " + what, gpu.dA, cpu.dA, truth.dA);
        expect_close("d_b " + what, gpu.dB, cpu.dB, truth.dB);
      }
}

// W = 0, A = I [r, in], B = I [out, r] (in = out = r), scale 1, no bias: y = drop(x) and
// dx = drop'(dy) elementwise, each a single product, so CPU and CUDA agree exactly and
// every element is either 0 (dropped) or the kept value times 1/(1-p), rounded once.
L2C_TEST(cuda_lora_dropout_mask_is_the_cpus) {
  REQUIRE_CUDA();
  const l2c_dtype dts[] = {L2C_FLOAT32, L2C_BFLOAT16, L2C_FLOAT16};
  const Dims sizes[] = {{53, 37, 37, 37}, {70, 40, 40, 40}, {5, 1, 1, 1}, {257, 8, 8, 8}};
  uint64_t seed = 300;
  for (const Dims &d : sizes)
    for (l2c_dtype dt : dts)
      for (l2c_dtype adt : {dt, L2C_FLOAT32})
        for (float p : {0.1f, 0.5f}) {
          Inputs v = random_inputs(d, dt, adt, seed++);
          std::fill(v.W.begin(), v.W.end(), 0.0f);
          for (int64_t j = 0; j < d.r; j++)
            for (int64_t k = 0; k < d.in; k++) v.A[j * d.in + k] = j == k ? 1.0f : 0.0f;
          for (int64_t o = 0; o < d.out; o++)
            for (int64_t j = 0; j < d.r; j++) v.B[o * d.r + j] = o == j ? 1.0f : 0.0f;
          Opts o;
          o.p = p;
          o.seed = seed * 7919;
          const std::string what = desc(d, dt, adt, o);
          const std::vector<float> gy = forward_on(kGpu, v, dt, adt, o), cy = forward_on(kCpu, v, dt, adt, o);
          const float inv = l2c::dropout::scale(p);
          int64_t bad = 0, dropped = 0;
          for (size_t i = 0; i < gy.size(); i++) {
            const bool same = gy[i] == cy[i];  // +0 == -0
            const bool form = gy[i] == 0.0f || gy[i] == round_to(v.x[i] * inv, dt);
            if (!same || !form) bad++;
            if (cy[i] == 0.0f && v.x[i] != 0.0f) dropped++;
          }
          L2C_EXPECT(bad == 0, "forward " << what << ": " << bad << " elements differ from the CPU's drop(x)");
          // Not a statistics test: only that the mask is neither empty nor full.
          const int64_t n = (int64_t)gy.size();
          L2C_EXPECT(n < 50 || (dropped > 0 && dropped < n), "forward " << what << ": " << dropped << " of " << n
                                                                        << " dropped");
          const Grads gg = backward_on(kGpu, v, dt, adt, o), cg = backward_on(kCpu, v, dt, adt, o);
          bad = 0;
          for (size_t i = 0; i < gg.dx.size(); i++) {
            const bool same = gg.dx[i] == cg.dx[i];
            const bool form = gg.dx[i] == 0.0f || gg.dx[i] == round_to(v.dy[i] * inv, dt);
            if (!same || !form) bad++;
          }
          L2C_EXPECT(bad == 0, "dx " << what << ": " << bad << " elements differ from the CPU's drop'(dy)");
          // Where x is dropped, dx is too: the same mask in forward and backward.
          int64_t mismatch = 0;
          for (size_t i = 0; i < gy.size(); i++)
            if ((gy[i] == 0.0f) != (gg.dx[i] == 0.0f) && v.x[i] != 0.0f && v.dy[i] != 0.0f) mismatch++;
          L2C_EXPECT(mismatch == 0, what << ": forward and backward masks differ at " << mismatch << " elements");
        }
}

L2C_TEST(cuda_lora_merge_matches_cpu) {
  REQUIRE_CUDA();
  const Dims sizes[] = {{0, 1, 1, 1}, {0, 13, 11, 1}, {0, 70, 45, 8}, {0, 264, 300, 16}, {0, 96, 80, 33},
                        {0, 5, 7, 0}, {0, 0, 4, 2}};
  uint64_t seed = 400;
  for (const Dims &d : sizes)
    for (const auto &ty : kTypes)
      for (bool unmerge : {false, true}) {
        const Inputs v = random_inputs(d, ty[0], ty[1], seed++);
        const float scale = unmerge ? 0.75f : 2.0f;
        const std::vector<float> gpu = merge_on(kGpu, v, ty[0], ty[1], scale, unmerge);
        const std::vector<float> cpu = merge_on(kCpu, v, ty[0], ty[1], scale, unmerge);
        const std::vector<float> truth = merge_on(kCpu, v, L2C_FLOAT32, L2C_FLOAT32, scale, unmerge);
        Opts o;
        o.scale = scale;
        expect_close(std::string(unmerge ? "unmerge " : "merge ") + desc(d, ty[0], ty[1], o), gpu, cpu, truth);
      }
}

// Larger products: several GEMM tiles in both directions, long K.
L2C_TEST(cuda_lora_larger) {
  REQUIRE_CUDA();
  const Dims sizes[] = {{520, 1024, 600, 16}, {384, 2048, 264, 8}};
  uint64_t seed = 500;
  for (const Dims &d : sizes)
    for (const auto &ty : {kTypes[1], kTypes[2], kTypes[3]})
      for (float p : {0.0f, 0.1f}) {
        Opts o;
        o.scale = 2.0f;
        o.p = p;
        o.seed = seed;
        o.bias = true;
        const Inputs v = random_inputs(d, ty[0], ty[1], seed++);
        expect_close("forward " + desc(d, ty[0], ty[1], o), forward_on(kGpu, v, ty[0], ty[1], o),
                     forward_on(kCpu, v, ty[0], ty[1], o), forward_on(kCpu, v, L2C_FLOAT32, L2C_FLOAT32, o));
        const Grads gpu = backward_on(kGpu, v, ty[0], ty[1], o), cpu = backward_on(kCpu, v, ty[0], ty[1], o),
                    truth = backward_on(kCpu, v, L2C_FLOAT32, L2C_FLOAT32, o);
        expect_close("dx " + desc(d, ty[0], ty[1], o), gpu.dx, cpu.dx, truth.dx);
        expect_close("d_a " + desc(d, ty[0], ty[1], o), gpu.dA, cpu.dA, truth.dA);
        expect_close("d_b " + desc(d, ty[0], ty[1], o), gpu.dB, cpu.dB, truth.dB);
      }
}

// Tensors on two devices, a device that does not exist, bad shapes on the GPU.
L2C_TEST(cuda_lora_errors) {
  REQUIRE_CUDA();
  const Dims d{4, 8, 6, 2};
  const Inputs v = random_inputs(d, L2C_FLOAT32, L2C_FLOAT32, 600);
  TBuf x(kCpu, L2C_FLOAT32, {4, 8}, &v.x), W(kGpu, L2C_FLOAT32, {6, 8}, &v.W), A(kGpu, L2C_FLOAT32, {2, 8}, &v.A),
      B(kGpu, L2C_FLOAT32, {6, 2}, &v.B), y(kGpu, L2C_FLOAT32, {4, 6}), xg(kGpu, L2C_FLOAT32, {4, 8}, &v.x),
      dy(kGpu, L2C_FLOAT32, {4, 6}, &v.dy), dA(kGpu, L2C_FLOAT32, {2, 8}), dB(kGpu, L2C_FLOAT32, {6, 2});
  l2c_tensor tx = x.t(), tw = W.t(), ta = A.t(), tb = B.t(), ty = y.t(), txg = xg.t(), tdy = dy.t(), tda = dA.t(),
             tdb = dB.t();
  l2c_lora_forward_args f{&tx, &tw, &ta, &tb, nullptr, &ty, 1.0f, 0.0f, 0};
  L2C_EXPECT(l2c_lora_forward(&f) == L2C_DEVICE_MISMATCH, "x on the CPU: " << l2c_last_error());
  l2c_tensor gone = txg;
  gone.device.index = cuda::device_count();  // one past the last device
  f.x = &gone;
  l2c_status s = l2c_lora_forward(&f);
  L2C_EXPECT(s == L2C_DEVICE_UNAVAILABLE || s == L2C_DEVICE_MISMATCH, "a missing device: " << status_msg(s));
  l2c_tensor bad = txg;
  bad.shape[1] = 7;
  f.x = &bad;
  L2C_EXPECT(l2c_lora_forward(&f) == L2C_SHAPE_MISMATCH, "x [4,7]: " << l2c_last_error());
  l2c_lora_backward_args bw{&tdy, &tx, &tw, &ta, &tb, nullptr, &tda, &tdb, 1.0f, 0.0f, 0};
  L2C_EXPECT(l2c_lora_backward(&bw) == L2C_DEVICE_MISMATCH, "backward, x on the CPU: " << l2c_last_error());
  bw.x = &txg;
  bw.dropout_p = 1.0f;
  L2C_EXPECT(l2c_lora_backward(&bw) == L2C_INVALID_ARGUMENT, "p = 1: " << l2c_last_error());
  bw.dropout_p = 0.0f;
  L2C_EXPECT(l2c_lora_backward(&bw) == L2C_OK, "backward: " << l2c_last_error());
  l2c_lora_merge_args m{&tw, &ta, &tb, 1.0f};
  m.lora_a = &tx;  // [4, 8] on the CPU
  L2C_EXPECT(l2c_lora_merge(&m) == L2C_DEVICE_MISMATCH, "merge, lora_a on the CPU: " << l2c_last_error());
}

}  // namespace
