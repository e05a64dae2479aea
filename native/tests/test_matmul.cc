// test_matmul.cc: native tests of l2c::cpu::matmul on every SIMD level the CPU has
// (forced with set_isa), against a float64 reference computed on the exact (rounded)
// inputs: odd sizes, transposes, batches with broadcast, padded strides, 16-bit in/out,
// K = 0, NaN-poisoned outputs, bad parameters. Links with test_main.cc, e.g. (one line)
//   g++ -O3 -std=c++17 -pthread -Inative/include -Inative/core native/core/common.cc
//   native/core/threadpool.cc native/cpu/matmul*.cc native/cpu/isa.cc
//   native/tests/test_main.cc native/tests/test_matmul.cc -o mm_test && ./mm_test matmul
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../cpu/matmul_kernels.h"
#include "backend.h"
#include "half.h"
#include "harness.h"
#include "threadpool.h"

namespace {

using l2c::MatmulParams;

// Float32 accumulation bound (Higham, "Accuracy and Stability of Numerical Algorithms",
// eq. 3.5): a K-term dot product whose every product and running sum is rounded is off
// by at most gamma_n * sum_k |a_ik||b_kj|, gamma_n = n u / (1 - n u), u = 2^-24, with
// n = K roundings (FMA) up to 2K (separate multiply and add, the generic level), plus
// one per KC-block merge. n = 2K + 2 covers every level; the test never loosens it.
constexpr double kU32 = 1.0 / (1 << 24);
double accum_tol(int64_t K, double abs_sum) {
  double n = 2.0 * K + 2;
  return n * kU32 / (1 - n * kU32) * abs_sum;
}
// Rounding the float32 result to the output type adds at most half an ulp: relative
// 2^-8 (bfloat16, 8 significant bits) or 2^-11 (float16, 11 bits) of the float32 value
// (x 1.01: that value, not the reference, is what gets rounded), and for float16 an
// absolute 2^-24, its subnormal spacing (the error there is at most half of it).
double out_tol(l2c_dtype out, double ref) {
  if (out == L2C_BFLOAT16) return std::fabs(ref) * (1.0 / 256) * 1.01;
  if (out == L2C_FLOAT16) return std::fabs(ref) * (1.0 / 2048) * 1.01 + 1.0 / (1 << 24);
  return 0;
}

const char *kLevels[] = {"avx512", "avx2", "generic"};

// Runs fn once per SIMD level this CPU supports, then restores the default level.
template <class Fn>
void for_each_isa(Fn fn) {
  std::string original = l2c::cpu::isa_name();
  for (const char *isa : kLevels) {
    try {
      l2c::cpu::set_isa(isa);
    } catch (const l2c::Error &) {
      continue;  // the CPU lacks it
    }
    fn(isa);
  }
  l2c::cpu::set_isa(original.c_str());
}

uint64_t g_seed = 0x243f6a8885a308d3ull;
float urand() {  // xorshift64*, uniform in [-1, 1)
  g_seed ^= g_seed >> 12, g_seed ^= g_seed << 25, g_seed ^= g_seed >> 27;
  return (float)((g_seed * 0x2545f4914f6cdd1dull) >> 40) / (float)(1 << 23) - 1.0f;
}

size_t esize(l2c_dtype d) { return d == L2C_FLOAT32 ? 4 : 2; }

// A matrix buffer of some dtype plus the float64 values it holds.
struct Buf {
  l2c_dtype dtype;
  std::vector<uint8_t> raw;
  std::vector<double> val;
  Buf(l2c_dtype d, int64_t n) : dtype(d), raw(n * esize(d)), val(n, 0.0) {}
  void set(int64_t i, float f) {
    if (dtype == L2C_FLOAT32) {
      std::memcpy(&raw[i * 4], &f, 4);
      val[i] = f;
    } else {
      uint16_t h = dtype == L2C_BFLOAT16 ? l2c::f32_to_bf16(f) : l2c::f32_to_f16(f);
      std::memcpy(&raw[i * 2], &h, 2);
      val[i] = dtype == L2C_BFLOAT16 ? l2c::bf16_to_f32(h) : l2c::f16_to_f32(h);
    }
  }
  double get(int64_t i) const {  // as stored (outputs)
    if (dtype == L2C_FLOAT32) {
      float f;
      std::memcpy(&f, &raw[i * 4], 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, &raw[i * 2], 2);
    return dtype == L2C_BFLOAT16 ? l2c::bf16_to_f32(h) : l2c::f16_to_f32(h);
  }
  // A NaN pattern; outputs start with it so that unwritten elements are caught.
  void poison() {
    for (size_t i = 0; i < raw.size(); i += esize(dtype)) {
      if (dtype == L2C_FLOAT32) {
        uint32_t nan = 0x7fc0dead;
        std::memcpy(&raw[i], &nan, 4);
      } else {
        uint16_t nan = dtype == L2C_BFLOAT16 ? 0x7fc1 : 0x7e01;
        std::memcpy(&raw[i], &nan, 2);
      }
    }
  }
};

struct Case {
  int64_t batch = 1, M = 1, N = 1, K = 1;
  bool ta = false, tb = false;
  l2c_dtype in = L2C_FLOAT32, out = L2C_FLOAT32;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // ld = minimal + pad
  bool bcast_a = false, bcast_b = false;    // batch stride 0
  int64_t gap = 0;                          // extra elements between batch entries
};

std::string describe(const Case &c, const char *isa) {
  char s[256];
  std::snprintf(s, sizeof s,
                "[%s] batch %lld M %lld N %lld K %lld ta %d tb %d in %s out %s "
                "pads %lld/%lld/%lld bcast %d/%d",
                isa, (long long)c.batch, (long long)c.M, (long long)c.N, (long long)c.K, c.ta,
                c.tb, l2c::dtype_name(c.in), l2c::dtype_name(c.out), (long long)c.pad_a,
                (long long)c.pad_b, (long long)c.pad_c, c.bcast_a, c.bcast_b);
  return s;
}

// Runs one case and checks every output element against the float64 reference, and that
// elements outside the output (ld padding, batch gaps) were left alone. Returns the
// output for callers that compare two runs.
Buf run_case(const Case &c, const char *isa, Buf *a_in = nullptr, Buf *b_in = nullptr) {
  int64_t ar = c.ta ? c.K : c.M, ac = c.ta ? c.M : c.K;
  int64_t br = c.tb ? c.N : c.K, bc = c.tb ? c.K : c.N;
  int64_t lda = ac + c.pad_a, ldb = bc + c.pad_b, ldc = c.N + c.pad_c;
  int64_t sa = c.bcast_a ? 0 : ar * lda + c.gap, sb = c.bcast_b ? 0 : br * ldb + c.gap;
  int64_t sc = c.M * ldc + c.gap;
  int64_t na = (c.bcast_a ? 1 : c.batch) * (ar * lda + c.gap);
  int64_t nb = (c.bcast_b ? 1 : c.batch) * (br * ldb + c.gap);
  // Callers that rerun with the same inputs pass buffers: empty ones are filled here.
  bool reuse_a = a_in && !a_in->raw.empty(), reuse_b = b_in && !b_in->raw.empty();
  Buf a = reuse_a ? *a_in : Buf(c.in, na), b = reuse_b ? *b_in : Buf(c.in, nb);
  if (!reuse_a)
    for (int64_t i = 0; i < na; i++) a.set(i, urand());
  if (!reuse_b)
    for (int64_t i = 0; i < nb; i++) b.set(i, urand());
  Buf out(c.out, c.batch * sc + 1);
  out.poison();
  Buf untouched = out;

  MatmulParams p;
  p.a = a.raw.data(), p.b = b.raw.data(), p.c = out.raw.data();
  p.in_dtype = c.in, p.out_dtype = c.out;
  p.batch = c.batch, p.M = c.M, p.N = c.N, p.K = c.K;
  p.lda = lda, p.ldb = ldb, p.ldc = ldc;
  p.stride_a = sa, p.stride_b = sb, p.stride_c = sc;
  p.trans_a = c.ta, p.trans_b = c.tb;
  l2c::cpu::matmul(p);

  int bad = 0;
  for (int64_t bi = 0; bi < c.batch; bi++)
    for (int64_t i = 0; i < c.M; i++)
      for (int64_t j = 0; j < c.N; j++) {
        double ref = 0, abs_sum = 0;
        for (int64_t k = 0; k < c.K; k++) {
          double x = a.val[bi * sa + (c.ta ? k * lda + i : i * lda + k)];
          double y = b.val[bi * sb + (c.tb ? j * ldb + k : k * ldb + j)];
          ref += x * y;
          abs_sum += std::fabs(x * y);
        }
        double got = out.get(bi * sc + i * ldc + j);
        double tol = accum_tol(c.K, abs_sum) + out_tol(c.out, ref);
        // Written so that a NaN output fails (the reference has none here).
        bool ok = std::fabs(got - ref) <= tol;
        if (!ok && bad++ < 3)
          L2C_EXPECT(ok, describe(c, isa) << " at [" << bi << "," << i << "," << j << "]: got "
                                          << got << ", want " << ref << " +- " << tol);
      }
  // Everything outside the written elements keeps its poison bit pattern.
  size_t es = esize(c.out);
  for (int64_t e = 0; e < c.batch * sc + 1; e++) {
    int64_t bi = e / sc, r = e % sc, i = r / ldc, j = r % ldc;
    bool inside = bi < c.batch && i < c.M && j < c.N;
    if (inside) continue;
    bool same = std::memcmp(&out.raw[e * es], &untouched.raw[e * es], es) == 0;
    if (!same && bad++ < 3)
      L2C_EXPECT(same, describe(c, isa) << ": wrote outside C at element " << e);
  }
  if (a_in) *a_in = a;
  if (b_in) *b_in = b;
  return out;
}

}  // namespace

// Sizes 1, 7, 97 in every M / N / K mix and every transpose combination, float32.
L2C_TEST(matmul_f32_sizes_and_transposes) {
  for_each_isa([](const char *isa) {
    const int64_t sizes[] = {1, 7, 97};
    for (int64_t M : sizes)
      for (int64_t N : sizes)
        for (int64_t K : sizes)
          for (int t = 0; t < 4; t++) {
            Case c;
            c.M = M, c.N = N, c.K = K, c.ta = t & 1, c.tb = t & 2;
            run_case(c, isa);
          }
  });
}

// 1025 in a few mixes: several cache blocks deep (K > KC), several MC / NC blocks wide,
// ragged edges everywhere, and big enough to run on the thread pool (M and N splits).
L2C_TEST(matmul_f32_large) {
  for_each_isa([](const char *isa) {
    struct { int64_t M, N, K; bool ta, tb; } shapes[] = {
        {1025, 97, 97, false, false}, {97, 1025, 1025, false, true},
        {1025, 9, 1025, true, false}, {7, 1025, 97, true, true},
        {1025, 1025, 7, false, false},
    };
    for (auto &s : shapes) {
      Case c;
      c.M = s.M, c.N = s.N, c.K = s.K, c.ta = s.ta, c.tb = s.tb;
      run_case(c, isa);
    }
  });
}

// Long M or N: several A blocks (mc rows) per thread, and with 16-bit output several
// column chunks of the float32 buffer.
L2C_TEST(matmul_many_blocks) {
  for_each_isa([](const char *isa) {
    Case c;
    c.M = 4100, c.N = 7, c.K = 300;
    run_case(c, isa);
    c.in = c.out = L2C_FLOAT16, c.ta = true;
    run_case(c, isa);
    Case d;
    d.M = 7, d.N = 4200, d.K = 300, d.tb = true, d.in = d.out = L2C_BFLOAT16;
    run_case(d, isa);
  });
}

// A pool of one thread takes the serial path for the same shapes.
L2C_TEST(matmul_single_thread) {
  int threads = l2c::num_threads();
  l2c::set_num_threads(1);
  Case c;
  c.M = 97, c.N = 1025, c.K = 300, c.tb = true;
  run_case(c, l2c::cpu::isa_name());
  l2c::set_num_threads(threads);
}

// Batches: broadcast A or B (stride 0), gaps between entries, batch counts that do and
// do not divide over the threads.
L2C_TEST(matmul_batched_broadcast) {
  for_each_isa([](const char *isa) {
    for (int64_t batch : {1, 2, 3, 5})
      for (int bc = 0; bc < 3; bc++) {
        Case c;
        c.batch = batch, c.M = 97, c.N = 40, c.K = 33, c.gap = 5;
        c.bcast_a = bc == 1, c.bcast_b = bc == 2;
        c.ta = batch == 3, c.tb = batch == 5;
        run_case(c, isa);
      }
    Case big;  // enough work per entry to go parallel
    big.batch = 3, big.M = 200, big.N = 150, big.K = 130, big.bcast_b = true;
    run_case(big, isa);
  });
}

// lda / ldb / ldc larger than the rows they hold: padding must be skipped on reads and
// left untouched on writes.
L2C_TEST(matmul_padded_leading_dims) {
  for_each_isa([](const char *isa) {
    for (int t = 0; t < 4; t++) {
      Case c;
      c.M = 37, c.N = 70, c.K = 45, c.ta = t & 1, c.tb = t & 2;
      c.pad_a = 3, c.pad_b = 17, c.pad_c = 9;
      run_case(c, isa);
      c.batch = 2, c.gap = 1;
      run_case(c, isa);
    }
  });
}

// bfloat16 / float16 inputs (reference on the rounded values) with every allowed output.
L2C_TEST(matmul_half_inputs_and_outputs) {
  for_each_isa([](const char *isa) {
    for (l2c_dtype in : {L2C_BFLOAT16, L2C_FLOAT16})
      for (l2c_dtype out : {in, L2C_FLOAT32})
        for (int t = 0; t < 4; t++) {
          Case c;
          c.in = in, c.out = out, c.ta = t & 1, c.tb = t & 2;
          c.M = 97, c.N = 33, c.K = 130;
          run_case(c, isa);
          c.M = 7, c.N = 1025, c.K = 7, c.pad_c = 3;
          run_case(c, isa);
        }
    Case big;  // K > KC and the multi-thread path with 16-bit output (M split)
    big.in = big.out = L2C_BFLOAT16, big.M = 300, big.N = 257, big.K = 1025, big.tb = true;
    run_case(big, isa);
    // N split with A packed up front; K 1027 cuts into blocks of odd length 343, which
    // the bf16 pair path must round to even.
    Case odd;
    odd.in = L2C_BFLOAT16, odd.M = 97, odd.N = 700, odd.K = 1027;
    run_case(odd, isa);
  });
}

// A 16-bit output is exactly the float32 output rounded by half.h: same accumulation,
// one rounding at the end.
L2C_TEST(matmul_half_output_is_rounded_f32) {
  for_each_isa([](const char *isa) {
    for (l2c_dtype dt : {L2C_BFLOAT16, L2C_FLOAT16}) {
      Case c;
      c.in = dt, c.M = 150, c.N = 131, c.K = 600, c.ta = true;
      Buf a(dt, 0), b(dt, 0);
      c.out = L2C_FLOAT32;
      Buf ref = run_case(c, isa, &a, &b);
      c.out = dt;
      Buf got = run_case(c, isa, &a, &b);
      int bad = 0;
      for (int64_t i = 0; i < c.M * c.N; i++) {
        float f;
        std::memcpy(&f, &ref.raw[i * 4], 4);
        uint16_t want = dt == L2C_BFLOAT16 ? l2c::f32_to_bf16(f) : l2c::f32_to_f16(f), have;
        std::memcpy(&have, &got.raw[i * 2], 2);
        if (want != have && bad++ < 3)
          L2C_EXPECT(want == have, "[" << isa << "] " << l2c::dtype_name(dt) << " element " << i
                                       << ": " << have << " != rounded f32 " << want);
      }
    }
  });
}

// Every level's vectorised 16-bit store is bit-identical to half.h, special values too.
L2C_TEST(matmul_store_half_matches_half_h) {
  std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.5f, 65504.0f, 65519.99f, 65520.0f, 1e6f,
                          -1e30f, 6.1e-5f, 5.96e-8f, 2.98e-8f, 2.9e-8f, 1e-40f, -3e-39f,
                          1.00048828125f, 1.00146484375f, 1.0078125f, 1.0234375f};
  const uint32_t specials[] = {0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc12345u,
                               0x7f800001u, 0x7fbfffffu, 0x00000001u, 0x807fffffu};
  for (uint32_t u : specials) v.push_back(l2c::bits_f32(u));
  for (int i = 0; i < 4000; i++) {  // random bit patterns, NaNs and subnormals included
    uint32_t u = (uint32_t)(urand() * 2147483648.0f) * 2u + (i & 1);
    v.push_back(l2c::bits_f32(u));
  }
  for_each_isa([&](const char *isa) {
    const auto &ks = l2c::cpu::mm::active_kernels();
    for (l2c_dtype dt : {L2C_BFLOAT16, L2C_FLOAT16}) {
      std::vector<uint16_t> got(v.size());
      ks.store_half(v.data(), got.data(), dt, (int64_t)v.size());
      int bad = 0;
      for (size_t i = 0; i < v.size(); i++) {
        uint16_t want = dt == L2C_BFLOAT16 ? l2c::f32_to_bf16(v[i]) : l2c::f32_to_f16(v[i]);
        if (got[i] != want && bad++ < 3)
          L2C_EXPECT(got[i] == want, "[" << isa << "] " << l2c::dtype_name(dt) << " of bits 0x"
                                         << std::hex << l2c::f32_bits(v[i]) << ": 0x" << got[i]
                                         << " != 0x" << want << std::dec);
      }
    }
  });
}

