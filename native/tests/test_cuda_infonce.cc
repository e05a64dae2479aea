// test_cuda_infonce.cc: the CUDA InfoNCE / CLIP loss (native/cuda/infonce.cu) against the
// CPU kernels, through the C ABI (l2c_infonce_forward / l2c_infonce_backward) on CPU and
// CUDA tensors: loss, lse_rows, lse_cols, da, db, dscale. Fresh random inputs per case
// (rows of unit norm, as CLIP's embeddings, times the scale), odd sizes, N != M,
// N = M = 1, d in {0, 1, 7, 33, 64, 65, 77, 136, 300, 520}, symmetric or not, scale and
// grad_loss as numbers or device tensors, scale 100, several tiles / column ranges /
// waves / backward groups and ranges / d slices with ragged tails, the 16-byte and the scalar load
// paths, N = 0, determinism, and the error cases. Every GPU case skips without a CUDA
// device; cuda_infonce_unavailable runs everywhere.
//
// Tolerances. The truth is the CPU float32 kernel on the inputs as float32 values (for
// 16-bit storage: the rounded values, exactly widened).
//  - float32 storage: lse / loss within tolL = 1e-5 (1 + Lmax) (Lmax = |scale| max|a_i|
//    max|b_j| bounds |L|: both sides round S and L in float32, in different orders);
//    da / db within 1e-4 relative (‖x - ref‖ / ‖ref‖, the norm floored at 1e-3 of the
//    gradient's natural size 2 |scale gl| coef sqrt(rows) max|row| so that exact zeros
//    compare); dscale within 1e-4 (|ref| + |gl| Smax).
//  - bfloat16 / float16 storage (FlashAttention's criterion): the error against the truth
//    at most twice the error of the CPU computing the same in 16-bit storage, plus the
//    float32 bound above as the floor (lse, loss and dscale are float32 outputs, which the
//    CPU gets bit-exact, so there the floor is the whole allowance; the GPU's G' tile is
//    rounded to the input dtype for the tensor cores, as FlashAttention rounds P and dS).
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <sstream>
#include <stdexcept>

#include "infonce_cuda.h"
#include "l2c_infonce.h"
#include "test_cuda_util.h"

using namespace l2c_cuda_test;

