// test_cuda_layers.cc: the CUDA kernels of the layers family (l2c_layers.h) against their
// CPU twins, through the C ABI: every op and direction on fresh random inputs at odd
// sizes (rows 1 / 37 / 97, last dims 1 / 7 / 65 / 128 / 1000+ so that rows take the
// warp-per-row and the block-per-row kernels, vector and scalar accesses), broadcasts,
// masks with empty rows, rope with llama3 scaling and large positions, dropout (bit for
// bit), empty tensors. Outputs start as NaN (l2c_fill) on both devices, so an element a
// kernel fails to write shows.
//
// Criteria:
// - float32: ||cuda - cpu|| / ||cpu|| <= kTol32 (1e-5; both compute in float32 with sums
//   in different orders, so they differ by a few float32 ulps of the row's magnitude),
//   and the same non-finite elements (NaN where the CPU has NaN, the same infinities).
// - bfloat16 / float16 storage (FlashAttention's criterion): with truth = the CPU in
//   float32 on the same (rounded) inputs, ||cuda16 - truth|| <= 2 ||cpu16 - truth|| +
//   floor * ||truth|| (floor 2^-10 for bfloat16, 2^-13 for float16: a fraction of one
//   rounding of the output, for ops whose 16-bit results are (almost) exact), and the
//   same non-finite elements as the CPU in 16 bits.
// - dropout: bit-identical outputs (the mask and the one float32 product agree exactly).
// - determinism: the reductions give bit-identical results when run twice.
// Every case skips without a CUDA device, except the device errors at the end (they fail
// before any memory is touched, so they hold on any machine).
#include <functional>
#include <memory>

#include "llm2clip.h"
#include "test_cuda_util.h"

using namespace l2c_cuda_test;

namespace {

constexpr double kTol32 = 1e-5;
const l2c_dtype kFloatTypes[] = {L2C_FLOAT32, L2C_BFLOAT16, L2C_FLOAT16};

double floor_for(l2c_dtype dt) { return dt == L2C_BFLOAT16 ? 0x1p-10 : dt == L2C_FLOAT16 ? 0x1p-13 : 0.0; }

const l2c_device kCpu = {L2C_CPU, 0};
const l2c_device kGpu = {L2C_CUDA, kDev};

int64_t prod(const std::vector<int64_t> &s) {
  int64_t n = 1;
  for (int64_t v : s) n *= v;
  return n;
}

std::string shape_s(const std::vector<int64_t> &s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

// ------------------------------------------------------------------ tensors

// The dtype of an argument: the case's float dtype, or fixed.
enum Kind { FOLLOW, FIX_F32, FIX_I32 };

struct InSpec {
  std::vector<int64_t> shape;
  Kind kind;
  std::vector<double> vals;  // prod(shape) values (int32: integers)
};
struct OutSpec {
  std::vector<int64_t> shape;
  Kind kind;
};

l2c_dtype dtype_of(Kind k, l2c_dtype dt) { return k == FOLLOW ? dt : k == FIX_F32 ? L2C_FLOAT32 : L2C_INT32; }

// Memory on one device from l2c_alloc; the tensor's data starts `offset` elements in
// (misaligned views, so that the kernels' scalar paths run too).
struct Buf {
  l2c_device dev;
  void *base = nullptr;
  l2c_tensor t{};
  Buf(l2c_device d, l2c_dtype dt, const std::vector<int64_t> &shape, int64_t offset) : dev(d) {
    const int64_t n = prod(shape);
    const size_t bytes = (size_t)std::max<int64_t>(n + offset, 1) * dsize(dt);  // exact: overruns show
    if (l2c_alloc(d, bytes, &base) != L2C_OK) throw std::runtime_error(std::string("alloc: ") + l2c_last_error());
    t.data = static_cast<char *>(base) + offset * dsize(dt);
    t.dtype = dt;
    t.device = d;
    t.ndim = (int32_t)shape.size();
    for (size_t i = 0; i < shape.size(); i++) t.shape[i] = shape[i];
  }
  ~Buf() { l2c_free(dev, base); }
  Buf(const Buf &) = delete;
  Buf &operator=(const Buf &) = delete;
};

void put(void *p, l2c_dtype dt, int64_t i, double v) {
  switch (dt) {
    case L2C_FLOAT32: static_cast<float *>(p)[i] = (float)v; break;
    case L2C_BFLOAT16: static_cast<uint16_t *>(p)[i] = l2c::f32_to_bf16((float)v); break;
    case L2C_FLOAT16: static_cast<uint16_t *>(p)[i] = l2c::f32_to_f16((float)v); break;
    case L2C_INT32: static_cast<int32_t *>(p)[i] = (int32_t)v; break;
  }
}
double get(const void *p, l2c_dtype dt, int64_t i) {
  switch (dt) {
    case L2C_FLOAT32: return static_cast<const float *>(p)[i];
    case L2C_BFLOAT16: return l2c::bf16_to_f32(static_cast<const uint16_t *>(p)[i]);
    case L2C_FLOAT16: return l2c::f16_to_f32(static_cast<const uint16_t *>(p)[i]);
    case L2C_INT32: return static_cast<const int32_t *>(p)[i];
  }
  return 0;
}
// v rounded to dt (and back).
double round_to(l2c_dtype dt, double v) {
  if (dt == L2C_INT32) return v;
  float f = (float)v;
  if (dt == L2C_BFLOAT16) return l2c::bf16_to_f32(l2c::f32_to_bf16(f));
  if (dt == L2C_FLOAT16) return l2c::f16_to_f32(l2c::f32_to_f16(f));
  return f;
}

void check_ok(l2c_status st, const char *what) {
  if (st != L2C_OK)
    throw std::runtime_error(std::string(what) + ": " + l2c_status_name(st) + ": " + l2c_last_error());
}

void upload(Buf &b, const std::vector<double> &vals) {
  const int64_t n = (int64_t)vals.size();
  if (b.dev.type == L2C_CPU) {
    for (int64_t i = 0; i < n; i++) put(b.t.data, b.t.dtype, i, vals[(size_t)i]);
    return;
  }
  std::vector<int64_t> shape(b.t.shape, b.t.shape + b.t.ndim);
  Buf h(kCpu, b.t.dtype, shape, 0);
  for (int64_t i = 0; i < n; i++) put(h.t.data, h.t.dtype, i, vals[(size_t)i]);
  check_ok(l2c_copy(&b.t, &h.t), "l2c_copy to the device");
}

std::vector<double> download(const Buf &b) {
  const int64_t n = l2c::numel(b.t);
  std::vector<double> v((size_t)n);
  const void *src = b.t.data;
  std::unique_ptr<Buf> h;
  if (b.dev.type != L2C_CPU) {
    std::vector<int64_t> shape(b.t.shape, b.t.shape + b.t.ndim);
    h.reset(new Buf(kCpu, b.t.dtype, shape, 0));
    check_ok(l2c_copy(&h->t, &b.t), "l2c_copy to the host");
    src = h->t.data;
  }
  for (int64_t i = 0; i < n; i++) v[(size_t)i] = get(src, b.t.dtype, i);
  return v;
}

using Args = std::vector<const l2c_tensor *>;
using Op = std::function<l2c_status(const Args &in, const Args &out)>;

// The op on `dev` with float arguments of dtype dt: inputs uploaded, outputs poisoned
// (NaN), then read back as doubles.
std::vector<std::vector<double>> run_on(l2c_device dev, l2c_dtype dt, const std::vector<InSpec> &ins,
                                        const std::vector<OutSpec> &outs, const Op &op, int64_t misalign) {
  std::vector<std::unique_ptr<Buf>> ib, ob;
  Args ia, oa;
  for (const InSpec &s : ins) {
    ib.emplace_back(new Buf(dev, dtype_of(s.kind, dt), s.shape, s.kind == FOLLOW ? misalign : 0));
    upload(*ib.back(), s.vals);
    ia.push_back(&ib.back()->t);
  }
  for (const OutSpec &s : outs) {
    ob.emplace_back(new Buf(dev, dtype_of(s.kind, dt), s.shape, s.kind == FOLLOW ? misalign : 0));
    check_ok(l2c_fill(&ob.back()->t, std::numeric_limits<double>::quiet_NaN()), "poison");
    oa.push_back(&ob.back()->t);
  }
  check_ok(op(ia, oa), dev.type == L2C_CPU ? "the op on the CPU" : "the op on CUDA");
  std::vector<std::vector<double>> r;
  for (auto &b : ob) r.push_back(download(*b));
  return r;
}

// ------------------------------------------------------------------ comparison

struct Err {
  double rel = 0;           // ||got - want|| / ||want|| over the finite elements
  double diff = 0, norm = 0;  // ||got - want||, ||want||
  int64_t n = 0;              // finite elements compared
  int64_t nonfinite_diff = 0;  // elements where got and want differ in being NaN / +-inf
  int64_t first_bad = -1;
};

// mask_ref: the vector whose non-finite elements got must reproduce (the CPU run of the
// same dtype); skip: elements non-finite in any of want / got / mask_ref are left out of
// the norms.
Err compare(const std::vector<double> &got, const std::vector<double> &want, const std::vector<double> &mask_ref) {
  Err e;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); i++) {
    const double g = got[i], w = want[i], m = mask_ref[i];
    const bool gf = std::isfinite(g), mf = std::isfinite(m);
    if (gf != mf || (!gf && !((std::isnan(g) && std::isnan(m)) || g == m))) {
      if (e.nonfinite_diff++ == 0) e.first_bad = (int64_t)i;
      continue;
    }
    if (!gf || !std::isfinite(w)) continue;
    num += (g - w) * (g - w);
    den += w * w;
    e.n++;
  }
  e.rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  e.diff = std::sqrt(num);
  e.norm = std::sqrt(den);
  return e;
}