// Each level's vectorised packing (and the bf16 pair packing where present) writes the
// same panels as a scalar reference, for both source layouts, every dtype, ragged rows
// and depths, widths MR and NR.
L2C_TEST(matmul_packing_matches_scalar) {
  for_each_isa([](const char *isa) {
    const auto &ks = l2c::cpu::mm::active_kernels();
    for (l2c_dtype dt : {L2C_FLOAT32, L2C_BFLOAT16, L2C_FLOAT16})
      for (int w : {ks.mr, ks.nr})
        for (int64_t nx : {(int64_t)1, (int64_t)w - 1, (int64_t)w, 2 * (int64_t)w + 3})
          for (int64_t kc : {1, 2, 15, 16, 17, 33, 64})
            for (int layout = 0; layout < 2; layout++) {
              // (x, k) at src[x*sx + k*sk]: layout 0 k-contiguous, 1 x-contiguous; padded.
              int64_t sx = layout == 0 ? kc + 3 : 1, sk = layout == 0 ? 1 : nx + 5;
              Buf src(dt, (nx - 1) * sx + (kc - 1) * sk + 1);
              for (size_t i = 0; i < src.val.size(); i++) src.set((int64_t)i, urand());
              int64_t panels = (nx + w - 1) / w;
              std::vector<float> want(panels * w * kc), got(panels * w * kc, NAN);
              l2c::cpu::mm::pack_scalar(src.raw.data(), dt, sx, sk, nx, kc, w, want.data());
              ks.pack(src.raw.data(), dt, sx, sk, nx, kc, w, got.data());
              bool same = std::memcmp(want.data(), got.data(), want.size() * 4) == 0;
              L2C_EXPECT(same, "[" << isa << "] pack " << l2c::dtype_name(dt) << " w " << w
                                   << " nx " << nx << " kc " << kc << " layout " << layout);
              if (dt != L2C_BFLOAT16 || !ks.pack_bf16) continue;
              // Pair layout: (x, k) at uint16 [(k/2)*2w + 2x + (k&1)], zero padded.
              int64_t kp = (kc + 1) / 2;
              std::vector<uint16_t> pw(panels * w * kp * 2, 0), pg(panels * w * kp * 2, 0xffff);
              const uint16_t *s16 = reinterpret_cast<const uint16_t *>(src.raw.data());
              for (int64_t x = 0; x < nx; x++)
                for (int64_t k = 0; k < kc; k++)
                  pw[(x / w) * w * kp * 2 + (k / 2) * 2 * w + 2 * (x % w) + (k & 1)] =
                      s16[x * sx + k * sk];
              ks.pack_bf16(src.raw.data(), dt, sx, sk, nx, kc, w,
                           reinterpret_cast<float *>(pg.data()));
              L2C_EXPECT(pw == pg, "[" << isa << "] bf16 pair pack w " << w << " nx " << nx
                                       << " kc " << kc << " layout " << layout);
            }
  });
}

