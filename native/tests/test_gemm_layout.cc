// test_gemm_layout.cc: the tensor-core GEMM's index arithmetic (cuda/gemm_layout.h, the
// code gemm_tc_kernel runs) checked on the CPU, without a GPU: a whole GEMM is emulated
// tile by tile with that code deciding every copy and every shared-memory address, and
// cp.async (zero fill), ldmatrix (.x4, plain and .trans) and mma.m16n8k16 modelled as
// the PTX ISA defines them (the fragment layouts of "Matrix Fragments for
// mma.m16n8k16 with floating point type" and "ldmatrix"). Inputs are small integers, so
// every sum is exact and the result must equal the reference bit for bit; padding holds
// NaN, and no copy may read it (memory safety: a row's last chunk may end the
// allocation). Also checked: each shared-memory element written exactly
// once per k-tile, 16-byte alignment of every copy and ldmatrix row, no bank conflicts
// (the 8 rows of each ldmatrix phase and each 8-thread group of cp.async writes fall on 8
// distinct 16-byte bank groups), the grouped tile order is a bijection.
// Plain C++: runs everywhere (it does not need CUDA, and is built without it too).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "../cuda/gemm_layout.h"
#include "harness.h"

namespace {

using namespace l2c::tcl;

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float small_int() { return (float)((int)(next() % 7) - 3); }  // -3..3
};

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// One stage's shared memory as 16-bit element slots holding floats (values only matter).
struct Smem {
  std::vector<float> v;
  std::vector<int> writes;
  explicit Smem(size_t elems) : v(elems, kNaN), writes(elems, 0) {}
};

// ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16: lanes 8j..8j+7 give the addresses of
// rows 0..7 of matrix j; register j of lane t holds two elements of matrix j: plain
// (row t/4, columns 2(t%4), 2(t%4)+1), .trans (rows 2(t%4), 2(t%4)+1 of column t/4).
void ldmatrix_x4(const Smem &sm, const uint32_t (&addr)[32], bool trans, float (&out)[32][4][2], uint32_t lo,
                 uint32_t hi, std::string &err) {
  for (int j = 0; j < 4; j++) {
    float m[8][8];
    std::set<uint32_t> banks;
    for (int r = 0; r < 8; r++) {
      const uint32_t a = addr[8 * j + r];
      if (a % 16 || a < lo || a + 16 > hi) {
        if (err.empty()) err = "ldmatrix row address " + std::to_string(a) + " misaligned or outside its tile";
        return;
      }
      banks.insert((a / 16) % 8);
      for (int c = 0; c < 8; c++) m[r][c] = sm.v[a / 2 + c];
    }
    if (banks.size() != 8 && err.empty()) err = "ldmatrix phase with bank conflicts";
    for (int t = 0; t < 32; t++) {
      if (!trans) {
        out[t][j][0] = m[t / 4][2 * (t % 4)];
        out[t][j][1] = m[t / 4][2 * (t % 4) + 1];
      } else {
        out[t][j][0] = m[2 * (t % 4)][t / 4];
        out[t][j][1] = m[2 * (t % 4) + 1][t / 4];
      }
    }
  }
}

// mma.sync.aligned.m16n8k16.row.col.f32: groupID g = lane / 4, t = lane % 4.
// A regs: 0 = A[g][2t, 2t+1], 1 = A[g+8][2t, 2t+1], 2 = A[g][2t+8, 2t+9], 3 = A[g+8][2t+8, 2t+9].
// B regs: 0 = B[2t, 2t+1][g], 1 = B[2t+8, 2t+9][g]. C: 0, 1 = C[g][2t, 2t+1], 2, 3 = C[g+8][2t, 2t+1].
void mma16816(double (&acc)[32][4], const float (&a)[32][4][2], const float (&b)[32][2][2]) {
  double A[16][16], B[16][8];
  for (int l = 0; l < 32; l++) {
    const int g = l / 4, t = l % 4;
    for (int e = 0; e < 2; e++) {
      A[g][2 * t + e] = a[l][0][e];
      A[g + 8][2 * t + e] = a[l][1][e];
      A[g][2 * t + 8 + e] = a[l][2][e];
      A[g + 8][2 * t + 8 + e] = a[l][3][e];
      B[2 * t + e][g] = b[l][0][e];
      B[2 * t + 8 + e][g] = b[l][1][e];
    }
  }
  for (int l = 0; l < 32; l++) {
    const int g = l / 4, t = l % 4;
    for (int i = 0; i < 4; i++) {
      const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i & 1);
      double s = 0;
      for (int k = 0; k < 16; k++) s += A[row][k] * B[k][col];
      acc[l][i] += s;
    }
  }
}

