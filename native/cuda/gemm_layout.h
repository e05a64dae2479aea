// gemm_layout.h: the index arithmetic of the tensor-core GEMM (gemm.cuh's
// gemm_tc_kernel), host- and device-callable, so that tests/test_gemm_layout.cc can run
// the exact same code on the CPU against an emulation of cp.async, ldmatrix and
// mma.m16n8k16 (as the PTX ISA defines them) without a GPU.
//
// CTA tile kBM x kBN x kBK = 128 x 256 x 64, 8 warps as 2 (M) x 4 (N), 64 x 64 each.
// Shared memory per stage: the A tile, then the B tile, 16-bit elements, each staged in
// one of two XOR-swizzled layouts (16-byte chunks, no bank conflicts for the cp.async
// writes nor for ldmatrix):
//  * K-major (the stored operand is [rows][K], K contiguous: A, or B stored [N][K]):
//    kRows rows of 64 K values = 128 bytes = 8 chunks; chunk c of row i sits at
//    position c ^ (i & 7).
//  * MN-major (stored [K][rows], rows contiguous: A stored [K][M], B [K][N]): 64 rows
//    (one per k) of kRows values = kRows / 8 chunks; chunk c of row k at c ^ (k & 7)
//    (so within its group of 8 chunks = 128 bytes).
// ldmatrix reads 8 rows of one 16-byte chunk column per 8x8 matrix: rows i..i+7 (i a
// multiple of 8) land on 8 different positions of a 128-byte line, i.e. all 32 banks.
#pragma once
#include <cstdint>

#include "common.h"

namespace l2c {
namespace tcl {

constexpr int kBM = 128, kBN = 256, kBK = 64;
constexpr int kStages = 3;
constexpr int kThreads = 256;
constexpr int kWarpsM = 2, kWarpsN = 4;
constexpr int kWM = kBM / kWarpsM;  // 64 rows per warp
constexpr int kWN = kBN / kWarpsN;  // 64 columns per warp
constexpr int kMT = kWM / 16;       // m16 tiles per warp
constexpr int kNT = kWN / 8;        // n8 tiles per warp
constexpr int kAElems = kBM * kBK, kBElems = kBN * kBK;  // per stage, 16-bit elements
constexpr uint32_t kStageBytes = (uint32_t)(kAElems + kBElems) * 2;
constexpr size_t kSmemBytes = (size_t)kStages * kStageBytes;  // 147456
// CTAs walk the tiles in groups of kGroupM M tiles (all N tiles of a group, M fastest),
// so that a wave of CTAs shares A row blocks and B column blocks in L2.
constexpr int64_t kGroupM = 8;
// Leading dimensions must stay below this for the loaders' 32-bit offsets
// (q * qstride < 8 * 32 * ld < 2^31).
constexpr int64_t kMaxLd = int64_t(1) << 23;
static_assert(kWarpsM * kWarpsN * 32 == kThreads, "8 warps");

// The tile (m0, n0) of CTA `id` of a tiles_m x tiles_n grid, in grouped order.
L2C_HD void tile_origin(int64_t id, int64_t tiles_m, int64_t tiles_n, int64_t &m0, int64_t &n0) {
  const int64_t group = id / (kGroupM * tiles_n);
  const int64_t first_m = group * kGroupM;
  const int64_t gsize = tiles_m - first_m < kGroupM ? tiles_m - first_m : kGroupM;
  const int64_t in_group = id - group * (kGroupM * tiles_n);
  m0 = (first_m + in_group % gsize) * kBM;
  n0 = (in_group / gsize) * kBN;
}

// The cp.async copies of one operand's k-tiles by thread tid (chunks tid + 256 q). kKMajor:
// the stored matrix is [dim rows][K] (K contiguous), staged as kRows rows of 64 K
// values; else it is [K][dim] (dim contiguous), staged as 64 rows of K of kRows values
// each. `origin` is the tile's first row (M or N index), `dim` its extent. What does not
// change with the k-tile is computed once, so that little stays live across the loop.
template <int kRows, bool kKMajor>
struct TileLoader {
  static constexpr int kCpr = kKMajor ? kBK / 8 : kRows / 8;  // chunks per staged row
  static constexpr int kQ = kRows * kBK / 8 / kThreads;       // chunks per thread
  static constexpr int kRowStep = kThreads / kCpr;            // staged rows from q to q + 1
  static_assert(kThreads % kCpr == 0 && (kRows * kBK / 8) % kThreads == 0, "even split");
  static_assert(kRowStep % 8 == 0, "the swizzle of a thread's chunks does not change with q");
  int64_t p;    // element offset of chunk q = 0 at k-tile 0 (within the batch entry)
  int64_t ld;
  // Elements from chunk q to q + 1, and (K-major) the largest offset q * qstride that is
  // inside the matrix: 32-bit (ld < kMaxLd).
  int qstride, qmax;
  int mbytes;     // MN-major: the bytes of this thread's chunks that are inside the matrix
  int row0;       // the first staged row of this thread
  int c8;         // this thread's element offset along the staged row (chunk * 8)
  uint32_t soff;  // byte offset of chunk q = 0 in the operand's stage tile