std::string at(const std::vector<double> &got, const std::vector<double> &want, int64_t i) {
  if (i < 0) return "";
  return " (element " + std::to_string(i) + ": cuda " + std::to_string(got[(size_t)i]) + ", cpu " +
         std::to_string(want[(size_t)i]) + ")";
}

// The largest |got - want| / (|want| + scale) element, for messages.
int64_t worst(const std::vector<double> &got, const std::vector<double> &want) {
  double scale = 0;
  for (double w : want)
    if (std::isfinite(w)) scale = std::max(scale, std::fabs(w));
  int64_t wi = -1;
  double wv = -1;
  for (size_t i = 0; i < got.size(); i++) {
    double d = std::fabs(got[i] - want[i]) / (std::fabs(want[i]) + 1e-3 * scale + 1e-30);
    if (std::isfinite(d) && d > wv) { wv = d; wi = (int64_t)i; }
  }
  return wi;
}

// Runs the op on both devices with dtype dt and checks every output by the criteria in
// the file comment. ins hold exact values; FOLLOW inputs are rounded to dt first, so the
// float32 truth of a 16-bit case sees the same inputs. abs_scale > 0: outputs that are
// an exact cancellation of terms of that size (LayerNorm's dx for D = 1 is 0 up to the
// rounding of those terms) may also differ by tol32 * abs_scale per element.
void check_op(const std::string &name, l2c_dtype dt, std::vector<InSpec> ins, const std::vector<OutSpec> &outs,
              const Op &op, double tol32 = kTol32, int64_t misalign = 0, double abs_scale = 0) {
  for (InSpec &s : ins) {
    if ((int64_t)s.vals.size() != prod(s.shape)) throw std::runtime_error(name + ": bad test input size");
    for (double &v : s.vals) v = round_to(dtype_of(s.kind, dt), v);
  }
  const std::string what = name + " " + l2c::dtype_name(dt) + (misalign ? " (misaligned)" : "");
  std::vector<std::vector<double>> gpu, cpu, truth;
  try {
    gpu = run_on(kGpu, dt, ins, outs, op, misalign);
    cpu = run_on(kCpu, dt, ins, outs, op, misalign);
    if (dt != L2C_FLOAT32) truth = run_on(kCpu, L2C_FLOAT32, ins, outs, op, 0);
  } catch (const std::exception &ex) {
    L2C_EXPECT(false, what << ": " << ex.what());
    return;
  }
  for (size_t k = 0; k < outs.size(); k++) {
    const std::string ow = what + " output " + std::to_string(k) + " " + shape_s(outs[k].shape);
    if (dt == L2C_FLOAT32) {
      Err e = compare(gpu[k], cpu[k], cpu[k]);
      L2C_EXPECT(e.nonfinite_diff == 0, ow << ": " << e.nonfinite_diff << " elements differ in NaN / Inf"
                                          << at(gpu[k], cpu[k], e.first_bad));
      // (an all-zero reference: the difference itself within tol32)
      const double allowed = tol32 * ((e.norm > 0 ? e.norm : 1.0) + abs_scale * std::sqrt((double)e.n));
      L2C_EXPECT(e.diff <= allowed, ow << ": relative error " << e.rel << " > " << tol32
                                       << (abs_scale > 0 ? " (+ the absolute allowance)" : "")
                                       << at(gpu[k], cpu[k], worst(gpu[k], cpu[k])));
    } else {
      Err eg = compare(gpu[k], truth[k], cpu[k]), ec = compare(cpu[k], truth[k], cpu[k]);
      const double allowed = 2 * ec.diff + floor_for(dt) * (eg.norm > 0 ? eg.norm : 1.0) +
                             kTol32 * abs_scale * std::sqrt((double)eg.n);
      L2C_EXPECT(eg.nonfinite_diff == 0, ow << ": " << eg.nonfinite_diff << " elements differ in NaN / Inf from the CPU"
                                           << at(gpu[k], cpu[k], eg.first_bad));
      L2C_EXPECT(eg.diff <= allowed, ow << ": error vs the float32 truth " << eg.rel << " > 2 x the CPU's " << ec.rel
                                        << " + " << floor_for(dt) << (abs_scale > 0 ? " (+ the absolute allowance)" : "")
                                        << at(gpu[k], truth[k], worst(gpu[k], truth[k])));
    }
  }
}

