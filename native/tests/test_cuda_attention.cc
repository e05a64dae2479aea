// test_cuda_attention.cc: the CUDA attention kernels (cuda/attention_fwd.cu,
// attention_bwd.cu) checked against the CPU kernels through the C ABI
// (l2c_attention_forward / l2c_attention_backward): fresh random inputs at odd sizes,
// head dims 40 / 64 / 72 / 100 / 128 / 256 (the tensor-core kernels for 16-bit D <= 128,
// with its element-wise load path for D % 8 != 0 and for misaligned pointers; the SIMT
// kernels for float32 and D = 256), S = 1 / 37 / 300 and a larger S = 1024 on the
// tensor cores, grouped-query attention, causal, left / right padding with a batch whose
// keys are all masked (rows with no key at all), outputs poisoned with NaN first.
//
// Criteria. float32: every element within 1e-4·max|ref| + 1e-5 of the CPU float32 result
// (both compute in float32, in different orders: sums of hundreds of terms of size <= ~4
// drift by ~1e-6; any indexing or masking bug is off by ~0.1). bfloat16 / float16
// (FlashAttention's criterion): the truth is the CPU in float32 on the same (rounded)
// inputs; the GPU's max error against it must be <= 2x the CPU's max error computing the
// same in 16-bit storage (which rounds only the outputs; the tensor cores also round P
// and dS to 16 bits, as FlashAttention does), plus a floor of one 16-bit ulp of the
// largest truth value and 1e-5 absolute (for gradients that are pure rounding noise,
// e.g. dq = dk = 0 in exact arithmetic when a row has one key). lse (float32 in every
// dtype, from the same exactly representable inputs): within 5e-5·(1 + |ref|), and -inf
// exactly where the CPU has -inf. Rows with no key must give exact zeros (out, dq), and
// masked keys exact zeros (dk, dv).
//
// Every GPU case skips without a CUDA device; the argument-error cases that need no
// device run everywhere. Plain C++ (g++).
#include <memory>

#include "attention_cuda.h"
#include "llm2clip.h"
#include "test_cuda_util.h"

using namespace l2c_cuda_test;

namespace {

enum MaskKind { kNoMask, kLeftPad, kRightPad };

struct AttnCase {
  int64_t B, S, Hq, Hkv, D;
  l2c_dtype dt;
  bool causal;
  MaskKind mask;
  double scale = 0;       // 0: 1/sqrt(D)
  bool misalign = false;  // device tensors one element past an aligned address
};

std::string case_name(const AttnCase &c) {
  std::string s = std::string(l2c::dtype_name(c.dt)) + " B" + std::to_string(c.B) + " S" + std::to_string(c.S) +
                  " Hq" + std::to_string(c.Hq) + " Hkv" + std::to_string(c.Hkv) + " D" + std::to_string(c.D);
  if (c.causal) s += " causal";
  if (c.mask == kLeftPad) s += " left-pad";
  if (c.mask == kRightPad) s += " right-pad";
  if (c.scale != 0) s += " scale " + std::to_string(c.scale);
  if (c.misalign) s += " misaligned";
  return s;
}

float load_f(const void *p, l2c_dtype dt, int64_t i) {
  switch (dt) {
    case L2C_FLOAT32: return static_cast<const float *>(p)[i];
    case L2C_BFLOAT16: return l2c::bf16_to_f32(static_cast<const uint16_t *>(p)[i]);
    case L2C_FLOAT16: return l2c::f16_to_f32(static_cast<const uint16_t *>(p)[i]);
    default: return 0;
  }
}
void store_f(void *p, l2c_dtype dt, int64_t i, float v) {
  switch (dt) {
    case L2C_FLOAT32: static_cast<float *>(p)[i] = v; break;
    case L2C_BFLOAT16: static_cast<uint16_t *>(p)[i] = l2c::f32_to_bf16(v); break;
    case L2C_FLOAT16: static_cast<uint16_t *>(p)[i] = l2c::f32_to_f16(v); break;
    default: break;
  }
}

l2c_tensor make_tensor(void *data, l2c_dtype dt, l2c_device dev, std::initializer_list<int64_t> shape) {
  l2c_tensor t{};
  t.data = data;
  t.dtype = dt;
  t.device = dev;
  t.ndim = (int32_t)shape.size();
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  return t;
}

const l2c_device kCpu = {L2C_CPU, 0};
const l2c_device kGpu = {L2C_CUDA, kDev};

// A set of attention tensors on one device: q, k, v, dout (inputs), out, lse, dq, dk, dv
// (outputs), mask. Device tensors may sit one element past their allocation's start.
struct AttnTensors {
  l2c_device dev;
  l2c_dtype dt;
  std::vector<std::unique_ptr<HostBuf>> hbufs;
  std::vector<std::unique_ptr<DevBuf>> dbufs;
  l2c_tensor q, k, v, dout, out, lse, dq, dk, dv, mask;
  bool has_mask;