  L2C_HD TileLoader(int64_t ld_, int64_t origin, int64_t dim, int tid) : ld(ld_) {
    const int c = tid % kCpr;
    c8 = c * 8;
    row0 = tid / kCpr;
    soff = (uint32_t)(row0 * (kKMajor ? kBK : kRows) + ((c ^ (row0 & 7)) << 3)) * 2;
    qstride = kRowStep * (int)ld;
    if constexpr (kKMajor) {
      // Rows past the matrix only feed rows / columns of C that are never stored, so
      // instead of predicating each copy they re-read the last row (no zero fill
      // needed, and no per-chunk predicate live across the main loop).
      const int64_t left = dim - (origin + row0);  // rows from this thread's first on
      int nq = 0;
      if (left > 0) nq = (int)((left + kRowStep - 1) / kRowStep < kQ ? (left + kRowStep - 1) / kRowStep : kQ);
      p = nq > 0 ? (origin + row0) * ld + c8 : (dim - 1) * ld + c8;
      qmax = nq > 0 ? (nq - 1) * qstride : 0;
      mbytes = 0;
    } else {
      const int64_t left = dim - (origin + c8);
      mbytes = left >= 8 ? 16 : left > 0 ? (int)left * 2 : 0;
      p = mbytes > 0 ? (int64_t)row0 * ld + origin + c8 : 0;
      qmax = 0;
    }
  }