// The op twice on the GPU: bit-identical outputs.
void check_deterministic(const std::string &name, l2c_dtype dt, std::vector<InSpec> ins,
                         const std::vector<OutSpec> &outs, const Op &op) {
  for (InSpec &s : ins)
    for (double &v : s.vals) v = round_to(dtype_of(s.kind, dt), v);
  try {
    auto a = run_on(kGpu, dt, ins, outs, op, 0), b = run_on(kGpu, dt, ins, outs, op, 0);
    for (size_t k = 0; k < outs.size(); k++) {
      bool same = a[k].size() == b[k].size() &&
                  (a[k].empty() || std::memcmp(a[k].data(), b[k].data(), a[k].size() * sizeof(double)) == 0);
      L2C_EXPECT(same, name << " " << l2c::dtype_name(dt) << " output " << k << ": two runs differ");
    }
  } catch (const std::exception &ex) {
    L2C_EXPECT(false, name << ": " << ex.what());
  }
}

// ------------------------------------------------------------------ inputs

std::vector<double> uniform(Rng &rng, int64_t n, double lo, double hi) {
  std::vector<double> v((size_t)n);
  for (double &x : v) x = rng.uniform((float)lo, (float)hi);
  return v;
}
InSpec in(Rng &rng, std::vector<int64_t> shape, double lo = -1, double hi = 1, Kind k = FOLLOW) {
  return InSpec{shape, k, uniform(rng, prod(shape), lo, hi)};
}

// Row shapes: rows x D, with D on both sides of the warp / block threshold (512) and of
// the vector widths (4 float32, 8 16-bit).
const int64_t kRows[] = {1, 37, 97};
const int64_t kDims[] = {1, 7, 65, 128, 1000, 1031, 4096};

// ------------------------------------------------------------------ elementwise

const std::vector<std::vector<int64_t>> kBcast[] = {
    {{37, 65}, {37, 65}}, {{97, 40}, {40}},       {{1, 7}, {1, 7}},         {{3, 5, 7}, {5, 7}},
    {{3, 5, 7}, {3, 1, 7}}, {{3, 1, 7}, {1, 5, 1}}, {{97, 128}, {97, 1}},   {{37, 1}, {1, 65}},
    {{7, 40}, {}},         {{}, {7, 40}},         {{7, 40}, {1}},           {{2, 3, 4, 5}, {3, 1, 5}},
    {{0, 7}, {7}},         {{5, 0}, {1}},         {{97, 1000}, {1000}},     {{2, 1, 3, 1, 5, 1, 7}, {4, 1, 6, 5, 1, 7}},
};

std::vector<int64_t> bshape(const std::vector<int64_t> &a, const std::vector<int64_t> &b) {
  size_t n = std::max(a.size(), b.size());
  std::vector<int64_t> out(n);
  for (size_t i = 0; i < n; i++) {
    int64_t x = i + a.size() >= n ? a[i + a.size() - n] : 1, y = i + b.size() >= n ? b[i + b.size() - n] : 1;
    out[i] = x == 1 ? y : x;
  }
  return out;
}

L2C_TEST(cuda_layers_binary) {
  REQUIRE_CUDA();
  uint64_t seed = 100;
  for (l2c_dtype dt : kFloatTypes)
    for (const auto &pr : kBcast)
      for (int op = L2C_BINARY_ADD; op <= L2C_BINARY_MUL; op++) {
        Rng rng(seed++);
        const std::vector<int64_t> os = bshape(pr[0], pr[1]);
        check_op(std::string(op == 0 ? "add " : op == 1 ? "sub " : "mul ") + shape_s(pr[0]) + shape_s(pr[1]), dt,
                 {in(rng, pr[0]), in(rng, pr[1])}, {{os, FOLLOW}}, [op](const Args &i, const Args &o) {
                   l2c_binary_args a{i[0], i[1], o[0], op};
                   return l2c_binary(&a);
                 });
      }
}

L2C_TEST(cuda_layers_broadcast_scale) {
  REQUIRE_CUDA();
  const std::vector<std::vector<int64_t>> cases[] = {
      {{37, 1, 65}, {37, 7, 65}}, {{65}, {97, 65}}, {{97, 1000}, {97, 1000}}, {{}, {3, 7}}, {{1, 1}, {1, 1}},
      {{5, 1}, {0, 5, 7}}};
  uint64_t seed = 300;
  for (l2c_dtype dt : kFloatTypes)
    for (const auto &c : cases)
      for (double alpha : {1.0, 0.37, -1.0 / 97}) {
        Rng rng(seed++);
        check_op("scale " + shape_s(c[0]) + "->" + shape_s(c[1]), dt, {in(rng, c[0])}, {{c[1], FOLLOW}},
                 [alpha](const Args &i, const Args &o) {
                   l2c_broadcast_scale_args a{i[0], o[0], alpha};
                   return l2c_broadcast_scale(&a);
                 });
      }
}

L2C_TEST(cuda_layers_mul_backward) {
  REQUIRE_CUDA();
  uint64_t seed = 500;
  for (l2c_dtype dt : kFloatTypes)
    for (const auto &pr : kBcast)
      for (int which = 0; which < 3; which++) {  // both, da only, db only
        Rng rng(seed++);
        const std::vector<int64_t> os = bshape(pr[0], pr[1]);
        std::vector<OutSpec> outs;
        if (which != 2) outs.push_back({pr[0], FOLLOW});
        if (which != 1) outs.push_back({pr[1], FOLLOW});
        check_op("mul_backward " + shape_s(pr[0]) + shape_s(pr[1]) + " which " + std::to_string(which), dt,
                 {in(rng, os), in(rng, pr[0]), in(rng, pr[1])}, outs, [which](const Args &i, const Args &o) {
                   l2c_mul_backward_args a{i[0], i[1], i[2], which != 2 ? o[0] : nullptr,
                                           which == 1 ? nullptr : o[which == 2 ? 0 : 1]};
                   return l2c_mul_backward(&a);
                 });
      }
}

// ------------------------------------------------------------------ reductions