  void *buffer(size_t bytes, size_t offset) {
    if (dev.type == L2C_CPU) {
      hbufs.emplace_back(new HostBuf(bytes + offset + 16));
      return static_cast<char *>(hbufs.back()->p) + offset;
    }
    dbufs.emplace_back(new DevBuf(kDev, bytes + offset + 16));
    return static_cast<char *>(dbufs.back()->p) + offset;
  }

  AttnTensors(l2c_device d, l2c_dtype t, const AttnCase &c, bool with_mask) : dev(d), dt(t), has_mask(with_mask) {
    const size_t es = dsize(t), off = c.misalign && d.type == L2C_CUDA ? es : 0;
    const int64_t nq = c.B * c.S * c.Hq * c.D, nk = c.B * c.S * c.Hkv * c.D;
    auto qshape = [&](void *p) { return make_tensor(p, t, d, {c.B, c.S, c.Hq, c.D}); };
    auto kshape = [&](void *p) { return make_tensor(p, t, d, {c.B, c.S, c.Hkv, c.D}); };
    q = qshape(buffer(nq * es, off));
    k = kshape(buffer(nk * es, off));
    v = kshape(buffer(nk * es, off));
    dout = qshape(buffer(nq * es, off));
    out = qshape(buffer(nq * es, off));
    dq = qshape(buffer(nq * es, off));
    dk = kshape(buffer(nk * es, off));
    dv = kshape(buffer(nk * es, off));
    lse = make_tensor(buffer(c.B * c.Hq * c.S * 4, off ? 4 : 0), L2C_FLOAT32, d, {c.B, c.Hq, c.S});
    mask = make_tensor(buffer(c.B * c.S * 4, 0), L2C_INT32, d, {c.B, c.S});
  }

