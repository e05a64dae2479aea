// test_cuda_train.cc: the train family's CUDA kernels (l2c_train.h) checked against their
// CPU twins through the C ABI: every op and direction on CPU tensors and on CUDA tensors
// copied from the same host data, the CUDA outputs poisoned first (0xA5 bytes: NaN in
// every float dtype). Every case but the first skips without a CUDA device. Plain C++.
//
// Bounds, per op:
//   embedding forward, layout ops (permute, concat / split, slice, patchify): bit-exact
//     (copies).
//   embedding backward: exact values (both sum each row's positions in position order in
//     float32, the same additions).
//   cross-entropy, float32: relative 2-norm error of each output against the CPU within
//     1e-5 (both accumulate float32 GEMMs of 7 to 65 terms of |x| <= 1 in different orders,
//     ~1e-7; exp / log ~1e-7). The loss: |Δ| <= 1e-5 (|loss| + mean |lse| of the counted
//     rows) (the loss is a difference of such terms, so its own magnitude may be small).
//     bfloat16 / float16 storage (and mixed dtypes): FlashAttention's criterion against the
//     float32 CPU truth on the same (rounded) inputs: err(cuda) <= 2 err(cpu 16-bit) +
//     floor, floor 1e-5 for float32 outputs (lse, loss, dweight, dbias), 2^-10 for bfloat16
//     and 2^-13 for float16 outputs (dhidden: one rounding each side).
//   AdamW: the same float32 operations in the same order on both sides (the CUDA kernel
//     rounds each one as the CPU, no FMA); the global norm (float64) differs in summation
//     order only: norm relative 1e-12, float32 tensors relative 2-norm 1e-6 (the clip
//     coefficient may differ in its last bit), 16-bit parameters 1e-3 (a last-bit
//     difference of the master may round the other way).
#include <memory>
#include <numeric>

#include "llm2clip.h"
#include "test_cuda_util.h"
#include "train_cuda.h"

using namespace l2c_cuda_test;