// Runs one operand's loader for every thread of a k-tile into the stage (tile at byte
// offset `tile` of size `bytes_tile`), as cp.async would: `bytes` from global, zero fill.
template <int kRows, bool kKMajor>
void emulate_loads(Smem &sm, uint32_t tile, uint32_t bytes_tile, const std::vector<float> &g, int64_t ld,
                   int64_t origin, int64_t dim, int kt, int64_t K, std::string &err) {
  std::vector<uint32_t> dsts(kThreads * TileLoader<kRows, kKMajor>::kQ);
  for (int tid = 0; tid < kThreads; tid++) {
    const TileLoader<kRows, kKMajor> ld_(ld, origin, dim, tid);
    int q = 0;
    ld_.load(kt, K, [&](uint32_t dst, int64_t src, int bytes) {
      dsts[(size_t)q * kThreads + tid] = dst;
      q++;
      if (dst % 16 || dst + 16 > bytes_tile || bytes < 0 || bytes > 16 || bytes % 2) {
        if (err.empty()) err = "bad copy: dst " + std::to_string(dst) + " bytes " + std::to_string(bytes);
        return;
      }
      if (bytes > 0 && (src % 8 || src < 0 || src + bytes / 2 > (int64_t)g.size())) {
        if (err.empty()) err = "copy source " + std::to_string(src) + " misaligned or outside the matrix";
        return;
      }
      for (int e = 0; 2 * e < bytes; e++)  // padding (NaN) or past the end is never read
        if (std::isnan(g[src + e]) && err.empty()) err = "copy reads padding at " + std::to_string(src + e);
      for (int e = 0; e < 8; e++) {
        const uint32_t slot = (tile + dst) / 2 + e;
        sm.v[slot] = 2 * e < bytes ? g[src + e] : 0.0f;
        sm.writes[slot]++;
      }
    });
  }
  // Each warp's copy instruction q: its 4 groups of 8 threads each write 128 bytes
  // without bank conflicts.
  for (size_t q = 0; q < dsts.size() / kThreads; q++)
    for (int g8 = 0; g8 < kThreads / 8; g8++) {
      std::set<uint32_t> banks;
      for (int i = 0; i < 8; i++) banks.insert((dsts[q * kThreads + g8 * 8 + i] / 16) % 8);
      if (banks.size() != 8 && err.empty()) err = "cp.async writes with bank conflicts";
    }
}

struct Case {
  int64_t M, N, K;
  int64_t pad;  // extra elements per row (a multiple of 8)
};

int64_t up8(int64_t v) { return (v + 7) / 8 * 8; }