  l2c_status forward(const AttnCase &c) {
    l2c_attention_forward_args a{};
    a.q = &q;
    a.k = &k;
    a.v = &v;
    a.key_padding_mask = has_mask ? &mask : nullptr;
    a.out = &out;
    a.lse = &lse;
    a.causal = c.causal;
    a.scale = c.scale != 0 ? c.scale : 1.0 / std::sqrt((double)c.D);
    return l2c_attention_forward(&a);
  }
  l2c_status backward(const AttnCase &c) {
    l2c_attention_backward_args a{};
    a.dout = &dout;
    a.q = &q;
    a.k = &k;
    a.v = &v;
    a.out = &out;
    a.lse = &lse;
    a.key_padding_mask = has_mask ? &mask : nullptr;
    a.dq = &dq;
    a.dk = &dk;
    a.dv = &dv;
    a.causal = c.causal;
    a.scale = c.scale != 0 ? c.scale : 1.0 / std::sqrt((double)c.D);
    return l2c_attention_backward(&a);
  }
  void poison_outputs() {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (l2c_tensor *t : {&out, &lse, &dq, &dk, &dv}) {
      l2c_status s = l2c_fill(t, nan);
      L2C_EXPECT(s == L2C_OK, "poison: " << l2c_last_error());
    }
  }
};

int64_t numel(const l2c_tensor &t) {
  int64_t n = 1;
  for (int i = 0; i < t.ndim; i++) n *= t.shape[i];
  return n;
}

// src (host floats) into t (any device, t's dtype).
void upload(const l2c_tensor &t, const std::vector<float> &src) {
  const int64_t n = numel(t);
  HostBuf h(n * dsize(t.dtype) + 16);
  for (int64_t i = 0; i < n; i++) store_f(h.p, t.dtype, i, src[i]);
  l2c_tensor ht = t;
  ht.data = h.p;
  ht.device = kCpu;
  l2c_status s = l2c_copy(&t, &ht);
  L2C_EXPECT(s == L2C_OK, "upload: " << l2c_last_error());
}
void upload_i32(const l2c_tensor &t, const std::vector<int32_t> &src) {
  l2c_tensor ht = t;
  ht.data = const_cast<int32_t *>(src.data());
  ht.device = kCpu;
  l2c_status s = l2c_copy(&t, &ht);
  L2C_EXPECT(s == L2C_OK, "upload: " << l2c_last_error());
}
std::vector<float> download(const l2c_tensor &t) {
  const int64_t n = numel(t);
  HostBuf h(n * dsize(t.dtype) + 16);
  l2c_tensor ht = t;
  ht.data = h.p;
  ht.device = kCpu;
  l2c_status s = l2c_copy(&ht, &t);
  L2C_EXPECT(s == L2C_OK, "download: " << l2c_last_error());
  std::vector<float> r(n);
  for (int64_t i = 0; i < n; i++) r[i] = load_f(h.p, t.dtype, i);
  return r;
}

double max_abs(const std::vector<float> &a) {
  double m = 0;
  for (float x : a) m = std::max(m, (double)std::fabs(x));
  return m;
}
// max |a - b|; NaN anywhere gives +inf.
double max_err(const std::vector<float> &a, const std::vector<float> &b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); i++) {
    double d = std::fabs((double)a[i] - (double)b[i]);
    if (!(d == d)) return std::numeric_limits<double>::infinity();
    m = std::max(m, d);
  }
  return m;
}

// The GPU result of one tensor against the truth (CPU float32), and for 16-bit dtypes
// against the CPU's own error in that dtype.
void check_tensor(const std::string &what, const char *name, l2c_dtype dt, const std::vector<float> &gpu,
                  const std::vector<float> &truth, const std::vector<float> *cpu16) {
  const double e_gpu = max_err(gpu, truth), mag = max_abs(truth);
  double bound;
  if (dt == L2C_FLOAT32) {
    bound = 1e-4 * mag + 1e-5;
  } else {
    const double e_cpu = max_err(*cpu16, truth);
    const double ulp = dt == L2C_BFLOAT16 ? 0x1p-7 : 0x1p-10;
    bound = 2 * e_cpu + ulp * mag + 1e-5;
  }
  L2C_EXPECT(e_gpu <= bound, what << ": " << name << " max error " << e_gpu << " > bound " << bound
                                  << " (max |truth| " << mag << ")");
}

void check_lse(const std::string &what, const std::vector<float> &gpu, const std::vector<float> &truth) {
  int64_t bad = 0;
  std::string first;
  for (size_t i = 0; i < gpu.size(); i++) {
    const float g = gpu[i], r = truth[i];
    bool ok;
    if (std::isinf(r) && r < 0) ok = std::isinf(g) && g < 0;
    else ok = std::fabs((double)g - r) <= 5e-5 * (1 + std::fabs((double)r));  // NaN fails
    if (!ok && bad++ == 0) first = "lse[" + std::to_string(i) + "] gpu " + std::to_string(g) + " cpu " + std::to_string(r);
  }
  L2C_EXPECT(bad == 0, what << ": " << bad << " bad lse values, first " << first);
}

// Inputs of a case: values rounded to the case's dtype (so that the float32 truth sees
// exactly what the 16-bit kernels see), and the mask.
struct Inputs {
  std::vector<float> q, k, v, dout;
  std::vector<int32_t> mask;
};