  // The copies of k-tile kt: copy(dst byte offset in the operand's stage tile, source
  // element offset (valid only when bytes > 0), bytes (0..16; the rest of the 16 bytes
  // is zero-filled)). Zero fill past K and, MN-major, past the matrix's last column.
  template <class Copy>
  L2C_HD void load(int kt, int64_t K, Copy &&copy) const {
    const int64_t k0 = (int64_t)kt * kBK;
    if constexpr (kKMajor) {
      const int64_t kleft = K - k0 - c8;
      const int kbytes = kleft >= 8 ? 16 : kleft > 0 ? (int)kleft * 2 : 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
      for (int q = 0; q < kQ; q++) {
        const int off = q * qstride < qmax ? q * qstride : qmax;
        copy(soff + (uint32_t)(q * kRowStep * kBK * 2), p + k0 + off, kbytes);
      }
    } else {
      const int64_t src = p + k0 * ld;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
      for (int q = 0; q < kQ; q++) {
        const int bytes = k0 + row0 + q * kRowStep < K ? mbytes : 0;
        copy(soff + (uint32_t)(q * kRowStep * kRows * 2), src + q * qstride, bytes);
      }
    }
  }
};

// Per-lane ldmatrix addresses (bytes within a stage's A or B tile) of k16 step kk and
// the warp's m16 tile mt (A: one x4 load = the 4 registers of mma's A fragment) or n16
// tile np (B: one x4 load = the B fragments of n8 tiles 2 np and 2 np + 1).
//  A K-major (plain ldmatrix): lane l gives row wm + 16 mt + (l & 15), chunk 2 kk + (l >> 4)
//    -> matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (8-15, 8-15).
//  A M-major (.trans): k row 16 kk + (l & 7) + 8 (l >> 4), m chunk of wm + 16 mt + 8 ((l >> 3) & 1)
//    -> the same four matrices, transposed back by .trans.
//  B K-major (plain): n row wn + 16 np + (l & 7) + 8 (l >> 4), chunk 2 kk + ((l >> 3) & 1)
//    -> (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15).
//  B N-major (.trans): k row 16 kk + (l & 7) + 8 ((l >> 3) & 1), n chunk of wn + 16 np + 8 (l >> 4)
//    -> the same four.
// The XOR of the swizzle is split: chunk = c0 + 2 t with t the step / tile index and c0
// holding only bit 0 (plus multiples of 8), so c0 + 2 t = c0 ^ 2 t and
// (c0 + 2 t) ^ (row & 7) = (c0 ^ (row & 7)) ^ 2 t, with row & 7 = lane & 7 throughout.
template <bool kTransA, bool kTransB>
struct FragAddr {
  uint32_t a_row, b_row;  // the row part of the offsets (bytes)
  int a_x, b_x;           // c0 ^ (lane & 7)

  L2C_HD FragAddr(int lane, int wm, int wn) {
    const int l7 = lane & 7;
    if constexpr (!kTransA) {
      a_row = (uint32_t)((wm + (lane & 15)) * kBK * 2);
      a_x = (lane >> 4) ^ l7;
    } else {
      a_row = (uint32_t)((l7 + ((lane >> 4) << 3)) * kBM * 2);
      a_x = (wm / 8 + ((lane >> 3) & 1)) ^ l7;
    }
    if constexpr (kTransB) {
      b_row = (uint32_t)((wn + l7 + ((lane >> 4) << 3)) * kBK * 2);
      b_x = ((lane >> 3) & 1) ^ l7;
    } else {
      b_row = (uint32_t)((l7 + (((lane >> 3) & 1) << 3)) * kBN * 2);
      b_x = (wn / 8 + (lane >> 4)) ^ l7;
    }
  }
  L2C_HD uint32_t a(int kk, int mt) const {
    if constexpr (!kTransA) return a_row + (uint32_t)(mt * 16 * kBK * 2) + (uint32_t)(((a_x ^ (2 * kk)) << 3) * 2);
    return a_row + (uint32_t)(kk * 16 * kBM * 2) + (uint32_t)(((a_x ^ (2 * mt)) << 3) * 2);
  }
  L2C_HD uint32_t b(int kk, int np) const {
    if constexpr (kTransB) return b_row + (uint32_t)(np * 16 * kBK * 2) + (uint32_t)(((b_x ^ (2 * kk)) << 3) * 2);
    return b_row + (uint32_t)(kk * 16 * kBN * 2) + (uint32_t)(((b_x ^ (2 * np)) << 3) * 2);
  }
};

// Where accumulator i (0..3) of the thread's (mt, nt) m16n8 tile sits in the CTA tile:
// mma's C fragment, rows lane/4 (+8 for i >= 2), columns 2 (lane % 4) + (i & 1).
L2C_HD int acc_row(int wm, int mt, int lane, int i) { return wm + mt * 16 + (lane >> 2) + (i >= 2 ? 8 : 0); }
L2C_HD int acc_col(int wn, int nt, int lane, int i) { return wn + nt * 8 + (lane & 3) * 2 + (i & 1); }

}  // namespace tcl
}  // namespace l2c