namespace {

const l2c_dtype kFloatTypes[] = {L2C_FLOAT32, L2C_BFLOAT16, L2C_FLOAT16};
const l2c_dtype kAllTypes[] = {L2C_FLOAT32, L2C_BFLOAT16, L2C_FLOAT16, L2C_INT32};

int64_t count(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

float get_f(const void *p, l2c_dtype dt, int64_t i) {
  switch (dt) {
    case L2C_FLOAT32: return static_cast<const float *>(p)[i];
    case L2C_BFLOAT16: return l2c::bf16_to_f32(static_cast<const uint16_t *>(p)[i]);
    case L2C_FLOAT16: return l2c::f16_to_f32(static_cast<const uint16_t *>(p)[i]);
    case L2C_INT32: return (float)static_cast<const int32_t *>(p)[i];
  }
  return 0;
}
void set_f(void *p, l2c_dtype dt, int64_t i, float v) {
  switch (dt) {
    case L2C_FLOAT32: static_cast<float *>(p)[i] = v; break;
    case L2C_BFLOAT16: static_cast<uint16_t *>(p)[i] = l2c::f32_to_bf16(v); break;
    case L2C_FLOAT16: static_cast<uint16_t *>(p)[i] = l2c::f32_to_f16(v); break;
    case L2C_INT32: static_cast<int32_t *>(p)[i] = (int32_t)v; break;
  }
}

std::string shape_s(const std::vector<int64_t> &s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

// A tensor of one dtype and shape on the CPU (h) and its twin on the GPU (d).
struct Pair {
  l2c_dtype dt;
  std::vector<int64_t> shape;
  int64_t n;
  HostBuf h;
  DevBuf d;
  Pair(l2c_dtype t, std::vector<int64_t> s)
      : dt(t), shape(std::move(s)), n(count(shape)), h(std::max<size_t>(1, n * dsize(t))),
        d(kDev, std::max<size_t>(1, n * dsize(t))) {}
  size_t bytes() const { return (size_t)n * dsize(dt); }
  l2c_tensor make(void *p, l2c_device_type type, int index) const {
    l2c_tensor t{};
    t.data = p;
    t.dtype = dt;
    t.device = l2c_device{type, index};
    t.ndim = (int32_t)shape.size();
    for (size_t i = 0; i < shape.size(); i++) t.shape[i] = shape[i];
    return t;
  }
  l2c_tensor host() const { return make(h.p, L2C_CPU, 0); }
  l2c_tensor dev() const { return make(d.p, L2C_CUDA, kDev); }
  void upload() const { cuda::copy_h2d(kDev, d.p, h.p, bytes()); }
  void poison_dev() const { poison(d); }
  // The device contents, downloaded.
  std::vector<uint8_t> download() const {
    std::vector<uint8_t> v(std::max<size_t>(1, bytes()));
    cuda::copy_d2h(kDev, v.data(), d.p, bytes());
    return v;
  }
  std::vector<double> host_vals() const {
    std::vector<double> v((size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = get_f(h.p, dt, i);
    return v;
  }
  std::vector<double> dev_vals() const {
    std::vector<uint8_t> b = download();
    std::vector<double> v((size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = get_f(b.data(), dt, i);
    return v;
  }
  // Host values uniform in [lo, hi), rounded to the dtype; uploaded.
  void randomize(Rng &rng, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) set_f(h.p, dt, i, rng.uniform(lo, hi));
    upload();
  }
  // Random bit patterns (for copies), uploaded.
  void random_bits(Rng &rng) {
    for (int64_t i = 0; i < n; i++) {
      if (dsize(dt) == 4) h.as<uint32_t>()[i] = rng.u32();
      else h.as<uint16_t>()[i] = (uint16_t)rng.u32();
    }
    upload();
  }
  // Device and host bitwise equal? (-1 if so, else the first differing element.)
  int64_t diff_dev_host() const {
    std::vector<uint8_t> b = download();
    return first_diff(h.p, b.data(), dt, n);
  }
};
using PairP = std::unique_ptr<Pair>;
PairP mk(l2c_dtype dt, std::vector<int64_t> shape) { return std::make_unique<Pair>(dt, std::move(shape)); }

// Runs an ABI call; returns its status, the message in *msg.
template <class F>
int abi(F &&f, std::string *msg = nullptr) {
  l2c_status st = f();
  if (msg) *msg = st == L2C_OK ? "" : l2c_last_error();
  return st;
}

// ‖got − want‖ / ‖want‖ (‖got‖ when want is all zeros); Inf on NaN or a size mismatch.
double rel_err(const std::vector<double> &got, const std::vector<double> &want) {
  if (got.size() != want.size()) return INFINITY;
  double d = 0, w = 0;
  for (size_t i = 0; i < got.size(); i++) {
    if (!std::isfinite(got[i]) || !std::isfinite(want[i])) {
      if (std::isnan(got[i]) || std::isnan(want[i]) || got[i] != want[i]) return INFINITY;
      continue;
    }
    d += (got[i] - want[i]) * (got[i] - want[i]);
    w += want[i] * want[i];
  }
  return w > 0 ? std::sqrt(d / w) : std::sqrt(d);
}

// ------------------------------------------------------------------ no device

// Runs everywhere: tensors on a CUDA device that does not exist (cuda:0 without a GPU or
// in a build without CUDA, one past the last otherwise) give DEVICE_UNAVAILABLE from every
// entry, before any memory is touched (the pointers are host memory).
L2C_TEST(cuda_train_unavailable_device) {
  const int dev = cuda::device_count();
  float host[64] = {0};
  int32_t ids[4] = {0, 0, 0, 0};
  auto t = [&](void *p, l2c_dtype dt, std::vector<int64_t> shape) {
    l2c_tensor x{};
    x.data = p;
    x.dtype = dt;
    x.device = l2c_device{L2C_CUDA, dev};
    x.ndim = (int32_t)shape.size();
    for (size_t i = 0; i < shape.size(); i++) x.shape[i] = shape[i];
    return x;
  };
  auto unavailable = [&](const char *what, l2c_status st) {
    L2C_EXPECT(st == L2C_DEVICE_UNAVAILABLE, what << " on cuda:" << dev << " gave " << l2c_status_name(st) << " ("
                                                   << l2c_last_error() << ")");
  };
  l2c_tensor w = t(host, L2C_FLOAT32, {2, 4}), id = t(ids, L2C_INT32, {4}), o = t(host + 8, L2C_FLOAT32, {4, 4});
  l2c_embedding_args ea{};
  ea.weight = &w;
  ea.ids = &id;
  ea.out = &o;
  unavailable("embedding", l2c_embedding_forward(&ea));
  ea.dy = &o;
  ea.dweight = &w;
  unavailable("embedding_backward", l2c_embedding_backward(&ea));
  l2c_tensor h = t(host, L2C_FLOAT32, {4, 4}), tg = t(ids, L2C_INT32, {4}), loss = t(host + 32, L2C_FLOAT32, {}),
             lse = t(host + 40, L2C_FLOAT32, {4}), dh = t(host + 48, L2C_FLOAT32, {4, 4});
  l2c_cross_entropy_args xa{};
  xa.hidden = &h;
  xa.weight = &h;
  xa.targets = &tg;
  xa.loss = &loss;
  xa.lse = &lse;
  xa.dhidden = &dh;
  unavailable("cross_entropy", l2c_cross_entropy_forward(&xa));
  unavailable("cross_entropy_backward", l2c_cross_entropy_backward(&xa));
  l2c_tensor p = t(host, L2C_FLOAT32, {4}), g = t(host + 4, L2C_FLOAT32, {4}), m = t(host + 8, L2C_FLOAT32, {4}),
             v = t(host + 12, L2C_FLOAT32, {4});
  double norm = 0;
  int32_t skipped = 0;
  l2c_adamw_args aa{};
  aa.n = 1;
  aa.params = &p;
  aa.grads = &g;
  aa.exp_avg = &m;
  aa.exp_avg_sq = &v;
  aa.lr = 0.1;
  aa.beta1 = 0.9;
  aa.beta2 = 0.99;
  aa.eps = 1e-8;
  aa.step = 1;
  aa.grad_norm = &norm;
  aa.skipped = &skipped;
  unavailable("adamw", l2c_adamw(&aa));
  unavailable("grad_norm", l2c_grad_norm(1, &g, &norm));
  l2c_permute_args pa{};
  pa.x = &h;
  pa.out = &dh;
  pa.dims[0] = 1;
  pa.dims[1] = 0;
  unavailable("permute", l2c_permute(&pa));
  l2c_tensor parts[2] = {t(host, L2C_FLOAT32, {2, 4}), t(host + 8, L2C_FLOAT32, {2, 4})};
  l2c_concat_args ca{};
  ca.n = 2;
  ca.parts = parts;
  ca.whole = &h;
  unavailable("concat", l2c_concat(&ca));
  unavailable("split", l2c_split(&ca));
  l2c_slice_args sa{};
  sa.whole = &h;
  sa.part = &parts[0];
  unavailable("slice", l2c_slice_forward(&sa));
  unavailable("slice_backward", l2c_slice_backward(&sa));
  l2c_tensor im = t(host, L2C_FLOAT32, {1, 1, 4, 4}), pt = t(host + 16, L2C_FLOAT32, {1, 4, 4});
  l2c_patchify_args qa{};
  qa.images = &im;
  qa.patches = &pt;
  qa.patch_size = 2;
  unavailable("patchify", l2c_patchify_forward(&qa));
  unavailable("unpatchify", l2c_patchify_backward(&qa));
}

// ------------------------------------------------------------------ embedding

// Random ids in [0, V).
void random_ids(Pair &ids, Rng &rng, int64_t V) {
  for (int64_t i = 0; i < ids.n; i++) ids.h.as<int32_t>()[i] = (int32_t)(rng.u32() % (uint32_t)std::max<int64_t>(1, V));
  ids.upload();
}

L2C_TEST(cuda_train_embedding_matches_cpu) {
  REQUIRE_CUDA();
  Rng rng(101);
  const std::vector<std::vector<int64_t>> id_shapes = {{1}, {37}, {3, 33}, {97}, {40, 50}, {0}};
  for (l2c_dtype dt : kFloatTypes) {
    for (int64_t V : {1, 37, 1000}) {
      for (int64_t H : {7, 64, 65}) {
        for (const auto &is : id_shapes) {
          std::vector<int64_t> rs = is;
          rs.push_back(H);
          const std::string what = std::string(l2c::dtype_name(dt)) + " V " + std::to_string(V) + " H " +
                                   std::to_string(H) + " ids " + shape_s(is);
          Pair w(dt, {V, H}), ids(L2C_INT32, is), out(dt, rs);
          w.randomize(rng, -1, 1);
          random_ids(ids, rng, V);
          l2c_tensor wh = w.host(), ih = ids.host(), oh = out.host(), wd = w.dev(), id = ids.dev(), od = out.dev();
          l2c_embedding_args a{};
          a.weight = &wh;
          a.ids = &ih;
          a.out = &oh;
          std::string msg;
          L2C_EXPECT(abi([&] { return l2c_embedding_forward(&a); }, &msg) == L2C_OK, what << ": cpu " << msg);
          out.poison_dev();
          a.weight = &wd;
          a.ids = &id;
          a.out = &od;
          L2C_EXPECT(abi([&] { return l2c_embedding_forward(&a); }, &msg) == L2C_OK, what << ": cuda " << msg);
          int64_t bad = out.diff_dev_host();
          L2C_EXPECT(bad < 0, "embedding " << what << ": element " << bad << " differs");

          // Backward, without and with a padding row.
          for (int pad_mode = 0; pad_mode < 2; pad_mode++) {
            Pair dy(dt, rs), dw(L2C_FLOAT32, {V, H});
            dy.randomize(rng, -1, 1);
            l2c_tensor dyh = dy.host(), dwh = dw.host(), dyd = dy.dev(), dwd = dw.dev();
            l2c_embedding_args b{};
            b.ids = &ih;
            b.dy = &dyh;
            b.dweight = &dwh;
            b.has_padding_idx = pad_mode;
            b.padding_idx = pad_mode ? (int64_t)(rng.u32() % (uint32_t)V) : 0;
            L2C_EXPECT(abi([&] { return l2c_embedding_backward(&b); }, &msg) == L2C_OK, what << ": cpu bwd " << msg);
            dw.poison_dev();
            b.ids = &id;
            b.dy = &dyd;
            b.dweight = &dwd;
            L2C_EXPECT(abi([&] { return l2c_embedding_backward(&b); }, &msg) == L2C_OK, what << ": cuda bwd " << msg);
            std::vector<double> got = dw.dev_vals(), want = dw.host_vals();
            int64_t first = -1;
            for (int64_t i = 0; i < dw.n && first < 0; i++)
              if (!(got[i] == want[i])) first = i;  // NaN fails
            L2C_EXPECT(first < 0, "embedding_backward " << what << " pad " << pad_mode << ": dweight[" << first
                                                        << "] cuda " << (first < 0 ? 0 : got[first]) << " cpu "
                                                        << (first < 0 ? 0 : want[first]));
          }
        }
      }
    }
  }
}

// Ids outside [0, V): INVALID_ARGUMENT with the CPU's message (the first bad one and its
// position), and nothing written.
L2C_TEST(cuda_train_embedding_bad_ids) {
  REQUIRE_CUDA();
  Rng rng(102);
  const int64_t V = 37, H = 5;
  Pair w(L2C_FLOAT32, {V, H}), ids(L2C_INT32, {4, 25}), out(L2C_FLOAT32, {4, 25, H}), dw(L2C_FLOAT32, {V, H});
  w.randomize(rng, -1, 1);
  for (int bad_case = 0; bad_case < 3; bad_case++) {
    for (int64_t i = 0; i < ids.n; i++) ids.h.as<int32_t>()[i] = (int32_t)(rng.u32() % V);
    // Several bad ids; the first (in position order) is reported.
    const int64_t p0 = bad_case == 0 ? 0 : bad_case == 1 ? 57 : 99;
    ids.h.as<int32_t>()[p0] = bad_case == 1 ? -1 : (int32_t)V;
    if (p0 + 3 < ids.n) ids.h.as<int32_t>()[p0 + 3] = -7;
    if (p0 + 11 < ids.n) ids.h.as<int32_t>()[p0 + 11] = 1000;
    ids.upload();
    for (int backward = 0; backward < 2; backward++) {
      l2c_tensor wh = w.host(), ih = ids.host(), oh = out.host(), wd = w.dev(), id = ids.dev(), od = out.dev();
      l2c_tensor dwh = dw.host(), dwd = dw.dev();
      l2c_embedding_args a{};
      a.weight = &wh;
      a.ids = &ih;
      a.out = &oh;
      a.dy = &oh;
      a.dweight = &dwh;
      std::string cpu_msg, cuda_msg;
      auto run = [&]() { return backward ? l2c_embedding_backward(&a) : l2c_embedding_forward(&a); };
      int cs = abi(run, &cpu_msg);
      out.poison_dev();
      dw.poison_dev();
      a.weight = &wd;
      a.ids = &id;
      a.out = &od;
      a.dy = &od;
      a.dweight = &dwd;
      int gs = abi(run, &cuda_msg);
      L2C_EXPECT(cs == L2C_INVALID_ARGUMENT && gs == L2C_INVALID_ARGUMENT,
                 "bad id at " << p0 << ": cpu " << l2c_status_name((l2c_status)cs) << ", cuda "
                              << l2c_status_name((l2c_status)gs));
      L2C_EXPECT(cpu_msg == cuda_msg, "messages differ: cpu '" << cpu_msg << "', cuda '" << cuda_msg << "'");
      std::vector<uint8_t> o = backward ? dw.download() : out.download();
      bool untouched = std::all_of(o.begin(), o.end(), [](uint8_t b) { return b == 0xA5; });
      L2C_EXPECT(untouched, (backward ? "embedding_backward" : "embedding") << " wrote its output despite a bad id");
    }
  }
}

// ------------------------------------------------------------------ cross-entropy

struct XentCase {
  int64_t N, H, V, chunk;  // chunk 0: the default
  int ignored;             // 0 none, 1 some, 2 all
  bool bias, mean, dweight;
  int64_t block_rows;  // cuda::set_cross_entropy_block_rows (0: default)
  double grad_loss;
  int64_t ignore_index = -100;
};

std::string xent_name(const XentCase &c, l2c_dtype hdt, l2c_dtype wdt) {
  return std::string("xent ") + l2c::dtype_name(hdt) + "/" + l2c::dtype_name(wdt) + " N " + std::to_string(c.N) +
         " H " + std::to_string(c.H) + " V " + std::to_string(c.V) + " chunk " + std::to_string(c.chunk) +
         " ignored " + std::to_string(c.ignored) + (c.bias ? " bias" : "") + (c.mean ? " mean" : " sum") +
         (c.dweight ? " dW" : "") + " block_rows " + std::to_string(c.block_rows) + " grad_loss " +
         std::to_string(c.grad_loss) + " ignore_index " + std::to_string(c.ignore_index);
}

// The inputs of one case (host values, already rounded to their dtypes).
struct XentInputs {
  std::vector<float> hidden, weight, bias;
  std::vector<int32_t> targets;
  int64_t counted = 0;
};

XentInputs xent_inputs(const XentCase &c, Rng &rng) {
  XentInputs in;
  in.hidden.resize((size_t)(c.N * c.H));
  in.weight.resize((size_t)(c.V * c.H));
  for (float &x : in.hidden) x = rng.uniform(-1, 1);
  for (float &x : in.weight) x = rng.uniform(-0.5f, 0.5f);
  if (c.bias) {
    in.bias.resize((size_t)c.V);
    for (float &x : in.bias) x = rng.uniform(-1, 1);
  }
  in.targets.resize((size_t)c.N);
  for (int64_t n = 0; n < c.N; n++) {
    bool ignore = c.ignored == 2 || (c.ignored == 1 && rng.u32() % 3 == 0);
    int32_t t = (int32_t)(rng.u32() % (uint32_t)c.V);
    if (ignore) t = (int32_t)c.ignore_index;
    else if (t == c.ignore_index) t = (t + 1) % (int32_t)c.V;  // a class that is also ignore_index
    in.targets[n] = t;
    if (t != c.ignore_index) in.counted++;
  }
  return in;
}

// The outputs of one run, as float64 values.
struct XentOut {
  std::vector<double> loss, lse, dhidden, dweight, dbias;
};

// Runs forward + backward on one device (cuda or not) with the given storage dtypes.
XentOut run_xent(const XentCase &c, const XentInputs &in, l2c_dtype hdt, l2c_dtype wdt, l2c_dtype bdt, bool on_cuda,
                 const std::string &what) {
  Pair h(hdt, {c.N, c.H}), w(wdt, {c.V, c.H}), b(bdt, {c.V}), t(L2C_INT32, {c.N});
  Pair loss(L2C_FLOAT32, {}), lse(L2C_FLOAT32, {c.N}), dh(hdt, {c.N, c.H}), dw(L2C_FLOAT32, {c.V, c.H}),
      db(L2C_FLOAT32, {c.V});
  for (int64_t i = 0; i < h.n; i++) set_f(h.h.p, hdt, i, in.hidden[i]);
  for (int64_t i = 0; i < w.n; i++) set_f(w.h.p, wdt, i, in.weight[i]);
  if (c.bias)
    for (int64_t i = 0; i < b.n; i++) set_f(b.h.p, bdt, i, in.bias[i]);
  std::memcpy(t.h.p, in.targets.data(), in.targets.size() * 4);
  for (Pair *x : {&h, &w, &b, &t}) x->upload();
  auto T = [&](Pair &x) { return on_cuda ? x.dev() : x.host(); };
  l2c_tensor th = T(h), tw = T(w), tb = T(b), tt = T(t), tl = T(loss), tlse = T(lse), tdh = T(dh), tdw = T(dw),
             tdb = T(db);
  if (on_cuda)
    for (Pair *x : {&loss, &lse, &dh, &dw, &db}) x->poison_dev();
  l2c_cross_entropy_args a{};
  a.hidden = &th;
  a.weight = &tw;
  a.bias = c.bias ? &tb : nullptr;
  a.targets = &tt;
  a.loss = &tl;
  a.lse = &tlse;
  a.dhidden = &tdh;
  a.dweight = c.dweight ? &tdw : nullptr;
  a.dbias = c.bias ? &tdb : nullptr;
  a.ignore_index = c.ignore_index;
  a.reduction = c.mean ? L2C_REDUCTION_MEAN : L2C_REDUCTION_SUM;
  a.chunk_size = c.chunk;
  a.grad_loss = c.grad_loss;
  if (on_cuda) cuda::set_cross_entropy_block_rows(c.block_rows);
  std::string msg;
  int st = abi([&] { return l2c_cross_entropy_forward(&a); }, &msg);
  L2C_EXPECT(st == L2C_OK, what << (on_cuda ? ": cuda" : ": cpu") << " forward: " << msg);
  st = abi([&] { return l2c_cross_entropy_backward(&a); }, &msg);
  L2C_EXPECT(st == L2C_OK, what << (on_cuda ? ": cuda" : ": cpu") << " backward: " << msg);
  if (on_cuda) cuda::set_cross_entropy_block_rows(0);
  XentOut o;
  auto vals = [&](const Pair &x) { return on_cuda ? x.dev_vals() : x.host_vals(); };
  o.loss = vals(loss);
  o.lse = vals(lse);
  o.dhidden = vals(dh);
  if (c.dweight) o.dweight = vals(dw);
  if (c.bias) o.dbias = vals(db);
  return o;
}

// The loss's error scaled by |loss| + the mean (or sum) |lse| of the counted rows.
double loss_err(const XentOut &got, const XentOut &want, const XentCase &c, int64_t counted) {
  double s = 0;
  for (double v : want.lse) s += std::fabs(v);
  if (c.mean && counted > 0) s /= (double)counted;
  s += std::fabs(want.loss[0]);
  double d = std::fabs(got.loss[0] - want.loss[0]);
  if (std::isnan(got.loss[0]) != std::isnan(want.loss[0])) return INFINITY;
  return s > 0 ? d / s : d;
}

// Exact zeros where a row has no target: lse and dhidden.
void check_ignored_rows(const XentOut &o, const XentInputs &in, const XentCase &c, const std::string &what) {
  for (int64_t n = 0; n < c.N; n++) {
    if (in.targets[n] != c.ignore_index) continue;
    L2C_EXPECT(o.lse[n] == 0, what << ": lse[" << n << "] of an ignored row is " << o.lse[n]);
    for (int64_t k = 0; k < c.H; k++)
      if (o.dhidden[n * c.H + k] != 0) {
        L2C_EXPECT(false, what << ": dhidden row " << n << " of an ignored row is not zero");
        break;
      }
  }
}

void check_xent_f32(const XentCase &c, uint64_t seed) {
  Rng rng(seed);
  XentInputs in = xent_inputs(c, rng);
  const std::string what = xent_name(c, L2C_FLOAT32, L2C_FLOAT32);
  XentOut want = run_xent(c, in, L2C_FLOAT32, L2C_FLOAT32, L2C_FLOAT32, false, what);
  XentOut got = run_xent(c, in, L2C_FLOAT32, L2C_FLOAT32, L2C_FLOAT32, true, what);
  const double tol = 1e-5;
  double e;
  L2C_EXPECT((e = loss_err(got, want, c, in.counted)) <= tol,
             what << ": loss cuda " << got.loss[0] << " cpu " << want.loss[0] << " (err " << e << ")");
  L2C_EXPECT((e = rel_err(got.lse, want.lse)) <= tol, what << ": lse err " << e);
  L2C_EXPECT((e = rel_err(got.dhidden, want.dhidden)) <= tol, what << ": dhidden err " << e);
  if (c.dweight) L2C_EXPECT((e = rel_err(got.dweight, want.dweight)) <= tol, what << ": dweight err " << e);
  if (c.bias) L2C_EXPECT((e = rel_err(got.dbias, want.dbias)) <= tol, what << ": dbias err " << e);
  check_ignored_rows(got, in, c, what);
}

// 16-bit (or mixed) storage: err(cuda) <= 2 err(cpu, same storage) + floor, both against the
// float32 CPU run on the same rounded inputs.
void check_xent_16(const XentCase &c, l2c_dtype hdt, l2c_dtype wdt, l2c_dtype bdt, uint64_t seed) {
  Rng rng(seed);
  XentInputs in = xent_inputs(c, rng);
  // Round the inputs to their storage dtypes once, so that the float32 truth sees them.
  auto round_to = [](std::vector<float> &v, l2c_dtype dt) {
    for (float &x : v) {
      uint32_t b[1];
      set_f(b, dt, 0, x);
      x = get_f(b, dt, 0);
    }
  };
  round_to(in.hidden, hdt);
  round_to(in.weight, wdt);
  round_to(in.bias, bdt);
  const std::string what = xent_name(c, hdt, wdt);
  XentOut truth = run_xent(c, in, L2C_FLOAT32, L2C_FLOAT32, L2C_FLOAT32, false, what + " (f32 truth)");
  XentOut cpu16 = run_xent(c, in, hdt, wdt, bdt, false, what + " (cpu)");
  XentOut gpu16 = run_xent(c, in, hdt, wdt, bdt, true, what + " (cuda)");
  const double f32_floor = 1e-5;
  const double h_floor = hdt == L2C_BFLOAT16 ? 0x1p-10 : hdt == L2C_FLOAT16 ? 0x1p-13 : f32_floor;
  auto check = [&](const char *name, const std::vector<double> &g, const std::vector<double> &cp,
                   const std::vector<double> &tr, double floor) {
    double eg = rel_err(g, tr), ec = rel_err(cp, tr);
    L2C_EXPECT(eg <= 2 * ec + floor, what << ": " << name << " cuda err " << eg << " > 2 x cpu err " << ec << " + "
                                          << floor);
  };
  double eg = loss_err(gpu16, truth, c, in.counted), ec = loss_err(cpu16, truth, c, in.counted);
  L2C_EXPECT(eg <= 2 * ec + f32_floor, what << ": loss cuda err " << eg << " cpu err " << ec);
  check("lse", gpu16.lse, cpu16.lse, truth.lse, f32_floor);
  check("dhidden", gpu16.dhidden, cpu16.dhidden, truth.dhidden, h_floor);
  if (c.dweight) check("dweight", gpu16.dweight, cpu16.dweight, truth.dweight, f32_floor);
  if (c.bias) check("dbias", gpu16.dbias, cpu16.dbias, truth.dbias, f32_floor);
  check_ignored_rows(gpu16, in, c, what);
}

L2C_TEST(cuda_train_cross_entropy_f32) {
  REQUIRE_CUDA();
  uint64_t seed = 200;
  int k = 0;  // rotates the options over the cases
  for (int64_t N : {1, 37, 97}) {
    for (int64_t H : {7, 65}) {
      for (int64_t V : {1, 37, 1000}) {
        std::vector<int64_t> chunks = V == 1000 ? std::vector<int64_t>{0, 300, 64, 999}
                                                : V == 37 ? std::vector<int64_t>{0, 5, 36} : std::vector<int64_t>{0};
        for (int64_t chunk : chunks) {
          for (int ignored = 0; ignored < 3; ignored++) {
            XentCase c{N, H, V, chunk, ignored, k % 2 == 0, (k / 2) % 2 == 0, (k / 4) % 3 != 2,
                       (k % 3 == 1) ? 16 : (k % 3 == 2 ? 1 : 0), (k % 5 == 3) ? 0.37 : 1.0};
            if (k % 7 == 4 && V > 4) c.ignore_index = 3;  // an ignore_index that is also a class
            check_xent_f32(c, seed++);
            k++;
          }
        }
      }
    }
  }
}

L2C_TEST(cuda_train_cross_entropy_16bit) {
  REQUIRE_CUDA();
  uint64_t seed = 300;
  const l2c_dtype combos[][3] = {{L2C_BFLOAT16, L2C_BFLOAT16, L2C_BFLOAT16}, {L2C_FLOAT16, L2C_FLOAT16, L2C_FLOAT16},
                                 {L2C_BFLOAT16, L2C_FLOAT32, L2C_FLOAT32},   {L2C_FLOAT32, L2C_FLOAT16, L2C_BFLOAT16},
                                 {L2C_FLOAT16, L2C_BFLOAT16, L2C_FLOAT16}};
  const XentCase cases[] = {
      {97, 65, 1000, 300, 1, true, true, true, 0, 1.0},
      {37, 65, 1000, 0, 0, false, false, true, 16, 0.37},
      {97, 7, 37, 5, 1, true, true, false, 1, 1.0},
      {1, 65, 1000, 64, 0, true, false, true, 0, 2.0},
      {37, 7, 1, 0, 1, true, true, true, 0, 1.0},
      {37, 65, 37, 0, 2, true, true, true, 0, 1.0},
  };
  for (const auto &dt : combos)
    for (const XentCase &c : cases) check_xent_16(c, dt[0], dt[1], dt[2], seed++);
}

// Targets outside [0, V) that are not ignore_index: INVALID_ARGUMENT with the CPU's message.
L2C_TEST(cuda_train_cross_entropy_bad_targets) {
  REQUIRE_CUDA();
  XentCase c{37, 7, 37, 0, 1, false, true, true, 0, 1.0};
  Rng rng(400);
  XentInputs in = xent_inputs(c, rng);
  in.targets[20] = 37;
  in.targets[25] = -5;
  in.targets[3] = (int32_t)c.ignore_index;
  for (int backward = 0; backward < 2; backward++) {
    std::string msgs[2];
    int sts[2];
    for (int on_cuda = 0; on_cuda < 2; on_cuda++) {
      Pair h(L2C_FLOAT32, {c.N, c.H}), w(L2C_FLOAT32, {c.V, c.H}), t(L2C_INT32, {c.N}), loss(L2C_FLOAT32, {}),
          lse(L2C_FLOAT32, {c.N}), dh(L2C_FLOAT32, {c.N, c.H});
      std::memcpy(h.h.p, in.hidden.data(), h.bytes());
      std::memcpy(w.h.p, in.weight.data(), w.bytes());
      std::memcpy(t.h.p, in.targets.data(), t.bytes());
      for (Pair *x : {&h, &w, &t}) x->upload();
      for (Pair *x : {&loss, &lse, &dh}) x->poison_dev();
      auto T = [&](Pair &x) { return on_cuda ? x.dev() : x.host(); };
      l2c_tensor th = T(h), tw = T(w), tt = T(t), tl = T(loss), tlse = T(lse), tdh = T(dh);
      l2c_cross_entropy_args a{};
      a.hidden = &th;
      a.weight = &tw;
      a.targets = &tt;
      a.loss = &tl;
      a.lse = &tlse;
      a.dhidden = &tdh;
      a.ignore_index = c.ignore_index;
      a.grad_loss = 1;
      sts[on_cuda] = abi([&] { return backward ? l2c_cross_entropy_backward(&a) : l2c_cross_entropy_forward(&a); },
                         &msgs[on_cuda]);
      if (on_cuda) {
        bool untouched = true;
        for (Pair *x : {&loss, &lse, &dh}) {
          std::vector<uint8_t> o = x->download();
          if (x->n > 0) untouched = untouched && std::all_of(o.begin(), o.end(), [](uint8_t b) { return b == 0xA5; });
        }
        L2C_EXPECT(untouched, "cross_entropy wrote its outputs despite a bad target");
      }
    }
    L2C_EXPECT(sts[0] == L2C_INVALID_ARGUMENT && sts[1] == L2C_INVALID_ARGUMENT,
               "bad target: cpu " << sts[0] << " cuda " << sts[1]);
    L2C_EXPECT(msgs[0] == msgs[1], "messages differ: cpu '" << msgs[0] << "', cuda '" << msgs[1] << "'");
  }
}

// ------------------------------------------------------------------ AdamW

struct AdamSpec {
  std::vector<int64_t> shape;
  l2c_dtype pdt, gdt;
  bool master, decay;
};

struct AdamSet {
  std::vector<PairP> p, g, m, v, ms;
  std::vector<uint8_t> decay;
};

AdamSet adam_set(const std::vector<AdamSpec> &specs, Rng &rng) {
  AdamSet s;
  for (const AdamSpec &sp : specs) {
    s.p.push_back(mk(sp.pdt, sp.shape));
    s.g.push_back(mk(sp.gdt, sp.shape));
    s.m.push_back(mk(L2C_FLOAT32, sp.shape));
    s.v.push_back(mk(L2C_FLOAT32, sp.shape));
    s.ms.push_back(sp.master ? mk(L2C_FLOAT32, sp.shape) : nullptr);
    s.decay.push_back(sp.decay ? 1 : 0);
    Pair &p = *s.p.back();
    if (sp.master) {
      Pair &ms = *s.ms.back();
      ms.randomize(rng, -1, 1);
      for (int64_t i = 0; i < p.n; i++) set_f(p.h.p, p.dt, i, ms.h.as<float>()[i]);
      p.upload();
    } else {
      p.randomize(rng, -1, 1);
    }
    s.m.back()->randomize(rng, -0.1f, 0.1f);
    s.v.back()->randomize(rng, 0, 0.01f);
  }
  return s;
}

// One step on the CPU copies and on the device copies; compares everything.
void adam_step(AdamSet &s, double max_grad_norm, int64_t step, bool decay_mask, const std::string &what,
               bool expect_skip = false) {
  const size_t n = s.p.size();
  double norms[2] = {0, 0};
  int32_t skipped[2] = {0, 0};
  std::vector<std::vector<uint8_t>> before;
  if (expect_skip)
    for (auto *list : {&s.p, &s.m, &s.v, &s.ms})
      for (auto &x : *list)
        if (x) before.push_back(x->download());
  for (int on_cuda = 0; on_cuda < 2; on_cuda++) {
    std::vector<l2c_tensor> p, g, m, v, ms_t(n);
    std::vector<const l2c_tensor *> ms(n, nullptr);
    for (size_t i = 0; i < n; i++) {
      p.push_back(on_cuda ? s.p[i]->dev() : s.p[i]->host());
      g.push_back(on_cuda ? s.g[i]->dev() : s.g[i]->host());
      m.push_back(on_cuda ? s.m[i]->dev() : s.m[i]->host());
      v.push_back(on_cuda ? s.v[i]->dev() : s.v[i]->host());
      if (s.ms[i]) {
        ms_t[i] = on_cuda ? s.ms[i]->dev() : s.ms[i]->host();
        ms[i] = &ms_t[i];
      }
    }
    l2c_adamw_args a{};
    a.n = (int32_t)n;
    a.params = p.data();
    a.grads = g.data();
    a.exp_avg = m.data();
    a.exp_avg_sq = v.data();
    a.master = ms.data();
    a.decay = decay_mask ? s.decay.data() : nullptr;
    a.lr = 1e-2;
    a.beta1 = 0.9;
    a.beta2 = 0.999;
    a.eps = 1e-8;
    a.weight_decay = 0.1;
    a.step = step;
    a.max_grad_norm = max_grad_norm;
    a.grad_norm = &norms[on_cuda];
    a.skipped = &skipped[on_cuda];
    std::string msg;
    int st = abi([&] { return l2c_adamw(&a); }, &msg);
    L2C_EXPECT(st == L2C_OK, what << (on_cuda ? ": cuda " : ": cpu ") << msg);
  }
  L2C_EXPECT(skipped[0] == skipped[1] && skipped[1] == (expect_skip ? 1 : 0),
             what << ": skipped cpu " << skipped[0] << " cuda " << skipped[1]);
  const bool same_norm = std::isfinite(norms[0])
                             ? std::fabs(norms[1] - norms[0]) <= 1e-12 * std::fabs(norms[0])
                             : (std::isnan(norms[0]) ? std::isnan(norms[1]) : norms[1] == norms[0]);
  L2C_EXPECT(same_norm, what << ": norm cuda " << norms[1] << " cpu " << norms[0]);
  if (expect_skip) {
    size_t k = 0;
    for (auto *list : {&s.p, &s.m, &s.v, &s.ms})
      for (auto &x : *list)
        if (x) L2C_EXPECT(x->download() == before[k++], what << ": a skipped step wrote a tensor");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    auto cmp = [&](const char *name, const Pair &x) {
      const double tol = x.dt == L2C_FLOAT32 ? 1e-6 : 1e-3;
      double e = rel_err(x.dev_vals(), x.host_vals());
      L2C_EXPECT(e <= tol, what << ": " << name << "[" << i << "] " << l2c::dtype_name(x.dt) << shape_s(x.shape)
                                << " err " << e);
    };
    cmp("params", *s.p[i]);
    cmp("exp_avg", *s.m[i]);
    cmp("exp_avg_sq", *s.v[i]);
    if (s.ms[i]) cmp("master", *s.ms[i]);
  }
}

L2C_TEST(cuda_train_adamw_matches_cpu) {
  REQUIRE_CUDA();
  Rng rng(500);
  const std::vector<AdamSpec> specs = {
      {{37, 65}, L2C_FLOAT32, L2C_FLOAT32, false, true},
      {{7}, L2C_FLOAT32, L2C_BFLOAT16, false, false},
      {{1000}, L2C_BFLOAT16, L2C_BFLOAT16, true, true},
      {{131075}, L2C_FLOAT16, L2C_FLOAT32, true, true},  // three units of 2^16
      {{0}, L2C_FLOAT32, L2C_FLOAT32, false, true},
      {{97, 7}, L2C_FLOAT32, L2C_FLOAT16, true, false},  // a float32 parameter with a master copy
      {{65537}, L2C_BFLOAT16, L2C_FLOAT16, true, false},
  };
  for (int mask = 0; mask < 2; mask++) {
    AdamSet s = adam_set(specs, rng);
    // Steps 1..4: no clipping, clipping (the norm is ~ 100s), clipping that does not bite.
    const double clips[] = {0, 0.5, 1e9, 3.0};
    for (int64_t step = 1; step <= 4; step++) {
      for (auto &g : s.g) g->randomize(rng, -1, 1);
      adam_step(s, clips[step - 1], step, mask == 1, "adamw step " + std::to_string(step) + " mask " + std::to_string(mask));
    }
    // A non-finite gradient skips the step on both (Inf, then NaN); then one more step.
    for (int kind = 0; kind < 2; kind++) {
      for (auto &g : s.g) g->randomize(rng, -1, 1);
      Pair &g2 = *s.g[2];
      set_f(g2.h.p, g2.dt, 17, kind == 0 ? INFINITY : NAN);
      g2.upload();
      adam_step(s, kind == 0 ? 1.0 : 0.0, 5, mask == 1, std::string("adamw non-finite ") + (kind ? "NaN" : "Inf"), true);
    }
    for (auto &g : s.g) g->randomize(rng, -1, 1);
    adam_step(s, 1.0, 5, mask == 1, "adamw after a skip");
  }
}

L2C_TEST(cuda_train_grad_norm_matches_cpu) {
  REQUIRE_CUDA();
  Rng rng(600);
  std::vector<PairP> gs;
  gs.push_back(mk(L2C_FLOAT32, {37, 65}));
  gs.push_back(mk(L2C_BFLOAT16, {1000}));
  gs.push_back(mk(L2C_FLOAT16, {131075}));
  gs.push_back(mk(L2C_FLOAT32, {0}));
  for (auto &g : gs) g->randomize(rng, -3, 3);
  for (size_t n = 0; n <= gs.size(); n++) {
    std::vector<l2c_tensor> th, td;
    for (size_t i = 0; i < n; i++) {
      th.push_back(gs[i]->host());
      td.push_back(gs[i]->dev());
    }
    double want = -1, got = -1;
    std::string msg;
    L2C_EXPECT(abi([&] { return l2c_grad_norm((int32_t)n, th.data(), &want); }, &msg) == L2C_OK, msg);
    L2C_EXPECT(abi([&] { return l2c_grad_norm((int32_t)n, td.data(), &got); }, &msg) == L2C_OK, msg);
    L2C_EXPECT(std::fabs(got - want) <= 1e-12 * want, "grad_norm of " << n << " tensors: cuda " << got << " cpu " << want);
  }
}

// ------------------------------------------------------------------ layout

// Runs `call` on CPU tensors and on CUDA tensors (outputs poisoned first), then compares the
// outputs bit for bit.
template <class F>
void layout_check(const std::string &what, const std::vector<Pair *> &outs, F &&call) {
  std::string msg;
  int st = call(false, &msg);
  L2C_EXPECT(st == L2C_OK, what << ": cpu " << msg);
  for (Pair *o : outs) o->poison_dev();
  st = call(true, &msg);
  L2C_EXPECT(st == L2C_OK, what << ": cuda " << msg);
  for (Pair *o : outs) {
    int64_t i = o->diff_dev_host();
    L2C_EXPECT(i < 0, what << ": output " << l2c::dtype_name(o->dt) << shape_s(o->shape) << " element " << i
                           << " differs");
  }
}

L2C_TEST(cuda_train_permute_matches_cpu) {
  REQUIRE_CUDA();
  Rng rng(700);
  const std::vector<std::vector<int64_t>> shapes = {{37},         {3, 5},        {65, 97},     {2, 3, 4},
                                                    {4, 1, 6, 5}, {2, 3, 5, 7}, {3, 4, 8, 16}, {2, 1, 3, 1, 2, 5}};
  for (l2c_dtype dt : kAllTypes) {
    for (const auto &shape : shapes) {
      Pair x(dt, shape);
      x.random_bits(rng);
      std::vector<int32_t> dims(shape.size());
      std::iota(dims.begin(), dims.end(), 0);
      int count = 0;
      do {
        if (shape.size() == 6 && count++ % 37 != 0) continue;  // a sample of 6! = 720
        std::vector<int64_t> os;
        for (int32_t d : dims) os.push_back(shape[d]);
        Pair out(dt, os);
        std::string what = std::string("permute ") + l2c::dtype_name(dt) + shape_s(shape) + " dims ";
        for (int32_t d : dims) what += std::to_string(d);
        layout_check(what, {&out}, [&](bool on_cuda, std::string *msg) {
          l2c_tensor tx = on_cuda ? x.dev() : x.host(), to = on_cuda ? out.dev() : out.host();
          l2c_permute_args a{};
          a.x = &tx;
          a.out = &to;
          for (size_t i = 0; i < dims.size(); i++) a.dims[i] = dims[i];
          return abi([&] { return l2c_permute(&a); }, msg);
        });
      } while (std::next_permutation(dims.begin(), dims.end()));
    }
  }
}

L2C_TEST(cuda_train_concat_split_slice_match_cpu) {
  REQUIRE_CUDA();
  Rng rng(800);
  const std::vector<std::vector<int64_t>> shapes = {{37}, {3, 24}, {2, 3, 4}, {5, 8, 16}, {3, 1, 7, 9}};
  for (l2c_dtype dt : kAllTypes) {
    for (const auto &shape : shapes) {
      for (int dim = 0; dim < (int)shape.size(); dim++) {
        const int64_t D = shape[dim];
        // Three parts along dim: one of 1 (or 0), one of 0, the rest.
        std::vector<int64_t> sizes = {std::min<int64_t>(1, D), 0, D - std::min<int64_t>(1, D)};
        if (D >= 8) sizes = {D / 4, 0, D / 2, D - D / 4 - D / 2};
        std::vector<PairP> parts;
        for (int64_t s : sizes) {
          std::vector<int64_t> ps = shape;
          ps[dim] = s;
          parts.push_back(mk(dt, ps));
          parts.back()->random_bits(rng);
        }
        Pair whole(dt, shape);
        const std::string base = std::string(l2c::dtype_name(dt)) + shape_s(shape) + " dim " + std::to_string(dim);
        std::vector<Pair *> part_ptrs;
        for (auto &p : parts) part_ptrs.push_back(p.get());
        auto concat_call = [&](bool split) {
          return [&, split](bool on_cuda, std::string *msg) {
            std::vector<l2c_tensor> tp;
            for (auto &p : parts) tp.push_back(on_cuda ? p->dev() : p->host());
            l2c_tensor tw = on_cuda ? whole.dev() : whole.host();
            l2c_concat_args a{};
            a.n = (int32_t)tp.size();
            a.parts = tp.data();
            a.whole = &tw;
            a.dim = dim;
            return abi([&] { return split ? l2c_split(&a) : l2c_concat(&a); }, msg);
          };
        };
        layout_check("concat " + base, {&whole}, concat_call(false));
        whole.random_bits(rng);
        layout_check("split " + base, part_ptrs, concat_call(true));
        // Slices of whole along dim: empty, one, a middle piece, all of it.
        for (auto se : std::vector<std::pair<int64_t, int64_t>>{{0, 0}, {D / 2, 1}, {D / 3, D - D / 3 - D / 4}, {0, D}}) {
          const int64_t start = std::min(se.first, D), len = std::max<int64_t>(0, std::min(se.second, D - start));
          std::vector<int64_t> ps = shape;
          ps[dim] = len;
          Pair part(dt, ps);
          const std::string sw = base + " start " + std::to_string(start) + " len " + std::to_string(len);
          auto slice_call = [&](bool backward) {
            return [&, backward](bool on_cuda, std::string *msg) {
              l2c_tensor tw = on_cuda ? whole.dev() : whole.host(), tp = on_cuda ? part.dev() : part.host();
              l2c_slice_args a{};
              a.whole = &tw;
              a.part = &tp;
              a.dim = dim;
              a.start = start;
              return abi([&] { return backward ? l2c_slice_backward(&a) : l2c_slice_forward(&a); }, msg);
            };
          };
          layout_check("slice " + sw, {&part}, slice_call(false));
          part.random_bits(rng);
          layout_check("slice_backward " + sw, {&whole}, slice_call(true));
          whole.random_bits(rng);
        }
      }
    }
  }
}

L2C_TEST(cuda_train_patchify_matches_cpu) {
  REQUIRE_CUDA();
  Rng rng(900);
  struct PC {
    int64_t B, C, H, W, p;
  };
  const PC cases[] = {{2, 3, 8, 12, 4}, {1, 1, 7, 7, 7}, {3, 2, 6, 6, 1}, {2, 3, 16, 16, 8}, {1, 3, 14, 21, 7}, {0, 3, 4, 4, 2}};
  for (l2c_dtype dt : kAllTypes) {
    for (const PC &c : cases) {
      Pair im(dt, {c.B, c.C, c.H, c.W}), pt(dt, {c.B, (c.H / c.p) * (c.W / c.p), c.C * c.p * c.p});
      im.random_bits(rng);
      const std::string what = std::string(l2c::dtype_name(dt)) + " images " + shape_s(im.shape) + " p " + std::to_string(c.p);
      auto call = [&](bool backward) {
        return [&, backward](bool on_cuda, std::string *msg) {
          l2c_tensor ti = on_cuda ? im.dev() : im.host(), tp = on_cuda ? pt.dev() : pt.host();
          l2c_patchify_args a{};
          a.images = &ti;
          a.patches = &tp;
          a.patch_size = c.p;
          return abi([&] { return backward ? l2c_patchify_backward(&a) : l2c_patchify_forward(&a); }, msg);
        };
      };
      layout_check("patchify " + what, {&pt}, call(false));
      // Round trip on the device: unpatchify(patchify(images)) is the images again.
      std::vector<uint8_t> orig = im.download();
      im.poison_dev();
      std::string msg;
      L2C_EXPECT(call(true)(true, &msg) == L2C_OK, what << ": unpatchify " << msg);
      L2C_EXPECT(im.download() == orig, "unpatchify(patchify(x)) != x for " << what);
      pt.random_bits(rng);
      layout_check("unpatchify " + what, {&im}, call(true));
    }
  }
}

// ------------------------------------------------------------------ errors

// Tensors of one call on two devices: DEVICE_MISMATCH from every entry (checked before any
// data is read).
L2C_TEST(cuda_train_device_mismatch) {
  REQUIRE_CUDA();
  Pair w(L2C_FLOAT32, {5, 4}), ids(L2C_INT32, {3}), out(L2C_FLOAT32, {3, 4});
  l2c_tensor wd = w.dev(), ih = ids.host(), od = out.dev();
  auto mismatch = [&](const char *what, l2c_status st) {
    L2C_EXPECT(st == L2C_DEVICE_MISMATCH, what << " gave " << l2c_status_name(st) << " (" << l2c_last_error() << ")");
  };
  l2c_embedding_args ea{};
  ea.weight = &wd;
  ea.ids = &ih;
  ea.out = &od;
  mismatch("embedding", l2c_embedding_forward(&ea));
  ea.dy = &od;
  ea.dweight = &wd;
  mismatch("embedding_backward", l2c_embedding_backward(&ea));

  Pair h(L2C_FLOAT32, {3, 4}), t(L2C_INT32, {3}), loss(L2C_FLOAT32, {}), lse(L2C_FLOAT32, {3});
  l2c_tensor hd = h.dev(), td = t.dev(), th = t.host(), ld = loss.dev(), lsed = lse.dev(), lseh = lse.host();
  l2c_cross_entropy_args xa{};
  xa.hidden = &hd;
  xa.weight = &wd;
  xa.targets = &th;
  xa.loss = &ld;
  xa.lse = &lsed;
  xa.dhidden = &hd;
  mismatch("cross_entropy (targets)", l2c_cross_entropy_forward(&xa));
  xa.targets = &td;
  xa.lse = &lseh;
  mismatch("cross_entropy_backward (lse)", l2c_cross_entropy_backward(&xa));

  Pair p(L2C_FLOAT32, {4}), p16(L2C_BFLOAT16, {4}), ms(L2C_FLOAT32, {4});
  l2c_tensor ps[2] = {p.dev(), p.dev()}, gs[2] = {p.dev(), p.host()}, mv[2] = {p.dev(), p.dev()};
  double norm = 0;
  int32_t skipped = 0;
  l2c_adamw_args aa{};
  aa.n = 2;
  aa.params = ps;
  aa.grads = gs;
  aa.exp_avg = mv;
  aa.exp_avg_sq = mv;
  aa.lr = 0.1;
  aa.beta1 = 0.9;
  aa.beta2 = 0.99;
  aa.step = 1;
  aa.grad_norm = &norm;
  aa.skipped = &skipped;
  mismatch("adamw (grads[1])", l2c_adamw(&aa));
  mismatch("grad_norm", l2c_grad_norm(2, gs, &norm));
  l2c_tensor ps16[1] = {p16.dev()}, msh = ms.host();
  const l2c_tensor *masters[1] = {&msh};
  aa.n = 1;
  aa.params = ps16;
  aa.grads = ps;
  aa.master = masters;
  mismatch("adamw (master)", l2c_adamw(&aa));

  l2c_tensor xh = h.host(), xd = h.dev();
  l2c_permute_args pa{};
  pa.x = &xh;
  pa.out = &xd;
  pa.dims[0] = 0;
  pa.dims[1] = 1;
  mismatch("permute", l2c_permute(&pa));
  l2c_tensor parts[2] = {xd, xh};
  Pair whole(L2C_FLOAT32, {6, 4});
  l2c_tensor wholed = whole.dev();
  l2c_concat_args ca{};
  ca.n = 2;
  ca.parts = parts;
  ca.whole = &wholed;
  mismatch("concat", l2c_concat(&ca));
  l2c_slice_args sa{};
  sa.whole = &wholed;
  sa.part = &xh;
  mismatch("slice", l2c_slice_forward(&sa));
  mismatch("slice_backward", l2c_slice_backward(&sa));
  Pair im(L2C_FLOAT32, {1, 1, 4, 4}), pt(L2C_FLOAT32, {1, 4, 4});
  l2c_tensor imd = im.dev(), pth = pt.host();
  l2c_patchify_args qa{};
  qa.images = &imd;
  qa.patches = &pth;
  qa.patch_size = 2;
  mismatch("patchify", l2c_patchify_forward(&qa));
}

}  // namespace
