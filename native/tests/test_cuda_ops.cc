// test_cuda_ops.cc: the CUDA ops checked against their CPU twins: cast / fill / random
// (bit-exact) and matmul (within a bound derived below). Every case skips without a
// CUDA device. Plain C++ (g++); shared helpers in test_cuda_util.h.
#include "test_cuda_util.h"

using namespace l2c_cuda_test;

namespace {

// ------------------------------------------------------------------ cast

const l2c_dtype kAllDtypes[] = {L2C_FLOAT32, L2C_BFLOAT16, L2C_FLOAT16, L2C_INT32};

// Source bit patterns that hit every rounding rule: NaN (quiet, signalling, payloads,
// negative), infinities, float32 subnormals, bfloat16 and float16 halfway cases, float16
// overflow / subnormal / underflow edges, int32 saturation edges; then random patterns.
// 16-bit sources are exhaustive.
std::vector<uint32_t> cast_source(l2c_dtype dt) {
  std::vector<uint32_t> v;
  Rng rng(1234 + dt);
  if (dt == L2C_BFLOAT16 || dt == L2C_FLOAT16) {
    for (uint32_t i = 0; i < 65536; i++) v.push_back(i);
    return v;
  }
  if (dt == L2C_FLOAT32) {
    v = {0x00000000u, 0x80000000u, 0x3f800000u, 0xbf800000u, 0x3f000000u, 0x3fc00000u, 0x40200000u,
         0xc0200000u, 0x3f7fffffu, 0xbf7fffffu,
         0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u, 0x7fa5a5a5u, 0x7f80ffffu, 0x7f800000u,
         0xff800000u, 0x7f7fffffu, 0xff7fffffu, 0x00800000u, 0x00000001u, 0x807fffffu, 0x007fffffu,
         // bfloat16 ties (to even, down and up), neighbours, overflow to Inf
         0x3f808000u, 0x3f818000u, 0x3f808001u, 0x3f807fffu, 0xbf818000u, 0x7f7f8000u, 0x7f7f7fffu,
         0x00008000u, 0x00018000u,
         // float16: max, just below / at the overflow threshold, ties, smallest normal,
         // subnormal edges and ties, underflow
         0x477fe000u, 0x477fefffu, 0x477ff000u, 0xc77ff000u, 0x47c35000u, 0xc7c35000u, 0x3f801000u,
         0x3f803000u, 0x3f801001u, 0x38800000u, 0x387fffffu, 0x387ff000u, 0x33800000u, 0x33000000u,
         0x33000001u, 0x33c00000u, 0x32ffffffu, 0x337fffffu, 0x34000000u, 0x34400000u, 0x80000001u,
         // int32 truncation and saturation
         0x4effffffu, 0x4f000000u, 0xcf000000u, 0xcf000001u, 0x501502f9u, 0xd01502f9u, 0x4b800001u,
         0x47f12065u, 0xc02ccccdu, 0x3f7ffffeu, 0xbf7ffffeu};
    for (int i = 0; i < 100003; i++) v.push_back(rng.u32());
    return v;
  }
  const int32_t ints[] = {0, 1, -1, 2147483647, -2147483647 - 1, 2147483646, -2147483647,
                          16777216, 16777217, 16777219, -16777217, 16842753, -16842753, 16842752,
                          16908288, 16908289, 16973824, 65504, 65519, 65520, 65535, 65536, -65520,
                          0x7fffff80, 0x7fffffc0, 0x7fbfffff, 2139095040, -2139095041, 33554435,
                          -33554437, 255, 256, 257, 2049, 2051, -2049};
  for (int32_t x : ints) v.push_back((uint32_t)x);
  for (int i = 0; i < 50000; i++) v.push_back(rng.u32());
  for (int i = 0; i < 50000; i++) v.push_back((uint32_t)((int32_t)(rng.u32() % (1u << 26)) - (1 << 25)));
  return v;
}

// A few conversions pinned by hand, so that CPU and CUDA cannot agree on a wrong answer.
struct CastAnchor {
  l2c_dtype src, dst;
  uint32_t in, out;
};
const CastAnchor kCastAnchors[] = {
    {L2C_FLOAT32, L2C_BFLOAT16, 0x3f808000u, 0x3f80u},  // tie, to even (down)
    {L2C_FLOAT32, L2C_BFLOAT16, 0x3f818000u, 0x3f82u},  // tie, to even (up)
    {L2C_FLOAT32, L2C_BFLOAT16, 0x7f7fffffu, 0x7f80u},  // rounds to Inf
    {L2C_FLOAT32, L2C_BFLOAT16, 0x7f800001u, 0x7fc0u},  // signalling NaN quieted
    {L2C_FLOAT32, L2C_FLOAT16, 0x3f801000u, 0x3c00u},   // 1 + 2^-11: tie to even
    {L2C_FLOAT32, L2C_FLOAT16, 0x477ff000u, 0x7c00u},   // 65520 -> Inf
    {L2C_FLOAT32, L2C_FLOAT16, 0x477fefffu, 0x7bffu},   // just below: 65504
    {L2C_FLOAT32, L2C_FLOAT16, 0x33000000u, 0x0000u},   // 2^-25: tie to zero
    {L2C_FLOAT32, L2C_FLOAT16, 0x33c00000u, 0x0002u},   // 3 * 2^-25: tie to 2 * 2^-24
    {L2C_FLOAT32, L2C_FLOAT16, 0x387fffffu, 0x0400u},   // rounds up to the smallest normal
    {L2C_FLOAT32, L2C_INT32, 0x7fc00000u, 0u},          // NaN -> 0
    {L2C_FLOAT32, L2C_INT32, 0x4f000000u, 0x7fffffffu}, // 2^31 saturates
    {L2C_FLOAT32, L2C_INT32, 0xff800000u, 0x80000000u}, // -Inf saturates
    {L2C_FLOAT32, L2C_INT32, 0xc02ccccdu, 0xfffffffeu}, // -2.7 -> -2 (toward zero)
    {L2C_FLOAT32, L2C_INT32, 0x402ccccdu, 0x00000002u}, // 2.7 -> 2
    {L2C_INT32, L2C_BFLOAT16, 16842753u, 0x4b81u},      // 2^24 + 2^16 + 1: above the tie
    {L2C_INT32, L2C_BFLOAT16, 16842752u, 0x4b80u},      // 2^24 + 2^16: tie to even
    {L2C_INT32, L2C_FLOAT32, 16777217u, 0x4b800000u},   // 2^24 + 1: tie to even
    {L2C_INT32, L2C_FLOAT16, 65520u, 0x7c00u},
    {L2C_FLOAT16, L2C_INT32, 0xfc00u, 0x80000000u},     // -Inf saturates
    {L2C_BFLOAT16, L2C_FLOAT16, 0x3f81u, 0x3c08u},      // 1 + 2^-7 is exact in float16
};

L2C_TEST(cuda_cast_matches_cpu) {
  REQUIRE_CUDA();
  for (l2c_dtype sdt : kAllDtypes) {
    std::vector<uint32_t> bits = cast_source(sdt);
    const int64_t n = (int64_t)bits.size();
    HostBuf hsrc(n * dsize(sdt));
    for (int64_t i = 0; i < n; i++) {
      if (dsize(sdt) == 4) hsrc.as<uint32_t>()[i] = bits[i];
      else hsrc.as<uint16_t>()[i] = (uint16_t)bits[i];
    }
    DevBuf dsrc(kDev, n * dsize(sdt));
    cuda::copy_h2d(kDev, dsrc.p, hsrc.p, hsrc.bytes);
    for (l2c_dtype ddt : kAllDtypes) {
      HostBuf want(n * dsize(ddt)), got(n * dsize(ddt));
      cpu::cast(host_tensor(want, ddt, n), host_tensor(hsrc, sdt, n));
      DevBuf ddst(kDev, n * dsize(ddt));
      poison(ddst);
      cuda::cast(device_tensor(ddst, ddt, n), device_tensor(dsrc, sdt, n));
      cuda::copy_d2h(kDev, got.p, ddst.p, got.bytes);
      int64_t i = first_diff(want.p, got.p, ddt, n);
      L2C_EXPECT(i < 0, l2c::dtype_name(sdt) << " -> " << l2c::dtype_name(ddt) << " element " << i << ": src "
                                           << hex(i < 0 ? 0 : bits[i]) << ", cpu " << hex(i < 0 ? 0 : bits_at(want.p, ddt, i))
                                           << ", cuda " << hex(i < 0 ? 0 : bits_at(got.p, ddt, i)));
    }
  }
  // The anchors, on the device.
  for (const CastAnchor &c : kCastAnchors) {
    DevBuf s(kDev, 4), d(kDev, 4);
    uint32_t in32 = c.in;
    uint16_t in16 = (uint16_t)c.in;
    cuda::copy_h2d(kDev, s.p, dsize(c.src) == 4 ? (const void *)&in32 : (const void *)&in16, dsize(c.src));
    cuda::cast(device_tensor(d, c.dst, 1), device_tensor(s, c.src, 1));
    uint32_t out = 0;
    cuda::copy_d2h(kDev, &out, d.p, dsize(c.dst));
    L2C_EXPECT(out == c.out, l2c::dtype_name(c.src) << " " << hex(c.in) << " -> " << l2c::dtype_name(c.dst)
                                                   << ": " << hex(out) << ", expected " << hex(c.out));
  }
}

// ------------------------------------------------------------------ fill

L2C_TEST(cuda_fill_matches_cpu) {
  REQUIRE_CUDA();
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const double values[] = {0.0, -0.0, 1.0, -2.75, 3.14159265358979, 1e-8, 6e-8, 65504.0, 65520.0, 70000.0,
                           1e30, -1e30, nan, inf, -inf, 16777217.0, 2147483647.5, -2147483649.0,
                           3e9, -3.99, 0.49999999999};
  for (l2c_dtype dt : kAllDtypes) {
    for (int64_t n : {1, 7, 1025, 100003}) {
      HostBuf want(n * dsize(dt)), got(n * dsize(dt));
      DevBuf d(kDev, n * dsize(dt));
      for (double v : values) {
        cpu::fill(host_tensor(want, dt, n), v);
        poison(d);
        cuda::fill(device_tensor(d, dt, n), v);
        cuda::copy_d2h(kDev, got.p, d.p, got.bytes);
        int64_t i = first_diff(want.p, got.p, dt, n);
        L2C_EXPECT(i < 0, "fill " << l2c::dtype_name(dt) << "[" << n << "] with " << v << ": element " << i
                                  << " cpu " << hex(i < 0 ? 0 : bits_at(want.p, dt, i)) << ", cuda "
                                  << hex(i < 0 ? 0 : bits_at(got.p, dt, i)));
      }
    }
  }
  // Pinned by hand: the double -> int32 conversion is exact (not through float32).
  DevBuf d(kDev, 4);
  cuda::fill(device_tensor(d, L2C_INT32, 1), 16777217.0);
  int32_t v = 0;
  cuda::copy_d2h(kDev, &v, d.p, 4);
  L2C_EXPECT(v == 16777217, "fill int32 with 16777217 gave " << v);
}

// ------------------------------------------------------------------ random

L2C_TEST(cuda_random_matches_cpu) {
  REQUIRE_CUDA();
  struct Draw {
    l2c_random_kind kind;
    double a, b;
  };
  const Draw draws[] = {{L2C_RANDOM_UNIFORM, 0.0, 1.0},
                        {L2C_RANDOM_UNIFORM, -3.0, 5.5},
                        {L2C_RANDOM_NORMAL, 0.0, 1.0},
                        {L2C_RANDOM_NORMAL, 2.5, 0.1}};
  const uint64_t seeds[] = {0, 42, 0xdeadbeefcafebabeull};
  const l2c_dtype float_dtypes[] = {L2C_FLOAT32, L2C_BFLOAT16, L2C_FLOAT16};
  for (l2c_dtype dt : float_dtypes) {
    for (int64_t n : {1, 7, 1025, 100003}) {
      HostBuf want(n * dsize(dt)), got(n * dsize(dt));
      DevBuf d(kDev, n * dsize(dt));
      for (const Draw &dr : draws) {
        for (uint64_t seed : seeds) {
          cpu::random(host_tensor(want, dt, n), dr.kind, seed, dr.a, dr.b);
          poison(d);
          cuda::random(device_tensor(d, dt, n), dr.kind, seed, dr.a, dr.b);
          cuda::copy_d2h(kDev, got.p, d.p, got.bytes);
          int64_t i = first_diff(want.p, got.p, dt, n);
          L2C_EXPECT(i < 0, (dr.kind == L2C_RANDOM_UNIFORM ? "uniform" : "normal")
                                << "(" << dr.a << ", " << dr.b << ") seed " << seed << " "
                                << l2c::dtype_name(dt) << "[" << n << "]: element " << i << " cpu "
                                << hex(i < 0 ? 0 : bits_at(want.p, dt, i)) << ", cuda "
                                << hex(i < 0 ? 0 : bits_at(got.p, dt, i)));
          if (dt == L2C_FLOAT32 && n == 100003 && seed == 42) {
            // Not a statistics test, only a guard against a degenerate generator that both
            // sides might share: the range, and the mean within 10 standard errors.
            const float *x = got.as<float>();
            double sum = 0;
            bool in_range = true;
            for (int64_t k = 0; k < n; k++) {
              sum += x[k];
              if (dr.kind == L2C_RANDOM_UNIFORM && !(x[k] >= dr.a && x[k] < dr.b)) in_range = false;
              if (!std::isfinite(x[k])) in_range = false;
            }
            double mean = sum / n;
            double want_mean = dr.kind == L2C_RANDOM_UNIFORM ? (dr.a + dr.b) / 2 : dr.a;
            double sd = dr.kind == L2C_RANDOM_UNIFORM ? (dr.b - dr.a) / std::sqrt(12.0) : dr.b;
            L2C_EXPECT(in_range, "values outside the range or not finite");
            L2C_EXPECT(std::fabs(mean - want_mean) < 10 * sd / std::sqrt((double)n),
                       "mean " << mean << ", expected " << want_mean);
          }
        }
      }
    }
  }
  // Different seeds give different draws; int32 is refused.
  DevBuf d1(kDev, 64 * 4), d2(kDev, 64 * 4);
  cuda::random(device_tensor(d1, L2C_FLOAT32, 64), L2C_RANDOM_UNIFORM, 1, 0.0, 1.0);
  cuda::random(device_tensor(d2, L2C_FLOAT32, 64), L2C_RANDOM_UNIFORM, 2, 0.0, 1.0);
  std::vector<float> r1(64), r2(64);
  cuda::copy_d2h(kDev, r1.data(), d1.p, 256);
  cuda::copy_d2h(kDev, r2.data(), d2.p, 256);
  L2C_EXPECT(r1 != r2, "seeds 1 and 2 gave the same draw");
  L2C_EXPECT(status_of([&] { cuda::random(device_tensor(d1, L2C_INT32, 64), L2C_RANDOM_UNIFORM, 1, 0.0, 1.0); }) ==
                 L2C_DTYPE_MISMATCH,
             "int32 random");
}

// ------------------------------------------------------------------ matmul

// Tolerance. Both sides compute each output as a float32 sum of the K products of
// exactly representable inputs, in different orders (and with or without FMA). Any such
// sum is within gamma_K * sum_k |a_k b_k| of the exact dot product, gamma_K = K u /
// (1 - K u), u = 2^-24 (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed.,
// section 3.1); so the two differ by at most twice that. This is a worst-case bound, so
// the test cannot flake, yet a wrong, missing or repeated product term of this data
// (|a|, |b| <= 1, sums of hundreds of terms) is larger than it.
// 16-bit inputs may run on tensor cores, whose float32 accumulation aligns the addends of
// each fused k-step to the largest and truncates (rounds toward zero; Fasi, Higham,
// Mikaitis, Pranesh, "Numerical behavior of NVIDIA tensor cores", PeerJ CS 2021): at
// most twice round-to-nearest's error per addition, so that side's bound doubles and the
// two differ by at most 3 gamma_K sum |a b|.
constexpr double kF32Unit = 0x1p-24;
// A 16-bit output rounds each side's float32 sum once more: two values within d of each
// other round to values at most d + one ulp apart, and one ulp is at most 2^-7 |x| in
// bfloat16 (8 significant bits), 2^-10 |x| in float16 (11 bits; 2^-24 absolute for its
// subnormals). Two ulps of (|ref| + d) also cover x lying a little above |ref|.
constexpr double kBf16TwoUlps = 2 * 0x1p-7;
constexpr double kF16TwoUlps = 2 * 0x1p-10;
constexpr double kF16SubnormalUlp = 0x1p-24;

double matmul_tolerance(int64_t K, double mag, double ref, l2c_dtype in, l2c_dtype out) {
  double ku = (double)K * kF32Unit;
  double d = (in == L2C_FLOAT32 ? 2 : 3) * ku / (1 - ku) * mag;
  if (out == L2C_BFLOAT16) d += kBf16TwoUlps * (std::fabs(ref) + d);
  if (out == L2C_FLOAT16) d += kF16TwoUlps * (std::fabs(ref) + d) + kF16SubnormalUlp;
  return d;
}

float load_as_float(const void *p, l2c_dtype dt, int64_t i) {
  switch (dt) {
    case L2C_FLOAT32: return static_cast<const float *>(p)[i];
    case L2C_BFLOAT16: return l2c::bf16_to_f32(static_cast<const uint16_t *>(p)[i]);
    case L2C_FLOAT16: return l2c::f16_to_f32(static_cast<const uint16_t *>(p)[i]);
    default: return 0;
  }
}
void store_float(void *p, l2c_dtype dt, int64_t i, float v) {
  switch (dt) {
    case L2C_FLOAT32: static_cast<float *>(p)[i] = v; break;
    case L2C_BFLOAT16: static_cast<uint16_t *>(p)[i] = l2c::f32_to_bf16(v); break;
    case L2C_FLOAT16: static_cast<uint16_t *>(p)[i] = l2c::f32_to_f16(v); break;
    default: break;
  }
}

struct MatmulCase {
  int64_t batch, M, N, K;
  bool bcast_a = false, bcast_b = false;  // a batch of 1 (stride 0) broadcast over `batch`
  int64_t pad = 0;                        // extra elements per row of A, B and C
  int64_t gap_c = 0;                      // extra elements between batch entries of C
  // A's and B's rows rounded up to a multiple of 8 elements, plus pad rounded up to 8:
  // 16-byte aligned operands, which 16-bit inputs run on tensor cores (C keeps N + pad).
  bool align = false;
};

// One matmul on both backends; checks every output within the tolerance and that C's
// padding and gaps keep their poison. Inputs in [-1, 1); A's and B's padding holds NaN,
// so reading it shows too.
void check_matmul(const MatmulCase &mc, l2c_dtype in, l2c_dtype out, bool ta, bool tb, uint64_t seed) {
  const int64_t M = mc.M, N = mc.N, K = mc.K;
  MatmulParams p;
  p.in_dtype = in;
  p.out_dtype = out;
  p.batch = mc.batch;
  p.M = M;
  p.N = N;
  p.K = K;
  p.trans_a = ta;
  p.trans_b = tb;
  const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
  const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
  auto up8 = [](int64_t v) { return (v + 7) / 8 * 8; };
  p.lda = mc.align ? std::max<int64_t>(8, up8(a_cols) + up8(mc.pad)) : std::max<int64_t>(1, a_cols + mc.pad);
  p.ldb = mc.align ? std::max<int64_t>(8, up8(b_cols) + up8(mc.pad)) : std::max<int64_t>(1, b_cols + mc.pad);
  p.ldc = std::max<int64_t>(1, N + mc.pad);
  const int64_t a_mat = a_rows * p.lda, b_mat = b_rows * p.ldb, c_mat = M * p.ldc + mc.gap_c;
  const int64_t a_batches = mc.bcast_a ? 1 : mc.batch, b_batches = mc.bcast_b ? 1 : mc.batch;
  p.stride_a = mc.bcast_a ? 0 : a_mat;
  p.stride_b = mc.bcast_b ? 0 : b_mat;
  p.stride_c = c_mat;
  const int64_t a_n = std::max<int64_t>(1, a_batches * a_mat), b_n = std::max<int64_t>(1, b_batches * b_mat);
  const int64_t c_n = std::max<int64_t>(1, mc.batch * c_mat);
  const size_t is = dsize(in), os = dsize(out);

  HostBuf ha(a_n * is), hb(b_n * is), hc(c_n * os), gc(c_n * os);
  Rng rng(seed);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t i = 0; i < a_n; i++) store_float(ha.p, in, i, (i % p.lda) < a_cols ? rng.uniform(-1, 1) : nan);
  for (int64_t i = 0; i < b_n; i++) store_float(hb.p, in, i, (i % p.ldb) < b_cols ? rng.uniform(-1, 1) : nan);
  for (int64_t i = 0; i < c_n; i++) store_float(hc.p, out, i, nan);