// C = op(A)·op(B) through the emulated kernel, compared with the exact product.
template <bool kTA, bool kTB>
void check_case(const Case &cs, uint64_t seed) {
  const int64_t M = cs.M, N = cs.N, K = cs.K;
  const int64_t a_rows = kTA ? K : M, a_cols = kTA ? M : K, b_rows = kTB ? N : K, b_cols = kTB ? K : N;
  const int64_t lda = std::max<int64_t>(8, up8(a_cols) + cs.pad), ldb = std::max<int64_t>(8, up8(b_cols) + cs.pad);
  std::vector<float> A((size_t)std::max<int64_t>(1, a_rows * lda)), B((size_t)std::max<int64_t>(1, b_rows * ldb));
  Rng rng(seed);
  for (size_t i = 0; i < A.size(); i++) A[i] = (int64_t)(i % lda) < a_cols ? rng.small_int() : kNaN;
  for (size_t i = 0; i < B.size(); i++) B[i] = (int64_t)(i % ldb) < b_cols ? rng.small_int() : kNaN;
  auto a_at = [&](int64_t m, int64_t k) { return kTA ? A[k * lda + m] : A[m * lda + k]; };
  auto b_at = [&](int64_t k, int64_t n) { return kTB ? B[n * ldb + k] : B[k * ldb + n]; };

  const std::string what = std::string(kTA ? "A^T" : "A") + (kTB ? " B^T" : " B") + " M " + std::to_string(M) +
                           " N " + std::to_string(N) + " K " + std::to_string(K) + " pad " + std::to_string(cs.pad);
  std::string err;
  std::vector<double> C((size_t)(M * N), std::nan(""));
  std::vector<int> written((size_t)(M * N), 0);
  const int64_t tiles_m = (M + kBM - 1) / kBM, tiles_n = (N + kBN - 1) / kBN;
  const int KT = (int)((K + kBK - 1) / kBK);
  for (int64_t id = 0; id < tiles_m * tiles_n && err.empty(); id++) {
    int64_t m0, n0;
    tile_origin(id, tiles_m, tiles_n, m0, n0);
    static double acc[8][32][kMT][kNT][4];
    std::memset(acc, 0, sizeof acc);
    for (int kt = 0; kt < KT && err.empty(); kt++) {
      Smem sm(kStageBytes / 2);
      emulate_loads<kBM, !kTA>(sm, 0, kAElems * 2, A, lda, m0, M, kt, K, err);
      emulate_loads<kBN, kTB>(sm, kAElems * 2, kBElems * 2, B, ldb, n0, N, kt, K, err);
      for (size_t i = 0; i < sm.writes.size(); i++)
        if (sm.writes[i] != 1 && err.empty())
          err = "shared element " + std::to_string(i) + " written " + std::to_string(sm.writes[i]) + " times";
      for (int warp = 0; warp < 8 && err.empty(); warp++) {
        const int wm = (warp / kWarpsN) * kWM, wn = (warp % kWarpsN) * kWN;
        for (int kk = 0; kk < kBK / 16; kk++) {
          float af[kMT][32][4][2], bf[kNT / 2][32][4][2];
          for (int mt = 0; mt < kMT; mt++) {
            uint32_t addr[32];
            for (int l = 0; l < 32; l++) addr[l] = FragAddr<kTA, kTB>(l, wm, wn).a(kk, mt);
            ldmatrix_x4(sm, addr, kTA, af[mt], 0, kAElems * 2, err);
          }
          for (int np = 0; np < kNT / 2; np++) {
            uint32_t addr[32];
            for (int l = 0; l < 32; l++) addr[l] = kAElems * 2 + FragAddr<kTA, kTB>(l, wm, wn).b(kk, np);
            ldmatrix_x4(sm, addr, !kTB, bf[np], kAElems * 2, kStageBytes, err);
          }
          for (int mt = 0; mt < kMT; mt++)
            for (int nt = 0; nt < kNT; nt++) {
              // B fragment of n8 tile nt: registers (2 (nt % 2), 2 (nt % 2) + 1) of x4 load nt / 2.
              float b2[32][2][2];
              for (int l = 0; l < 32; l++)
                for (int r = 0; r < 2; r++)
                  for (int e = 0; e < 2; e++) b2[l][r][e] = bf[nt / 2][l][2 * (nt % 2) + r][e];
              double d[32][4];
              for (int l = 0; l < 32; l++)
                for (int i = 0; i < 4; i++) d[l][i] = acc[warp][l][mt][nt][i];
              mma16816(d, af[mt], b2);
              for (int l = 0; l < 32; l++)
                for (int i = 0; i < 4; i++) acc[warp][l][mt][nt][i] = d[l][i];
            }
        }
      }
    }
    for (int warp = 0; warp < 8; warp++) {
      const int wm = (warp / kWarpsN) * kWM, wn = (warp % kWarpsN) * kWN;
      for (int l = 0; l < 32; l++)
        for (int mt = 0; mt < kMT; mt++)
          for (int nt = 0; nt < kNT; nt++)
            for (int i = 0; i < 4; i++) {
              const int64_t m = m0 + acc_row(wm, mt, l, i), n = n0 + acc_col(wn, nt, l, i);
              if (m < M && n < N) {
                C[m * N + n] = acc[warp][l][mt][nt][i];
                written[m * N + n]++;
              }
            }
    }
  }
  int64_t bad = 0;
  std::string first;
  for (int64_t m = 0; m < M && err.empty(); m++)
    for (int64_t n = 0; n < N; n++) {
      double want = 0;
      for (int64_t k = 0; k < K; k++) want += (double)a_at(m, k) * b_at(k, n);
      const double got = C[m * N + n];
      if (written[m * N + n] != 1 || !(got == want)) {
        if (bad++ == 0)
          first = "[" + std::to_string(m) + "," + std::to_string(n) + "] want " + std::to_string(want) + " got " +
                  std::to_string(got) + " written " + std::to_string(written[m * N + n]) + "x";
      }
    }
  L2C_EXPECT(err.empty(), what << ": " << err);
  L2C_EXPECT(bad == 0, what << ": " << bad << " wrong outputs, first " << first);
}

L2C_TEST(gemm_tc_layout_emulated) {
  const Case cases[] = {
      {1, 1, 1, 0},     {8, 8, 8, 0},      {16, 8, 16, 8},    {128, 256, 64, 0}, {129, 257, 65, 0},
      {127, 255, 63, 8}, {37, 45, 29, 0},  {130, 264, 72, 16}, {300, 100, 200, 0}, {100, 300, 7, 8},
      {5, 600, 130, 0},  {257, 9, 300, 0}, {7, 9, 0, 0},       {1, 513, 9, 0},     {1100, 3, 33, 0},
  };
  uint64_t seed = 1;
  for (const Case &c : cases) {
    check_case<false, false>(c, seed++);
    check_case<false, true>(c, seed++);
    check_case<true, false>(c, seed++);
    check_case<true, true>(c, seed++);
  }
}

// Every tile of a tiles_m x tiles_n grid is visited exactly once.
L2C_TEST(gemm_tc_tile_order_is_a_bijection) {
  for (int64_t tm = 1; tm <= 40; tm++)
    for (int64_t tn = 1; tn <= 20; tn++) {
      std::vector<int> seen((size_t)(tm * tn), 0);
      bool ok = true;
      for (int64_t id = 0; id < tm * tn; id++) {
        int64_t m0, n0;
        tile_origin(id, tm, tn, m0, n0);
        if (m0 % kBM || n0 % kBN || m0 < 0 || n0 < 0 || m0 / kBM >= tm || n0 / kBN >= tn) {
          ok = false;
          break;
        }
        seen[(size_t)((m0 / kBM) * tn + n0 / kBN)]++;
      }
      for (int v : seen) ok = ok && v == 1;
      L2C_EXPECT(ok, "tiles " << tm << " x " << tn);
    }
}

}  // namespace