Inputs make_inputs(const AttnCase &c, uint64_t seed) {
  Inputs in;
  Rng rng(seed);
  const int64_t nq = c.B * c.S * c.Hq * c.D, nk = c.B * c.S * c.Hkv * c.D;
  auto fill = [&](std::vector<float> &x, int64_t n, float lo, float hi) {
    x.resize(n);
    for (int64_t i = 0; i < n; i++) {
      float f = rng.uniform(lo, hi);
      if (c.dt == L2C_BFLOAT16) f = l2c::bf16_to_f32(l2c::f32_to_bf16(f));
      if (c.dt == L2C_FLOAT16) f = l2c::f16_to_f32(l2c::f32_to_f16(f));
      x[i] = f;
    }
  };
  fill(in.q, nq, -2, 2);  // wider than k: some peaked softmax rows
  fill(in.k, nk, -1, 1);
  fill(in.v, nk, -1, 1);
  fill(in.dout, nq, -1, 1);
  // Padding: batch 0 loses a third of its keys (at the start or the end; under causality
  // left padding leaves its first rows with no key at all); every other odd batch loses
  // all of them. Attendable keys get assorted nonzero values.
  in.mask.assign(c.B * c.S, 1);
  if (c.mask != kNoMask) {
    for (int64_t b = 0; b < c.B; b++) {
      const int64_t pad = b % 2 == 1 ? c.S : (b == 0 ? c.S / 3 : c.S / 5);
      for (int64_t j = 0; j < c.S; j++) {
        const bool masked = c.mask == kLeftPad ? j < pad : j >= c.S - pad;
        in.mask[b * c.S + j] = masked ? 0 : (j % 3 == 0 ? 1 : j % 3 == 1 ? 7 : -2);
      }
    }
  }
  return in;
}

void run_case(const AttnCase &c, uint64_t seed) {
  const std::string what = case_name(c);
  const bool with_mask = c.mask != kNoMask;
  Inputs in = make_inputs(c, seed);

  // Truth: the CPU in float32.
  AttnTensors t32(kCpu, L2C_FLOAT32, c, with_mask);
  upload(t32.q, in.q);
  upload(t32.k, in.k);
  upload(t32.v, in.v);
  upload(t32.dout, in.dout);
  upload_i32(t32.mask, in.mask);
  L2C_EXPECT(t32.forward(c) == L2C_OK, what << ": cpu forward: " << l2c_last_error());
  L2C_EXPECT(t32.backward(c) == L2C_OK, what << ": cpu backward: " << l2c_last_error());

  // The CPU in the case's dtype (16-bit only).
  std::unique_ptr<AttnTensors> t16;
  if (c.dt != L2C_FLOAT32) {
    t16.reset(new AttnTensors(kCpu, c.dt, c, with_mask));
    upload(t16->q, in.q);
    upload(t16->k, in.k);
    upload(t16->v, in.v);
    upload(t16->dout, in.dout);
    upload_i32(t16->mask, in.mask);
    L2C_EXPECT(t16->forward(c) == L2C_OK, what << ": cpu forward: " << l2c_last_error());
    L2C_EXPECT(t16->backward(c) == L2C_OK, what << ": cpu backward: " << l2c_last_error());
  }

  // The GPU, on its own forward's out and lse.
  AttnTensors tg(kGpu, c.dt, c, with_mask);
  upload(tg.q, in.q);
  upload(tg.k, in.k);
  upload(tg.v, in.v);
  upload(tg.dout, in.dout);
  upload_i32(tg.mask, in.mask);
  tg.poison_outputs();
  L2C_EXPECT(tg.forward(c) == L2C_OK, what << ": cuda forward: " << l2c_last_error());
  L2C_EXPECT(tg.backward(c) == L2C_OK, what << ": cuda backward: " << l2c_last_error());

  struct Out {
    const char *name;
    l2c_tensor AttnTensors::*member;
  };
  const Out outs[] = {{"out", &AttnTensors::out}, {"dq", &AttnTensors::dq}, {"dk", &AttnTensors::dk},
                      {"dv", &AttnTensors::dv}};
  std::vector<float> g_out, g_dq, g_dk, g_dv;
  for (const Out &o : outs) {
    std::vector<float> g = download(tg.*o.member), r = download(t32.*o.member);
    std::vector<float> h;
    if (t16) h = download((*t16).*o.member);
    check_tensor(what, o.name, c.dt, g, r, t16 ? &h : nullptr);
    if (o.member == &AttnTensors::out) g_out = g;
    if (o.member == &AttnTensors::dq) g_dq = g;
    if (o.member == &AttnTensors::dk) g_dk = g;
    if (o.member == &AttnTensors::dv) g_dv = g;
  }
  const std::vector<float> g_lse = download(tg.lse), r_lse = download(t32.lse);
  check_lse(what, g_lse, r_lse);

  // Exact zeros: rows with no key (out, dq), masked keys (dk, dv).
  int64_t bad = 0;
  for (int64_t b = 0; b < c.B; b++)
    for (int64_t h = 0; h < c.Hq; h++)
      for (int64_t i = 0; i < c.S; i++) {
        if (!std::isinf(r_lse[(b * c.Hq + h) * c.S + i])) continue;
        for (int64_t d = 0; d < c.D; d++) {
          const int64_t e = ((b * c.S + i) * c.Hq + h) * c.D + d;
          if (g_out[e] != 0.0f || g_dq[e] != 0.0f) bad++;
        }
      }
  for (int64_t b = 0; b < c.B; b++)
    for (int64_t j = 0; j < c.S; j++) {
      if (in.mask[b * c.S + j] != 0) continue;
      for (int64_t h = 0; h < c.Hkv; h++)
        for (int64_t d = 0; d < c.D; d++) {
          const int64_t e = ((b * c.S + j) * c.Hkv + h) * c.D + d;
          if (g_dk[e] != 0.0f || g_dv[e] != 0.0f) bad++;
        }
    }
  L2C_EXPECT(bad == 0, what << ": " << bad << " gradients / outputs that must be exactly 0 are not");
}