struct SumCase {
  std::vector<int64_t> shape;
  uint32_t mask;
  double lo, hi;
};

std::vector<int64_t> kept_shape(const std::vector<int64_t> &s, uint32_t mask) {
  std::vector<int64_t> k;
  for (size_t d = 0; d < s.size(); d++)
    if (!((mask >> d) & 1u)) k.push_back(s[d]);
  return k;
}

std::vector<SumCase> sum_cases() {
  std::vector<SumCase> v;
  for (uint32_t m = 0; m < 8; m++) v.push_back({{37, 65, 7}, m, -1, 1});   // every mask of a 3-D tensor
  for (uint32_t m = 0; m < 16; m++) v.push_back({{3, 5, 7, 9}, m, -1, 1});  // and of a 4-D one (split groups)
  v.push_back({{97, 1000}, 1, -1, 1});      // column sums: the tiled kernel
  v.push_back({{97, 1000}, 2, -1, 1});      // row sums: a warp per output
  v.push_back({{97, 1000}, 3, -1, 1});      // everything: blocks over chunks
  v.push_back({{5, 9000}, 2, -1, 1});       // long rows: blocks over chunks, several outputs
  v.push_back({{1, 300001}, 3, 0, 0.01});   // one long sum (positive: its value is not a cancellation)
  v.push_back({{20000, 3}, 1, -1, 1});      // many rows into 3 columns: rows in chunks
  v.push_back({{4097, 5}, 2, -1, 1});       // tiny sums: a thread per output
  v.push_back({{1, 1, 7}, 7, -1, 1});
  v.push_back({{0, 7}, 1, -1, 1});          // sums over nothing: zeros (mean: NaN)
  v.push_back({{7, 0}, 2, -1, 1});
  v.push_back({{2, 1, 3}, 2, -1, 1});       // only a size-1 dim reduced: a scale
  v.push_back({{1}, 1, -1, 1});
  return v;
}

L2C_TEST(cuda_layers_sum) {
  REQUIRE_CUDA();
  uint64_t seed = 700;
  for (l2c_dtype dt : kFloatTypes)
    for (const SumCase &c : sum_cases())
      for (int variant = 0; variant < 3; variant++) {  // sum into dt, mean into dt, sum into float32
        Rng rng(seed++);
        int64_t count = 1;
        for (size_t d = 0; d < c.shape.size(); d++)
          if ((c.mask >> d) & 1u) count *= c.shape[d];
        const double alpha = variant == 1 ? 1.0 / (double)count : 1.0;
        const Kind ok = variant == 2 ? FIX_F32 : FOLLOW;
        const uint32_t mask = c.mask;
        check_op("sum " + shape_s(c.shape) + " mask " + std::to_string(mask) + " variant " + std::to_string(variant),
                 dt, {in(rng, c.shape, c.lo, c.hi)}, {{kept_shape(c.shape, mask), ok}},
                 [mask, alpha](const Args &i, const Args &o) {
                   l2c_sum_args a{i[0], o[0], mask, alpha};
                   return l2c_sum(&a);
                 });
      }
  // Deterministic: the split reductions give the same bits twice.
  for (l2c_dtype dt : kFloatTypes) {
    Rng rng(seed++);
    for (uint32_t mask : {1u, 2u, 3u})
      check_deterministic("sum mask " + std::to_string(mask), dt, {in(rng, {97, 9000})},
                          {{kept_shape({97, 9000}, mask), FIX_F32}}, [mask](const Args &i, const Args &o) {
                            l2c_sum_args a{i[0], o[0], mask, 1.0};
                            return l2c_sum(&a);
                          });
  }
}

// ------------------------------------------------------------------ norms

L2C_TEST(cuda_layers_rms_norm) {
  REQUIRE_CUDA();
  uint64_t seed = 1000;
  for (l2c_dtype dt : kFloatTypes)
    for (int64_t rows : kRows)
      for (int64_t D : kDims)
        for (int wk = 0; wk < 3; wk++) {  // no weight, weight of dt, float32 weight
          Rng rng(seed++);
          const Kind wkind = wk == 2 ? FIX_F32 : FOLLOW;
          const bool hw = wk != 0;
          const std::vector<int64_t> xs = {rows, D}, ws = {D};
          std::vector<InSpec> fins = {in(rng, xs, -2, 2)};
          if (hw) fins.push_back(in(rng, ws, 0.5, 1.5, wkind));
          const std::string nm = "rms_norm rows " + std::to_string(rows) + " D " + std::to_string(D) + " w " +
                                 std::to_string(wk);
          for (int64_t mis : {0, 1}) {
            if (mis && D % 8 != 0) continue;  // misalignment matters only where vectors would be used
            check_op(nm, dt, fins, {{xs, FOLLOW}, {{rows}, FIX_F32}}, [hw](const Args &i, const Args &o) {
              l2c_rms_norm_args a{i[0], hw ? i[1] : nullptr, o[0], o[1], 1e-6};
              return l2c_rms_norm_forward(&a);
            }, kTol32, mis);
          }
          // Backward: dy, x, (weight), rstd from the forward's formula (any positive
          // values do: the backward takes them as given).
          std::vector<InSpec> bins = {in(rng, xs), in(rng, xs, -2, 2)};
          if (hw) bins.push_back(in(rng, ws, 0.5, 1.5, wkind));
          bins.push_back(in(rng, {rows}, 0.5, 2, FIX_F32));
          std::vector<OutSpec> bouts = {{xs, FOLLOW}};
          if (hw) bouts.push_back({ws, FIX_F32});
          for (int64_t mis : {0, 1}) {
            if (mis && D % 8 != 0) continue;
            check_op(nm + " backward", dt, bins, bouts, [hw](const Args &i, const Args &o) {
              l2c_rms_norm_backward_args a{i[0], i[1], hw ? i[2] : nullptr, i[hw ? 3 : 2], o[0], hw ? o[1] : nullptr};
              return l2c_rms_norm_backward(&a);
            }, kTol32, mis);
          }
        }
  // Empty: no rows (dweight zeros), and rows of D = 0 (rstd = 1 / sqrt(eps)).
  for (l2c_dtype dt : kFloatTypes) {
    Rng rng(seed++);
    check_op("rms_norm rows 0", dt, {in(rng, {0, 65}), in(rng, {65})}, {{{0, 65}, FOLLOW}, {{0}, FIX_F32}},
             [](const Args &i, const Args &o) {
               l2c_rms_norm_args a{i[0], i[1], o[0], o[1], 1e-6};
               return l2c_rms_norm_forward(&a);
             });
    check_op("rms_norm D 0", dt, {in(rng, {3, 0})}, {{{3, 0}, FOLLOW}, {{3}, FIX_F32}}, [](const Args &i, const Args &o) {
      l2c_rms_norm_args a{i[0], nullptr, o[0], o[1], 0.25};
      return l2c_rms_norm_forward(&a);
    });
    check_op("rms_norm_backward rows 0", dt, {in(rng, {0, 65}), in(rng, {0, 65}), in(rng, {65}), in(rng, {0}, 1, 2, FIX_F32)},
             {{{0, 65}, FOLLOW}, {{65}, FIX_F32}}, [](const Args &i, const Args &o) {
               l2c_rms_norm_backward_args a{i[0], i[1], i[2], i[3], o[0], o[1]};
               return l2c_rms_norm_backward(&a);
             });
  }
  // The weight gradient is deterministic.
  for (l2c_dtype dt : kFloatTypes) {
    Rng rng(seed++);
    check_deterministic("rms_norm_backward", dt,
                        {in(rng, {4099, 1031}), in(rng, {4099, 1031}), in(rng, {1031}), in(rng, {4099}, 0.5, 2, FIX_F32)},
                        {{{4099, 1031}, FOLLOW}, {{1031}, FIX_F32}}, [](const Args &i, const Args &o) {
                          l2c_rms_norm_backward_args a{i[0], i[1], i[2], i[3], o[0], o[1]};
                          return l2c_rms_norm_backward(&a);
                        });
  }
}