// K = 0: the empty sum is zero, written over the poison in every output dtype.
L2C_TEST(matmul_k_zero_writes_zeros) {
  for_each_isa([](const char *isa) {
    for (l2c_dtype in : {L2C_FLOAT32, L2C_BFLOAT16, L2C_FLOAT16})
      for (l2c_dtype out : {in, L2C_FLOAT32}) {
        Case c;
        c.in = in, c.out = out, c.K = 0, c.M = 33, c.N = 65, c.pad_c = 2, c.batch = 2;
        run_case(c, isa);
        c.M = 700, c.N = 900;  // large enough for the pool
        run_case(c, isa);
      }
  });
}

// NaN and Inf in the inputs reach exactly the outputs they should (zero padding of
// edge tiles must not leak 0 * Inf = NaN into real outputs, nor hide a NaN).
L2C_TEST(matmul_nan_inf_propagate) {
  for_each_isa([](const char *isa) {
    const int64_t M = 20, N = 40, K = 50;
    std::vector<float> a(M * K), b(K * N), c(M * N, 0.0f);
    for (auto &x : a) x = urand();
    for (auto &x : b) x = urand();
    a[3 * K + 10] = NAN;       // row 3 of C is all NaN
    b[20 * N + 33] = INFINITY;  // column 33 of C is +-Inf (or NaN in row 3)
    MatmulParams p;
    p.a = a.data(), p.b = b.data(), p.c = c.data();
    p.M = M, p.N = N, p.K = K, p.lda = K, p.ldb = N, p.ldc = N;
    l2c::cpu::matmul(p);
    int bad = 0;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        float v = c[i * N + j];
        bool ok = i == 3 ? std::isnan(v) : j == 33 ? std::isinf(v) : std::isfinite(v);
        if (!ok && bad++ < 3) L2C_EXPECT(ok, "[" << isa << "] C[" << i << "," << j << "] = " << v);
      }
  });
}