const l2c_dtype kFloatTypes[] = {L2C_FLOAT32, L2C_BFLOAT16, L2C_FLOAT16};

// Head dims around the kernels' compiled ones: 40 and 72 pad to 64 and 128, 100 also
// takes the element-wise load path (D % 8 != 0); 256 runs the SIMT kernels in 16 bits.
void run_dims(std::initializer_list<int64_t> dims, uint64_t seed0) {
  uint64_t seed = seed0;
  for (int64_t D : dims)
    for (int64_t S : {1, 37, 300})
      for (l2c_dtype dt : kFloatTypes) {
        run_case({2, S, 4, 2, D, dt, false, kNoMask}, seed++);
        run_case({2, S, 4, 2, D, dt, true, kNoMask}, seed++);
        run_case({3, S, 4, 2, D, dt, false, kLeftPad}, seed++);
        run_case({3, S, 4, 2, D, dt, true, kLeftPad}, seed++);
        run_case({2, S, 4, 2, D, dt, true, kRightPad}, seed++);
      }
}

L2C_TEST(cuda_attention_d40_d64) {
  REQUIRE_CUDA();
  run_dims({40, 64}, 1000);
}

L2C_TEST(cuda_attention_d72_d128) {
  REQUIRE_CUDA();
  run_dims({72, 128}, 2000);
}

L2C_TEST(cuda_attention_d100_d256) {
  REQUIRE_CUDA();
  run_dims({100, 256}, 3000);
}