  DevBuf da(kDev, a_n * is), db(kDev, b_n * is), dc(kDev, c_n * os);
  cuda::copy_h2d(kDev, da.p, ha.p, ha.bytes);
  cuda::copy_h2d(kDev, db.p, hb.p, hb.bytes);
  cuda::fill(device_tensor(dc, out, c_n), nan);
  uint32_t poison_bits = bits_at(hc.p, out, 0);

  MatmulParams pc = p;
  pc.a = ha.p;
  pc.b = hb.p;
  pc.c = hc.p;
  cpu::matmul(pc);
  MatmulParams pd = p;
  pd.a = da.p;
  pd.b = db.p;
  pd.c = dc.p;
  cuda::matmul(kDev, pd);
  cuda::copy_d2h(kDev, gc.p, dc.p, gc.bytes);

  std::string what = std::string(l2c::dtype_name(in)) + "->" + l2c::dtype_name(out) + (ta ? " A^T" : " A") +
                     (tb ? " B^T" : " B") + " batch " + std::to_string(mc.batch) + (mc.bcast_a ? " (A bcast)" : "") +
                     (mc.bcast_b ? " (B bcast)" : "") + " M " + std::to_string(M) + " N " + std::to_string(N) +
                     " K " + std::to_string(K) + " pad " + std::to_string(mc.pad) + (mc.align ? " aligned" : "");
  int64_t bad = 0;
  std::string first;
  std::vector<float> arow(K), bcol(K);
  for (int64_t bi = 0; bi < mc.batch; bi++) {
    const int64_t a0 = bi * p.stride_a, b0 = bi * p.stride_b, c0 = bi * p.stride_c;
    for (int64_t m = 0; m < M; m++) {
      for (int64_t k = 0; k < K; k++)
        arow[k] = std::fabs(load_as_float(ha.p, in, a0 + (ta ? k * p.lda + m : m * p.lda + k)));
      for (int64_t n = 0; n < N; n++) {
        double mag = 0;
        for (int64_t k = 0; k < K; k++)
          mag += (double)arow[k] * std::fabs(load_as_float(hb.p, in, b0 + (tb ? n * p.ldb + k : k * p.ldb + n)));
        const int64_t ci = c0 + m * p.ldc + n;
        const double want = load_as_float(hc.p, out, ci), got = load_as_float(gc.p, out, ci);
        const double tol = matmul_tolerance(K, mag, want, in, out);
        if (!(std::fabs(got - want) <= tol)) {  // NaN fails
          if (bad++ == 0)
            first = "[" + std::to_string(bi) + "," + std::to_string(m) + "," + std::to_string(n) +
                    "] cpu " + std::to_string(want) + " cuda " + std::to_string(got) + " tol " + std::to_string(tol);
        }
      }
      for (int64_t n = N; n < p.ldc; n++)  // row padding keeps its poison
        if (bits_at(gc.p, out, c0 + m * p.ldc + n) != poison_bits && bad++ == 0)
          first = "wrote padding at row " + std::to_string(m) + " column " + std::to_string(n);
    }
    for (int64_t g = M * p.ldc; g < c_mat; g++)
      if (bits_at(gc.p, out, c0 + g) != poison_bits && bad++ == 0) first = "wrote the gap after batch " + std::to_string(bi);
  }
  L2C_EXPECT(bad == 0, what << ": " << bad << " bad elements, first " << first);
}

