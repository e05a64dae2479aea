// matmul.cc: the CPU matmul driver (l2c::cpu::matmul), GotoBLAS/BLIS style: K is cut
// into KC-deep steps, op(A) into MC-row blocks and op(B) into NC-column blocks, both
// packed (bf16/f16 converted to float32, transposed as needed) into MR-row / NR-column
// panels for an ISA-specific register-tile kernel (matmul_avx512.cc, ...). Each thread
// owns a disjoint part of C (whole batch entries, or an M or N range) and its buffers.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend.h"
#include "matmul_kernels.h"
#include "threadpool.h"

namespace l2c {
namespace cpu {
namespace {

using mm::KernelSet;

// Below this many flops (2*M*N*K summed over the batch) one thread does it all: on the
// 2-core VM, 128^3 (4 MFLOP) ran slower on 2 threads than on 1 (waking the worker),
// 160^3 (8 MFLOP) was a toss-up and 200^3 (16 MFLOP) mostly faster.
constexpr double kParallelMinFlops = 1.6e7;
// With 16-bit output, float32 partial sums of up to kHalfBufFloats (8 MB) live in a
// per-thread buffer and are rounded once K is done, so C is cut into chunks of at most
// kHalfCols columns and 8 MB / columns rows, each repacking its B blocks: at 2048^3
// B is packed twice, ~+3% time (one B pack measured ~3% of the float32 run).
constexpr int64_t kHalfBufFloats = int64_t(2) << 20;
constexpr int64_t kHalfCols = 2048;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
// Block length for cutting n into the fewest blocks of at most `most` (a multiple of
// `unit`), made equal up to `unit` granularity.
int64_t balanced(int64_t n, int64_t most, int64_t unit) {
  if (n <= most) return n;
  return std::min(most, round_up(ceil_div(n, ceil_div(n, most)), unit));
}

// A per-thread, 64-byte aligned float buffer that only grows: packing buffers are
// reused across calls, so large matmuls do not pay page faults on every call.
class Scratch {
 public:
  ~Scratch() { std::free(p_); }
  float *get(int64_t floats) {
    if (floats > cap_) {
      std::free(p_);
      cap_ = 0;
      p_ = static_cast<float *>(std::aligned_alloc(64, (size_t)round_up(floats * 4, 64)));
      if (!p_) fail(L2C_OUT_OF_MEMORY, "matmul: cannot allocate packing buffer");
      cap_ = floats;
    }
    return p_;
  }