// Head counts (no grouping, one kv head for all), a negative and a large scale, small
// odd head dims, and misaligned device pointers (the element-wise path at D = 64 / 128).
L2C_TEST(cuda_attention_heads_scales_alignment) {
  REQUIRE_CUDA();
  uint64_t seed = 4000;
  for (l2c_dtype dt : kFloatTypes) {
    run_case({2, 45, 3, 3, 64, dt, false, kNoMask}, seed++);
    run_case({2, 45, 4, 1, 128, dt, true, kLeftPad}, seed++);
    run_case({1, 70, 6, 2, 128, dt, false, kRightPad}, seed++);
    run_case({2, 33, 2, 1, 64, dt, false, kNoMask, -0.3}, seed++);
    run_case({2, 33, 2, 1, 128, dt, true, kNoMask, 0.5}, seed++);
    run_case({1, 19, 2, 2, 1, dt, false, kNoMask}, seed++);
    run_case({1, 19, 2, 2, 3, dt, true, kLeftPad}, seed++);
    run_case({2, 77, 4, 2, 64, dt, true, kLeftPad, 0, true}, seed++);
    run_case({2, 77, 4, 2, 128, dt, false, kRightPad, 0, true}, seed++);
    run_case({1, 50, 2, 1, 200, dt, true, kNoMask}, seed++);
  }
}

// The tensor-core kernels on many tiles: S = 1024, D = 128 (and 64), bfloat16 and float16.
L2C_TEST(cuda_attention_large) {
  REQUIRE_CUDA();
  uint64_t seed = 5000;
  run_case({1, 1024, 4, 2, 128, L2C_BFLOAT16, false, kNoMask}, seed++);
  run_case({1, 1024, 4, 2, 128, L2C_BFLOAT16, true, kNoMask}, seed++);
  run_case({2, 1024, 2, 1, 128, L2C_BFLOAT16, true, kRightPad}, seed++);
  run_case({1, 1024, 4, 2, 128, L2C_FLOAT16, true, kNoMask}, seed++);
  run_case({1, 1024, 4, 4, 64, L2C_BFLOAT16, false, kLeftPad}, seed++);
  run_case({1, 1000, 2, 2, 128, L2C_FLOAT32, true, kNoMask}, seed++);
}

// Empty sizes run and touch nothing.
L2C_TEST(cuda_attention_empty) {
  REQUIRE_CUDA();
  for (int64_t B : {0, 2})
    for (int64_t S : {0, 3}) {
      if (B * S != 0) continue;
      AttnCase c{B, S, 2, 1, 64, L2C_BFLOAT16, true, kNoMask};
      AttnTensors tg(kGpu, c.dt, c, false);
      L2C_EXPECT(tg.forward(c) == L2C_OK, "empty forward: " << l2c_last_error());
      L2C_EXPECT(tg.backward(c) == L2C_OK, "empty backward: " << l2c_last_error());
    }
}

// ------------------------------------------------------------------ argument errors