const l2c_dtype kMatmulTypes[][2] = {{L2C_FLOAT32, L2C_FLOAT32},   {L2C_BFLOAT16, L2C_FLOAT32},
                                     {L2C_BFLOAT16, L2C_BFLOAT16}, {L2C_FLOAT16, L2C_FLOAT32},
                                     {L2C_FLOAT16, L2C_FLOAT16}};

L2C_TEST(cuda_matmul_matches_cpu) {
  REQUIRE_CUDA();
  // Odd sizes around the 64 x 64 x 16 tiles, with and without padding.
  const MatmulCase shapes[] = {
      {1, 1, 1, 1},      {1, 1, 7, 1},     {1, 7, 1, 97},     {1, 7, 7, 7, false, false, 3},
      {1, 97, 97, 97},   {1, 1, 1025, 97}, {1, 1025, 1, 97},  {1, 97, 7, 1025, false, false, 5},
      {1, 65, 130, 33},  {1, 129, 65, 17, false, false, 1, 9}, {1, 7, 9, 0},
  };
  uint64_t seed = 1;
  for (const MatmulCase &mc : shapes)
    for (const auto &io : kMatmulTypes)
      for (int t = 0; t < 4; t++) check_matmul(mc, io[0], io[1], t & 1, t & 2, seed++);
  // Batched, with broadcast on either side and gaps between the outputs.
  const MatmulCase batched[] = {
      {3, 33, 17, 65},
      {3, 33, 17, 65, true, false, 2, 5},
      {4, 7, 97, 31, false, true, 0, 3},
      {2, 70, 66, 18, true, true},
  };
  for (const MatmulCase &mc : batched)
    for (const auto &io : kMatmulTypes)
      for (int t = 0; t < 4; t++) check_matmul(mc, io[0], io[1], t & 1, t & 2, seed++);
  // One larger product, all transposes in float32 and the plain one in 16 bits.
  const MatmulCase large = {1, 1025, 1025, 97};
  for (int t = 0; t < 4; t++) check_matmul(large, L2C_FLOAT32, L2C_FLOAT32, t & 1, t & 2, seed++);
  check_matmul(large, L2C_BFLOAT16, L2C_BFLOAT16, false, false, seed++);
  check_matmul(large, L2C_FLOAT16, L2C_FLOAT32, true, true, seed++);
}