L2C_TEST(cuda_layers_layer_norm) {
  REQUIRE_CUDA();
  uint64_t seed = 2000;
  for (l2c_dtype dt : kFloatTypes)
    for (int64_t rows : kRows)
      for (int64_t D : kDims)
        for (int wk = 0; wk < 4; wk++) {  // none, weight + bias of dt, float32 weight + no bias, weight + float32 bias
          Rng rng(seed++);
          const bool hw = wk != 0, hb = wk == 1 || wk == 3;
          const Kind wkind = wk == 2 ? FIX_F32 : FOLLOW, bkind = wk == 3 ? FIX_F32 : FOLLOW;
          const std::vector<int64_t> xs = {rows, D}, ws = {D};
          // An offset mean, so that the two-pass variance matters.
          std::vector<InSpec> fins = {in(rng, xs, 3, 5)};
          if (hw) fins.push_back(in(rng, ws, 0.5, 1.5, wkind));
          if (hb) fins.push_back(in(rng, ws, -1, 1, bkind));
          const std::string nm = "layer_norm rows " + std::to_string(rows) + " D " + std::to_string(D) + " w " +
                                 std::to_string(wk);
          for (int64_t mis : {0, 1}) {
            if (mis && D % 8 != 0) continue;
            check_op(nm, dt, fins, {{xs, FOLLOW}, {{rows}, FIX_F32}, {{rows}, FIX_F32}},
                     [hw, hb](const Args &i, const Args &o) {
                       l2c_layer_norm_args a{i[0], hw ? i[1] : nullptr, hb ? i[hw ? 2 : 1] : nullptr, o[0], o[1], o[2], 1e-5};
                       return l2c_layer_norm_forward(&a);
                     }, kTol32, mis);
          }
          // Backward with mean / rstd of the input (the backward's cancellation is then
          // the real one): taken from the CPU forward in float32.
          std::vector<InSpec> xin = {in(rng, xs, 3, 5)};
          std::vector<double> mean((size_t)rows), rstd((size_t)rows);
          for (int64_t r = 0; r < rows; r++) {
            double s = 0, q = 0;
            for (int64_t j = 0; j < D; j++) s += round_to(dt, xin[0].vals[(size_t)(r * D + j)]);
            s = D ? s / D : 0;
            for (int64_t j = 0; j < D; j++) {
              double d = round_to(dt, xin[0].vals[(size_t)(r * D + j)]) - s;
              q += d * d;
            }
            mean[(size_t)r] = s;
            rstd[(size_t)r] = 1.0 / std::sqrt((D ? q / D : 0) + 1e-5);
          }
          std::vector<InSpec> bins = {in(rng, xs), xin[0]};
          if (hw) bins.push_back(in(rng, ws, 0.5, 1.5, wkind));
          bins.push_back({{rows}, FIX_F32, mean});
          bins.push_back({{rows}, FIX_F32, rstd});
          const bool hdb = wk != 2;  // dbias with or without dweight
          std::vector<OutSpec> bouts = {{xs, FOLLOW}};
          if (hw) bouts.push_back({ws, FIX_F32});
          if (hdb) bouts.push_back({ws, FIX_F32});
          for (int64_t mis : {0, 1}) {
            if (mis && D % 8 != 0) continue;
            // D = 1: x == mean, so dx = rstd (g - mean(g)) is 0 up to the rounding of g = dy w
            // (an FMA on one side, not on the other, leaves ~1e-6 of rstd |g| ~ 500).
            double rmax = 0;
            for (double v : rstd) rmax = std::max(rmax, v);
            check_op(nm + " backward", dt, bins, bouts, [hw, hdb](const Args &i, const Args &o) {
              const int k = hw ? 3 : 2;
              l2c_layer_norm_backward_args a{i[0], i[1], hw ? i[2] : nullptr, i[k], i[k + 1], o[0],
                                             hw ? o[1] : nullptr, hdb ? o[hw ? 2 : 1] : nullptr};
              return l2c_layer_norm_backward(&a);
            }, 2e-5, mis, D == 1 ? rmax * 1.5 : 0.0);
          }
        }
  for (l2c_dtype dt : kFloatTypes) {
    Rng rng(seed++);
    check_op("layer_norm D 0", dt, {in(rng, {3, 0})}, {{{3, 0}, FOLLOW}, {{3}, FIX_F32}, {{3}, FIX_F32}},
             [](const Args &i, const Args &o) {
               l2c_layer_norm_args a{i[0], nullptr, nullptr, o[0], o[1], o[2], 0.5};
               return l2c_layer_norm_forward(&a);
             });
    check_op("layer_norm_backward rows 0", dt,
             {in(rng, {0, 7}), in(rng, {0, 7}), in(rng, {7}), in(rng, {0}, 0, 1, FIX_F32), in(rng, {0}, 1, 2, FIX_F32)},
             {{{0, 7}, FOLLOW}, {{7}, FIX_F32}, {{7}, FIX_F32}}, [](const Args &i, const Args &o) {
               l2c_layer_norm_backward_args a{i[0], i[1], i[2], i[3], i[4], o[0], o[1], o[2]};
               return l2c_layer_norm_backward(&a);
             });
    check_deterministic("layer_norm_backward", dt,
                        {in(rng, {4099, 1031}), in(rng, {4099, 1031}), in(rng, {1031}), in(rng, {4099}, -1, 1, FIX_F32),
                         in(rng, {4099}, 0.5, 2, FIX_F32)},
                        {{{4099, 1031}, FOLLOW}, {{1031}, FIX_F32}, {{1031}, FIX_F32}}, [](const Args &i, const Args &o) {
                          l2c_layer_norm_backward_args a{i[0], i[1], i[2], i[3], i[4], o[0], o[1], o[2]};
                          return l2c_layer_norm_backward(&a);
                        });
  }
}