// Descriptors on devices that disagree are DEVICE_MISMATCH before anything is touched;
// a CUDA device that does not exist (or a build without CUDA) is DEVICE_UNAVAILABLE.
// Needs no GPU: the pointers are host memory that must never be dereferenced.
L2C_TEST(cuda_attention_device_errors) {
  const int n = cuda::device_count();
  float host[64] = {0};
  const l2c_device missing = {L2C_CUDA, n};  // cuda:0 without a GPU
  auto t4 = [&](l2c_device d, int64_t H) { return make_tensor(host, L2C_FLOAT32, d, {1, 2, H, 4}); };
  l2c_tensor q = t4(kCpu, 2), k = t4(kCpu, 1), out = t4(kCpu, 2);
  l2c_tensor lse = make_tensor(host, L2C_FLOAT32, kCpu, {1, 2, 2});
  l2c_tensor kg = t4(missing, 1), outg = t4(missing, 2);
  l2c_tensor mask_g = make_tensor(host, L2C_INT32, missing, {1, 2});
  l2c_attention_forward_args a{};
  a.q = &q;
  a.k = &kg;
  a.v = &k;
  a.out = &out;
  a.lse = &lse;
  a.scale = 0.5;
  L2C_EXPECT(l2c_attention_forward(&a) == L2C_DEVICE_MISMATCH, l2c_last_error());
  a.k = &k;
  a.out = &outg;
  L2C_EXPECT(l2c_attention_forward(&a) == L2C_DEVICE_MISMATCH, l2c_last_error());
  a.out = &out;
  a.key_padding_mask = &mask_g;
  L2C_EXPECT(l2c_attention_forward(&a) == L2C_DEVICE_MISMATCH, l2c_last_error());
  a.key_padding_mask = nullptr;
  // Everything on a device that is not there.
  l2c_tensor qg = t4(missing, 2), lseg = make_tensor(host, L2C_FLOAT32, missing, {1, 2, 2});
  a.q = &qg;
  a.k = &kg;
  a.v = &kg;
  a.out = &outg;
  a.lse = &lseg;
  L2C_EXPECT(l2c_attention_forward(&a) == L2C_DEVICE_UNAVAILABLE, l2c_last_error());
  l2c_attention_backward_args bw{};
  bw.dout = &outg;
  bw.q = &qg;
  bw.k = &kg;
  bw.v = &kg;
  bw.out = &outg;
  bw.lse = &lseg;
  bw.dq = &outg;
  bw.dk = &kg;
  bw.dv = &kg;
  bw.scale = 0.5;
  L2C_EXPECT(l2c_attention_backward(&bw) == L2C_DEVICE_UNAVAILABLE, l2c_last_error());
  // A CUDA gradient among CPU tensors.
  l2c_tensor dout = t4(kCpu, 2), dq = t4(kCpu, 2), dk = t4(kCpu, 1), dv = t4(kCpu, 1);
  bw.dout = &dout;
  bw.q = &q;
  bw.k = &k;
  bw.v = &k;
  bw.out = &out;
  bw.lse = &lse;
  bw.dq = &dq;
  bw.dk = &kg;
  bw.dv = &dv;
  L2C_EXPECT(l2c_attention_backward(&bw) == L2C_DEVICE_MISMATCH, l2c_last_error());
  bw.dk = &dk;
  bw.dq = &outg;
  L2C_EXPECT(l2c_attention_backward(&bw) == L2C_DEVICE_MISMATCH, l2c_last_error());
  // The backend entries themselves (the stub in a build without CUDA).
  l2c::AttentionParams p;
  p.q = p.k = p.v = host;
  p.B = p.S = p.Hq = p.Hkv = 1;
  p.D = 4;
  L2C_EXPECT(status_of([&] { cuda::attention_forward(n, p, host, host); }) == L2C_DEVICE_UNAVAILABLE,
             "attention_forward on a missing device");
  L2C_EXPECT(status_of([&] { cuda::attention_backward(n, p, host, host, host, host, host, host); }) ==
                 L2C_DEVICE_UNAVAILABLE,
             "attention_backward on a missing device");
}

// On a GPU: CUDA tensors get the same shape / dtype checks as CPU ones.
L2C_TEST(cuda_attention_argument_errors) {
  REQUIRE_CUDA();
  AttnCase c{1, 5, 4, 2, 8, L2C_FLOAT32, false, kNoMask};
  AttnTensors tg(kGpu, c.dt, c, false);
  l2c_tensor bad_lse = make_tensor(tg.lse.data, L2C_FLOAT32, kGpu, {1, 5, 4});
  l2c_attention_forward_args a{};
  a.q = &tg.q;
  a.k = &tg.k;
  a.v = &tg.v;
  a.out = &tg.out;
  a.lse = &bad_lse;
  a.scale = 0.5;
  L2C_EXPECT(l2c_attention_forward(&a) == L2C_SHAPE_MISMATCH, l2c_last_error());
  a.lse = &tg.lse;
  l2c_tensor bf_out = tg.out;
  bf_out.dtype = L2C_BFLOAT16;
  a.out = &bf_out;
  L2C_EXPECT(l2c_attention_forward(&a) == L2C_DTYPE_MISMATCH, l2c_last_error());
  a.out = &tg.out;
  l2c_tensor host_mask = make_tensor(tg.q.data, L2C_INT32, kCpu, {1, 5});
  a.key_padding_mask = &host_mask;
  L2C_EXPECT(l2c_attention_forward(&a) == L2C_DEVICE_MISMATCH, l2c_last_error());
  a.key_padding_mask = nullptr;
  L2C_EXPECT(l2c_attention_forward(&a) == L2C_OK, l2c_last_error());
}

}  // namespace