// The tensor-core path (16-bit inputs, operands 16-byte aligned; gemm.cuh): CTA tiles of
// 128 x 256 x 64, so sizes around and across those edges, K and M / N tails that end
// inside a 16-byte chunk (partial copies, zero fill; the NaN padding right after them
// must not leak in), every transpose, both output widths, odd ldc (unpaired stores),
// batches with broadcast operands. float32 rows run the same shapes on the SIMT kernel.
L2C_TEST(cuda_matmul_tensor_cores) {
  REQUIRE_CUDA();
  auto al = [](MatmulCase c) {
    c.align = true;
    return c;
  };
  const MatmulCase shapes[] = {
      al({1, 1, 1, 1}),        al({1, 8, 8, 8}),          al({1, 16, 8, 16}),        al({1, 128, 256, 64}),
      al({1, 129, 257, 65}),   al({1, 127, 255, 63}),     al({1, 37, 45, 29}),       al({1, 130, 264, 72, false, false, 8}),
      al({1, 300, 100, 200}),  al({1, 100, 300, 7, false, false, 1}), al({1, 5, 600, 130, false, false, 3, 11}),
      al({1, 257, 9, 1000}),   al({1, 7, 9, 0}),          al({1, 384, 512, 192}),
  };
  uint64_t seed = 5000;
  for (const MatmulCase &mc : shapes)
    for (const auto &io : kMatmulTypes)
      for (int t = 0; t < 4; t++) check_matmul(mc, io[0], io[1], t & 1, t & 2, seed++);
  const MatmulCase batched[] = {
      al({3, 129, 70, 65}),
      al({3, 33, 260, 40, true, false, 2, 5}),
      al({4, 140, 17, 31, false, true, 0, 3}),
      al({2, 70, 66, 18, true, true, 1}),
  };
  for (const MatmulCase &mc : batched)
    for (const auto &io : kMatmulTypes)
      for (int t = 0; t < 4; t++) check_matmul(mc, io[0], io[1], t & 1, t & 2, seed++);
  // Larger: several tiles in both directions and a long K.
  check_matmul(al({1, 1000, 1100, 520}), L2C_BFLOAT16, L2C_BFLOAT16, false, true, seed++);
  check_matmul(al({1, 1000, 1100, 520}), L2C_FLOAT16, L2C_FLOAT32, true, false, seed++);
  check_matmul(al({1, 513, 777, 2056}), L2C_BFLOAT16, L2C_FLOAT32, false, false, seed++);
}