namespace {

const l2c_dtype kFloatTypes[] = {L2C_FLOAT32, L2C_BFLOAT16, L2C_FLOAT16};
const l2c_device kCpu{L2C_CPU, 0};
const l2c_device kGpu{L2C_CUDA, kDev};

// Memory on either device through the C ABI (at least 64 bytes, so empty tensors still
// get a real pointer).
struct Mem {
  l2c_device dev;
  void *p = nullptr;
  size_t bytes;
  Mem(l2c_device d, size_t n) : dev(d), bytes(n) {
    if (l2c_alloc(dev, std::max<size_t>(n, 64), &p) != L2C_OK) throw std::runtime_error(l2c_last_error());
  }
  ~Mem() { l2c_free(dev, p); }
  Mem(const Mem &) = delete;
  Mem &operator=(const Mem &) = delete;
};

l2c_tensor tens(const Mem &m, l2c_dtype dt, std::initializer_list<int64_t> shape) {
  l2c_tensor t{};
  t.data = m.p;
  t.dtype = dt;
  t.device = m.dev;
  t.ndim = (int32_t)shape.size();
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  return t;
}

// Host bytes -> m (any device), and back.
void put(const Mem &m, const void *src, size_t bytes) {
  if (bytes == 0) return;
  if (m.dev.type == L2C_CPU) {
    std::memcpy(m.p, src, bytes);
    return;
  }
  cuda::copy_h2d(m.dev.index, m.p, src, bytes);
}
void get(void *dst, const Mem &m, size_t bytes) {
  if (bytes == 0) return;
  if (m.dev.type == L2C_CPU) {
    std::memcpy(dst, m.p, bytes);
    return;
  }
  cuda::copy_d2h(m.dev.index, dst, m.p, bytes);
}
// Copied in through l2c_copy (host tensor -> tensor on m's device), as a user would.
void put_copy(const Mem &m, l2c_dtype dt, const void *src, int64_t n) {
  if (n == 0) return;
  l2c_tensor h{};
  h.data = const_cast<void *>(src);
  h.dtype = dt;
  h.device = kCpu;
  h.ndim = 1;
  h.shape[0] = n;
  l2c_tensor t = tens(m, dt, {n});
  l2c_status st = l2c_copy(&t, &h);
  if (st != L2C_OK) throw std::runtime_error(std::string("l2c_copy: ") + l2c_last_error());
}
void poison_nan(const Mem &m, l2c_dtype dt, int64_t n) {
  if (n == 0) return;
  l2c_tensor t = tens(m, dt, {n});
  l2c_fill(&t, std::numeric_limits<double>::quiet_NaN());
}

float widen(const std::vector<uint8_t> &raw, l2c_dtype dt, int64_t i) {
  if (dt == L2C_FLOAT32) {
    float f;
    std::memcpy(&f, raw.data() + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, raw.data() + 2 * i, 2);
  return dt == L2C_BFLOAT16 ? l2c::bf16_to_f32(h) : l2c::f16_to_f32(h);
}

struct Inputs {
  l2c_dtype dt;
  int64_t N, M, d;
  std::vector<uint8_t> a, b;  // storage bytes
  std::vector<float> af, bf;  // the same values as float32
};

// Rows of unit norm (uniform directions), rounded once to dt.
Inputs make_inputs(l2c_dtype dt, int64_t N, int64_t M, int64_t d, uint64_t seed) {
  Inputs in{dt, N, M, d, {}, {}, {}, {}};
  Rng rng(seed);
  auto fill = [&](int64_t rows, std::vector<uint8_t> &raw, std::vector<float> &vals) {
    std::vector<float> x((size_t)(rows * d));
    for (int64_t r = 0; r < rows; r++) {
      double n2 = 0;
      for (int64_t k = 0; k < d; k++) {
        float v = rng.uniform(-1.0f, 1.0f);
        x[r * d + k] = v;
        n2 += (double)v * v;
      }
      const float inv = n2 > 0 ? (float)(1.0 / std::sqrt(n2)) : 1.0f;
      for (int64_t k = 0; k < d; k++) x[r * d + k] *= inv;
    }
    raw.resize(x.size() * dsize(dt));
    for (size_t i = 0; i < x.size(); i++) {
      if (dt == L2C_FLOAT32) {
        std::memcpy(raw.data() + 4 * i, &x[i], 4);
      } else {
        uint16_t h = dt == L2C_BFLOAT16 ? l2c::f32_to_bf16(x[i]) : l2c::f32_to_f16(x[i]);
        std::memcpy(raw.data() + 2 * i, &h, 2);
      }
    }
    vals.resize(x.size());
    for (size_t i = 0; i < x.size(); i++) vals[i] = widen(raw, dt, (int64_t)i);
  };
  fill(N, in.a, in.af);
  fill(M, in.b, in.bf);
  return in;
}

// The same values in float32 storage (the truth's inputs).
Inputs as_f32(const Inputs &in) {
  Inputs o{L2C_FLOAT32, in.N, in.M, in.d, {}, {}, in.af, in.bf};
  o.a.resize(in.af.size() * 4);
  o.b.resize(in.bf.size() * 4);
  if (!in.af.empty()) std::memcpy(o.a.data(), in.af.data(), o.a.size());
  if (!in.bf.empty()) std::memcpy(o.b.data(), in.bf.data(), o.b.size());
  return o;
}

struct Opts {
  bool sym = false;
  float scale = 1.0f;
  bool scale_tensor = false;
  float gl = 1.0f;
  bool gl_tensor = false;
};

struct Result {
  l2c_status fwd = L2C_OK, bwd = L2C_OK;
  std::string err;
  float loss = 0, dscale = 0;
  std::vector<float> lse_rows, lse_cols, da, db;  // da / db widened to float32
  std::vector<uint8_t> da_raw, db_raw;
};

// Forward then backward (with this run's own lse) on `dev`; outputs poisoned first.
Result run(const Inputs &in, const Opts &o, l2c_device dev) {
  const int64_t N = in.N, M = in.M, d = in.d;
  const size_t es = dsize(in.dt);
  Result r;
  Mem a(dev, in.a.size()), b(dev, in.b.size());
  put_copy(a, in.dt, in.a.data(), N * d);
  put_copy(b, in.dt, in.b.data(), M * d);
  Mem sc(dev, 4), glt(dev, 4), loss(dev, 4), lr(dev, 4 * N), lc(dev, 4 * M), da(dev, es * N * d),
      db(dev, es * M * d), ds(dev, 4);
  put(sc, &o.scale, 4);
  put(glt, &o.gl, 4);
  poison_nan(loss, L2C_FLOAT32, 1);
  poison_nan(lr, L2C_FLOAT32, N);
  poison_nan(lc, L2C_FLOAT32, M);
  poison_nan(da, in.dt, N * d);
  poison_nan(db, in.dt, M * d);
  poison_nan(ds, L2C_FLOAT32, 1);
  l2c_tensor ta = tens(a, in.dt, {N, d}), tb = tens(b, in.dt, {M, d});
  l2c_tensor tsc = tens(sc, L2C_FLOAT32, {1}), tgl = tens(glt, L2C_FLOAT32, {});
  l2c_tensor tloss = tens(loss, L2C_FLOAT32, {}), tlr = tens(lr, L2C_FLOAT32, {N}), tlc = tens(lc, L2C_FLOAT32, {M});
  l2c_tensor tda = tens(da, in.dt, {N, d}), tdb = tens(db, in.dt, {M, d}), tds = tens(ds, L2C_FLOAT32, {});

  l2c_infonce_args fa{};
  fa.a = &ta;
  fa.b = &tb;
  fa.scale = o.scale;
  fa.scale_tensor = o.scale_tensor ? &tsc : nullptr;
  fa.symmetric = o.sym ? 1 : 0;
  fa.loss = &tloss;
  fa.lse_rows = &tlr;
  fa.lse_cols = o.sym ? &tlc : nullptr;
  r.fwd = l2c_infonce_forward(&fa);
  if (r.fwd != L2C_OK) {
    r.err = l2c_last_error();
    return r;
  }
  l2c_infonce_backward_args ba{};
  ba.a = &ta;
  ba.b = &tb;
  ba.scale = o.scale;
  ba.scale_tensor = o.scale_tensor ? &tsc : nullptr;
  ba.symmetric = o.sym ? 1 : 0;
  ba.lse_rows = &tlr;
  ba.lse_cols = o.sym ? &tlc : nullptr;
  ba.grad_loss = o.gl;
  ba.grad_loss_tensor = o.gl_tensor ? &tgl : nullptr;
  ba.da = &tda;
  ba.db = &tdb;
  ba.dscale = &tds;
  r.bwd = l2c_infonce_backward(&ba);
  if (r.bwd != L2C_OK) r.err = l2c_last_error();

  get(&r.loss, loss, 4);
  r.lse_rows.resize(N);
  get(r.lse_rows.data(), lr, 4 * N);
  if (o.sym) {
    r.lse_cols.resize(M);
    get(r.lse_cols.data(), lc, 4 * M);
  }
  r.da_raw.resize(es * N * d);
  r.db_raw.resize(es * M * d);
  get(r.da_raw.data(), da, r.da_raw.size());
  get(r.db_raw.data(), db, r.db_raw.size());
  get(&r.dscale, ds, 4);
  r.da.resize(N * d);
  r.db.resize(M * d);
  for (int64_t i = 0; i < N * d; i++) r.da[i] = widen(r.da_raw, in.dt, i);
  for (int64_t i = 0; i < M * d; i++) r.db[i] = widen(r.db_raw, in.dt, i);
  return r;
}

// Largest |x - y| (infinite when either holds a NaN or the sizes differ).
double max_abs_diff(const std::vector<float> &x, const std::vector<float> &y) {
  if (x.size() != y.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < x.size(); i++) {
    double e = std::fabs((double)x[i] - (double)y[i]);
    if (!(e <= m)) m = std::isnan(e) ? INFINITY : e;
  }
  return m;
}
double abs_diff(float x, float y) {
  double e = std::fabs((double)x - (double)y);
  return std::isnan(e) ? INFINITY : e;
}
// ‖x - ref‖ / max(‖ref‖, floor).
double rel_err(const std::vector<float> &x, const std::vector<float> &ref, double floor) {
  if (x.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); i++) {
    double e = (double)x[i] - (double)ref[i];
    num += e * e;
    den += (double)ref[i] * ref[i];
  }
  if (num == 0) return 0.0;  // also for empty tensors
  double r = std::sqrt(num) / std::max(std::sqrt(den), floor);
  return std::isnan(r) ? INFINITY : r;
}

double max_row_norm(const std::vector<float> &x, int64_t rows, int64_t d) {
  double m = 0;
  for (int64_t r = 0; r < rows; r++) {
    double n2 = 0;
    for (int64_t k = 0; k < d; k++) n2 += (double)x[r * d + k] * x[r * d + k];
    m = std::max(m, std::sqrt(n2));
  }
  return m;
}

struct Case {
  const char *name;
  int64_t N, M, d;
  Opts o;
};

std::string describe(const Case &c, l2c_dtype dt) {
  std::ostringstream os;
  os << c.name << " " << l2c::dtype_name(dt) << " N=" << c.N << " M=" << c.M << " d=" << c.d
     << (c.o.sym ? " symmetric" : "") << " scale=" << c.o.scale << (c.o.scale_tensor ? " (tensor)" : "")
     << " gl=" << c.o.gl << (c.o.gl_tensor ? " (tensor)" : "");
  return os.str();
}

// One case in one dtype: the CUDA result against the CPU truth (and the CPU in dt).
void check_case(const Case &c, l2c_dtype dt, uint64_t seed) {
  const std::string what = describe(c, dt);
  const Inputs in = make_inputs(dt, c.N, c.M, c.d, seed);
  const Result truth = run(as_f32(in), c.o, kCpu);
  L2C_EXPECT(truth.fwd == L2C_OK && truth.bwd == L2C_OK, what << ": CPU float32 failed: " << truth.err);
  const Result gpu = run(in, c.o, kGpu);
  L2C_EXPECT(gpu.fwd == L2C_OK && gpu.bwd == L2C_OK, what << ": CUDA failed: " << gpu.err);
  if (truth.fwd != L2C_OK || gpu.fwd != L2C_OK) return;
  const bool lowp = dt != L2C_FLOAT32;
  Result cpu16;
  if (lowp) {
    cpu16 = run(in, c.o, kCpu);
    L2C_EXPECT(cpu16.fwd == L2C_OK && cpu16.bwd == L2C_OK, what << ": CPU " << l2c::dtype_name(dt) << " failed");
  }

  const double na = max_row_norm(in.af, c.N, c.d), nb = max_row_norm(in.bf, c.M, c.d);
  const double smax = na * nb, lmax = std::fabs(c.o.scale) * smax;
  const double tolL = 1e-5 * (1.0 + lmax);
  const double gl = c.o.gl;
  const double coef = c.N > 0 ? 1.0 / ((c.o.sym ? 2.0 : 1.0) * (double)c.N) : 0.0;
  const double gmag = 2.0 * std::fabs(c.o.scale * gl) * coef;  // |da_i| <= gmag max|b_j|
  auto allow = [&](double cpu_err, double floor) { return (lowp ? 2.0 * cpu_err : 0.0) + floor; };
  // LLM2CLIP_TEST_VERBOSE=1: each error as a share of its allowance (the margins).
  static const bool verbose = std::getenv("LLM2CLIP_TEST_VERBOSE") != nullptr;
  auto note = [&](const char *out, double err, double tol) {
    if (verbose) std::printf("    %-60s %-9s err %.3g / allowed %.3g = %.3f\n", what.c_str(), out, err, tol, err / tol);
  };

  double e = abs_diff(gpu.loss, truth.loss);
  double t = allow(lowp ? abs_diff(cpu16.loss, truth.loss) : 0.0, tolL);
  note("loss", e, t);
  L2C_EXPECT(e <= t, what << ": loss " << gpu.loss << " vs " << truth.loss << " (err " << e << " > " << t << ")");
  e = max_abs_diff(gpu.lse_rows, truth.lse_rows);
  t = allow(lowp ? max_abs_diff(cpu16.lse_rows, truth.lse_rows) : 0.0, tolL);
  note("lse_rows", e, t);
  L2C_EXPECT(e <= t, what << ": lse_rows max err " << e << " > " << t);
  if (c.o.sym) {
    e = max_abs_diff(gpu.lse_cols, truth.lse_cols);
    t = allow(lowp ? max_abs_diff(cpu16.lse_cols, truth.lse_cols) : 0.0, tolL);
    note("lse_cols", e, t);
  L2C_EXPECT(e <= t, what << ": lse_cols max err " << e << " > " << t);
  }
  if (gpu.bwd != L2C_OK || truth.bwd != L2C_OK) return;
  const double fa = 1e-3 * gmag * std::sqrt((double)c.N) * nb, fb = 1e-3 * gmag * std::sqrt((double)c.M) * na;
  e = rel_err(gpu.da, truth.da, fa);
  t = allow(lowp ? rel_err(cpu16.da, truth.da, fa) : 0.0, 1e-4);
  note("da", e, t);
  L2C_EXPECT(e <= t, what << ": da rel err " << e << " > " << t);
  e = rel_err(gpu.db, truth.db, fb);
  t = allow(lowp ? rel_err(cpu16.db, truth.db, fb) : 0.0, 1e-4);
  note("db", e, t);
  L2C_EXPECT(e <= t, what << ": db rel err " << e << " > " << t);
  e = abs_diff(gpu.dscale, truth.dscale);
  t = allow(lowp ? abs_diff(cpu16.dscale, truth.dscale) : 0.0,
            1e-4 * (std::fabs(truth.dscale) + std::fabs(gl) * smax));
  note("dscale", e, t);
  L2C_EXPECT(e <= t, what << ": dscale " << gpu.dscale << " vs " << truth.dscale << " (err " << e << " > " << t
                          << ")");
}

void check_cases(const std::vector<Case> &cases, uint64_t seed0) {
  uint64_t seed = seed0;
  for (const Case &c : cases)
    for (l2c_dtype dt : kFloatTypes) check_case(c, dt, seed++);
}

Opts opts(bool sym, float scale, float gl = 1.0f, bool scale_tensor = false, bool gl_tensor = false) {
  Opts o;
  o.sym = sym;
  o.scale = scale;
  o.gl = gl;
  o.scale_tensor = scale_tensor;
  o.gl_tensor = gl_tensor;
  return o;
}

// Sets an environment variable for the scope (tests' knobs), restoring it after.
struct EnvVar {
  std::string name, old;
  bool had;
  EnvVar(const char *n, const char *v) : name(n) {
    const char *o = std::getenv(n);
    had = o != nullptr;
    if (had) old = o;
    setenv(n, v, 1);
  }
  ~EnvVar() {
    if (had)
      setenv(name.c_str(), old.c_str(), 1);
    else
      unsetenv(name.c_str());
  }
};

// ------------------------------------------------------------------ cases

L2C_TEST(cuda_infonce_small_shapes) {
  REQUIRE_CUDA();
  check_cases({{"N != M, odd d", 37, 97, 65, opts(false, 3.5f)},
               {"N != M, d % 8 = 0, grad_loss tensor", 37, 97, 64, opts(false, 7.0f, -0.6f, false, true)},
               {"N = M = 1", 1, 1, 7, opts(false, 2.0f)},
               {"N = M = 1 symmetric", 1, 1, 7, opts(true, 2.0f, 1.3f)},
               {"d = 1", 5, 9, 1, opts(false, 4.0f)},
               {"d = 1 symmetric", 6, 6, 1, opts(true, 4.0f, 0.5f, true)},
               {"d = 7 symmetric", 13, 13, 7, opts(true, 1.0f)}},
              1000);
}

L2C_TEST(cuda_infonce_wide_d_and_scale_tensors) {
  REQUIRE_CUDA();
  check_cases({{"d > 256, scale tensor, grad_loss != 1", 150, 150, 300, opts(true, 2.5f, 1.7f, true)},
               {"d > 256 not symmetric", 41, 170, 300, opts(false, 12.0f, -2.0f, true, true)}},
              2000);
}

L2C_TEST(cuda_infonce_scale_100) {
  REQUIRE_CUDA();
  check_cases({{"scale 100 symmetric", 200, 200, 64, opts(true, 100.0f)},
               {"scale 100", 120, 333, 33, opts(false, 100.0f, 0.25f)}},
              3000);
}

// Several row / column tiles with ragged tails; backward groups (512 rows of the other
// side for 16-bit, 256 for float32) and d slices (128) with ragged tails; the 16-byte
// (d % 8 == 0) and the scalar load paths.
L2C_TEST(cuda_infonce_many_tiles) {
  REQUIRE_CUDA();
  check_cases({{"tiles, symmetric, d % 8 = 0", 700, 700, 136, opts(true, 20.0f, 0.9f, true, true)},
               {"tiles, M >> N, d = 520", 300, 1100, 520, opts(false, 10.0f)},
               {"tiles, odd d", 129, 1030, 77, opts(false, 6.0f, 1.0f, true)}},
              4000);
}

// The structure forced (the defaults depend on the SM count): one forward column range
// (a CTA walks all column tiles, its pipeline crossing tile boundaries) and one backward
// range (partial rows carried across groups in place / in the float32 buffer); then two
// column ranges, waves of one row tile (column states merged across waves) and two or
// three backward ranges (partial sums combined by the reduce kernel).
L2C_TEST(cuda_infonce_ranges_and_waves) {
  REQUIRE_CUDA();
  {
    EnvVar splits("LLM2CLIP_INFONCE_CUDA_SPLITS", "1");
    EnvVar ranges("LLM2CLIP_INFONCE_CUDA_BWD_RANGES", "1");
    check_cases({{"one range each, groups in place", 129, 1030, 77, opts(false, 6.0f)},
                 {"one range each, symmetric", 600, 600, 24, opts(true, 8.0f)}},
                5000);
  }
  {
    EnvVar splits("LLM2CLIP_INFONCE_CUDA_SPLITS", "2");
    EnvVar waves("LLM2CLIP_INFONCE_WAVE_ROWS", "128");
    EnvVar ranges("LLM2CLIP_INFONCE_CUDA_BWD_RANGES", "2");
    check_cases({{"waves of one row tile, 2 ranges", 300, 300, 40, opts(true, 5.0f, 1.0f, true)},
                 {"waves, not symmetric, 2 ranges", 300, 1300, 24, opts(false, 5.0f)}},
                6000);
  }
  {
    EnvVar ranges("LLM2CLIP_INFONCE_CUDA_BWD_RANGES", "3");
    check_cases({{"3 backward ranges, symmetric", 1100, 1100, 16, opts(true, 4.0f, 0.7f)}}, 6500);
  }
}

// d = 0 (all logits 0: lse = log M) and N = 0 (loss 0, db 0, dscale 0).
L2C_TEST(cuda_infonce_empty) {
  REQUIRE_CUDA();
  check_cases({{"d = 0", 3, 5, 0, opts(false, 2.0f)}, {"d = 0 symmetric", 4, 4, 0, opts(true, 2.0f)}}, 7000);
  for (l2c_dtype dt : kFloatTypes) {
    for (bool sym : {false, true}) {
      const int64_t M = sym ? 0 : 5, d = 3;
      Inputs in = make_inputs(dt, 0, M, d, 7100);
      Result g = run(in, opts(sym, 3.0f), kGpu);
      L2C_EXPECT(g.fwd == L2C_OK && g.bwd == L2C_OK, "N = 0: " << g.err);
      L2C_EXPECT(g.loss == 0.0f, "N = 0: loss " << g.loss);
      L2C_EXPECT(g.dscale == 0.0f, "N = 0: dscale " << g.dscale);
      for (float v : g.db) L2C_EXPECT(v == 0.0f, "N = 0: db holds " << v);
    }
  }
}

// Same inputs, same bits: no atomics anywhere.
L2C_TEST(cuda_infonce_deterministic) {
  REQUIRE_CUDA();
  for (l2c_dtype dt : kFloatTypes) {
    Inputs in = make_inputs(dt, 700, 700, 136, 8000 + dt);
    Opts o = opts(true, 20.0f);
    Result r1 = run(in, o, kGpu), r2 = run(in, o, kGpu);
    L2C_EXPECT(r1.fwd == L2C_OK && r1.bwd == L2C_OK, r1.err);
    L2C_EXPECT(std::memcmp(&r1.loss, &r2.loss, 4) == 0, l2c::dtype_name(dt) << ": loss differs across runs");
    L2C_EXPECT(std::memcmp(&r1.dscale, &r2.dscale, 4) == 0, l2c::dtype_name(dt) << ": dscale differs");
    L2C_EXPECT(r1.lse_rows == r2.lse_rows && r1.lse_cols == r2.lse_cols, l2c::dtype_name(dt) << ": lse differs");
    L2C_EXPECT(r1.da_raw == r2.da_raw && r1.db_raw == r2.db_raw, l2c::dtype_name(dt) << ": da / db differ");
  }
}

// Tensors on different devices: DEVICE_MISMATCH naming the argument; a device that is not
// there: DEVICE_UNAVAILABLE.
L2C_TEST(cuda_infonce_device_errors) {
  REQUIRE_CUDA();
  const int64_t N = 3, M = 4, d = 5;
  Mem ga(kGpu, 4 * N * d), gb(kGpu, 4 * M * d), gl(kGpu, 4 * N), gloss(kGpu, 4), gda(kGpu, 4 * N * d),
      gdb(kGpu, 4 * M * d), gds(kGpu, 4), gsc(kGpu, 4);
  Mem cb(kCpu, 4 * M * d), cl(kCpu, 4 * N), closs(kCpu, 4), cda(kCpu, 4 * N * d), csc(kCpu, 4);
  const float one = 1.0f;
  put(csc, &one, 4);
  put(gsc, &one, 4);
  l2c_tensor ta = tens(ga, L2C_FLOAT32, {N, d}), tb = tens(gb, L2C_FLOAT32, {M, d});
  l2c_tensor tl = tens(gl, L2C_FLOAT32, {N}), tloss = tens(gloss, L2C_FLOAT32, {});
  l2c_tensor tcb = tens(cb, L2C_FLOAT32, {M, d}), tcl = tens(cl, L2C_FLOAT32, {N}), tcloss = tens(closs, L2C_FLOAT32, {});
  l2c_tensor tcsc = tens(csc, L2C_FLOAT32, {1});
  auto fwd = [&](const l2c_tensor *a, const l2c_tensor *b, const l2c_tensor *sc, const l2c_tensor *loss,
                 const l2c_tensor *lse) {
    l2c_infonce_args f{};
    f.a = a;
    f.b = b;
    f.scale = 1.0;
    f.scale_tensor = sc;
    f.loss = loss;
    f.lse_rows = lse;
    return l2c_infonce_forward(&f);
  };
  auto expect = [&](l2c_status st, l2c_status want, const char *part, const char *what) {
    std::string msg = l2c_last_error();
    L2C_EXPECT(st == want && msg.find(part) != std::string::npos,
               what << ": status " << l2c_status_name(st) << " (" << msg << "), expected " << l2c_status_name(want));
  };
  expect(fwd(&ta, &tcb, nullptr, &tloss, &tl), L2C_DEVICE_MISMATCH, "b", "b on the CPU");
  expect(fwd(&ta, &tb, &tcsc, &tloss, &tl), L2C_DEVICE_MISMATCH, "scale", "scale tensor on the CPU");
  expect(fwd(&ta, &tb, nullptr, &tcloss, &tl), L2C_DEVICE_MISMATCH, "loss", "loss on the CPU");
  expect(fwd(&ta, &tb, nullptr, &tloss, &tcl), L2C_DEVICE_MISMATCH, "lse_rows", "lse_rows on the CPU");
  expect(fwd(&ta, &tb, nullptr, &tloss, &tl), L2C_OK, "", "all on the GPU");

  l2c_tensor tda = tens(gda, L2C_FLOAT32, {N, d}), tdb = tens(gdb, L2C_FLOAT32, {M, d}), tds = tens(gds, L2C_FLOAT32, {});
  l2c_tensor tcda = tens(cda, L2C_FLOAT32, {N, d});
  auto bwd = [&](const l2c_tensor *lse, const l2c_tensor *da, const l2c_tensor *glt) {
    l2c_infonce_backward_args b{};
    b.a = &ta;
    b.b = &tb;
    b.scale = 1.0;
    b.lse_rows = lse;
    b.grad_loss = 1.0;
    b.grad_loss_tensor = glt;
    b.da = da;
    b.db = &tdb;
    b.dscale = &tds;
    return l2c_infonce_backward(&b);
  };
  expect(bwd(&tcl, &tda, nullptr), L2C_DEVICE_MISMATCH, "lse_rows", "backward lse_rows on the CPU");
  expect(bwd(&tl, &tcda, nullptr), L2C_DEVICE_MISMATCH, "da", "da on the CPU");
  expect(bwd(&tl, &tda, &tcsc), L2C_DEVICE_MISMATCH, "grad_loss", "grad_loss tensor on the CPU");
  expect(bwd(&tl, &tda, nullptr), L2C_OK, "", "backward all on the GPU");

  // A device index past the last one.
  l2c_tensor xa = ta, xb = tb, xl = tl, xloss = tloss;
  xa.device.index = xb.device.index = xl.device.index = xloss.device.index = cuda::device_count();
  expect(fwd(&xa, &xb, nullptr, &xloss, &xl), L2C_DEVICE_UNAVAILABLE, "cuda:", "a missing device");
}

// Runs everywhere: without a CUDA device (or in a build without CUDA) CUDA tensors give
// DEVICE_UNAVAILABLE, and the backend entries refuse too; nothing is dereferenced.
L2C_TEST(cuda_infonce_unavailable) {
  if (cuda::device_count() > 0) L2C_SKIP("a CUDA device is present (cuda_infonce_device_errors covers it)");
  float host[64] = {0};
  auto t = [&](float *p, std::initializer_list<int64_t> shape) {
    l2c_tensor x{};
    x.data = p;
    x.dtype = L2C_FLOAT32;
    x.device = kGpu;
    x.ndim = (int32_t)shape.size();
    int i = 0;
    for (int64_t s : shape) x.shape[i++] = s;
    return x;
  };
  l2c_tensor ta = t(host, {2, 3}), tb = t(host + 8, {2, 3}), tl = t(host + 16, {2}), tloss = t(host + 20, {});
  l2c_infonce_args f{};
  f.a = &ta;
  f.b = &tb;
  f.scale = 1.0;
  f.loss = &tloss;
  f.lse_rows = &tl;
  l2c_status st = l2c_infonce_forward(&f);
  L2C_EXPECT(st == L2C_DEVICE_UNAVAILABLE, "forward on cuda:0 without a device: " << l2c_status_name(st) << " ("
                                                                                  << l2c_last_error() << ")");
  l2c_tensor tda = t(host + 24, {2, 3}), tdb = t(host + 32, {2, 3}), tds = t(host + 40, {});
  l2c_infonce_backward_args b{};
  b.a = &ta;
  b.b = &tb;
  b.scale = 1.0;
  b.lse_rows = &tl;
  b.grad_loss = 1.0;
  b.da = &tda;
  b.db = &tdb;
  b.dscale = &tds;
  st = l2c_infonce_backward(&b);
  L2C_EXPECT(st == L2C_DEVICE_UNAVAILABLE, "backward on cuda:0 without a device: " << l2c_status_name(st));
  l2c::InfonceParams p;
  p.a = host;
  p.b = host + 8;
  p.N = p.M = 2;
  p.d = 3;
  std::string msg;
  int s1 = status_of([&] { l2c::cuda::infonce_forward(0, p); }, &msg);
  L2C_EXPECT(s1 == L2C_DEVICE_UNAVAILABLE, "cuda::infonce_forward: " << s1 << " (" << msg << ")");
  int s2 = status_of([&] { l2c::cuda::infonce_backward(0, p); }, &msg);
  L2C_EXPECT(s2 == L2C_DEVICE_UNAVAILABLE, "cuda::infonce_backward: " << s2 << " (" << msg << ")");
}

}  // namespace