L2C_TEST(cuda_layers_l2_normalize) {
  REQUIRE_CUDA();
  uint64_t seed = 3000;
  for (l2c_dtype dt : kFloatTypes)
    for (int64_t rows : kRows)
      for (int64_t D : kDims) {
        Rng rng(seed++);
        const std::vector<int64_t> xs = {rows, D};
        InSpec x = in(rng, xs);
        // Row 0 (when there are several) is tiny: its norm is below eps = 0.1.
        if (rows > 1)
          for (int64_t j = 0; j < D; j++) x.vals[(size_t)j] *= 1e-4;
        const std::string nm = "l2_normalize rows " + std::to_string(rows) + " D " + std::to_string(D);
        for (int64_t mis : {0, 1}) {
          if (mis && D % 8 != 0) continue;
          check_op(nm, dt, {x}, {{xs, FOLLOW}}, [](const Args &i, const Args &o) {
            l2c_l2_normalize_args a{i[0], o[0], 0.1};
            return l2c_l2_normalize_forward(&a);
          }, kTol32, mis);
          // D = 1 (norm above eps): y = +-1, so dx = (dy - y (y . dy)) / |x| is 0 up to the
          // rounding of the cancelling terms, of size |dy| / max(|x|, eps) (an FMA on one side
          // and not the other leaves ~1e-7 of that): allowed per element, as for LayerNorm.
          InSpec dy = in(rng, xs);
          double amax = 0;
          if (D == 1)
            for (int64_t r = 0; r < rows; r++)
              amax = std::max(amax, std::fabs(dy.vals[(size_t)r]) / std::max(std::fabs(x.vals[(size_t)r]), 0.1));
          check_op(nm + " backward", dt, {dy, x}, {{xs, FOLLOW}}, [](const Args &i, const Args &o) {
            l2c_l2_normalize_backward_args a{i[0], i[1], o[0], 0.1};
            return l2c_l2_normalize_backward(&a);
          }, kTol32, mis, amax * 1.5);
        }
      }
}

L2C_TEST(cuda_layers_softmax) {
  REQUIRE_CUDA();
  uint64_t seed = 4000;
  const double ninf = -std::numeric_limits<double>::infinity();
  for (l2c_dtype dt : kFloatTypes)
    for (int64_t rows : kRows)
      for (int64_t D : kDims) {
        Rng rng(seed++);
        const std::vector<int64_t> xs = {rows, D};
        InSpec x = in(rng, xs, -8, 8);
        // Masked entries (-inf) in every row but the last; with several rows, row 1 is all
        // -inf (NaN out, as torch).
        for (int64_t r = 0; r + 1 < rows; r++)
          for (int64_t j = 0; j < D; j++)
            if ((r == 1) || (j % 3 == 1)) x.vals[(size_t)(r * D + j)] = ninf;
        const std::string nm = "softmax rows " + std::to_string(rows) + " D " + std::to_string(D);
        for (int64_t mis : {0, 1}) {
          if (mis && D % 8 != 0) continue;
          check_op(nm, dt, {x}, {{xs, FOLLOW}}, [](const Args &i, const Args &o) {
            l2c_softmax_args a{i[0], o[0]};
            return l2c_softmax_forward(&a);
          }, kTol32, mis);
          // Backward: y a softmax-like row (positive, sums near 1).
          check_op(nm + " backward", dt, {in(rng, xs), in(rng, xs, 0, 2.0 / (double)D)}, {{xs, FOLLOW}},
                   [](const Args &i, const Args &o) {
                     l2c_softmax_backward_args a{i[0], i[1], o[0]};
                     return l2c_softmax_backward(&a);
                   }, kTol32, mis);
        }
      }
}

// ------------------------------------------------------------------ rope

struct RopeCase {
  int64_t B, S, H, D;
  bool per_batch;
  int scaling;
  double theta;
  int64_t pos0;  // first position; left padding for per-batch positions
};

L2C_TEST(cuda_layers_rope) {
  REQUIRE_CUDA();
  const RopeCase cases[] = {
      {1, 1, 1, 2, false, L2C_ROPE_SCALING_NONE, 10000, 0},
      {2, 37, 3, 64, false, L2C_ROPE_SCALING_NONE, 10000, 0},
      {2, 37, 3, 64, true, L2C_ROPE_SCALING_LINEAR, 10000, 5},
      {1, 97, 2, 130, false, L2C_ROPE_SCALING_LLAMA3, 500000, 0},          // h = 65
      {3, 7, 4, 128, true, L2C_ROPE_SCALING_LLAMA3, 500000, 100000},        // large positions
      {1, 5, 1, 128, false, L2C_ROPE_SCALING_LLAMA3, 500000, 131000},
      {2, 3, 2, 12290, false, L2C_ROPE_SCALING_NONE, 10000, 7},             // h > 6144: no shared table
      {1, 0, 2, 8, false, L2C_ROPE_SCALING_NONE, 10000, 0},                 // empty
  };
  uint64_t seed = 5000;
  for (l2c_dtype dt : kFloatTypes)
    for (const RopeCase &c : cases)
      for (int sign = 1; sign >= -1; sign -= 2) {
        Rng rng(seed++);
        const std::vector<int64_t> xs = {c.B, c.S, c.H, c.D};
        std::vector<int64_t> ps = c.per_batch ? std::vector<int64_t>{c.B, c.S} : std::vector<int64_t>{c.S};
        std::vector<double> pos((size_t)prod(ps));
        for (int64_t b = 0; b < (c.per_batch ? c.B : 1); b++)
          for (int64_t s = 0; s < c.S; s++) {
            // Per-batch: row b left padded by b tokens (position 0 repeated), then counting.
            int64_t p = c.per_batch ? std::max<int64_t>(0, s - b) + c.pos0 : s + c.pos0;
            pos[(size_t)(b * c.S + s)] = (double)p;
          }
        const RopeCase cc = c;
        check_op("rope " + shape_s(xs) + (c.per_batch ? " per-batch" : "") + " scaling " + std::to_string(c.scaling) +
                     " pos0 " + std::to_string(c.pos0) + (sign > 0 ? "" : " backward"),
                 dt, {in(rng, xs), {ps, FIX_I32, pos}}, {{xs, FOLLOW}}, [cc, sign](const Args &i, const Args &o) {
                   l2c_rope_args a{i[0], i[1], o[0], cc.theta, cc.scaling, 8.0, 1.0, 4.0, 8192.0};
                   return sign > 0 ? l2c_rope_forward(&a) : l2c_rope_backward(&a);
                 });
      }
}