// The grid's y and z dimensions stop at 65535: more M tiles or batch entries loop.
L2C_TEST(cuda_matmul_grid_limits) {
  REQUIRE_CUDA();
  check_matmul({70000, 3, 2, 5}, L2C_FLOAT32, L2C_FLOAT32, false, false, 11);
  check_matmul({70000, 3, 2, 5, true, false}, L2C_BFLOAT16, L2C_BFLOAT16, false, true, 12);
  check_matmul({1, 65536 * 64 + 5, 3, 2}, L2C_FLOAT32, L2C_FLOAT32, false, false, 13);
  check_matmul({1, 65536 * 64 + 5, 3, 2}, L2C_FLOAT16, L2C_FLOAT16, true, false, 14);
  // The same on the tensor-core path (batches launched 65535 at a time).
  MatmulCase big_batch{70000, 3, 9, 5};
  big_batch.align = true;
  check_matmul(big_batch, L2C_BFLOAT16, L2C_FLOAT32, false, true, 15);
  big_batch.bcast_b = true;
  check_matmul(big_batch, L2C_FLOAT16, L2C_FLOAT16, true, false, 16);
}

L2C_TEST(cuda_matmul_rejects_bad_params) {
  REQUIRE_CUDA();
  DevBuf d(kDev, 1024);
  MatmulParams p;
  p.a = p.b = d.p;
  p.c = d.p;
  p.M = p.N = p.K = 4;
  p.lda = p.ldb = p.ldc = 4;
  MatmulParams q = p;
  q.ldc = 3;
  L2C_EXPECT(status_of([&] { cuda::matmul(kDev, q); }) == L2C_INVALID_ARGUMENT, "ldc < N");
  q = p;
  q.in_dtype = q.out_dtype = L2C_INT32;
  L2C_EXPECT(status_of([&] { cuda::matmul(kDev, q); }) == L2C_DTYPE_MISMATCH, "int32 inputs");
  q = p;
  q.in_dtype = L2C_BFLOAT16;
  q.out_dtype = L2C_FLOAT16;
  L2C_EXPECT(status_of([&] { cuda::matmul(kDev, q); }) == L2C_DTYPE_MISMATCH, "bf16 -> f16");
  q = p;
  q.M = 0;  // nothing to do, nothing touched
  q.c = nullptr;
  L2C_EXPECT(status_of([&] { cuda::matmul(kDev, q); }) == L2C_OK, "M == 0");
}

}  // namespace