// Parameters that memory safety depends on are rejected with INVALID_ARGUMENT, dtypes
// with DTYPE_MISMATCH.
L2C_TEST(matmul_rejects_bad_params) {
  std::vector<float> a(64, 1.0f), b(64, 1.0f), c(64);
  MatmulParams good;
  good.a = a.data(), good.b = b.data(), good.c = c.data();
  good.M = good.N = good.K = 4, good.lda = good.ldb = good.ldc = 4;
  auto expect_status = [](MatmulParams p, l2c_status want, const char *what) {
    l2c_status got = L2C_OK;
    try {
      l2c::cpu::matmul(p);
    } catch (const l2c::Error &e) {
      got = e.status;
    }
    L2C_EXPECT(got == want, what << ": status " << (int)got);
  };
  auto expect_invalid = [&](MatmulParams p, const char *what) { expect_status(p, L2C_INVALID_ARGUMENT, what); };
  MatmulParams p = good;
  p.a = nullptr;
  expect_invalid(p, "null a");
  p = good, p.c = nullptr;
  expect_invalid(p, "null c");
  p = good, p.M = -1;
  expect_invalid(p, "negative M");
  p = good, p.K = -3;
  expect_invalid(p, "negative K");
  p = good, p.batch = -1;
  expect_invalid(p, "negative batch");
  p = good, p.lda = 3;
  expect_invalid(p, "lda < K");
  p = good, p.trans_a = true, p.M = 5, p.lda = 4;
  expect_invalid(p, "lda < M transposed");
  p = good, p.ldb = 2;
  expect_invalid(p, "ldb < N");
  p = good, p.ldc = 3;
  expect_invalid(p, "ldc < N");
  p = good, p.in_dtype = L2C_INT32;
  expect_status(p, L2C_DTYPE_MISMATCH, "int32 input");
  p = good, p.in_dtype = L2C_BFLOAT16, p.out_dtype = L2C_FLOAT16;
  expect_status(p, L2C_DTYPE_MISMATCH, "bf16 in, f16 out");
  p = good, p.batch = 2, p.stride_c = 8;
  expect_invalid(p, "overlapping outputs");
  p = good, p.batch = 2, p.stride_a = -16;
  expect_invalid(p, "negative stride");
  p = good, p.M = int64_t(1) << 62, p.lda = int64_t(1) << 62;
  expect_invalid(p, "size overflow");
  // Empty outputs touch nothing, so null pointers are fine there.
  p = MatmulParams{};
  p.M = 0, p.N = 4, p.K = 4, p.lda = 4, p.ldb = 4, p.ldc = 4;
  l2c::cpu::matmul(p);
}

L2C_TEST(matmul_set_isa) {
  std::string original = l2c::cpu::isa_name();
  l2c_status got = L2C_OK;
  try {
    l2c::cpu::set_isa("avx1024");
  } catch (const l2c::Error &e) {
    got = e.status;
  }
  L2C_EXPECT(got == L2C_INVALID_ARGUMENT, "unknown level: status " << (int)got);
  L2C_EXPECT(original == l2c::cpu::isa_name(), "a failed set_isa changed the level");
  l2c::cpu::set_isa("generic");
  L2C_EXPECT(std::string("generic") == l2c::cpu::isa_name(), "generic not set");
  l2c::cpu::set_isa(original.c_str());
  // The default is the best level the CPU has.
  bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (avx512)
    L2C_EXPECT(original == "avx512", "default level " << original << " on an AVX-512 CPU");
}