// ------------------------------------------------------------------ activations

L2C_TEST(cuda_layers_activations) {
  REQUIRE_CUDA();
  uint64_t seed = 6000;
  for (l2c_dtype dt : kFloatTypes)
    for (int64_t n : {1, 7, 1000, 100003})
      for (int kind = L2C_ACT_GELU; kind <= L2C_ACT_QUICK_GELU; kind++) {
        Rng rng(seed++);
        const std::string nm = "activation " + std::to_string(kind) + " n " + std::to_string(n);
        check_op(nm, dt, {in(rng, {n}, -6, 6)}, {{{n}, FOLLOW}}, [kind](const Args &i, const Args &o) {
          l2c_activation_args a{i[0], o[0], kind};
          return l2c_activation_forward(&a);
        });
        check_op(nm + " backward", dt, {in(rng, {n}), in(rng, {n}, -6, 6)}, {{{n}, FOLLOW}},
                 [kind](const Args &i, const Args &o) {
                   l2c_activation_backward_args a{i[0], i[1], o[0], kind};
                   return l2c_activation_backward(&a);
                 });
      }
  for (l2c_dtype dt : kFloatTypes)
    for (int64_t n : {1, 7, 1000, 100003}) {
      Rng rng(seed++);
      const std::string nm = "swiglu n " + std::to_string(n);
      check_op(nm, dt, {in(rng, {n}, -6, 6), in(rng, {n}, -2, 2)}, {{{n}, FOLLOW}}, [](const Args &i, const Args &o) {
        l2c_swiglu_args a{i[0], i[1], o[0]};
        return l2c_swiglu_forward(&a);
      });
      check_op(nm + " backward", dt, {in(rng, {n}), in(rng, {n}, -6, 6), in(rng, {n}, -2, 2)},
               {{{n}, FOLLOW}, {{n}, FOLLOW}}, [](const Args &i, const Args &o) {
                 l2c_swiglu_backward_args a{i[0], i[1], i[2], o[0], o[1]};
                 return l2c_swiglu_backward(&a);
               });
    }
}

// ------------------------------------------------------------------ dropout

L2C_TEST(cuda_layers_dropout_bit_identical) {
  REQUIRE_CUDA();
  uint64_t seed = 7000;
  for (l2c_dtype dt : kFloatTypes)
    for (int64_t n : {1, 2, 3, 4, 5, 7, 33, 1000, 100003})
      for (float p : {0.0f, 0.1f, 0.5f, 0.9f})
        for (uint64_t dseed : {0ull, 42ull, 0xdeadbeefcafebabeull})
          for (int backward = 0; backward < 2; backward++) {
            Rng rng(seed++);
            std::vector<InSpec> ins = {in(rng, {n}, -3, 3)};
            for (double &v : ins[0].vals) v = round_to(dt, v);
            auto op = [p, dseed, backward](const Args &i, const Args &o) {
              l2c_dropout_args a{i[0], o[0], p, dseed};
              return backward ? l2c_dropout_backward(&a) : l2c_dropout_forward(&a);
            };
            try {
              auto g = run_on(kGpu, dt, ins, {{{n}, FOLLOW}}, op, 0);
              auto c = run_on(kCpu, dt, ins, {{{n}, FOLLOW}}, op, 0);
              int64_t bad = -1, kept = 0;
              for (int64_t k = 0; k < n; k++) {
                if (std::memcmp(&g[0][(size_t)k], &c[0][(size_t)k], sizeof(double)) != 0 && bad < 0) bad = k;
                kept += c[0][(size_t)k] != 0;
              }
              L2C_EXPECT(bad < 0, "dropout " << l2c::dtype_name(dt) << " n " << n << " p " << p << " seed " << dseed
                                             << (backward ? " backward" : "") << ": element " << bad << " cuda "
                                             << (bad < 0 ? 0 : g[0][(size_t)bad]) << " cpu "
                                             << (bad < 0 ? 0 : c[0][(size_t)bad]));
              if (n == 100003 && p == 0.5f)  // not a statistics test: a guard against a constant mask
                L2C_EXPECT(kept > n / 2 - 2000 && kept < n / 2 + 2000, "dropout kept " << kept << " of " << n);
            } catch (const std::exception &ex) {
              L2C_EXPECT(false, "dropout: " << ex.what());
            }
          }
}

// ------------------------------------------------------------------ pooling

L2C_TEST(cuda_layers_masked_mean_pool) {
  REQUIRE_CUDA();
  uint64_t seed = 8000;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (l2c_dtype dt : kFloatTypes)
    for (int64_t B : {1, 5, 37})
      for (int64_t S : {1, 7, 65})
        for (int64_t H : {1, 7, 65, 1000})
          for (int mk = 0; mk < 3; mk++) {  // int32 mask, float weights of dt, float32 weights
            Rng rng(seed++);
            const std::vector<int64_t> hs = {B, S, H}, ms = {B, S}, os = {B, H};
            std::vector<double> m((size_t)(B * S));
            for (int64_t b = 0; b < B; b++)
              for (int64_t s = 0; s < S; s++) {
                // Row 1 is empty (all zero: zeros out); others keep a prefix of b % S + 1
                // tokens (left-aligned, then padding), int32 values other than 1 too.
                bool on = b != 1 && s <= b % S;
                double v = mk == 0 ? (on ? (double)(1 + (s % 3)) : 0) : (on ? rng.uniform(0.25f, 1.0f) : 0);
                m[(size_t)(b * S + s)] = v;
              }
            const Kind mkind = mk == 0 ? FIX_I32 : mk == 1 ? FOLLOW : FIX_F32;
            InSpec h = in(rng, hs);
            // Padding positions hold NaN: they must be skipped, not multiplied by 0.
            for (int64_t b = 0; b < B; b++)
              for (int64_t s = 0; s < S; s++)
                if (m[(size_t)(b * S + s)] == 0)
                  for (int64_t j = 0; j < H; j++) h.vals[(size_t)((b * S + s) * H + j)] = nan;
            const std::string nm = "masked_mean_pool " + shape_s(hs) + " mask " + std::to_string(mk);
            check_op(nm, dt, {h, {ms, mkind, m}}, {{os, FOLLOW}}, [](const Args &i, const Args &o) {
              l2c_masked_mean_pool_args a{i[0], i[1], o[0]};
              return l2c_masked_mean_pool_forward(&a);
            });
            check_op(nm + " backward", dt, {in(rng, os), {ms, mkind, m}}, {{hs, FOLLOW}},
                     [](const Args &i, const Args &o) {
                       l2c_masked_mean_pool_backward_args a{i[0], i[1], o[0]};
                       return l2c_masked_mean_pool_backward(&a);
                     });
          }
  // Empty: no sequence (zeros out), no batch.
  for (l2c_dtype dt : kFloatTypes) {
    Rng rng(seed++);
    check_op("masked_mean_pool S 0", dt, {in(rng, {3, 0, 5}), {{3, 0}, FIX_I32, {}}}, {{{3, 5}, FOLLOW}},
             [](const Args &i, const Args &o) {
               l2c_masked_mean_pool_args a{i[0], i[1], o[0]};
               return l2c_masked_mean_pool_forward(&a);
             });
    check_op("masked_mean_pool_backward B 0", dt, {in(rng, {0, 5}), {{0, 4}, FIX_I32, {}}}, {{{0, 4, 5}, FOLLOW}},
             [](const Args &i, const Args &o) {
               l2c_masked_mean_pool_backward_args a{i[0], i[1], o[0]};
               return l2c_masked_mean_pool_backward(&a);
             });
  }
}