 private:
  float *p_ = nullptr;
  int64_t cap_ = 0;
};
thread_local Scratch tl_apack, tl_bpack, tl_cbuf;

// Everything the per-thread blocks need, resolved once per call.
struct Plan {
  const MatmulParams &p;
  const KernelSet &ks;
  int64_t in_size, out_size;  // element bytes
  // op(A) row i, depth k at a[i*a_sx + k*a_sk]; op(B) column j, depth k at
  // b[j*b_sx + k*b_sk] (B is packed as NR "rows" of columns).
  int64_t a_sx, a_sk, b_sx, b_sk;
  int64_t kc;  // K split into equal blocks of at most ks.kc (even on the pair path)
  // ks.tile / ks.pack, or their bf16 pair versions; panels then hold (k + 1) / 2 units
  // of depth per k steps.
  bool pairs = false;
  decltype(KernelSet::tile) tile = nullptr;
  decltype(KernelSet::pack) pack = nullptr;
  int64_t depth(int64_t k) const { return pairs ? (k + 1) / 2 : k; }
  bool accumulate = false;  // C += (float32 output only)
};

// C[m0:m1, n0:n1] of batch entry bi, BLIS loop order: an A block (mc x kc) is packed
// once per K step and stays in L3; B blocks (kc x nc) are packed into L2; each A panel
// (kc x MR) stays in L1 while the tile loop runs along the B block, so the 14
// broadcasts per k hit L1, the B vectors stream from L2 and C is walked along rows.
void run_block(const Plan &pl, int64_t bi, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const MatmulParams &p = pl.p;
  const KernelSet &ks = pl.ks;
  const char *A = static_cast<const char *>(p.a) + bi * p.stride_a * pl.in_size;
  const char *B = static_cast<const char *>(p.b) + bi * p.stride_b * pl.in_size;
  char *C = static_cast<char *>(p.c) + bi * p.stride_c * pl.out_size;
  const bool half_out = p.out_dtype != L2C_FLOAT32;

  if (p.K == 0) {  // empty sum: zeros (bit pattern 0 in all three output dtypes)
    if (pl.accumulate) return;
    for (int64_t i = m0; i < m1; i++)
      std::memset(C + (i * p.ldc + n0) * pl.out_size, 0, (n1 - n0) * pl.out_size);
    return;
  }

  // Column chunk, A block rows and B block columns, each cut into equal parts (a 2048-row
  // C with mc 2044 would otherwise repack all of B for a last block of 4 rows); 16-bit
  // output bounds chunk x rows by its buffer.
  int64_t nch = half_out ? balanced(n1 - n0, kHalfCols, ks.nr) : n1 - n0;
  int64_t mmax = ks.mc;
  if (half_out)
    mmax = std::min(mmax, std::max<int64_t>(ks.mr, kHalfBufFloats / nch / ks.mr * ks.mr));
  int64_t mcb = balanced(m1 - m0, mmax, ks.mr), ncb = balanced(nch, ks.nc, ks.nr);
  float *apack = tl_apack.get(round_up(mcb, ks.mr) * pl.depth(pl.kc));
  float *bpack = tl_bpack.get(round_up(ncb, ks.nr) * pl.depth(pl.kc));
  float *cbuf = half_out ? tl_cbuf.get(mcb * nch) : nullptr;

  for (int64_t j0 = n0; j0 < n1; j0 += nch) {
    int64_t nw = std::min(nch, n1 - j0);
    for (int64_t i0 = m0; i0 < m1; i0 += mcb) {
      int64_t mc = std::min(mcb, m1 - i0);
      // C block [mc, nw] that the tiles accumulate into, as float32.
      float *ct = half_out ? cbuf : reinterpret_cast<float *>(C) + i0 * p.ldc + j0;
      int64_t ldct = half_out ? nw : p.ldc;
      for (int64_t pc = 0; pc < p.K; pc += pl.kc) {
        int64_t kc = std::min(pl.kc, p.K - pc), kd = pl.depth(kc);
        pl.pack(A + (i0 * pl.a_sx + pc * pl.a_sk) * pl.in_size, p.in_dtype, pl.a_sx, pl.a_sk, mc,
                kc, ks.mr, apack);
        for (int64_t jc = 0; jc < nw; jc += ncb) {
          int64_t nc = std::min(ncb, nw - jc);
          pl.pack(B + ((j0 + jc) * pl.b_sx + pc * pl.b_sk) * pl.in_size, p.in_dtype, pl.b_sx,
                  pl.b_sk, nc, kc, ks.nr, bpack);
          for (int64_t ir = 0; ir < mc; ir += ks.mr) {
            int m = (int)std::min<int64_t>(ks.mr, mc - ir);
            for (int64_t jr = 0; jr < nc; jr += ks.nr)
              pl.tile(kd, apack + ir * kd, bpack + jr * kd, ct + ir * ldct + jc + jr, ldct,
                      pc > 0 || pl.accumulate, m, (int)std::min<int64_t>(ks.nr, nc - jr));
          }
        }
      }
      if (half_out)
        for (int64_t i = 0; i < mc; i++)
          ks.store_half(cbuf + i * nw, C + ((i0 + i) * p.ldc + j0) * pl.out_size, p.out_dtype,
                        nw);
    }
  }
}


Plan make_plan(const MatmulParams &p) {
  const KernelSet &ks = mm::active_kernels();
  int64_t in_size = p.in_dtype == L2C_FLOAT32 ? 4 : 2;
  int64_t out_size = p.out_dtype == L2C_FLOAT32 ? 4 : 2;
  Plan pl{p, ks, in_size, out_size,
          p.trans_a ? 1 : p.lda, p.trans_a ? p.lda : 1,
          p.trans_b ? p.ldb : 1, p.trans_b ? 1 : p.ldb, 0};
  pl.pairs = p.in_dtype == L2C_BFLOAT16 && ks.tile_bf16 != nullptr;
  pl.tile = pl.pairs ? ks.tile_bf16 : ks.tile;
  pl.pack = pl.pairs ? ks.pack_bf16 : ks.pack;
  pl.kc = p.K > 0 ? ceil_div(p.K, ceil_div(p.K, ks.kc)) : 1;
  if (pl.pairs) pl.kc = round_up(pl.kc, 2);  // block starts stay on pair boundaries
  return pl;
}

}  // namespace

void matmul_serial(const MatmulParams &p, bool accumulate) {
  check_matmul_params(p, "matmul");
  if (accumulate && p.out_dtype != L2C_FLOAT32)
    fail(L2C_INTERNAL, "matmul_serial: accumulate needs a float32 output");
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;
  Plan pl = make_plan(p);
  pl.accumulate = accumulate;
  for (int64_t bi = 0; bi < p.batch; bi++) run_block(pl, bi, 0, p.M, 0, p.N);
}

// C (batch, M, N) = op(A) (batch, M, K) . op(B) (batch, K, N); see backend.h.
void matmul(const MatmulParams &p) {
  check_matmul_params(p, "matmul");
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;
  Plan pl = make_plan(p);
  const KernelSet &ks = pl.ks;
  double flops = 2.0 * p.batch * p.M * p.N * std::max<int64_t>(p.K, 1);
  int64_t T = num_threads();
  if (T <= 1 || flops < kParallelMinFlops) {
    for (int64_t bi = 0; bi < p.batch; bi++) run_block(pl, bi, 0, p.M, 0, p.N);
    return;
  }
  // Units of work: whole matrices when the batch divides evenly over the threads, else
  // each matrix cut into T parts along whichever of M / N splits into whole tiles with
  // less imbalance (ties go to N: each thread then packs half of B and all of A).
  int64_t parts = p.batch % T == 0 ? 1 : T;
  int64_t tm = ceil_div(p.M, ks.mr), tn = ceil_div(p.N, ks.nr);
  double cost_m = (double)ceil_div(tm, parts) * ks.mr * round_up(p.N, ks.nr);
  double cost_n = (double)ceil_div(tn, parts) * ks.nr * round_up(p.M, ks.mr);
  bool split_n = cost_n <= cost_m;
  int64_t units = p.batch * parts;
  parallel_tasks(T, [&](int64_t t) {
    for (int64_t u = units * t / T; u < units * (t + 1) / T; u++) {
      int64_t bi = u / parts, part = u % parts;
      int64_t tiles = split_n ? tn : tm, w = split_n ? ks.nr : ks.mr;
      int64_t lo = std::min(tiles * part / parts * w, split_n ? p.N : p.M);
      int64_t hi = std::min(tiles * (part + 1) / parts * w, split_n ? p.N : p.M);
      if (lo >= hi) continue;
      if (split_n)
        run_block(pl, bi, 0, p.M, lo, hi);
      else
        run_block(pl, bi, lo, hi, 0, p.N);
    }
  });
}

}  // namespace cpu
}  // namespace l2c