// ------------------------------------------------------------------ errors

l2c_tensor fake(l2c_device dev, l2c_dtype dt, std::vector<int64_t> shape, void *data) {
  l2c_tensor t{};
  t.data = data;
  t.dtype = dt;
  t.device = dev;
  t.ndim = (int32_t)shape.size();
  for (size_t i = 0; i < shape.size(); i++) t.shape[i] = shape[i];
  return t;
}

// Device checks come before any memory is touched: these hold with or without a GPU
// (the CUDA pointers are never dereferenced).
L2C_TEST(cuda_layers_device_errors) {
  float host[64] = {0};
  void *nowhere = reinterpret_cast<void *>(uintptr_t(0x1000));
  const l2c_tensor xc = fake(kCpu, L2C_FLOAT32, {4, 8}, host), yc = fake(kCpu, L2C_FLOAT32, {4, 8}, host + 32);
  const l2c_tensor xg = fake(kGpu, L2C_FLOAT32, {4, 8}, nowhere), yg = fake(kGpu, L2C_FLOAT32, {4, 8}, nowhere);
  {
    l2c_softmax_args a{&xc, &yg};
    L2C_EXPECT(l2c_softmax_forward(&a) == L2C_DEVICE_MISMATCH, "softmax cpu -> cuda: " << l2c_last_error());
  }
  {
    const l2c_tensor w = fake(kGpu, L2C_FLOAT32, {8}, nowhere), r = fake(kCpu, L2C_FLOAT32, {4}, host);
    l2c_rms_norm_args a{&xc, &w, &yc, &r, 1e-6};
    L2C_EXPECT(l2c_rms_norm_forward(&a) == L2C_DEVICE_MISMATCH, "rms_norm weight on cuda: " << l2c_last_error());
  }
  {
    const l2c_tensor p = fake(kGpu, L2C_INT32, {8}, nowhere), x4 = fake(kCpu, L2C_FLOAT32, {1, 8, 1, 4}, host),
                     o4 = fake(kCpu, L2C_FLOAT32, {1, 8, 1, 4}, host + 32);
    l2c_rope_args a{&x4, &p, &o4, 10000, 0, 1, 1, 4, 8192};
    L2C_EXPECT(l2c_rope_forward(&a) == L2C_DEVICE_MISMATCH, "rope positions on cuda: " << l2c_last_error());
  }
  {
    l2c_binary_args a{&xg, &xc, &yg, L2C_BINARY_ADD};
    L2C_EXPECT(l2c_binary(&a) == L2C_DEVICE_MISMATCH, "add cuda + cpu: " << l2c_last_error());
  }
  {
    const l2c_tensor m = fake(kCpu, L2C_INT32, {4, 8}, host), hg = fake(kGpu, L2C_FLOAT32, {4, 8, 2}, nowhere),
                     og = fake(kGpu, L2C_FLOAT32, {4, 2}, nowhere);
    l2c_masked_mean_pool_args a{&hg, &m, &og};
    L2C_EXPECT(l2c_masked_mean_pool_forward(&a) == L2C_DEVICE_MISMATCH, "pool mask on the cpu: " << l2c_last_error());
  }
  // A CUDA device that does not exist (every index without a GPU or without CUDA).
  const l2c_device missing = {L2C_CUDA, cuda::device_count()};
  const l2c_tensor xm = fake(missing, L2C_FLOAT32, {4, 8}, nowhere), ym = fake(missing, L2C_FLOAT32, {4, 8}, nowhere);
  {
    l2c_softmax_args a{&xm, &ym};
    L2C_EXPECT(l2c_softmax_forward(&a) == L2C_DEVICE_UNAVAILABLE, "softmax on a missing device: " << l2c_last_error());
  }
  {
    l2c_dropout_args a{&xm, &ym, 0.5f, 1};
    L2C_EXPECT(l2c_dropout_forward(&a) == L2C_DEVICE_UNAVAILABLE, "dropout on a missing device: " << l2c_last_error());
  }
  {
    l2c_sum_args a{&xm, &ym, 0, 1.0};
    L2C_EXPECT(l2c_sum(&a) == L2C_DEVICE_UNAVAILABLE, "sum on a missing device: " << l2c_last_error());
  }
}

// The argument checks hold on CUDA tensors as on the CPU (real device memory here).
L2C_TEST(cuda_layers_argument_errors) {
  REQUIRE_CUDA();
  Buf x(kGpu, L2C_FLOAT32, {4, 8}, 0), y(kGpu, L2C_FLOAT32, {4, 8}, 0), r16(kGpu, L2C_BFLOAT16, {4}, 0),
      r3(kGpu, L2C_FLOAT32, {3}, 0), xb(kGpu, L2C_BFLOAT16, {4, 8}, 0);
  {
    l2c_rms_norm_args a{&x.t, nullptr, &y.t, &r16.t, 1e-6};
    L2C_EXPECT(l2c_rms_norm_forward(&a) == L2C_DTYPE_MISMATCH, "rstd bfloat16: " << l2c_last_error());
  }
  {
    l2c_rms_norm_args a{&x.t, nullptr, &y.t, &r3.t, 1e-6};
    L2C_EXPECT(l2c_rms_norm_forward(&a) == L2C_SHAPE_MISMATCH, "rstd [3]: " << l2c_last_error());
  }
  {
    l2c_softmax_args a{&x.t, &xb.t};
    L2C_EXPECT(l2c_softmax_forward(&a) == L2C_DTYPE_MISMATCH, "softmax y bfloat16: " << l2c_last_error());
  }
  {
    l2c_activation_args a{&x.t, &y.t, 9};
    L2C_EXPECT(l2c_activation_forward(&a) == L2C_INVALID_ARGUMENT, "activation 9: " << l2c_last_error());
  }
}

}  // namespace
